"""Fixtures of the label tests: tiny hand-made logs and a world with heavy log damage."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_logs import TinyLogs

from model.world.mechanism import NoiseConfig, WorldConfig
from model.world.simulator import simulate


@pytest.fixture
def logs(tmp_path: Path) -> TinyLogs:
    return TinyLogs(tmp_path / "logs")


@pytest.fixture(scope="session")
def damaged_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40k-impression world with every kind of log damage at high rates."""
    out = tmp_path_factory.mktemp("damaged_world")
    noise = NoiseConfig(
        duplicate_event_rate=0.05,
        dropped_click_rate=0.05,
        late_purchase_rate=0.3,
        bad_clock_rate=0.01,
        orphan_purchase_rate=0.002,
    )
    simulate(
        WorldConfig(impressions=40_000, seed=11, users=2_000, items=600, days=5, noise=noise), out
    )
    return out
