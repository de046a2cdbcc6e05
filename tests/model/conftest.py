"""Fixtures of the model tests: training tables built from the shared small world."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_helpers import build_training_table


@pytest.fixture(scope="session")
def training_table(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 60k-impression world as a training table."""
    return build_training_table(small_world, tmp_path_factory.mktemp("table") / "train.parquet")


@pytest.fixture(scope="session")
def tiny_table(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12k impressions: for DDP, resume and CLI tests that run several trainings."""
    out = tmp_path_factory.mktemp("tiny") / "train.parquet"
    return build_training_table(small_world, out, rows=12_000)
