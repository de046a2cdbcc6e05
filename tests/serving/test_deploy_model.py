"""deploy_model: the local path end to end (real server on loopback), the cluster object."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kfp import dsl
from kserve import V1beta1InferenceService
from online_features import feast_completed, offline_scores

from components.deploy_model import deploy_model
from components.serving.deploy import DeployConfig, deploy, inference_service
from model.artifact import load_model
from model.evaluate.registry import read_registry
from model.storage import ArtifactError


def test_local_deploy_serves_one_real_request_and_records_the_champion(
    artifact: Path,
    feast_repo: Path,
    online_truth: tuple[dict[str, pd.DataFrame], dict[str, Any]],
    tmp_path: Path,
) -> None:
    deployment = dsl.Artifact(uri=str(tmp_path / "deployment.json"))
    answer = deploy_model.python_func(
        model=dsl.Model(uri=str(artifact)),
        feature_store=dsl.Artifact(uri=str(feast_repo)),
        deploy_dir=str(tmp_path / "deploy"),
        cvr_auc=0.71,
        deployment=deployment,
        data="world-7/test",
    )
    prediction = json.loads(answer)
    version = json.loads((artifact / "config.json").read_text())["version"]
    assert prediction["model_version"] == version
    # The one request the deployment sends is scored as the artifact scores it offline, with the
    # features the online store holds for that user and item.
    completed, _ = feast_completed([dict(DeployConfig().instance)], online_truth)
    expected = offline_scores(load_model(artifact), completed)
    for task, values in expected.items():
        assert prediction[f"p_{task}"] == pytest.approx(float(values[0]), abs=1e-6), task
    record = read_registry(str(tmp_path / "deploy"))
    assert record is not None
    published = tmp_path / "deploy" / "models" / version
    assert (published / "model.safetensors").read_bytes() == (
        artifact / "model.safetensors"
    ).read_bytes()
    assert (record.model_uri, record.version, record.kind, record.cvr_auc) == (
        str(published),
        version,
        "hm3",
        0.71,
    )
    assert prediction["unknown_ids"] == []  # user 1 and item 1 came from the Feast store
    written = json.loads(Path(deployment.path).read_text())
    assert written["model_uri"] == str(published)
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


def test_a_corrupt_artifact_is_never_published_or_served(artifact: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # a truncated upload
    with pytest.raises(ArtifactError, match="model.safetensors"):
        deploy(str(broken), str(tmp_path / "deploy"), 0.7, DeployConfig())
    assert not (tmp_path / "deploy").exists()  # nothing published, no champion recorded


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
