"""The `hm3` command line: every stage of the pipeline, runnable on its own.

Each command parses and validates its options, then calls one library function. Heavy imports
(torch, feast, kserve, kfp) happen inside the command that needs them, so `hm3 --help` is fast.

One module per command group: world (simulate), labels, run (run, compile, submit, bench),
features (apply, materialize, retrieve, online), train, serve and evaluate. Each holds its own
Typer app; this root app merges them in the order `hm3 --help` lists them.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from model.arrow_memory import prefer_jemalloc
from pipelines.cli import evaluate, features, labels, run, serve, train, world

app = typer.Typer(
    rich_markup_mode="markdown",
    name="hm3",
    help=(
        "HM^3 conversion-rate pipeline: simulate raw logs, build graph labels, retrieve Feast "
        "features, train HM^3 and its baselines, evaluate with a deploy gate, and serve on KServe."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
for _group in (world, labels, run, train, serve, evaluate):
    app.add_typer(_group.app)
app.add_typer(features.app, name="features")


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    prefer_jemalloc()  # before any Arrow allocation; kfp.local's steps inherit it
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console entry point."""
    app()
