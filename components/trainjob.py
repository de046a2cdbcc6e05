"""Multi-node training: one Kubeflow Trainer v2 `TrainJob` launched and awaited by `train_model`.

With `nodes > 1` the `train_model` step does not train itself. It asks the Trainer control plane
(through the `kubeflow` SDK's `TrainerClient`) for a `TrainJob` on the `torch-distributed`
runtime: `nodes` pods of the training image, `gpus_per_node` GPUs each, every one running

    torchrun -m pipelines.cli train --data TABLE_URI --out MODEL_URI --model-kind KIND
        --config-json CONFIG --no-progress

The runtime's Torch plugin sets torchrun's `PET_NNODES`, `PET_NPROC_PER_NODE` (`auto`: one
process per GPU), `PET_NODE_RANK`, `PET_MASTER_ADDR` and `PET_MASTER_PORT` on each node, so the
command carries no rank of its own. The nodes read the training table from its gs:// URI and
rank 0 uploads the sealed model to the step's own output URI (`model.uri`); the step waits for
the job, then fetches and verifies that artifact into `model.path` and reports its metrics, so
downstream steps see the same model artifact as from a one-pod training.

Plain typed Python, no kfp: `trainjob_request` builds the SDK objects `TrainerClient.train`
takes (tested without a cluster through the SDK's own builders); `train_with_trainjob` sends
them. The kubeflow SDK and torch are imported inside functions: the pipeline module imports
this one to compile, on a machine with only kfp.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from model import storage

if TYPE_CHECKING:
    from kubeflow.trainer import TrainerClient
    from kubeflow.trainer.types.types import CustomTrainerContainer

    from model.train.trainer import TrainConfig, TrainResult

log = logging.getLogger(__name__)

RUNTIME = "torch-distributed"
# The runtime's trainer ReplicatedJob and container (kubeflow.trainer.constants.NODE).
NODE = "node"
GCS_VOLUME = "gcs-key"
# Per GPU process on a node: the one-pod training step's request (pipelines/pipeline.py).
CPU_PER_GPU = 2
MEMORY_GI_PER_GPU = 8
# What the launching step needs in its namespace (manifests/training/trainjob-rbac.yaml):
# create and follow TrainJobs, read the runtime they name, read the node pods' status and logs.
PERMISSIONS: Mapping[tuple[str, str], frozenset[str]] = MappingProxyType(
    {
        ("trainer.kubeflow.org", "trainjobs"): frozenset({"create", "get", "list", "delete"}),
        ("trainer.kubeflow.org", "trainingruntimes"): frozenset({"get", "list"}),
        ("trainer.kubeflow.org", "clustertrainingruntimes"): frozenset({"get", "list"}),
        ("", "pods"): frozenset({"get", "list"}),
        ("", "pods/log"): frozenset({"get"}),
        ("", "events"): frozenset({"list"}),
    }
)


@dataclass(frozen=True)
class TrainJobSettings:
    """Where and how the TrainJob runs; fixed at compile time, passed to the step as JSON.

    Attributes:
        image: The training image every node runs (HM3_TRAIN_IMAGE at compile time).
        gpus_per_node: NVIDIA GPUs per node; torchrun starts one process per GPU.
        runtime: The (Cluster)TrainingRuntime to use; must be a Torch custom-trainer runtime.
        tolerations: Kubernetes tolerations of the node pods (e.g. the GPU taint).
        node_selector: Node labels the node pods must run on.
        pod_labels: Labels on the node pods and on the TrainJob.
        gcs_secret: Secret with a GCS key as key.json, mounted in the node pods (None: Workload
            Identity, no key).
        gcs_mount: Where the secret is mounted.
        timeout_s: How long the step waits for the job before deleting it and failing.
        poll_s: Seconds between status checks.
    """

    image: str
    gpus_per_node: int
    runtime: str = RUNTIME
    tolerations: tuple[Mapping[str, str], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    gcs_secret: str | None = None
    gcs_mount: str = "/var/secrets/google"
    timeout_s: int = 24 * 3600
    poll_s: int = 30

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("image must name the training image, got ''")
        if self.gpus_per_node < 1:
            raise ValueError(f"gpus_per_node must be >= 1, got {self.gpus_per_node}")
        if not self.runtime:
            raise ValueError("runtime must name a TrainingRuntime, got ''")
        if not 0 < self.poll_s < self.timeout_s:
            raise ValueError(
                f"need 0 < poll_s < timeout_s, got poll_s={self.poll_s}, timeout_s={self.timeout_s}"
            )
        object.__setattr__(self, "tolerations", tuple(dict(t) for t in self.tolerations))
        object.__setattr__(self, "node_selector", dict(self.node_selector))
        object.__setattr__(self, "pod_labels", dict(self.pod_labels))

    def to_json(self) -> str:
        """The settings as the step's `trainjob_json` parameter."""
        return json.dumps(asdict(self) | {"tolerations": list(self.tolerations)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainJobSettings:
        """Parse `to_json`'s output.

        Raises:
            ValueError: On text that is not a JSON object, or an unknown or invalid field.
        """
        data = json.loads(text or "null")
        if not isinstance(data, dict):
            raise ValueError(f"trainjob settings must be a JSON object, got {text!r}")
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(data) - known):
            raise ValueError(f"unknown trainjob setting(s) {unknown}; known: {sorted(known)}")
        data["tolerations"] = tuple(data.get("tolerations", ()))
        return cls(**data)


@dataclass(frozen=True)
class TrainJobRequest:
    """The arguments of `TrainerClient.train`: runtime name, trainer and options."""

    runtime: str
    trainer: CustomTrainerContainer
    options: tuple[Any, ...]


def train_args(table: str, out: str, model_kind: str, config_json: str) -> list[str]:
    """`-m pipelines.cli train ...`: what torchrun starts in each process."""
    return [
        "-m",
        "pipelines.cli",
        "train",
        "--data",
        table,
        "--out",
        out,
        "--model-kind",
        model_kind,
        "--config-json",
        config_json,
        "--no-progress",
    ]


def train_command(table_uri: str, model_uri: str, model_kind: str, config_json: str) -> list[str]:
    """The command every node runs: torchrun (ranks from the PET_* environment) + `hm3 train`."""
    return ["torchrun", *train_args(table_uri, model_uri, model_kind, config_json)]


def trainjob_request(
    settings: TrainJobSettings,
    nodes: int,
    table_uri: str,
    model_uri: str,
    config: TrainConfig,
) -> TrainJobRequest:
    """Build what `TrainerClient.train` sends for one multi-node training.

    Args:
        settings: Image, GPUs per node, runtime and pod settings.
        nodes: Number of nodes (pods), >= 1.
        table_uri: The training table, gs:// (every node reads it).
        model_uri: The step's model artifact, gs:// (rank 0 writes it).
        config: The training configuration (its model_kind is the kind trained).

    Raises:
        ValueError: On nodes < 1 or a URI the nodes cannot share (not gs://), naming it.
    """
    from kubeflow.trainer import CustomTrainerContainer
    from kubeflow.trainer.options import (
        ContainerPatch,
        JobSetSpecPatch,
        JobSetTemplatePatch,
        JobSpecPatch,
        JobTemplatePatch,
        Labels,
        PodSpecPatch,
        PodTemplatePatch,
        ReplicatedJobPatch,
        RuntimePatch,
        TrainerCommand,
        TrainingRuntimeSpecPatch,
    )

    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    for name, uri in (("table", table_uri), ("model", model_uri)):
        if not storage.is_gcs(uri):
            raise ValueError(
                f"multi-node training needs the {name} on gs:// (the nodes share nothing "
                f"else; submit with --pipeline-root gs://...), got {uri!r}"
            )
    gpus = settings.gpus_per_node
    trainer = CustomTrainerContainer(
        image=settings.image,
        num_nodes=nodes,
        # Quantities as strings: the SDK keeps them as given ("4", not 4.0).
        resources_per_node={
            "gpu": str(gpus),
            "cpu": str(CPU_PER_GPU * gpus),
            "memory": f"{MEMORY_GI_PER_GPU * gpus}Gi",
        },
        env=(
            {"GOOGLE_APPLICATION_CREDENTIALS": f"{settings.gcs_mount}/key.json"}
            if settings.gcs_secret
            else None
        ),
    )
    command = train_command(
        table_uri, model_uri, config.model_kind, json.dumps(config.to_dict(), sort_keys=True)
    )
    pod = PodSpecPatch(
        tolerations=[dict(t) for t in settings.tolerations] or None,
        node_selector=dict(settings.node_selector) or None,
    )
    if settings.gcs_secret:
        pod.volumes = [{"name": GCS_VOLUME, "secret": {"secretName": settings.gcs_secret}}]
        pod.containers = [
            ContainerPatch(
                name=NODE,
                volume_mounts=[
                    {"name": GCS_VOLUME, "mountPath": settings.gcs_mount, "readOnly": True}
                ],
            )
        ]
    node_pods = PodTemplatePatch(
        metadata={"labels": dict(settings.pod_labels)} if settings.pod_labels else None,
        spec=pod,
    )
    patch = RuntimePatch(
        training_runtime_spec=TrainingRuntimeSpecPatch(
            template=JobSetTemplatePatch(
                spec=JobSetSpecPatch(
                    replicated_jobs=[
                        ReplicatedJobPatch(
                            name=NODE,
                            template=JobTemplatePatch(spec=JobSpecPatch(template=node_pods)),
                        )
                    ]
                )
            )
        )
    )
    options: list[Any] = [TrainerCommand(command=command)]
    if pod != PodSpecPatch() or settings.pod_labels:
        options.append(patch)
    if settings.pod_labels:
        options.append(Labels(labels=dict(settings.pod_labels)))
    return TrainJobRequest(settings.runtime, trainer, tuple(options))


@dataclass(frozen=True)
class TrainOutcome:
    """What the step reports about a trained model: from the trainer or its sealed artifact."""

    version: str
    best_epoch: int
    epochs_run: int
    validation: dict[str, float]

    @classmethod
    def of(cls, result: TrainResult) -> TrainOutcome:
        """From the trainer's own result (rank 0)."""
        if result.version is None:
            raise ValueError("a TrainResult without a version is not rank 0's")
        return cls(result.version, result.best_epoch, len(result.history), result.validation)

    @classmethod
    def read(cls, folder: str | Path) -> TrainOutcome:
        """From an artifact folder: config.json (version, best epoch, validation) and history."""
        from model.artifact import CONFIG, HISTORY

        config = json.loads(Path(folder, CONFIG).read_text())
        history = json.loads(Path(folder, HISTORY).read_text())
        validation = {k: float(v) for k, v in config["validation"].items()}  # NaN stays NaN
        return cls(config["version"], config["best_epoch"], len(history), validation)


def run_trainjob(
    client: TrainerClient, request: TrainJobRequest, settings: TrainJobSettings
) -> str:
    """Create the TrainJob and wait until it completes; its name.

    Raises:
        RuntimeError: The job failed (the end of node-0's log is logged first).
        TimeoutError: It did not finish within `settings.timeout_s`; it is deleted.
    """
    name = client.train(
        runtime=request.runtime, trainer=request.trainer, options=list(request.options)
    )
    log.info("TrainJob %s created (runtime %s)", name, request.runtime)
    try:
        client.wait_for_job_status(
            name, timeout=settings.timeout_s, polling_interval=settings.poll_s
        )
    except TimeoutError:
        log.error("TrainJob %s did not finish in %d s; deleting it", name, settings.timeout_s)
        client.delete_job(name)
        raise
    except RuntimeError:
        try:
            tail = "\n".join(list(client.get_job_logs(name))[-50:])
        except (RuntimeError, TimeoutError) as err:  # the SDK's errors for an unreadable log
            tail = f"(unreadable: {err})"
        log.error("TrainJob %s failed; end of %s-0's log:\n%s", name, NODE, tail)
        raise
    log.info("TrainJob %s complete", name)
    return name


def train_with_trainjob(
    settings: TrainJobSettings,
    nodes: int,
    table_uri: str,
    model_uri: str,
    local_dir: str | Path,
    config: TrainConfig,
    client: TrainerClient | None = None,
) -> TrainOutcome:
    """Train on `nodes` nodes in a TrainJob; fetch and verify the model it wrote to `model_uri`.

    Args:
        settings: Image, GPUs per node, runtime and pod settings.
        nodes: Number of nodes.
        table_uri: The training table (gs://).
        model_uri: Where rank 0 writes the model (gs://; the step's `model.uri`).
        local_dir: Where the verified copy goes (the step's `model.path`).
        config: The training configuration.
        client: A TrainerClient (None: one for this pod's namespace, in-cluster credentials).
    """
    request = trainjob_request(settings, nodes, table_uri, model_uri, config)
    if client is None:
        from kubeflow.trainer import KubernetesBackendConfig, TrainerClient

        client = TrainerClient(backend_config=KubernetesBackendConfig())
    run_trainjob(client, request, settings)
    storage.download_dir(model_uri, local_dir)
    return TrainOutcome.read(local_dir)
