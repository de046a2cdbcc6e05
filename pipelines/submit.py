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


def check_cron(cron: str) -> str:
    """A KFP cron schedule: six fields, seconds first (KFP uses robfig/cron with seconds).

    Raises:
        ValueError: For another number of fields (five-field Unix cron is the usual slip: it
            would be read with the minutes as seconds).
    """
    fields = cron.split()
    if len(fields) != 6:
        raise ValueError(
            f"--schedule {cron!r} has {len(fields)} fields; KFP cron has 6, seconds first, "
            "e.g. '0 0 * * * *' for hourly"
        )
    return " ".join(fields)


def schedule_run(
    host: str,
    package: str | Path,
    cron: str,
    *,
    experiment: str = "hm3",
    job_name: str | None = None,
    pipeline_root: str | None = None,
    arguments: dict[str, object] | None = None,
) -> str:
    """Create a recurring run of the IR YAML on `cron`; returns the recurring run's URL.

    One run at a time and no catch-up: an incremental materialization already loads
    everything since the previous run, so missed intervals need no runs of their own.
    """
    import kfp

    cron = check_cron(cron)
    client = kfp.Client(host=host)
    name = job_name or f"hm3-schedule-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    found = client.create_experiment(name=experiment)
    result = client.create_recurring_run(
        experiment_id=found.experiment_id,
        job_name=name,
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=arguments or {},
        pipeline_package_path=str(package),
        pipeline_root=pipeline_root,
    )
    url = f"{host.rstrip('/')}/#/recurringrun/details/{result.recurring_run_id}"
    log.info("scheduled %s (%s) on %r at %s", name, result.recurring_run_id, cron, host)
    return url
