"""`hm3 features`: Feast apply, materialize, retrieve, online."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import fail

app = typer.Typer(
    rich_markup_mode="markdown",
    help=(
        "Feast feature store (feature_repo/): register the definitions over a world's tables, "
        "load the online store, retrieve point-in-time training features, read online features."
    ),
    no_args_is_help=True,
)

_REPO_HELP = (
    "Feast repo folder of this run: feature_store.yaml, registry and SQLite online store "
    "(written by `hm3 features apply`)."
)


@app.command("apply")
def features_apply(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP)],
    data: Annotated[
        str | None,
        typer.Option(help="World folder or gs:// prefix holding users.parquet and items.parquet."),
    ] = None,
    users: Annotated[
        str | None, typer.Option(help="Users table (path, gs:// or bq://p.d.t); overrides --data.")
    ] = None,
    items: Annotated[
        str | None, typer.Option(help="Items table (path, gs:// or bq://p.d.t); overrides --data.")
    ] = None,
    online: Annotated[str, typer.Option(help="Online store: sqlite or redis.")] = "sqlite",
    redis: Annotated[str, typer.Option(help="Redis host:port (with --online redis).")] = (
        "127.0.0.1:6379"
    ),
    offline: Annotated[str, typer.Option(help="Offline store: duckdb, spark or file.")] = "duckdb",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Use this feature_store.yaml (e.g. feature_repo/feature_store.production.yaml) "
            "instead of writing one into --repo; --online/--redis/--offline are then ignored."
        ),
    ] = None,
) -> None:
    """Register feature_repo's entities, views and services (hm3_v1) over a world's tables.

    Validates the tables against the schema contract first (missing or mistyped columns, null
    keys are errors; null feature values are reported and later filled with defaults). Prints
    the table checks as JSON.
    """
    from model.data import features

    users = users or (f"{data.rstrip('/')}/users.parquet" if data else None)
    items = items or (f"{data.rstrip('/')}/items.parquet" if data else None)
    if users is None or items is None:
        raise fail("give --data, or both --users and --items")
    try:
        if config is None:
            cfg = features.StoreConfig(
                repo_dir=str(repo), online_store=online, redis=redis, offline_store=offline
            )
            config = features.write_repo_config(cfg)
        store = features.open_store(config)
        checks = features.apply(store, users, items)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    typer.echo(json.dumps([features.report_dict(c) for c in checks]))


@app.command("materialize")
def features_materialize(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP + " Or a feature_store.yaml file.")],
    start: Annotated[
        datetime | None,
        typer.Option(help="Start (UTC); default: the earliest snapshot in the sources."),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(help="End (UTC); default: the latest snapshot plus one second."),
    ] = None,
) -> None:
    """Load the latest snapshot per user and item into the online store. Prints a JSON report.

    Plain `feast materialize START END` in the repo folder does the same; Feast's
    `materialize-incremental` starts at now minus the ttl, which misses a simulated world
    dated in the past.
    """
    from model.data import features

    try:
        report = features.materialize(features.open_store(repo), start, end)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    typer.echo(json.dumps(features.report_dict(report)))


@app.command("retrieve")
def features_retrieve(
    out: Annotated[str, typer.Option(help="Output folder: features.parquet and report.json.")],
    data: Annotated[
        str | None,
        typer.Option(help="World folder: apply over its tables in a temporary repo; retrieve."),
    ] = None,
    repo: Annotated[
        Path | None, typer.Option(help=_REPO_HELP + " Use an applied repo instead of --data.")
    ] = None,
    impressions: Annotated[
        str | None,
        typer.Option(help="Entity rows with --repo (with --data: DATA/impressions.parquet)."),
    ] = None,
    service: Annotated[str, typer.Option(help="Feast FeatureService to retrieve.")] = "hm3_v1",
    offline: Annotated[
        str, typer.Option(help="Offline store with --data: duckdb, spark or file.")
    ] = "duckdb",
) -> None:
    """Point-in-time features for every impression: features.parquet + report.json in OUT.

    One row per impression: impression_id and every feature of SERVICE (column = feature
    name), missing values replaced by each feature's documented default and counted in
    report.json; the {feature: kind} map is in the Parquet metadata.
    """
    from model import storage
    from model.data import features

    if (data is None) == (repo is None):
        raise fail("give exactly one of --data and --repo")
    try:
        if data is not None:
            report = features.retrieve_world(data, out, service, offline_store=offline)
        else:
            if impressions is None:
                raise fail("--impressions is required with --repo")
            report = features.retrieve_historical(
                features.open_store(repo),
                impressions,
                storage.join(out, features.FEATURES_FILE),
                service,
            )
            storage.write_text_atomic(
                storage.join(out, features.REPORT_FILE),
                json.dumps(features.report_dict(report), indent=2) + "\n",
            )
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    typer.echo(json.dumps({"out": out, "rows": report.rows, "filled": report.filled_total}))


@app.command("online")
def features_online(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP + " Or a feature_store.yaml file.")],
    user_id: Annotated[list[int], typer.Option(help="User id; repeat for several rows.")],
    item_id: Annotated[list[int], typer.Option(help="Item id, one per --user-id.")],
    service: Annotated[str, typer.Option(help="Feast FeatureService to read.")] = "hm3_v1",
) -> None:
    """Read online features by feature service; prints values and missing rows as JSON."""
    from model.data import features

    if len(user_id) != len(item_id):
        raise fail(f"{len(user_id)} --user-id but {len(item_id)} --item-id; give one of each")
    rows = [{"user_id": u, "item_id": i} for u, i in zip(user_id, item_id, strict=True)]
    try:
        result = features.online_features(features.open_store(repo), rows, service)
    except (ValueError, FileNotFoundError) as err:
        raise fail(str(err)) from err
    typer.echo(json.dumps({"values": result.values, "missing": result.missing}))
