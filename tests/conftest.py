"""Fixtures shared by every test area: small simulated worlds, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.simulator import WorldConfig, simulate


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60k-impression world (seed 7): enough clicks for every graph node, fast to build."""
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(impressions=60_000, seed=7, users=3_000, items=800, days=7), out)
    return out
