"""Compile the pipeline to Kubeflow Pipelines IR YAML."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from pipelines.pipeline import create_pipeline


def compile_pipeline(out: str | Path, use_gpu: bool = False, gpus: int = 1) -> Path:
    """Write the IR YAML package for `hm3 submit` / the KFP UI and return its path."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(create_pipeline(use_gpu=use_gpu, gpus=gpus), str(path))
    return path
