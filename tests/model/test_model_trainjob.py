"""The multi-node TrainJob, up to the object the Kubeflow SDK sends (no cluster here).

`sdk_trainjob` assembles the TrainJob exactly as `KubernetesBackend.train` (kubeflow 0.5.0)
does before its one HTTP call: each option applied to the job dict, `_get_trainjob_spec` (the
SDK's builder: trainer CR, resources, runtime patches), `TrainerV1alpha1TrainJob.to_dict()`.
The backend object is created without its constructor (which connects to a cluster); the
options only check its type.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_helpers import fast_config

from components.trainjob import (
    PERMISSIONS,
    TrainJobSettings,
    TrainOutcome,
    train_command,
    trainjob_request,
)
from model.train.trainer import TrainConfig, train

TABLE = "gs://runs/hm3/join-training-table/table"
MODEL = "gs://runs/hm3/train-model/model"
IMAGE = "registry.example.com/hm3-train:1.2"


def sdk_trainjob(request) -> dict:  # noqa: ANN001
    """The TrainJob body `TrainerClient.train(**request)` would POST, built by the SDK."""
    from kubeflow.trainer.backends.kubernetes.backend import KubernetesBackend
    from kubeflow.trainer.constants import constants
    from kubeflow.trainer.types import types
    from kubeflow_trainer_api import models

    backend = KubernetesBackend.__new__(KubernetesBackend)
    job_spec: dict = {}
    for option in request.options:
        option(job_spec, request.trainer, backend)
    # What get_runtime returns for the torch-distributed ClusterTrainingRuntime.
    runtime = types.Runtime(
        name=request.runtime,
        trainer=types.RuntimeTrainer(
            trainer_type=types.TrainerType.CUSTOM_TRAINER, framework="torch", image="unused"
        ),
        kind=types.RuntimeKind.CLUSTER_TRAINING_RUNTIME,
    )
    spec = job_spec.get("spec", {})
    trainjob_spec = KubernetesBackend._get_trainjob_spec(
        backend,
        runtime=runtime,
        trainer=request.trainer,
        trainer_overrides=spec.get("trainer", {}),
        runtime_patches=spec.get("runtimePatches"),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
    )
    metadata = job_spec.get("metadata", {})
    return models.TrainerV1alpha1TrainJob(
        apiVersion=constants.API_VERSION,
        kind=constants.TRAINJOB_KIND,
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name="hm3-test", labels=metadata.get("labels")
        ),
        spec=trainjob_spec,
    ).to_dict()


def _settings(**overrides) -> TrainJobSettings:
    base = dict(
        image=IMAGE,
        gpus_per_node=4,
        tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        pod_labels={"team": "ads"},
        gcs_secret="gcs-key",
    )
    return TrainJobSettings(**(base | overrides))


def _node_pod(job: dict) -> dict:
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == "trainer.kubeflow.org/kubeflow-sdk"
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    return node["template"]["spec"]["template"]


def test_trainjob_for_two_nodes_of_four_gpus() -> None:
    config = TrainConfig(model_kind="hm3", epochs=3, progress=False)
    job = sdk_trainjob(trainjob_request(_settings(), 2, TABLE, MODEL, config))
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "kind": "ClusterTrainingRuntime",
    }
    trainer = job["spec"]["trainer"]
    assert trainer["numNodes"] == 2
    assert trainer["image"] == IMAGE
    resources = trainer["resourcesPerNode"]
    assert resources["limits"] == resources["requests"]
    assert resources["limits"] == {"nvidia.com/gpu": "4", "cpu": "8", "memory": "32Gi"}
    # torchrun takes nodes, processes per node, rank and master from the runtime's PET_*
    # variables; the command names none, and sets none (the Torch plugin refuses them).
    command = trainer["command"]
    assert command[:4] == ["torchrun", "-m", "pipelines.cli", "train"]
    args = dict(zip(command[4:-1:2], command[5:-1:2], strict=True))
    assert args["--data"] == TABLE and args["--out"] == MODEL
    assert args["--model-kind"] == "hm3" and command[-1] == "--no-progress"
    assert TrainConfig.from_dict(json.loads(args["--config-json"])) == config
    assert command == train_command(TABLE, MODEL, "hm3", args["--config-json"])
    assert not [e for e in trainer.get("env", []) if e["name"].startswith("PET_")]
    assert not [a for a in command if a.startswith(("--nnodes", "--node-rank", "--nproc"))]


def test_node_pods_get_the_gpu_pool_the_gcs_key_and_the_labels() -> None:
    request = trainjob_request(_settings(), 2, TABLE, MODEL, TrainConfig())
    job = sdk_trainjob(request)
    pod = _node_pod(job)
    assert pod["metadata"]["labels"] == {"team": "ads"}
    assert job["metadata"]["labels"] == {"team": "ads"}
    spec = pod["spec"]
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert spec["volumes"] == [{"name": "gcs-key", "secret": {"secretName": "gcs-key"}}]
    (container,) = spec["containers"]
    assert container["name"] == "node"
    (mount,) = container["volumeMounts"]
    assert (mount["name"], mount["mountPath"]) == ("gcs-key", "/var/secrets/google")
    env = {e["name"]: e["value"] for e in job["spec"]["trainer"]["env"]}
    assert env == {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/google/key.json"}


def test_workload_identity_and_no_pool_send_no_pod_settings() -> None:
    settings = _settings(tolerations=(), node_selector={}, pod_labels={}, gcs_secret=None)
    job = sdk_trainjob(trainjob_request(settings, 3, TABLE, MODEL, TrainConfig()))
    assert job["spec"]["trainer"]["numNodes"] == 3
    assert "env" not in job["spec"]["trainer"]
    assert "labels" not in job["metadata"]
    assert job["spec"].get("runtimePatches") is None


def test_bad_requests_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="nodes must be >= 1, got 0"):
        trainjob_request(_settings(), 0, TABLE, MODEL, TrainConfig())
    # The default KFP pipeline root (MinIO) is no place the nodes can share through our storage.
    with pytest.raises(ValueError, match="model on gs://.*minio://"):
        trainjob_request(_settings(), 2, TABLE, "minio://mlpipeline/model", TrainConfig())
    with pytest.raises(ValueError, match="table on gs://.*'/tmp/t.parquet'"):
        trainjob_request(_settings(), 2, "/tmp/t.parquet", MODEL, TrainConfig())
    with pytest.raises(ValueError, match="gpus_per_node must be >= 1, got 0"):
        _settings(gpus_per_node=0)
    with pytest.raises(ValueError, match="poll_s"):
        _settings(poll_s=60, timeout_s=60)


def test_settings_travel_as_json() -> None:
    settings = _settings()
    assert TrainJobSettings.from_json(settings.to_json()) == settings
    with pytest.raises(ValueError, match=r"unknown trainjob setting\(s\) \['gpus'\]"):
        TrainJobSettings.from_json(json.dumps({"image": IMAGE, "gpus": 2}))
    with pytest.raises(ValueError, match="JSON object"):
        TrainJobSettings.from_json("")


def test_outcome_read_from_the_artifact_is_what_the_trainer_returned(
    tiny_table: Path, tmp_path: Path
) -> None:
    result = train(tiny_table, tmp_path / "m", fast_config(model_kind="naive", epochs=2))
    # Through JSON: NaN AUCs (a tiny validation split) compare equal there.
    read = TrainOutcome.read(tmp_path / "m")
    assert json.dumps(read.__dict__, sort_keys=True) == json.dumps(
        TrainOutcome.of(result).__dict__, sort_keys=True
    )
    assert read.epochs_run == 2


def test_component_with_nodes_takes_the_trainjob_path(tiny_table: Path, tmp_path: Path) -> None:
    """nodes > 1 never trains in the step's pod: a local table is refused before any cluster
    call, naming what is missing."""
    from kfp.dsl import Dataset, Metrics, Model

    from components.train_model import train_model

    with pytest.raises(ValueError, match="table on gs://"):
        train_model.python_func(
            table=Dataset(uri=str(tiny_table)),
            model=Model(uri=str(tmp_path / "model")),
            metrics=Metrics(uri=str(tmp_path / "metrics")),
            model_kind="naive",
            config_json=json.dumps({"epochs": 1, "device": "cpu"}),
            nodes=2,
            trainjob_json=_settings().to_json(),
        )
    assert not (tmp_path / "model").exists()


def test_rbac_manifest_grants_what_the_launching_step_calls() -> None:
    import yaml

    path = Path(__file__).resolve().parents[2] / "manifests" / "training" / "trainjob-rbac.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    granted: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        if doc["kind"] in {"Role", "ClusterRole"}:
            for rule in doc["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        granted.setdefault((group, resource), set()).update(rule["verbs"])
    for key, verbs in PERMISSIONS.items():
        assert verbs <= granted.get(key, set()), key
    # Cluster-scoped runtimes can only be read through a ClusterRole.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert any("clustertrainingruntimes" in r["resources"] for r in cluster_role["rules"])
    bindings = [d for d in docs if d["kind"] in {"RoleBinding", "ClusterRoleBinding"}]
    roles = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"].endswith("Role")}
    for binding in bindings:
        assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in roles
        assert binding["subjects"][0]["kind"] == "ServiceAccount"
