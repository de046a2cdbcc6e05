"""Helpers every command module shares: the stderr console, the usage-error exit, shared help."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)

MICRO_SIGNAL_HELP = (
    "How much D-Micro reveals purchase intent and raises the odds of macro and purchase "
    "(0 = D-Micro carries no purchase information; docs/world.md)."
)


def fail(message: str) -> typer.Exit:
    """Print `message` as an error on stderr and return the exit (code 2) to raise."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)
