"""bench/world_information.py on a small world: the point-in-time join and the document."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from model.world.label_information import LABEL_SETS
from model.world.mechanism import WorldConfig
from model.world.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "bench_world_information", ROOT / "bench" / "world_information.py"
)
world_information = importlib.util.module_from_spec(_spec)
sys.modules["bench_world_information"] = world_information
_spec.loader.exec_module(world_information)

CFG = WorldConfig(impressions=30_000, seed=4, users=400, items=90, days=4)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("information_world")
    simulate(CFG, out)
    return out


def test_each_impression_gets_the_item_snapshot_of_its_own_day(world: Path) -> None:
    frame = world_information.world_frame(world, CFG).to_pandas()
    items = pd.read_parquet(world / "items.parquet")
    ts = frame["ts"].dt.tz_convert("UTC")
    snapshot = ts.dt.floor("D")  # the 00:00 UTC snapshot of the impression's day
    expected = frame.assign(event_timestamp=snapshot)[["item_id", "event_timestamp"]].merge(
        items, on=["item_id", "event_timestamp"], how="left"
    )
    # Snapshots move from day to day, so a join on the wrong day would differ.
    assert items.groupby("item_id")["item_cvr_30d"].nunique().max() > 1
    np.testing.assert_array_equal(
        frame["item_cvr_30d"].to_numpy(), expected["item_cvr_30d"].to_numpy()
    )
    assert len(frame) == CFG.impressions


def test_document_scores_every_label_set_and_the_oracle(world: Path) -> None:
    doc = world_information.information(world, (0.5, 0.1, 0.4))
    assert list(doc["label_information"]) == [s.name for s in LABEL_SETS]
    frame = world_information.world_frame(world, CFG).to_pandas().sort_values("ts", kind="stable")
    test = frame.iloc[-int(0.4 * len(frame)) :]
    clicked = test[test["click"] == 1]
    assert doc["clicked_test_rows"] == pytest.approx(len(clicked), rel=0.02)
    oracle = doc["ceilings"]["oracle (all latents known)"]
    assert oracle == pytest.approx(
        roc_auc_score(clicked["buy"], clicked["p_buy_given_click"]), abs=0.01
    )
    text = world_information.report(doc)
    for name in doc["label_information"]:
        assert name in text
