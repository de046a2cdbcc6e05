"""The model-free measure of what each model family's labels reveal about item intent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.world import label_information as li
from model.world import world_files
from model.world.mechanism import WorldConfig
from model.world.simulator import simulate


def _frames(
    rng: np.random.Generator, intent: np.ndarray, micro_loading: float, clicks_per_item: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows whose D-Micro rate loads on intent by `micro_loading`; features carry nothing."""
    items = len(intent)
    item = np.repeat(np.arange(items), clicks_per_item)
    p_micro = 1 / (1 + np.exp(-(-1.0 + micro_loading * intent[item])))
    train = pd.DataFrame(
        {
            "item_id": item,
            "click": 1,
            "buy": (rng.random(len(item)) < 0.02).astype(np.int64),
            "d_macro": (rng.random(len(item)) < 0.1).astype(np.int64),
            "d_micro": (rng.random(len(item)) < p_micro).astype(np.int64),
        }
    )
    test = pd.DataFrame(
        {
            "item_id": np.arange(items),
            "click": 1,
            "item_cvr_30d": rng.uniform(0.01, 0.05, items),
            "item_ctr_7d": rng.uniform(0.02, 0.06, items),
            "item_sales_30d": rng.integers(0, 50, items),
        }
    )
    return train, test


def _item_r2(train: pd.DataFrame, test: pd.DataFrame, intent: np.ndarray) -> dict[str, float]:
    columns = li.item_columns(train, test, len(intent))
    weight = columns["weight"].to_numpy()
    return {
        s.name: li.weighted_r2(li.cross_fitted_readout(columns, s.columns, intent), intent, weight)
        for s in li.LABEL_SETS
    }


def test_d_micro_raises_the_readout_only_when_it_loads_on_intent() -> None:
    rng = np.random.default_rng(0)
    intent = rng.normal(0.0, 0.6, 600)
    informative = _item_r2(*_frames(rng, intent, 1.0, 200), intent)
    control = _item_r2(*_frames(rng, intent, 0.0, 200), intent)
    with_micro, without = "+ D-Micro (HM^3's labels)", "+ D-Macro (ESM^2's labels)"
    # 200 clicks per item at a 27% rate pin the micro rate down: R^2 near its noise limit.
    assert informative[with_micro] > 0.8
    assert informative[without] < 0.05
    assert abs(control[with_micro] - control[without]) < 0.02


def test_cross_fitting_keeps_columns_that_carry_nothing_from_raising_r2() -> None:
    rng = np.random.default_rng(1)
    n, junk = 400, 40
    target = rng.normal(size=n)
    names = tuple(f"junk{j}" for j in range(junk))
    columns = pd.DataFrame(rng.normal(size=(n, junk)), columns=list(names))
    columns["x"] = target + rng.normal(size=n)
    columns["weight"] = 1.0
    r2 = lambda cols: li.weighted_r2(  # noqa: E731
        li.cross_fitted_readout(columns, cols, target), target, columns["weight"].to_numpy()
    )
    # In sample, trees on 40 noise columns would fit most of the target's noise.
    assert r2(("x", *names)) < r2(("x",)) + 0.02
    assert r2(("x",)) > 0.3  # the informative column is read (its best R^2 is 0.5)


