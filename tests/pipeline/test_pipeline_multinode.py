"""`hm3 compile --nodes N`: the training steps in the compiled IR, read as the backend does."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp_ir import compile_with_cli
from typer.testing import CliRunner

from components.trainjob import TrainJobSettings
from pipelines.cli import app

TRAIN_IMAGE = "registry.example.com/hm3-train:multinode"


def _train_task(pipeline: dict) -> dict:
    (task,) = [
        dag["dag"]["tasks"]["train-model"]
        for dag in pipeline["components"].values()
        if "dag" in dag and "train-model" in dag["dag"]["tasks"]
    ]
    return task


def _train_pod(platform: dict) -> kubernetes_executor_config_pb2.KubernetesExecutorConfig:
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return json_format.ParseDict(
        executors["exec-train-model"], kubernetes_executor_config_pb2.KubernetesExecutorConfig()
    )


def test_two_nodes_of_four_gpus_reach_the_train_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HM3_TRAIN_IMAGE", TRAIN_IMAGE)
    pipeline, platform = compile_with_cli(
        tmp_path,
        "--use-gpu",
        "--nodes",
        "2",
        "--gpus",
        "4",
        "--gpu-toleration",
        "pool=gpu:NoExecute",
        "--gpu-node-selector",
        "cloud.google.com/gke-accelerator=nvidia-h100-80gb",
        "--gcs-secret",
        "gcs-key",
        "--pod-label",
        "team=ads",
    )
    inputs = _train_task(pipeline)["inputs"]["parameters"]
    assert inputs["nodes"] == {"runtimeValue": {"constant": 2.0}}
    settings = TrainJobSettings.from_json(inputs["trainjob_json"]["runtimeValue"]["constant"])
    assert (settings.image, settings.gpus_per_node, settings.runtime) == (
        TRAIN_IMAGE,
        4,
        "torch-distributed",
    )
    # The GPU pool, the key and the labels go to the TrainJob's pods...
    assert settings.tolerations == (
        {"key": "pool", "operator": "Equal", "value": "gpu", "effect": "NoExecute"},
    )
    assert settings.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert (settings.gcs_secret, settings.pod_labels) == ("gcs-key", {"team": "ads"})
    # ...while the step's own pod only launches and waits: no GPU, not on the GPU pool.
    container = pipeline["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["image"] == TRAIN_IMAGE
    assert "accelerator" not in container["resources"]
    pod = _train_pod(platform)
    assert not pod.tolerations and not pod.node_selector.labels
    assert dict(pod.pod_metadata.labels) == {"team": "ads"}
    assert pod.secret_as_volume[0].secret_name == "gcs-key"  # it reads the model back
    declared = pipeline["components"]["comp-train-model"]["inputDefinitions"]["parameters"]
    assert declared["nodes"]["parameterType"] == "NUMBER_INTEGER"
    assert declared["nodes"]["defaultValue"] == 1.0


def test_one_node_trains_in_the_step_pod_as_before(tmp_path: Path) -> None:
    pipeline, platform = compile_with_cli(tmp_path, "--use-gpu", "--gpus", "2")
    inputs = _train_task(pipeline)["inputs"]["parameters"]
    assert "nodes" not in inputs and "trainjob_json" not in inputs  # defaults: 1 and ""
    container = pipeline["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["resources"]["accelerator"]["resourceCount"] == "2"
    assert _train_pod(platform).tolerations


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--nodes", "2"], "nodes=2 needs use_gpu"),
        (["--use-gpu", "--nodes", "0"], "nodes must be >= 1, got 0"),
    ],
    ids=["multi-node-cpu", "zero-nodes"],
)
def test_bad_node_counts_are_refused_by_name(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "hm3.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), *flags])
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not out.exists()
