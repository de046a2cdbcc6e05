"""Every manifest parses into its SDK model, and every container command line into our parser."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from kserve import V1alpha1ServingRuntime, V1beta1InferenceService

from components.serving.manifests import (
    ManifestError,
    load_documents,
    merge_patch,
    parse_document,
)
from components.serving.server import parse_args

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))
DOCS = [(path.name, doc) for path in MANIFESTS for doc in load_documents(path)]


def _by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def test_manifest_folder_holds_the_serving_objects() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCS)
    assert kinds == [
        "ConfigMap",
        "InferenceService",
        "ServiceAccount",
        "ServingRuntime",
        "ServingRuntime",  # CPU (auto-selected) and GPU (opt-in)
    ]


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[f"{n}:{d['kind']}" for n, d in DOCS])
def test_every_manifest_parses_into_its_sdk_model(name: str, doc: dict) -> None:
    obj = parse_document(doc, name)
    assert obj.metadata.name
    if doc["kind"] == "InferenceService":
        assert isinstance(obj, V1beta1InferenceService)
    if doc["kind"] == "ServingRuntime":
        assert isinstance(obj, V1alpha1ServingRuntime)


def test_inference_service_has_transformer_predictor_probes_and_limits() -> None:
    (isvc,) = [parse_document(d) for d in _by_kind("InferenceService")]
    spec = isvc.spec
    assert spec.predictor.model.storage_uri.startswith("gs://")
    assert spec.predictor.model.runtime in {
        d["metadata"]["name"] for d in _by_kind("ServingRuntime")
    }
    sa_names = {d["metadata"]["name"] for d in _by_kind("ServiceAccount")}
    assert spec.predictor.service_account_name in sa_names
    assert spec.transformer.service_account_name in sa_names
    for component in (spec.predictor, spec.transformer):
        assert 1 <= component.min_replicas <= component.max_replicas
        assert component.scale_metric == "concurrency" and component.scale_target > 0
        assert component.security_context.run_as_non_root is True
    container = spec.transformer.containers[0]
    for probe in (container.readiness_probe, container.liveness_probe):
        assert probe.http_get.path.startswith("/v2/health/")
    assert container.resources.limits["memory"]
    assert spec.predictor.model.readiness_probe.http_get.path == "/v2/health/ready"
    configmaps = {d["metadata"]["name"] for d in _by_kind("ConfigMap")}
    assert {v.config_map.name for v in spec.transformer.volumes if v.config_map} <= configmaps


def test_unknown_or_misspelled_fields_are_rejected() -> None:
    (doc,) = _by_kind("InferenceService")
    drifted = copy.deepcopy(doc)
    drifted["spec"]["predictor"]["minReplica"] = 2
    with pytest.raises(ManifestError, match="minReplica"):
        parse_document(drifted, "drifted")
    drifted = copy.deepcopy(doc)
    drifted["spec"]["transformer"]["containers"][0]["readinessProbe"]["port"] = 8080
    with pytest.raises(ManifestError, match=r"readinessProbe: unknown field\(s\) \['port'\]"):
        parse_document(drifted, "drifted")


def test_feast_configmap_matches_the_production_feature_store_yaml() -> None:
    (configmap,) = _by_kind("ConfigMap")
    expected = (ROOT / "feature_repo" / "feature_store.production.yaml").read_text()
    assert configmap["data"]["feature_store.yaml"] == expected


def _container_command_lines() -> list[tuple[str, list[str], list[str], str]]:
    """(where, command, args with what KServe injects, expected role) per container."""
    out = []
    (gpu_patch,) = load_documents(ROOT / "manifests" / "gpu" / "predictor-gpu.patch.yaml")
    isvcs = _by_kind("InferenceService")
    isvcs += [merge_patch(isvc, gpu_patch) for isvc in isvcs]  # the GPU runtime's user
    for runtime in _by_kind("ServingRuntime"):
        for isvc in isvcs:
            model = isvc["spec"]["predictor"]["model"]
            if model.get("runtime") != runtime["metadata"]["name"]:
                continue
            for c in runtime["spec"]["containers"]:
                # KServe fills the {{.Name}} template with the InferenceService name.
                args = [a.replace("{{.Name}}", isvc["metadata"]["name"]) for a in c["args"]]
                where = f"ServingRuntime/{runtime['metadata']['name']}/{c['name']}"
                out.append((where, c["command"], args, "predictor"))
    for isvc in _by_kind("InferenceService"):
        name = isvc["metadata"]["name"]
        for c in isvc["spec"]["transformer"]["containers"]:
            # KServe appends these three to a transformer container's args.
            injected = [
                f"--model_name={name}",
                f"--predictor_host={name}-predictor.hm3",
                "--http_port=8080",
            ]
            out.append(
                (
                    f"{name}/transformer/{c['name']}",
                    c["command"],
                    c["args"] + injected,
                    "transformer",
                )
            )
    return out


COMMAND_LINES = _container_command_lines()


def test_every_container_with_args_is_covered() -> None:
    n_containers = sum(len(r["spec"]["containers"]) for r in _by_kind("ServingRuntime"))
    n_containers += sum(
        len(i["spec"]["transformer"]["containers"]) for i in _by_kind("InferenceService")
    )
    assert len(COMMAND_LINES) == n_containers >= 2


@pytest.mark.parametrize(
    ("where", "command", "args", "role"), COMMAND_LINES, ids=[c[0] for c in COMMAND_LINES]
)
def test_every_container_args_list_parses_through_the_serve_cli(
    where: str, command: list[str], args: list[str], role: str
) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert command[0] in scripts and command[1:] == ["serve"], where
    _, options = parse_args(args)
    assert options.role == role
    assert options.config.model_name == "hm3"


def test_a_drifted_flag_fails_the_parse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model_dir=/mnt/models", "--max-batch=512"])
    assert "unrecognized arguments: --max-batch=512" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--feast_repo=/etc/hm3/feast"])  # a transformer needs --predictor_host
    assert "needs --predictor_host" in capsys.readouterr().err


def test_the_gpu_patch_moves_the_predictor_onto_the_gpu_runtime() -> None:
    (base,) = _by_kind("InferenceService")
    (patch,) = load_documents(ROOT / "manifests" / "gpu" / "predictor-gpu.patch.yaml")
    isvc = parse_document(merge_patch(base, patch), "inferenceservice + gpu patch")
    model = isvc.spec.predictor.model
    runtimes = {d["metadata"]["name"]: d for d in _by_kind("ServingRuntime")}
    assert model.runtime == "hm3-runtime-gpu" and model.runtime in runtimes
    assert model.resources.limits["nvidia.com/gpu"] == "1"
    assert model.storage_uri == base["spec"]["predictor"]["model"]["storageUri"]  # kept
    assert isvc.spec.transformer.containers  # the transformer is untouched
    (container,) = runtimes["hm3-runtime-gpu"]["spec"]["containers"]
    _, options = parse_args(container["args"])
    assert options.device == "cuda"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 4}
    patched = merge_patch(target, {"a": {"b": None, "c": [3]}, "e": {"f": 5}})
    assert patched == {"a": {"c": [3]}, "d": 4, "e": {"f": 5}}
    assert target == {"a": {"b": 1, "c": [1, 2]}, "d": 4}  # not modified


def test_an_unknown_device_fails_the_parse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model_dir=/mnt/models", "--device=tpu"])
    assert "--device must be cpu, auto, cuda or cuda:N" in capsys.readouterr().err
