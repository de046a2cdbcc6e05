"""Kubernetes settings in the compiled IR: GPU tolerations and node selector, GCS secret, labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp_ir import compile_with_cli
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.cluster import GCS_KEY_FILE, GCS_SECRET_MOUNT, ClusterSettings, Toleration

TRAIN_EXECUTORS = {"exec-train-model"}


def _executors(
    platform: dict,
) -> dict[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig]:
    """Each executor's Kubernetes config, parsed into the proto the backend reads."""
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return {
        name: json_format.ParseDict(
            config, kubernetes_executor_config_pb2.KubernetesExecutorConfig()
        )
        for name, config in executors.items()
    }


def test_gpu_steps_tolerate_the_gpu_taint_and_every_step_gets_labels_and_the_gcs_key(
    tmp_path: Path,
) -> None:
    pipeline, platform = compile_with_cli(
        tmp_path,
        "--use-gpu",
        "--gpu-node-selector",
        "cloud.google.com/gke-accelerator=nvidia-l4",
        "--gcs-secret",
        "gcs-key",
        "--pod-label",
        "team=ads",
        "--pod-label",
        "cost-center=42",
    )
    executors = _executors(platform)
    containers = pipeline["deploymentSpec"]["executors"]
    assert set(executors) == set(containers)  # every step has pod settings
    assert TRAIN_EXECUTORS <= set(executors)
    for name, config in executors.items():
        assert dict(config.pod_metadata.labels) == {"team": "ads", "cost-center": "42"}, name
        (secret,) = config.secret_as_volume
        assert (secret.secret_name, secret.mount_path) == ("gcs-key", GCS_SECRET_MOUNT), name
        env = {e["name"]: e["value"] for e in containers[name]["container"].get("env", [])}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"{GCS_SECRET_MOUNT}/{GCS_KEY_FILE}"
        if name in TRAIN_EXECUTORS:
            (toleration,) = config.tolerations
            assert (toleration.key, toleration.operator, toleration.effect) == (
                "nvidia.com/gpu",
                "Exists",
                "NoSchedule",
            )
            assert dict(config.node_selector.labels) == {
                "cloud.google.com/gke-accelerator": "nvidia-l4"
            }
        else:  # CPU steps stay off the GPU pool
            assert not config.tolerations and not config.node_selector.labels, name


def test_defaults_label_every_step_and_mount_no_key(tmp_path: Path) -> None:
    """Workload Identity is the default: no secret, no key path in any container."""
    pipeline, platform = compile_with_cli(tmp_path, "--use-gpu")
    for name, config in _executors(platform).items():
        assert dict(config.pod_metadata.labels) == {"app.kubernetes.io/part-of": "hm3"}, name
        assert not config.secret_as_volume, name
        env = pipeline["deploymentSpec"]["executors"][name]["container"].get("env", [])
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in {e["name"] for e in env}, name
        assert len(config.tolerations) == (1 if name in TRAIN_EXECUTORS else 0), name


def test_a_given_toleration_replaces_the_default_one(tmp_path: Path) -> None:
    _, platform = compile_with_cli(
        tmp_path,
        "--use-gpu",
        "--gpu-toleration",
        "pool=gpu:NoExecute",
        "--gpu-toleration",
        "nvidia.com/gpu:NoSchedule",
    )
    tolerations = _executors(platform)["exec-train-model"].tolerations
    assert [(t.key, t.operator, t.value, t.effect) for t in tolerations] == [
        ("pool", "Equal", "gpu", "NoExecute"),
        ("nvidia.com/gpu", "Exists", "", "NoSchedule"),
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpu-toleration", "nvidia.com/gpu"], "expected KEY[=VALUE]:EFFECT"),
        (["--gpu-toleration", "nvidia.com/gpu:Never"], "effect must be one of"),
        (["--pod-label", "team"], "--pod-label 'team': expected KEY=VALUE"),
        (["--pod-label", "my team=ads"], "'my team' is not a valid Kubernetes label key"),
        (["--pod-label", "team=a b"], "value 'a b' of 'team' is not a valid label value"),
        (["--gpu-node-selector", "zone"], "--gpu-node-selector 'zone': expected KEY=VALUE"),
        (["--gcs-secret", "GCS_Key"], "gcs_secret 'GCS_Key' is not a valid Kubernetes name"),
    ],
)
def test_bad_settings_are_refused_by_name_before_compiling(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    out = tmp_path / "hm3.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), *flags])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_toleration_parse_reads_key_value_and_effect() -> None:
    assert Toleration.parse("a/b=c:PreferNoSchedule") == Toleration("a/b", "PreferNoSchedule", "c")
    assert Toleration.parse("nvidia.com/gpu:NoSchedule") == Toleration("nvidia.com/gpu")
    assert ClusterSettings().gpu_tolerations == (Toleration("nvidia.com/gpu"),)
