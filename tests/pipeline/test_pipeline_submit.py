"""`hm3 submit` against a stand-in for the KFP API on loopback: a test server, not a cluster.

`KfpStandIn` is a small `http.server` in a thread that answers the REST calls kfp 2.17.3's
`kfp.Client` makes for `create_run_from_pipeline_package` (read from the installed
kfp/client/client.py and kfp_server_api), and nothing else:

- GET  /apis/v2beta1/healthz       (the Client constructor, with no namespace in its context)
- GET  /apis/v2beta1/experiments   (find the experiment by display name, `filter=` query)
- POST /apis/v2beta1/experiments   (create it when none has that name)
- POST /apis/v2beta1/runs          (the run, the compiled pipeline spec inline)
- POST /apis/v2beta1/recurringruns (`create_recurring_run`, for `hm3 submit --schedule`)

This client version does not upload a pipeline package for a run (no POST
/apis/v2beta1/pipelines/upload); any other request is answered 404 and recorded, so a change in
what the client calls fails the test. The stand-in parses the run's pipeline spec strictly, as
the backend does. No scheduler, Argo or Kubernetes is involved: it shows what `hm3 submit`
sends, not that a cluster runs it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from kfp_ir import parse_ir_strictly
from typer.testing import CliRunner

from pipelines.cli import app

API = "/apis/v2beta1"


class KfpStandIn:
    """A stand-in for the KFP v2beta1 REST API on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.experiments: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.recurring_runs: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output quiet
                pass

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                stand_in.requests.append(("GET", url.path))
                if url.path == f"{API}/healthz":
                    self._answer(200, {"multi_user": False})
                elif url.path == f"{API}/experiments":
                    # A Filter proto as JSON; the enum may come as its number (EQUALS = 1).
                    names = [
                        p["stringValue"]
                        for p in json.loads(parse_qs(url.query)["filter"][0])["predicates"]
                        if p["key"] == "display_name" and p["operation"] in (1, "EQUALS")
                    ]
                    if len(names) != 1:
                        self._answer(400, {"error": f"expected one name filter: {url.query}"})
                        return
                    name = names[0]
                    found = [e for e in stand_in.experiments if e["display_name"] == name]
                    self._answer(200, {"experiments": found} if found else {})
                else:
                    self._answer(404, {"error": f"not found: {url.path}"})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                stand_in.requests.append(("POST", url.path))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if url.path == f"{API}/experiments":
                    experiment = {**body, "experiment_id": f"exp-{len(stand_in.experiments) + 1}"}
                    stand_in.experiments.append(experiment)
                    self._answer(200, experiment)
                elif url.path == f"{API}/runs":
                    try:
                        parse_ir_strictly(*stand_in.documents(body["pipeline_spec"]))
                    except Exception as err:  # noqa: BLE001 - the backend answers 400
                        self._answer(400, {"error": str(err)})
                        return
                    run = {**body, "run_id": f"run-{len(stand_in.runs) + 1}", "state": "PENDING"}
                    stand_in.runs.append(run)
                    self._answer(200, run)
                elif url.path == f"{API}/recurringruns":
                    try:
                        parse_ir_strictly(*stand_in.documents(body["pipeline_spec"]))
                    except Exception as err:  # noqa: BLE001 - the backend answers 400
                        self._answer(400, {"error": str(err)})
                        return
                    job_id = f"rr-{len(stand_in.recurring_runs) + 1}"
                    job = {**body, "recurring_run_id": job_id, "status": "ENABLED"}
                    stand_in.recurring_runs.append(job)
                    self._answer(200, job)
                else:
                    self._answer(404, {"error": f"not found: {url.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def documents(sent: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(pipeline spec, platform spec or None) of a run body's `pipeline_spec`.

        kfp.Client sends the pipeline spec alone when the package has no platform spec, and
        `{"pipeline_spec": ..., "platform_spec": ...}` when it has one (kfp/client/client.py
        `_PipelineDoc.to_dict`).
        """
        if set(sent) == {"pipeline_spec", "platform_spec"}:
            return sent["pipeline_spec"], sent["platform_spec"]
        return sent, None

    def __enter__(self) -> KfpStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def kfp_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[KfpStandIn]:
    """The stand-in, with kfp.Client isolated from this machine's kfp context and env."""
    import kfp

    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "no-context.json"))
    for name in (
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
        "HM3_IMAGE",
        "HM3_TRAIN_IMAGE",
    ):
        monkeypatch.delenv(name, raising=False)
    with KfpStandIn() as stand_in:
        yield stand_in


def _submit(host: str, package: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["submit", "--host", host, "--package", str(package), *args])


