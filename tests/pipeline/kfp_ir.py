"""Read compiled KFP IR the way the KFP backend does: an unknown or mistyped field is an error.

`json_format.ParseDict(..., ignore_unknown_fields=False)` into the protos the backend uses:
the pipeline document into `PipelineSpec`; its `deploymentSpec` (a Struct in PipelineSpec) into
`PipelineDeploymentConfig`; a platform document into `PlatformSpec`, and each Kubernetes
executor config in it (again a Struct) into kfp-kubernetes' `KubernetesExecutorConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2


def parse_ir_strictly(
    pipeline: dict[str, Any], platform: dict[str, Any] | None = None
) -> pipeline_spec_pb2.PipelineSpec:
    """Parse an IR pipeline document (and its platform document) strictly; return the spec.

    Raises:
        google.protobuf.json_format.ParseError: Naming the first unknown or mistyped field.
    """
    spec = json_format.ParseDict(
        pipeline, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False
    )
    json_format.ParseDict(
        pipeline.get("deploymentSpec", {}),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
        ignore_unknown_fields=False,
    )
    if platform:
        json_format.ParseDict(
            platform, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False
        )
        kubernetes = platform.get("platforms", {}).get("kubernetes", {})
        for executor in kubernetes.get("deploymentSpec", {}).get("executors", {}).values():
            json_format.ParseDict(
                executor,
                kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
                ignore_unknown_fields=False,
            )
    return spec


def compile_with_cli(folder: Path, *flags: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`hm3 compile --out FOLDER/hm3.yaml FLAGS`; its (pipeline, platform) documents, parsed
    strictly."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = folder / "hm3.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    pipeline, platform = yaml.safe_load_all(out.read_text())
    parse_ir_strictly(pipeline, platform)
    return pipeline, platform
