"""Helpers every command module shares: the stderr console and the usage-error exit."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print `message` as an error on stderr and return the exit (code 2) to raise."""
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)
