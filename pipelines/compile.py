"""Compile the pipeline to Kubeflow Pipelines IR YAML."""

from __future__ import annotations

import os
from pathlib import Path

from kfp import compiler

from components.images import HM3_IMAGE, HM3_TRAIN_IMAGE
from pipelines.cluster import ClusterSettings
from pipelines.pipeline import create_materialize_pipeline, create_pipeline

IMAGE_ENV = "HM3_IMAGE"
TRAIN_IMAGE_ENV = "HM3_TRAIN_IMAGE"
PIPELINES = ("cvr", "materialize")  # hm3-cvr (train, evaluate, deploy), hm3-materialize


def images_from_env() -> dict[str, str | None]:
    """The image overrides set in the environment, as `compile_pipeline` keyword arguments.

    HM3_IMAGE replaces the CPU image (every component but training), HM3_TRAIN_IMAGE the
    training image; an unset or empty variable gives None (keep the default). Read when called,
    not at import.
    """
    return {
        "image": os.environ.get(IMAGE_ENV) or None,
        "train_image": os.environ.get(TRAIN_IMAGE_ENV) or None,
    }


def compile_pipeline(
    out: str | Path,
    use_gpu: bool = False,
    gpus: int = 1,
    image: str | None = None,
    train_image: str | None = None,
    cluster: ClusterSettings | None = None,
    feature_store: str = "",
    pipeline: str = "cvr",
    nodes: int = 1,
) -> Path:
    """Write the IR YAML package for `hm3 submit` / the KFP UI and return its path.

    Args:
        out: Where to write the YAML.
        use_gpu: Request `gpus` NVIDIA GPUs for every training task.
        gpus: GPUs per training task when `use_gpu`.
        image: Image for the executors built on components.images.HM3_IMAGE (None: keep it).
        train_image: Image for the executors built on HM3_TRAIN_IMAGE (None: keep it).
        cluster: Kubernetes pod settings (None: `ClusterSettings()`, the defaults).
        feature_store: Default of the `feature_store` parameter: an existing Feast store's
            feature_store.yaml as the pods see it (gs://, or a mounted path); empty = per run.
        pipeline: `cvr` (the training pipeline) or `materialize` (`hm3-materialize`, which
            loads the `feature_store` store's online store; GPU options do not apply).
        nodes: Training nodes per model; > 1 trains on a Kubeflow Trainer TrainJob of `nodes`
            pods (of `train_image`) with `gpus` GPUs each, and needs `use_gpu`.

    Raises:
        ValueError: For an unknown pipeline; on nodes < 1, or nodes > 1 without use_gpu.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if pipeline == "materialize":
        factory = create_materialize_pipeline(
            cluster=cluster or ClusterSettings(), feature_store=feature_store
        )
    else:
        factory = create_pipeline(
            use_gpu=use_gpu,
            gpus=gpus,
            cluster=cluster or ClusterSettings(),
            feature_store=feature_store,
            nodes=nodes,
            train_image=train_image or HM3_TRAIN_IMAGE,
        )
    swap = {HM3_IMAGE: image or HM3_IMAGE, HM3_TRAIN_IMAGE: train_image or HM3_TRAIN_IMAGE}
    # Components bake their base_image in at import; rewrite this pipeline's compiled executors.
    executors = factory.pipeline_spec.deployment_spec["executors"]
    for name in executors.keys():
        executor = executors[name]
        if "container" in executor:
            container = executor["container"]
            container["image"] = swap.get(container["image"], container["image"])
    compiler.Compiler().compile(factory, str(path))
    return path
