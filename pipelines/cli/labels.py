"""`hm3 labels`: graph labels from raw logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import fail

app = typer.Typer(rich_markup_mode="markdown")


@app.command()
def labels(
    impressions: Annotated[
        list[str],
        typer.Option(
            help="Impressions: a Parquet file, a folder of Parquet files (e.g. one per day) or a "
            "glob; local, file:// or gs://. Repeatable."
        ),
    ],
    events: Annotated[
        list[str],
        typer.Option(help="Raw events, in any of the forms --impressions accepts. Repeatable."),
    ],
    out: Annotated[
        str,
        typer.Option(
            help="Output folder (local or gs://): labels.parquet, quarantine.parquet, "
            "report.json, graph.svg."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            help='JSON object of LabelConfig overrides, e.g. {"purchase_window_s": 604800, '
            '"d_macro_events": ["cart"]}. Default: click within 1 h of the impression, micro '
            "within 30 min, macro within 1 day, purchase within 3 days of the click; "
            "D-Macro = cart or favorite; D-Micro = pictures, qa, chat, reviews, sku."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="DuckDB threads (default: all cores).")
    ] = None,
    memory_limit: Annotated[
        str, typer.Option(help="DuckDB memory limit; bigger intermediates spill to disk.")
    ] = "4GB",
    engine: Annotated[
        str,
        typer.Option(
            help="duckdb (embedded, default) or spark: the same rules and the same output files."
        ),
    ] = "duckdb",
    spark_master: Annotated[
        str,
        typer.Option(help="With --engine spark: master URL of a new session (local[2], yarn)."),
    ] = "local[2]",
    spark_remote: Annotated[
        str | None,
        typer.Option(
            help="With --engine spark: Spark Connect URL sc://HOST:15002 of a cluster; inputs "
            "must then be gs:// paths the cluster reads."
        ),
    ] = None,
) -> None:
    """Build per-impression labels (click, d_micro, d_macro, buy, path) from raw logs.

    Attributes each click to the latest impression of the same user and item within the click
    window, and each micro, macro and purchase event to the latest click within its window.
    Rows that cannot be used (null ids, unknown event types, bad clocks, duplicates,
    unattributable events) go to quarantine.parquet with a reason; every input row is either
    used or quarantined. Prints the graph counts and quarantine summary as JSON.
    """
    from model.data.label_engines import SparkTarget
    from model.data.labels import LabelConfig, build_labels
    from model.data.schema import SchemaError

    try:
        cfg = LabelConfig.from_json(config.read_text()) if config else LabelConfig()
        report = build_labels(
            impressions,
            events,
            out,
            cfg,
            engine=engine,
            threads=threads,
            memory_limit=memory_limit,
            spark=SparkTarget(master=spark_master, remote=spark_remote),
        )
    except (ValueError, FileNotFoundError, SchemaError) as err:
        raise fail(str(err)) from err
    typer.echo(
        json.dumps(
            {
                "out": out,
                "engine": engine,
                "nodes": report.nodes,
                "quarantine": report.quarantine,
                "balanced": report.balanced,
                "seconds": report.seconds,
            }
        )
    )
