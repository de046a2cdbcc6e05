"""The whole pipeline on kfp.local, end to end, on a small simulated world."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file

from pipelines.local_run import LocalRunConfig, LocalRunResult, run_local, training_threads

ROOT = Path(__file__).resolve().parents[2]
STEPS = {
    "load-logs",
    "build-labels",
    "retrieve-features",
    "join-training-table",
    *(f"train-model-{kind}" for kind in ("hm3", "esm2", "esmm", "naive")),
    "evaluate-model",
    "gate-decision",
    "deploy-model",
}


def _small_run(out: Path) -> LocalRunConfig:
    # min_cvr_auc 0: the deploy branch must run (the gate's own rules are tested elsewhere).
    return LocalRunConfig(
        out=out, impressions=20_000, users=2_000, items=500, epochs=1, min_cvr_auc=0.0
    )


@pytest.fixture(scope="module")
def run_and_console(tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalRunResult, str]:
    """The run, and what it printed on stdout while it ran."""
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        result = run_local(_small_run(tmp_path_factory.mktemp("run")))
    return result, console.getvalue()


@pytest.fixture(scope="module")
def run(run_and_console: tuple[LocalRunResult, str]) -> LocalRunResult:
    return run_and_console[0]


def test_two_training_tasks_at_a_time_share_the_cores() -> None:
    assert [training_threads(cores) for cores in (1, 2, 3, 16)] == [1, 1, 1, 8]


def test_the_console_shows_one_line_per_step_and_the_logs_hold_the_rest(
    run_and_console: tuple[LocalRunResult, str],
) -> None:
    result, console = run_and_console
    lines = console.splitlines()
    assert {line.split()[1] for line in lines} == STEPS, console
    assert len(lines) == len(STEPS) and all(line.startswith("ok ") for line in lines), console
    assert "executor_input" not in console
    assert result.logs == result.out / "logs"
    for step in STEPS:
        log = (result.logs / f"{step}.log").read_text()
        assert "Got executor_input" in log, step  # kfp.local's dump, off the console
    # Two models train at once, on two threads: each log holds its own model only.
    for kind in ("esm2", "esmm", "naive"):
        log = (result.logs / f"train-model-{kind}.log").read_text()
        assert f'"model_kind": "{kind}"' in log
        others = {"hm3", "esm2", "esmm", "naive"} - {kind}
        assert not any(f'"model_kind": "{other}"' in log for other in others), kind
    run_log = (result.logs / "run.log").read_text()
    assert run_log.count("Got executor_input") == len(STEPS)
    assert "\x1b[" not in run_log  # kfp.local's colors stay on terminals
    headline = next(line for line in lines if "train-model-hm3" in line)
    assert "1 epoch; best validation CVR AUC 0." in headline and "at epoch 1" in headline


def test_outputs_land_in_the_documented_layout(run) -> None:
    out: Path = run.out
    for kind in ("hm3", "esm2", "esmm", "naive"):
        config = json.loads((out / "models" / kind / "config.json").read_text())
        assert config["kind"] == kind
        assert (out / "models" / kind / "model.safetensors").exists()
    assert (out / "labels" / "labels.parquet").exists()
    assert (out / "features" / "features.parquet").exists()
    assert "<html" in (out / "report.html").read_text().lower()
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"hm3", "esm2", "esmm", "naive", "oracle"}
    assert set(metrics["hm3"]) >= {"ctr", "cvr", "ctcvr", "ct_micro", "ct_macro"}


def test_gate_passes_and_the_local_endpoint_answered(run) -> None:
    assert run.decision == "deploy"
    assert run.deployment is not None and run.deployment["mode"] == "local"
    prediction = run.deployment["prediction"]
    flat = json.dumps(prediction)
    for key in ("p_ctr", "p_cvr", "p_ctcvr", "p_ct_micro", "p_ct_macro"):
        assert key in flat
    registry = json.loads((run.out / "deployment" / "registry.json").read_text())
    assert registry["kind"] == "hm3"
    # The champion record carries the CVR AUC the gate judged, the one in metrics.json.
    metrics = json.loads((run.out / "metrics.json").read_text())
    assert registry["cvr_auc"] == pytest.approx(metrics["hm3"]["cvr"]["auc"], abs=1e-6)


def test_the_local_endpoint_reads_features_from_the_runs_feast_store(run) -> None:
    """User 1 and item 1 exist in the world: Feast fills their features, nothing is defaulted
    except the request context the demo instance leaves out."""
    from model.data import schema

    prediction = run.deployment["prediction"]
    assert prediction["unknown_ids"] == []
    assert set(prediction["defaulted"]) <= set(schema.CONTEXT_FEATURES), prediction["defaulted"]
    assert (run.out / "feature_store" / "feature_store.yaml").exists()


def test_corrupt_artifacts_between_steps_give_clear_errors(run, tmp_path: Path) -> None:
    """A truncated training table or an altered model is refused, naming the file."""
    import pyarrow as pa

    from model.evaluate.evaluation import evaluate_models
    from model.storage import ArtifactError
    from model.train.trainer import TrainConfig, train

    (table,) = run.run_dir.rglob("join-training-table/table")
    truncated = tmp_path / "table.parquet"
    truncated.write_bytes(table.read_bytes()[:-200])
    with pytest.raises(pa.ArrowInvalid, match="table.parquet.*corrupted"):
        train(truncated, tmp_path / "model", TrainConfig(epochs=1, progress=False))

    altered = tmp_path / "hm3"
    shutil.copytree(run.out / "models" / "hm3", altered)
    weights = bytearray((altered / "model.safetensors").read_bytes())
    weights[-1] ^= 0xFF  # one flipped bit pattern in the last weight
    (altered / "model.safetensors").write_bytes(bytes(weights))
    with pytest.raises(ArtifactError, match="model.safetensors does not match its SHA-256"):
        evaluate_models([str(altered)], str(table), tmp_path / "eval")


def test_same_parameters_and_seed_give_the_same_labels_models_and_metrics(
    run, tmp_path: Path
) -> None:
    """A second run, from scratch (kfp.local does not cache), reproduces the first on CPU."""
    again = run_local(_small_run(tmp_path / "again"))
    for table in ("labels/labels.parquet", "features/features.parquet"):
        assert pq.read_table(again.out / table).equals(pq.read_table(run.out / table)), table
    for kind in ("hm3", "esm2", "esmm", "naive"):
        # Tensors, not file bytes: safetensors writes its metadata map in hash order.
        first = load_file(run.out / "models" / kind / "model.safetensors")
        second = load_file(again.out / "models" / kind / "model.safetensors")
        assert first.keys() == second.keys(), kind
        for name, tensor in first.items():
            np.testing.assert_array_equal(second[name], tensor, err_msg=f"{kind} {name}")
    assert json.loads((again.out / "metrics.json").read_text()) == json.loads(
        (run.out / "metrics.json").read_text()
    )
    assert again.decision == run.decision


def test_pipeline_reads_logs_and_keeps_its_registry_in_gcs(
    small_world: Path, gcs_bucket: str, tmp_path: Path
) -> None:
    """Raw logs ingested from gs://; the served model and the champion registry in gs://."""
    from model import storage

    logs = f"{gcs_bucket}/logs-{tmp_path.name}"
    for name in ("impressions", "events", "users", "items", "truth"):
        data = (small_world / f"{name}.parquet").read_bytes()
        storage.write_bytes_atomic(f"{logs}/{name}.parquet", data)
    deploy_dir = f"{gcs_bucket}/deploy-{tmp_path.name}"
    cfg = LocalRunConfig(
        out=tmp_path / "run", source_uri=logs, deploy_dir=deploy_dir, epochs=1, min_cvr_auc=0.0
    )
    result = run_local(cfg)
    assert result.decision == "deploy"
    registry = json.loads(storage.read_text(f"{deploy_dir}/registry.json"))
    assert registry["kind"] == "hm3"
    # The champion was published to gs:// and the local endpoint served it from there.
    assert registry["model_uri"] == f"{deploy_dir}/models/{registry['version']}"
    assert storage.exists(f"{registry['model_uri']}/model.safetensors")
    assert result.deployment["model_uri"] == registry["model_uri"]
    metrics = json.loads((result.out / "metrics.json").read_text())
    assert "oracle" in metrics  # truth.parquet came along from gs://


