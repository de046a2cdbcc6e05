"""The `hm3` command line: every stage of the pipeline, runnable on its own.

Each command parses and validates its options, then calls one library function. Heavy imports
(torch, feast, kserve, kfp) happen inside the command that needs them, so `hm3 --help` is fast.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="hm3",
    help=(
        "HM^3 conversion-rate pipeline: simulate raw logs, build graph labels, retrieve Feast "
        "features, train HM^3 and its baselines, evaluate with a deploy gate, and serve on KServe."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder for the Parquet tables and world.json.")],
    impressions: Annotated[
        int, typer.Option(help="Number of impressions to generate.")
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    users: Annotated[int, typer.Option(help="Number of users.")] = 50_000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 10_000,
    days: Annotated[int, typer.Option(help="Days of logs (feature snapshots are daily).")] = 14,
    micro_signal: Annotated[
        float, typer.Option(help="How much D-Micro raises macro and purchase odds (0 = none).")
    ] = 1.0,
    macro_signal: Annotated[
        float, typer.Option(help="How much D-Macro raises purchase odds (0 = none).")
    ] = 1.5,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate raw e-commerce logs from a world with known conversion probabilities.

    Writes into OUT: impressions.parquet (what was shown), events.parquet (raw click, micro,
    cart, favorite and purchase events, linked to impressions only by user, item and time),
    users.parquet and items.parquet (daily feature snapshots for Feast), truth.parquet (the
    true probabilities and sampled outcomes per impression) and world.json (all parameters).
    """
    from model.simulator import WorldConfig
    from model.simulator import simulate as run_simulation

    try:
        cfg = WorldConfig(
            impressions=impressions,
            seed=seed,
            users=users,
            items=items,
            days=days,
            micro_signal=micro_signal,
            macro_signal=macro_signal,
        )
    except ValueError as err:
        raise _fail(str(err)) from err
    summary = run_simulation(cfg, out, progress=progress)
    rates = {k: round(v, 4) for k, v in summary.rates().items()}
    typer.echo(json.dumps({"out": str(out), "events": summary.events, "rates": rates}))


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