def test_item_columns_are_shrunk_rates_and_test_click_weights() -> None:
    train = pd.DataFrame(
        {
            "item_id": [0, 0, 0, 0, 1],
            "click": [1, 1, 0, 0, 1],
            "buy": [1, 0, 0, 0, 0],
            "d_macro": [1, 0, 0, 0, 1],
            "d_micro": [1, 0, 0, 0, 1],
        }
    )
    test = pd.DataFrame(
        {
            "item_id": [0, 0, 1],
            "click": [1, 1, 0],
            "item_cvr_30d": [0.1, 0.3, 0.9],
            "item_ctr_7d": [0.5, 0.5, 0.9],
            "item_sales_30d": [3, 5, 9],
        }
    )
    out = li.item_columns(train, test, items=3)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert out["weight"].tolist() == [2.0, 0.0, 0.0]
    assert out["train_clicks"].tolist() == pytest.approx([np.log(3), np.log(2), 0.0])
    # Item 0's features are the mean over its clicked test rows; unclicked rows never count.
    assert out.loc[0, "f_item_cvr_30d"] == pytest.approx((logit(0.1) + logit(0.3)) / 2)
    assert out.loc[0, "f_item_sales_30d"] == pytest.approx((np.log(4) + np.log(6)) / 2)
    # Items without clicked test rows take the average columns (and weigh nothing).
    assert out.loc[1, "f_item_cvr_30d"] == pytest.approx(out.loc[0, "f_item_cvr_30d"])
    # Purchases per click, shrunk to the world's rate (1 of 3 clicks) with 40 pseudo-clicks.
    assert out.loc[0, "r_buy"] == pytest.approx(logit((1 + 40 / 3) / (2 + 40)))
    assert out.loc[2, "r_buy"] == pytest.approx(logit(1 / 3))
    # Clicks per impression: 3 of 5 impressions overall, 100 pseudo-impressions.
    assert out.loc[0, "r_click"] == pytest.approx(logit((2 + 100 * 0.6) / (4 + 100)))
    # D-Micro per click: 2 of 3 clicks overall, 10 pseudo-clicks.
    assert out.loc[1, "r_d_micro"] == pytest.approx(logit((1 + 10 * 2 / 3) / (1 + 10)))


def test_label_information_scores_every_label_set_on_a_simulated_world(tmp_path) -> None:
    cfg = WorldConfig(impressions=6_000, seed=5, users=300, items=80, days=3)
    simulate(cfg, tmp_path)
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    impressions = pd.read_parquet(tmp_path / "impressions.parquet")
    items = pd.read_parquet(tmp_path / "items.parquet").drop_duplicates("item_id")
    frame = impressions.merge(truth, on="impression_id").merge(
        items[["item_id", "item_cvr_30d", "item_ctr_7d", "item_sales_30d"]], on="item_id"
    )
    half = len(frame) // 2
    out = world_files.label_information(tmp_path, frame.iloc[:half], frame.iloc[half:])
    assert list(out) == [s.name for s in li.LABEL_SETS]
    for name, v in out.items():
        assert v["cvr"].shape == (len(frame) - half,), name
        assert ((v["cvr"] > 0) & (v["cvr"] < 1)).all(), name
        assert set(v["r2"]) == {"item_intent", "age_category", "gender_category"}, name
        assert all(r2 <= 1.0 for r2 in v["r2"].values()), name


def test_cell_columns_carry_the_cell_and_its_category() -> None:
    """Two segments x two categories; cell = segment * 2 + category."""
    train = pd.DataFrame(
        {
            "click": [1, 1, 1, 0, 1, 0],
            "buy": [1, 0, 0, 0, 0, 0],
            "d_macro": [0, 0, 1, 0, 0, 0],
            "d_micro": [1, 1, 1, 0, 0, 0],
            "item_cvr_30d": [0.1, 0.3, 0.5, 0.9, 0.2, 0.9],
        }
    )
    train_cells = np.array([0, 0, 1, 1, 2, 3])  # (segment, category): (0,0) (0,0) (0,1) ...
    train_categories = train_cells % 2
    test = pd.DataFrame({"click": [1, 1, 0, 1]})
    test_cells = np.array([0, 3, 3, 3])
    out = li.cell_columns(
        train, test, (train_cells, test_cells), (train_categories, test_cells % 2), (2, 2)
    )
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert out["weight"].tolist() == [1.0, 0.0, 0.0, 2.0]
    # Cell 0's items: the mean logit item_cvr_30d of its clicks; cell 3 has none (the average).
    assert out.loc[0, "item_mix"] == pytest.approx((logit(0.1) + logit(0.3)) / 2)
    clicked = [0.1, 0.3, 0.5, 0.2]
    assert out.loc[3, "item_mix"] == pytest.approx(np.mean([logit(p) for p in clicked]))
    # D-Micro per click in cell 0 (2 of 2) and in its category 0 (2 of 3: cells 0 and 2),
    # shrunk to the world's rate (3 of 4 clicks) with 10 pseudo-clicks.
    assert out.loc[0, "r_d_micro"] == pytest.approx(logit((2 + 7.5) / (2 + 10)))
    assert out.loc[0, "cat_d_micro"] == pytest.approx(logit((2 + 7.5) / (3 + 10)))
    assert out.loc[2, "cat_d_micro"] == out.loc[0, "cat_d_micro"]