def test_a_failed_step_fails_the_run_with_its_error_visible(
    small_world: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Truncated raw logs: load_logs fails, the run stops there, and its error is shown."""
    logs = _truncated_logs(small_world, tmp_path / "logs")
    cfg = LocalRunConfig(out=tmp_path / "run", source_uri=str(logs), min_cvr_auc=0.0)
    with pytest.raises(RuntimeError, match="load-logs"):
        run_local(cfg)
    shown = capfd.readouterr()
    assert "events: not a readable Parquet table (truncated or corrupt?)" in shown.out + shown.err
    assert not list((tmp_path / "run" / "kfp").rglob("train-model*"))  # nothing ran after it


def test_the_summary_answers_in_order_with_the_request_that_was_sent(run) -> None:
    """Outcome, labels, models, gate, endpoint with its curl and answer, files: in that order,
    prose within 80 columns, the curl and the prediction each on one line to paste."""
    from rich.console import Console

    from pipelines.summary import curl_command, print_summary

    buffer = io.StringIO()
    print_summary(run, Console(file=buffer, width=80))
    text = buffer.getvalue()
    sections = [
        "hm3 run succeeded in ",
        "Graph labels",
        "Models on the held-out test split",
        "hm3 vs best baseline",
        "Deploy gate: deploy",
        "Endpoint: ",
        "curl -s ",
        "and the prediction it returned:",
        "Files",
        str(run.out / "logs") + "/",
    ]
    positions = [text.find(section) for section in sections]
    assert -1 not in positions and positions == sorted(positions), list(
        zip(sections, positions, strict=True)
    )
    lines = text.splitlines()
    deployment = run.deployment
    curl = curl_command(deployment["endpoint"], deployment["request"])
    assert curl in lines
    assert deployment["request"] == {"instances": [{"user_id": 1, "item_id": 1}]}
    prediction = lines[lines.index("and the prediction it returned:") + 1]
    assert json.loads(prediction) == deployment["prediction"]
    verbatim = (curl, prediction, *(line for line in lines if str(run.out) in line))
    long = [line for line in lines if len(line) > 80 and line not in verbatim]
    assert not long, long


def _truncated_logs(small_world: Path, folder: Path) -> Path:
    folder.mkdir()
    for name in ("impressions", "events", "users", "items"):
        data = (small_world / f"{name}.parquet").read_bytes()
        (folder / f"{name}.parquet").write_bytes(
            data[: len(data) // 2] if name == "events" else data
        )
    return folder


def test_hm3_run_shows_a_failed_steps_log_tail_and_exits_non_zero(
    small_world: Path, tmp_path: Path
) -> None:
    """`hm3 run` on truncated raw logs: the failed step's line, the last 30 lines of its log
    (the error among them), the log's path, exit code 1, and nothing run after it."""
    logs = _truncated_logs(small_world, tmp_path / "logs")
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pipelines.cli", "run", "--source-uri", str(logs)]
    proc = subprocess.run(
        [*command, "--out", str(out), "--min-cvr-auc", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    log = out / "logs" / "load-logs.log"
    lines = proc.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAIL load-logs"))
    assert lines[failed].endswith(f"log: {log}")
    assert "last 30 lines of load-logs.log" in lines[failed + 1]
    shown = lines[failed + 2 : failed + 32]
    assert shown == log.read_text().splitlines()[-30:]
    assert any(
        "events: not a readable Parquet table (truncated or corrupt?)" in line for line in shown
    )
    assert f"hm3 run failed at step load-logs; full log: {log}" in proc.stderr
    assert "executor_input" not in proc.stdout + proc.stderr  # the dumps stay in the log
    assert not list((out / "kfp").rglob("train-model*"))  # nothing ran after it
