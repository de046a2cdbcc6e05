"""Every `hm3` command's --help reads as prose at 80 columns: paragraphs re-flowed, not cut."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from pipelines.cli import app

WIDTH = 80


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            paths += _commands(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


COMMANDS = _commands(typer.main.get_command(app))


def _description(text: str) -> list[list[str]]:
    """The paragraphs between the usage and the first option panel, margins stripped.

    argparse (`hm3 serve` is KServe's parser) continues its usage on lines starting "[".
    """
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower().startswith("usage:"))
    paragraphs: list[list[str]] = [[]]
    for line in lines[start + 1 :]:
        if line.startswith(("╭", "options:")):
            break
        if line.strip():
            paragraphs[-1].append(line.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p and not p[0].startswith("[")]


def test_every_command_is_listed() -> None:
    assert {"run", "simulate", "labels", "train", "serve", "evaluate", "compile"} <= {
        path[0] for path in COMMANDS if path
    }
    assert ("features", "retrieve") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "hm3")
def test_help_reads_as_prose_at_80_columns(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    paragraphs = _description(result.output)
    assert paragraphs, result.output
    # A re-flowed paragraph breaks a line only where the next word would not have fit; a
    # hard-wrapped docstring shown line by line breaks early ("time, trains" / "HM^3, ...").
    # Typer leaves a one-space margin either side, so text is at most WIDTH - 2 wide.
    for paragraph in paragraphs:
        for line, following in zip(paragraph, paragraph[1:], strict=False):
            assert len(line) + 1 + len(following.split()[0]) > WIDTH - 2, (line, following)
    if path != ("serve",):  # serve prints KServe's own argparse usage, wider than 80
        too_wide = [line for line in result.output.splitlines() if len(line) > WIDTH]
        assert not too_wide, too_wide
