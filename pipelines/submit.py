"""Submit the compiled pipeline package to a Kubeflow Pipelines cluster."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)


def parse_params(items: list[str]) -> dict[str, object]:
    """Parse NAME=VALUE pipeline arguments; VALUE is JSON when it parses, else a string.

    Raises:
        ValueError: For an item without '=' or with an empty name.
    """
    arguments: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            arguments[name.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            arguments[name.strip()] = raw
    return arguments


def submit_run(
    host: str,
    package: str | Path,
    *,
    experiment: str = "hm3",
    run_name: str | None = None,
    pipeline_root: str | None = None,
    arguments: dict[str, object] | None = None,
) -> str:
    """Create a run from the IR YAML on the cluster at `host`; returns the run's URL."""
    import kfp

    client = kfp.Client(host=host)
    name = run_name or f"hm3-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments or {},
        run_name=name,
        experiment_name=experiment,
        pipeline_root=pipeline_root,
    )
    url = f"{host.rstrip('/')}/#/runs/details/{result.run_id}"
    log.info("submitted run %s (%s) to %s", name, result.run_id, host)
    return url
