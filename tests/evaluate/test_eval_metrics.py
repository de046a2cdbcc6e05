"""Metric correctness: hand-computed cases, scikit-learn agreement with ties, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from model.evaluate.metrics import (
    MetricError,
    auc,
    calibration,
    confusion_matrix,
    gauc,
    log_loss,
    roc_curve,
)


def test_auc_hand_computed() -> None:
    # Positives at 0.8 and 0.4, negatives at 0.6 and 0.2: of 4 pairs, 3 are ordered right.
    assert auc(np.array([1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2])) == 0.75
    # A tie between a positive and a negative counts one half: pairs (0.5 vs 0.5)=0.5,
    # (0.5 vs 0.1)=1 -> 1.5 / 2.
    assert auc(np.array([1, 0, 0]), np.array([0.5, 0.5, 0.1])) == 0.75
    assert auc(np.array([0, 1]), np.array([0.3, 0.3])) == 0.5
    assert auc(np.array([True, False]), np.array([2.0, -1.0])) == 1.0


@pytest.mark.parametrize("seed", range(6))
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5_000
    y = (rng.random(n) < 0.1).astype(np.int8)
    # Few distinct values, so most scores are tied, and a signal so the AUC is not ~0.5.
    s = np.round(rng.random(n) * 0.6 + 0.3 * y, 1)
    assert auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


def test_auc_errors_name_the_row() -> None:
    with pytest.raises(MetricError, match="single label class"):
        auc(np.zeros(5), np.arange(5.0))
    with pytest.raises(ValueError, match=r"labels\[2\] = 2"):
        auc(np.array([0, 1, 2]), np.zeros(3))
    with pytest.raises(ValueError, match=r"scores\[1\] = nan"):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match=r"shape \(2,\), expected \(3,\)"):
        auc(np.array([0, 1, 0]), np.array([0.1, 0.2]))


def test_roc_curve_matches_sklearn_and_downsamples() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    s = np.round(rng.random(400) + 0.3 * y, 2)
    full = roc_curve(y, s, max_points=10_000)
    fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(full.fpr, fpr)
    np.testing.assert_allclose(full.tpr, tpr)
    assert np.isfinite(full.thresholds).all() and full.thresholds[0] > s.max()
    small = roc_curve(y, s, max_points=20)
    assert len(small.fpr) <= 22
    assert (small.fpr[0], small.tpr[0], small.fpr[-1], small.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(small.fpr) >= 0) and np.all(np.diff(small.tpr) >= 0)
    # The trapezoid area of the full curve is the AUC.
    assert np.trapezoid(full.tpr, full.fpr) == pytest.approx(auc(y, s))


def test_gauc_hand_computed_and_skips_single_class_users() -> None:
    y = np.array([1, 0, 0, 1, 0, 1, 1, 0, 0])
    s = np.array([0.9, 0.1, 0.5, 0.2, 0.7, 0.3, 0.4, 0.6, 0.8])
    users = np.array(["a", "a", "a", "b", "b", "c", "c", "d", "d"])
    # a: positive 0.9 beats both negatives -> 1.0 (3 impressions)
    # b: positive 0.2 below negative 0.7 -> 0.0 (2 impressions)
    # c: all positive, d: all negative -> skipped
    result = gauc(y, s, users)
    assert result.groups_used == 2 and result.groups_skipped == 2
    assert result.value == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    # Weighted by clicks: a has 1 click, b has 2.
    clicks = np.array([1, 0, 0, 1, 1, 1, 1, 0, 0])
    assert gauc(y, s, users, row_weights=clicks).value == pytest.approx(1 / 3)


def test_gauc_ties_within_a_user_and_matches_per_user_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 3_000
    users = rng.integers(0, 60, n)
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(rng.random(n) + 0.2 * y, 1)
    expected, weights, skipped = [], [], 0
    for u in np.unique(users):
        m = users == u
        if y[m].min() == y[m].max():
            skipped += 1
            continue
        expected.append(skm.roc_auc_score(y[m], s[m]))
        weights.append(m.sum())
    result = gauc(y, s, users)
    assert result.value == pytest.approx(np.average(expected, weights=weights), abs=1e-12)
    assert result.groups_skipped == skipped


def test_gauc_all_users_single_class_and_empty() -> None:
    result = gauc(np.array([1, 1, 0]), np.array([0.2, 0.3, 0.4]), np.array([1, 1, 2]))
    assert result.value is None and result.groups_used == 0 and result.groups_skipped == 2
    assert gauc(np.array([], dtype=int), np.array([]), np.array([])).value is None
    with pytest.raises(ValueError, match=r"row_weights\[0\] = -1.0"):
        gauc(np.array([0, 1]), np.array([0.1, 0.2]), np.array([1, 1]), np.array([-1.0, 1.0]))


def test_log_loss_hand_computed_and_clipped() -> None:
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p))
    # Clipped to [eps, 1 - eps] with the documented eps = 1e-7: a certain miss costs -log(1e-7)
    # either way, and a probability inside the bounds is not clipped.
    assert log_loss(np.array([1]), np.array([0.0])) == pytest.approx(-np.log(1e-7))
    assert log_loss(np.array([0]), np.array([1.0])) == pytest.approx(-np.log(1e-7))
    assert log_loss(np.array([1]), np.array([1e-5])) == pytest.approx(-np.log(1e-5))
    with pytest.raises(ValueError, match=r"probs\[0\] = 1.5: probabilities must be in \[0, 1\]"):
        log_loss(np.array([1]), np.array([1.5]))


def test_calibration_deciles_and_ece_hand_computed() -> None:
    # Two bins of 2 rows: low bin predicts 0.1 and sees 0 of 2; high predicts 0.7, sees 1 of 2.
    cal = calibration(np.array([0, 0, 1, 0]), np.array([0.1, 0.1, 0.7, 0.7]), bins=2)
    np.testing.assert_allclose(cal.mean_predicted, [0.1, 0.7])
    np.testing.assert_allclose(cal.observed_rate, [0.0, 0.5])
    assert cal.counts.tolist() == [2, 2]
    assert cal.ece == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)
    # Bins of unequal count (3 rows in 2 bins: 2 and 1): each gap weighs count / n, so the
    # ECE is 2/3 * 0.2 + 1/3 * 0.4, not the unweighted mean of the gaps (0.3).
    cal = calibration(np.array([0, 0, 1]), np.array([0.1, 0.3, 0.6]), bins=2)
    assert cal.counts.tolist() == [2, 1]
    assert cal.ece == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.4)
    # Perfectly calibrated in expectation: labels drawn from the predictions.
    rng = np.random.default_rng(0)
    p = rng.random(200_000) * 0.1
    y = (rng.random(p.size) < p).astype(int)
    cal = calibration(y, p)
    assert cal.counts.sum() == p.size and len(cal.counts) == 10
    assert cal.ece < 0.003
    with pytest.raises(ValueError, match="at least bins=10 rows, got 3"):
        calibration(np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]))


def test_confusion_matrix_at_threshold() -> None:
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.1, 0.5])
    assert confusion_matrix(y, p, 0.5) == [[1, 2], [1, 1]]
    assert confusion_matrix(y, p, 0.5) == skm.confusion_matrix(y, p >= 0.5).tolist()
    with pytest.raises(ValueError, match="threshold must be in"):
        confusion_matrix(y, p, 2.0)
