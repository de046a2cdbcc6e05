"""deploy_model: the local path end to end (real server on loopback), the cluster object."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from kserve import V1beta1InferenceService

from components.deploy_model import deploy_model
from components.serving.deploy import DeployConfig, inference_service
from model.gate import read_registry


def test_local_deploy_serves_one_real_request_and_records_the_champion(
    artifact: Path, tmp_path: Path
) -> None:
    deployment = dsl.Artifact(uri=str(tmp_path / "deployment.json"))
    answer = deploy_model.python_func(
        model=dsl.Model(uri=str(artifact)),
        deploy_dir=str(tmp_path / "deploy"),
        cvr_auc=0.71,
        deployment=deployment,
        data="world-7/test",
    )
    prediction = json.loads(answer)
    version = json.loads((artifact / "config.json").read_text())["version"]
    assert prediction["model_version"] == version
    assert 0.0 <= prediction["p_cvr"] <= 1.0
    assert prediction["p_ctcvr"] == pytest.approx(
        prediction["p_ctr"] * prediction["p_cvr"], rel=1e-5
    )
    record = read_registry(str(tmp_path / "deploy"))
    assert record is not None
    assert (record.model_uri, record.version, record.kind, record.cvr_auc) == (
        str(artifact),
        version,
        "hm3",
        0.71,
    )
    written = json.loads(Path(deployment.path).read_text())
    assert written["prediction"] == prediction and written["endpoint"].startswith(
        "http://127.0.0.1:"
    )


@pytest.mark.parametrize(("canary", "expected"), [(10, 10), (100, None)])
def test_cluster_object_carries_the_model_and_canary_share(
    canary: int, expected: int | None
) -> None:
    config = DeployConfig(mode="cluster", canary_traffic_percent=canary, namespace="prod")
    isvc = inference_service("gs://models/hm3/v7", config)
    assert isinstance(isvc, V1beta1InferenceService)
    assert isvc.metadata.namespace == "prod"
    assert isvc.spec.predictor.model.storage_uri == "gs://models/hm3/v7"
    assert isvc.spec.predictor.canary_traffic_percent == expected
    assert isvc.spec.transformer.containers[0].args[0].startswith("--feast_repo=")


def test_cluster_deploy_needs_a_gcs_model() -> None:
    with pytest.raises(ValueError, match="gs:// model URI"):
        inference_service("/tmp/model", DeployConfig(mode="cluster"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("mode", "k8s"), ("canary_traffic_percent", 101), ("ready_timeout_s", 0.0), ("name", "")],
)
def test_deploy_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        DeployConfig(**{field: value})