def test_submit_compiles_creates_the_experiment_and_the_run(
    kfp_api: KfpStandIn, tmp_path: Path
) -> None:
    package = tmp_path / "hm3.yaml"  # absent: `hm3 submit` compiles it first
    result = _submit(
        kfp_api.host,
        package,
        "--experiment", "hm3-test",
        "--run-name", "nightly",
        "--pipeline-root", "gs://hm3-runs/root",
        "--param", "deploy_dir=gs://hm3-models/deploy",
        "--param", "min_cvr_auc=0.65",
        "--param", "impressions=50000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"{kfp_api.host}/#/runs/details/run-1"
    assert kfp_api.requests == [
        ("GET", f"{API}/healthz"),
        ("GET", f"{API}/experiments"),
        ("POST", f"{API}/experiments"),
        ("POST", f"{API}/runs"),
    ]
    assert [e["display_name"] for e in kfp_api.experiments] == ["hm3-test"]
    (run,) = kfp_api.runs
    assert (run["display_name"], run["experiment_id"]) == ("nightly", "exp-1")
    assert run["runtime_config"] == {
        "pipeline_root": "gs://hm3-runs/root",
        "parameters": {
            "deploy_dir": "gs://hm3-models/deploy",
            "min_cvr_auc": 0.65,
            "impressions": 50000,
        },
    }
    # The run carries the package it compiled (the pipeline and its Kubernetes platform spec),
    # and every parameter is one the pipeline declares.
    pipeline, platform = kfp_api.documents(run["pipeline_spec"])
    assert [pipeline, platform] == list(yaml.safe_load_all(package.read_text()))
    declared = pipeline["root"]["inputDefinitions"]["parameters"]
    assert set(run["runtime_config"]["parameters"]) <= set(declared)


def test_a_second_submit_reuses_the_experiment_and_names_the_run(
    kfp_api: KfpStandIn, tmp_path: Path
) -> None:
    from pipelines.compile import compile_pipeline

    package = compile_pipeline(tmp_path / "hm3.yaml")
    args = ("--param", "deploy_dir=gs://hm3-models/deploy")
    assert _submit(kfp_api.host, package, *args).exit_code == 0
    result = _submit(kfp_api.host, package, *args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].endswith("/#/runs/details/run-2")
    assert [method for method, _ in kfp_api.requests].count("POST") == 3  # 1 experiment, 2 runs
    assert [e["display_name"] for e in kfp_api.experiments] == ["hm3"]
    assert {r["experiment_id"] for r in kfp_api.runs} == {"exp-1"}
    assert all(r["display_name"].startswith("hm3-") for r in kfp_api.runs)  # timestamped


def test_a_bad_param_is_a_usage_error_and_nothing_is_sent(
    kfp_api: KfpStandIn, tmp_path: Path
) -> None:
    from pipelines.compile import compile_pipeline

    package = compile_pipeline(tmp_path / "hm3.yaml")
    result = _submit(kfp_api.host, package, "--param", "min_cvr_auc")
    assert result.exit_code == 2
    assert "--param expects NAME=VALUE, got 'min_cvr_auc'" in result.output
    assert kfp_api.requests == []


def test_submit_feature_store_is_the_runs_parameter(kfp_api: KfpStandIn, tmp_path: Path) -> None:
    from pipelines.compile import compile_pipeline

    package = compile_pipeline(tmp_path / "hm3.yaml")
    uri = "gs://team-feast/prod/feature_store.yaml"
    deploy = ("--param", "deploy_dir=gs://hm3-models/deploy")
    result = _submit(kfp_api.host, package, *deploy, "--feature-store", uri)
    assert result.exit_code == 0, result.output
    (run,) = kfp_api.runs
    assert run["runtime_config"]["parameters"]["feature_store"] == uri
    result = _submit(
        kfp_api.host, package, *deploy, "--feature-store", uri, "--param", "feature_store=gs://x/y"
    )
    assert result.exit_code == 2
    assert "disagree" in result.output
    assert len(kfp_api.runs) == 1  # nothing more was sent


def test_submit_schedule_creates_a_recurring_materialization(
    kfp_api: KfpStandIn, tmp_path: Path
) -> None:
    """`hm3 submit --schedule`: the materialization pipeline (compiled now, since the package
    is absent) as a recurring run on the cron given, one at a time, without catch-up."""
    package = tmp_path / "materialize.yaml"
    uri = "gs://team-feast/prod/feature_store.yaml"
    hourly = "0 0 * * * *"
    result = _submit(
        kfp_api.host, package,
        "--pipeline", "materialize",
        "--feature-store", uri,
        "--schedule", hourly,
        "--run-name", "feast-hourly",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"{kfp_api.host}/#/recurringrun/details/rr-1")
    assert kfp_api.requests[-1] == ("POST", f"{API}/recurringruns")
    assert kfp_api.runs == []
    (job,) = kfp_api.recurring_runs
    assert job["display_name"] == "feast-hourly"
    assert job["trigger"] == {"cron_schedule": {"cron": hourly}}
    assert (job["mode"], int(job["max_concurrency"]), job["no_catchup"]) == ("ENABLE", 1, True)
    assert job["runtime_config"]["parameters"] == {"feature_store": uri}
    pipeline, _ = kfp_api.documents(job["pipeline_spec"])
    assert pipeline["pipelineInfo"]["name"] == "hm3-materialize"

    result = _submit(kfp_api.host, package, "--schedule", "0 * * * *")
    assert result.exit_code == 2
    assert "--schedule '0 * * * *' has 5 fields; KFP cron has 6, seconds first" in result.output
    assert len(kfp_api.recurring_runs) == 1  # nothing more was sent
