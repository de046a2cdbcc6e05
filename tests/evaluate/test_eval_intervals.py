"""Bootstrap intervals of AUC, paired gaps between models, and what the report makes of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.evaluate import metrics as m
from model.evaluate.report import _table
from model.evaluate.scoring import EvalConfig, evaluate_predictions, gap_order, paired_gaps


def test_bootstrap_auc_equals_auc_of_each_explicit_resample() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(3000) < 0.1).astype(int)
    scores = {"tied": np.round(rng.random(3000) + 0.3 * y, 2), "fine": rng.random(3000) + y}
    draws = m.bootstrap_auc(y, scores, resamples=5, seed=11)
    replay = np.random.default_rng(11)
    for r in range(5):
        rows = replay.integers(0, y.size, y.size)
        for name, s in scores.items():
            assert draws[name][r] == pytest.approx(m.auc(y[rows], s[rows]), abs=1e-12)


def test_bootstrap_auc_is_nan_on_a_resample_with_one_class() -> None:
    draws = m.bootstrap_auc(np.array([0, 0, 0, 1]), {"a": np.arange(4.0)}, 200, seed=0)
    assert np.isnan(draws["a"]).any() and not np.isnan(draws["a"]).all()


def frame_and_predictions(n: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Clicked rows where `good` carries the label's signal, `same` equals it, `noise` has none."""
    rng = np.random.default_rng(seed)
    buy = (rng.random(n) < 0.2).astype(int)
    good = np.clip(0.2 + 0.3 * buy + 0.2 * rng.standard_normal(n), 0.001, 0.999)
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 50, n),
            "click": np.ones(n, dtype=int),
            "d_micro": buy,
            "d_macro": buy,
            "buy": buy,
        }
    )
    predictions = {
        "naive": {"cvr": rng.random(n)},
        "hm3": {"cvr": good},
        "esm2": {"cvr": good.copy()},
    }
    return frame, predictions


def test_gaps_are_paired_named_in_kind_order_and_resolve_a_real_difference() -> None:
    frame, predictions = frame_and_predictions(2000)
    results = evaluate_predictions(frame, predictions, EvalConfig(bootstrap=300))
    gaps = paired_gaps(results)
    assert list(gaps) == ["hm3-esm2", "hm3-naive", "esm2-naive"]
    # Identical predictions: every paired draw is equal, so the gap is exactly 0 (an unpaired
    # bootstrap would give a wide interval around 0).
    assert gaps["hm3-esm2"]["cvr"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    real = gaps["hm3-naive"]["cvr"]
    assert real["mean"] == pytest.approx(results["hm3"]["cvr"].auc - results["naive"]["cvr"].auc)
    assert 0 < real["lo"] < real["mean"] < real["hi"]
    for name in ("hm3", "naive"):
        r = results[name]["cvr"]
        assert r.auc_lo < r.auc < r.auc_hi
    assert gap_order(["base", "naive", "hm3", "x"]) == ["hm3", "naive", "base", "x"]


def test_no_intervals_without_bootstrap() -> None:
    frame, predictions = frame_and_predictions(500)
    results = evaluate_predictions(frame, predictions, EvalConfig(bootstrap=0))
    assert results["hm3"]["cvr"].auc_lo is None and paired_gaps(results) == {}
    with pytest.raises(ValueError, match="bootstrap must be >= 0"):
        EvalConfig(bootstrap=-1)


def test_report_bolds_only_a_significant_lead_and_marks_thin_gauc() -> None:
    frame, predictions = frame_and_predictions(2000)
    clear = evaluate_predictions(
        frame, {k: predictions[k] for k in ("hm3", "naive")}, EvalConfig(bootstrap=300)
    )
    html = _table(clear, ["hm3", "naive"], "auc")
    assert html.count("class='best'") == 1
    assert html.index("class='best'") > html.index("<td>hm3</td>")
    # hm3 and esm2 tie: neither lead is significant, so nothing is bold.
    tied = evaluate_predictions(frame, predictions, EvalConfig(bootstrap=300))
    assert "class='best'" not in _table(tied, ["hm3", "esm2", "naive"], "auc")
    # 50 users in all: GAUC is printed as n/a with the reason.
    gauc = _table(clear, ["hm3", "naive"], "gauc")
    assert "n/a: " in gauc and "fewer than 100" in gauc
