"""Kubernetes settings of the compiled pipeline: where GPU steps run, GCS credentials, labels.

They go into the IR's Kubernetes platform spec through kfp-kubernetes, so the KFP backend
applies them to each step's pod. kfp.local ignores them; `hm3 run` compiles none.

- GPU node pools are usually tainted so that only pods that ask for a GPU land there (GKE
  taints them `nvidia.com/gpu=present:NoSchedule`). The training steps tolerate that taint by
  default, and may be pinned to a pool with a node selector (e.g.
  `cloud.google.com/gke-accelerator=nvidia-l4`).
- GCS credentials: with Workload Identity (GKE) or IRSA-style federation a pod needs no key, and
  this is the default. A team that keeps a service-account key in a Kubernetes secret names it
  (`gcs_secret`); every step then mounts it at GCS_SECRET_MOUNT and sets
  GOOGLE_APPLICATION_CREDENTIALS, which google-cloud-storage reads.
- Pod labels on every step, for cost attribution and `kubectl get pods -l ...`.
- Multi-node training (`nodes > 1`): the training pods belong to a Kubeflow Trainer TrainJob,
  not to the pipeline, so the same tolerations, node selector, key and labels travel to them in
  the step's TrainJob settings (`ClusterSettings.trainjob`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from kfp import dsl, kubernetes

from components.trainjob import TrainJobSettings

GCS_SECRET_MOUNT = "/var/secrets/google"
# The key's file name inside the secret: `kubectl create secret generic NAME --from-file=key.json`.
GCS_KEY_FILE = "key.json"
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
DEFAULT_POD_LABELS = {"app.kubernetes.io/part-of": "hm3"}

# Kubernetes label syntax: an optional DNS-subdomain prefix and "/", then a name of at most 63
# characters; values at most 63 characters of the same alphabet (or empty).
_NAME = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@dataclass(frozen=True)
class Toleration:
    """A taint the GPU steps tolerate: `key[=value]:effect` (no value: any value, `Exists`)."""

    key: str
    effect: str = "NoSchedule"
    value: str | None = None

    def __post_init__(self) -> None:
        if not _LABEL_KEY.match(self.key):
            raise ValueError(f"toleration key {self.key!r} is not a valid Kubernetes key")
        if self.effect not in EFFECTS:
            raise ValueError(f"toleration effect must be one of {EFFECTS}, got {self.effect!r}")
        if self.value is not None and not _LABEL_VALUE.match(self.value):
            raise ValueError(f"toleration value {self.value!r} is not a valid Kubernetes value")

    @classmethod
    def parse(cls, text: str) -> Toleration:
        """`KEY[=VALUE]:EFFECT`, e.g. `nvidia.com/gpu:NoSchedule` or `pool=gpu:NoExecute`."""
        taint, sep, effect = text.rpartition(":")
        if not sep:
            raise ValueError(f"toleration {text!r}: expected KEY[=VALUE]:EFFECT")
        key, eq, value = taint.partition("=")
        return cls(key, effect, value if eq else None)


def _labels(pairs: Mapping[str, str], what: str) -> Mapping[str, str]:
    for key, value in pairs.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"{what}: {key!r} is not a valid Kubernetes label key")
        if not _LABEL_VALUE.match(value):
            raise ValueError(f"{what}: value {value!r} of {key!r} is not a valid label value")
    return MappingProxyType(dict(pairs))


@dataclass(frozen=True)
class ClusterSettings:
    """Pod settings of the compiled pipeline, validated when built.

    Attributes:
        gpu_tolerations: Taints the GPU training steps tolerate.
        gpu_node_selector: Node labels a GPU training step must run on ({} = any GPU node).
        gcs_secret: Kubernetes secret holding a GCS service-account key as `key.json`, mounted
            in every step; None for Workload Identity (no key in the pod).
        pod_labels: Labels on every step's pod.
    """

    gpu_tolerations: tuple[Toleration, ...] = (Toleration("nvidia.com/gpu"),)
    gpu_node_selector: Mapping[str, str] = field(default_factory=dict)
    gcs_secret: str | None = None
    pod_labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_POD_LABELS))

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "gpu_node_selector", _labels(self.gpu_node_selector, "gpu_node_selector")
        )
        object.__setattr__(self, "pod_labels", _labels(self.pod_labels, "pod_labels"))
        if self.gcs_secret is not None and not _SECRET_NAME.match(self.gcs_secret):
            raise ValueError(f"gcs_secret {self.gcs_secret!r} is not a valid Kubernetes name")

    def apply(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """Pod labels and GCS credentials, for every step."""
        for key, value in self.pod_labels.items():
            kubernetes.add_pod_label(task, label_key=key, label_value=value)
        if self.gcs_secret is not None:
            kubernetes.use_secret_as_volume(
                task, secret_name=self.gcs_secret, mount_path=GCS_SECRET_MOUNT
            )
            task.set_env_variable(
                "GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_SECRET_MOUNT}/{GCS_KEY_FILE}"
            )
        return task

    def apply_gpu(self, task: dsl.PipelineTask) -> dsl.PipelineTask:
        """Tolerations and node selector, for the steps that request GPUs."""
        for toleration in self.gpu_tolerations:
            kubernetes.add_toleration(
                task,
                key=toleration.key,
                operator="Exists" if toleration.value is None else "Equal",
                value=toleration.value,
                effect=toleration.effect,  # type: ignore[arg-type]  # checked in __post_init__
            )
        for key, value in self.gpu_node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        return task

    def trainjob(self, image: str, gpus_per_node: int) -> TrainJobSettings:
        """The same GPU, credential and label settings for a multi-node TrainJob's pods."""
        tolerations = tuple(
            {"key": t.key, "operator": "Exists", "effect": t.effect}
            if t.value is None
            else {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
            for t in self.gpu_tolerations
        )
        return TrainJobSettings(
            image=image,
            gpus_per_node=gpus_per_node,
            tolerations=tolerations,
            node_selector=dict(self.gpu_node_selector),
            pod_labels=dict(self.pod_labels),
            gcs_secret=self.gcs_secret,
            gcs_mount=GCS_SECRET_MOUNT,
        )


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """`KEY=VALUE` strings (a CLI's repeated option) as a dict.

    Raises:
        ValueError: On an item without "=", naming it.
    """
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out
