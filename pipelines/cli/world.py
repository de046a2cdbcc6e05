"""`hm3 simulate`: raw e-commerce logs from a simulated world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import MICRO_SIGNAL_HELP, fail

app = typer.Typer(rich_markup_mode="markdown")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder for the Parquet tables and world.json.")],
    impressions: Annotated[
        int, typer.Option(help="Number of impressions to generate.")
    ] = 2_500_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    users: Annotated[int, typer.Option(help="Number of users.")] = 20_000,
    items: Annotated[int, typer.Option(help="Number of items (Zipf popularity).")] = 2_000,
    days: Annotated[int, typer.Option(help="Days of logs (feature snapshots are daily).")] = 14,
    micro_signal: Annotated[float, typer.Option(help=MICRO_SIGNAL_HELP)] = 1.0,
    macro_signal: Annotated[
        float,
        typer.Option(
            help="How much D-Macro reveals purchase intent and raises purchase odds "
            "(0 = none; docs/world.md)."
        ),
    ] = 1.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate raw e-commerce logs from a world with known conversion probabilities.

    Writes into OUT: impressions.parquet (what was shown), events.parquet (raw click, micro,
    cart, favorite and purchase events, linked to impressions only by user, item and time),
    users.parquet and items.parquet (daily feature snapshots for Feast), truth.parquet (the
    true probabilities and sampled outcomes per impression) and world.json (all parameters).
    """
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate as run_simulation

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
        raise fail(str(err)) from err
    summary = run_simulation(cfg, out, progress=progress)
    rates = {k: round(v, 4) for k, v in summary.rates().items()}
    typer.echo(json.dumps({"out": str(out), "events": summary.events, "rates": rates}))
