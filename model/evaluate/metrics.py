"""Offline metrics for binary tasks: AUC, group AUC, log loss, calibration.

All functions take plain NumPy arrays, validate them at the edge (a bad row is named by index)
and run in O(n log n). AUC is the Mann-Whitney statistic: the probability that a random positive
scores above a random negative, counting a tie as one half. It is computed from the sorted
scores of each class (binary search of every positive among the negatives, left and right for
ties), which equals the average-rank formula and scikit-learn's `roc_auc_score` exactly, without
materializing ranks. ROC curves and GAUC group equal scores after one sort instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


class MetricError(ValueError):
    """A metric is undefined on the given data (e.g. AUC with a single label class)."""


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate 0/1 (or bool) labels; returns them as int64.

    Raises:
        ValueError: Naming the first row that is not 0 or 1 (nulls read as NaN included).
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    bad = ~((y == 0) | (y == 1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{row}] = {y[row].item()!r}: labels must be 0 or 1")
    return y.astype(np.int64)


def _scores(scores: np.ndarray, n: int, name: str = "scores", prob: bool = False) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ValueError(f"{name} has shape {s.shape}, expected ({n},) like the labels")
    finite = np.isfinite(s)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name}[{row}] = {float(s[row])}: scores must be finite")
    if prob:
        out = (s < 0.0) | (s > 1.0)
        if out.any():
            row = int(np.flatnonzero(out)[0])
            raise ValueError(f"{name}[{row}] = {float(s[row])}: probabilities must be in [0, 1]")
    return s


def _tie_groups(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by score and collapse equal scores into groups: (unique scores, positives, counts)."""
    order = np.argsort(s, kind="quicksort")  # stability is irrelevant: ties are grouped below
    s_sorted = s[order]
    starts = np.concatenate(([0], np.flatnonzero(s_sorted[1:] != s_sorted[:-1]) + 1))
    pos = np.add.reduceat(y[order], starts)
    counts = np.diff(np.append(starts, s.size))
    return s_sorted[starts], pos, counts


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve, ties counted as one half.

    Args:
        labels: 0/1 (or bool) array of shape (n,).
        scores: Real scores of shape (n,); higher means more likely positive.

    Returns:
        The AUC in [0, 1].

    Raises:
        ValueError: Naming the first row that is not 0/1 or not finite.
        MetricError: When all labels are of one class (AUC is undefined).
    """
    y = check_labels(labels)
    s = _scores(scores, y.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise MetricError(
            f"AUC is undefined with a single label class ({n_pos} positives, {n_neg} negatives)"
        )
    positive = y == 1
    # Sorting the two classes' scores separately (a plain sort, no argsort and gathers) and
    # locating each positive among the negatives is several times faster than ranking all rows.
    neg = np.sort(s[~positive])
    pos = np.sort(s[positive])  # sorted queries make the binary searches cache-friendly
    below = np.searchsorted(neg, pos, side="left")  # negatives strictly below each positive
    below_or_tied = np.searchsorted(neg, pos, side="right")
    # Twice the Mann-Whitney U in exact integers: a positive scores 2 per negative below it and
    # 1 per negative tied with it, i.e. below + below_or_tied.
    u2 = int(below.sum(dtype=np.int64) + below_or_tied.sum(dtype=np.int64))
    return u2 / (2.0 * n_pos * n_neg)


def bootstrap_auc(
    labels: np.ndarray, scores: Mapping[str, np.ndarray], resamples: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """AUC of every score on the same bootstrap resamples of the rows (paired draws).

    A resample draws n rows with replacement; a row drawn k times counts k times, so its AUC is
    the weighted Mann-Whitney statistic over the tie groups of one sort per score (O(n) per
    resample). Every score sees the same resamples, so differences of draws are paired: their
    percentiles bound the gap between two models on these rows, without the test rows' own
    sampling noise counted twice.

    Args:
        labels: 0/1 labels of shape (n,).
        scores: Name -> scores of shape (n,).
        resamples: Number of bootstrap resamples.
        seed: Seed of the resampling; the same seed gives the same draws.

    Returns:
        Name -> AUC per resample, shape (resamples,); NaN where a resample holds one class.
    """
    y = check_labels(labels).astype(bool)
    # Each row's tie group (groups numbered by ascending score), kept apart for positive and
    # negative rows: a resample then sums its counts per group with one pass over the rows and
    # no gather, and pos and neg come out exact (sums of integer counts in float64).
    grouped: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
    for name, raw in scores.items():
        distinct, group = np.unique(_scores(raw, y.size, name=name), return_inverse=True)
        grouped[name] = (group[y], group[~y], distinct.size)
    rng = np.random.default_rng(seed)
    out = {name: np.full(resamples, np.nan) for name in scores}
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size).astype(np.float64)
        counts_pos, counts_neg = counts[y], counts[~y]
        n_pos, n_neg = counts_pos.sum(), counts_neg.sum()
        if not (n_pos > 0 and n_neg > 0):
            continue
        for name, (group_pos, group_neg, groups) in grouped.items():
            pos = np.bincount(group_pos, counts_pos, minlength=groups)
            neg = np.bincount(group_neg, counts_neg, minlength=groups)
            below = np.cumsum(neg) - neg  # negatives strictly below each tie group
            out[name][r] = float(np.dot(pos, below + 0.5 * neg) / (n_pos * n_neg))
    return out


@dataclass(frozen=True)
class RocCurve:
    """ROC curve points, from the strictest threshold (nothing positive) to the loosest."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def roc_curve(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> RocCurve:
    """ROC curve with at most `max_points` points spread evenly along the curve.

    A row is predicted positive when its score >= threshold. The first point (0, 0) has a
    threshold just above the highest score, so every threshold is finite (JSON-safe).

    Raises:
        ValueError: On bad rows or `max_points` < 2.
        MetricError: When all labels are of one class.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    y = check_labels(labels)
    s = _scores(scores, y.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise MetricError(
            f"ROC is undefined with a single label class ({n_pos} positives, {n_neg} negatives)"
        )
    uniq, pos, counts = _tie_groups(y, s)
    # Walk thresholds from the highest score down.
    uniq, pos, neg = uniq[::-1], pos[::-1], (counts - pos)[::-1]
    tpr = np.concatenate(([0.0], np.cumsum(pos) / n_pos))
    fpr = np.concatenate(([0.0], np.cumsum(neg) / n_neg))
    thresholds = np.concatenate(([np.nextafter(uniq[0], np.inf)], uniq))
    if tpr.size > max_points:
        # Points evenly spaced in path length tpr + fpr (monotone from 0 to 2), ends included.
        idx = np.searchsorted(tpr + fpr, np.linspace(0.0, 2.0, max_points))
        idx = np.unique(np.clip(idx, 0, tpr.size - 1))
        idx = np.unique(np.concatenate(([0], idx, [tpr.size - 1])))
        tpr, fpr, thresholds = tpr[idx], fpr[idx], thresholds[idx]
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds)


@dataclass(frozen=True)
class GroupAUC:
    """Group AUC and how many groups it used.

    Attributes:
        value: Weighted mean of per-group AUCs; None when every group has a single class.
        groups_used: Groups with both classes, which enter the mean.
        groups_skipped: Groups with a single label class, left out (their AUC is undefined).
    """

    value: float | None
    groups_used: int
    groups_skipped: int


def gauc(
    labels: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    row_weights: np.ndarray | None = None,
) -> GroupAUC:
    """Group AUC (e.g. per user): per-group AUCs averaged with group weights.

    A group's weight is the sum of its `row_weights`: ones (the default) weight by impressions,
    the click column weights by clicks. Groups with a single label class are skipped and counted;
    groups of zero weight enter neither the numerator nor the denominator.

    Args:
        labels: 0/1 array of shape (n,).
        scores: Real scores of shape (n,).
        groups: Group key per row (ints or strings), shape (n,).
        row_weights: Non-negative per-row weights, shape (n,); default all ones.

    Raises:
        ValueError: On bad rows or shapes.
    """
    y = check_labels(labels)
    s = _scores(scores, y.size)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups has shape {g.shape}, expected {y.shape} like the labels")
    if row_weights is None:
        w = np.ones(y.size)
    else:
        w = _scores(row_weights, y.size, name="row_weights")
        if (w < 0).any():
            row = int(np.flatnonzero(w < 0)[0])
            raise ValueError(f"row_weights[{row}] = {float(w[row])}: weights must be >= 0")
    if y.size == 0:
        return GroupAUC(value=None, groups_used=0, groups_skipped=0)
    codes, uniques = pd.factorize(g, use_na_sentinel=False)
    n_groups = len(uniques)
    order = np.lexsort((s, codes))  # by group, then by score within the group
    c, s, y = codes[order], s[order], y[order]
    new_run = np.empty(y.size, dtype=bool)
    new_run[0] = True
    new_run[1:] = (c[1:] != c[:-1]) | (s[1:] != s[:-1])
    starts = np.flatnonzero(new_run)
    run_group = c[starts]
    pos = np.add.reduceat(y, starts)
    neg = np.diff(np.append(starts, y.size)) - pos
    cum_neg = np.cumsum(neg) - neg  # negatives in earlier runs, across groups
    first_run = np.concatenate(([True], run_group[1:] != run_group[:-1]))
    group_base = np.maximum.accumulate(np.where(first_run, cum_neg, 0))
    neg_below = cum_neg - group_base  # negatives below this run within its own group
    u2 = np.bincount(run_group, weights=pos * (2.0 * neg_below + neg), minlength=n_groups)
    n_pos = np.bincount(run_group, weights=pos, minlength=n_groups)
    n_neg = np.bincount(run_group, weights=neg, minlength=n_groups)
    weight = np.bincount(codes, weights=w, minlength=n_groups)
    valid = (n_pos > 0) & (n_neg > 0)
    used = int(valid.sum())
    skipped = n_groups - used
    total = weight[valid].sum()
    if used == 0 or total <= 0:
        return GroupAUC(value=None, groups_used=used, groups_skipped=skipped)
    group_auc = u2[valid] / (2.0 * n_pos[valid] * n_neg[valid])
    return GroupAUC(
        value=float(np.sum(weight[valid] * group_auc) / total),
        groups_used=used,
        groups_skipped=skipped,
    )


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy, probabilities clipped to [eps, 1 - eps].

    Raises:
        ValueError: On bad rows, probabilities outside [0, 1] or an empty input.
    """
    y = check_labels(labels)
    p = _scores(probs, y.size, name="probs", prob=True)
    if y.size == 0:
        raise ValueError("log_loss of an empty array is undefined")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@dataclass(frozen=True)
class Calibration:
    """Predicted vs observed rate per equal-count bin of predictions (deciles by default).

    Attributes:
        mean_predicted: Mean predicted probability per bin, ascending.
        observed_rate: Fraction of positives per bin.
        counts: Rows per bin.
        ece: Expected calibration error: sum over bins of count/n * |predicted - observed|.
    """

    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    counts: np.ndarray
    ece: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "mean_predicted": self.mean_predicted.tolist(),
            "observed_rate": self.observed_rate.tolist(),
            "counts": self.counts.tolist(),
            "ece": self.ece,
        }


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> Calibration:
    """Calibration per quantile bin of the predictions and the expected calibration error.

    Rows are sorted by prediction and cut into `bins` bins of equal count (sizes differ by at
    most one), so every bin has data even when predictions are concentrated near zero, as
    conversion rates are.

    Raises:
        ValueError: On bad rows, `bins` < 1 or fewer rows than bins.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y = check_labels(labels)
    p = _scores(probs, y.size, name="probs", prob=True)
    if y.size < bins:
        raise ValueError(f"calibration needs at least bins={bins} rows, got {y.size}")
    order = np.argsort(p, kind="stable")
    bounds = np.linspace(0, y.size, bins + 1).round().astype(np.int64)
    starts = bounds[:-1]
    counts = np.diff(bounds)
    mean_pred = np.add.reduceat(p[order], starts) / counts
    observed = np.add.reduceat(y[order], starts) / counts
    ece = float(np.sum(counts / y.size * np.abs(mean_pred - observed)))
    return Calibration(mean_predicted=mean_pred, observed_rate=observed, counts=counts, ece=ece)


def confusion_matrix(labels: np.ndarray, probs: np.ndarray, threshold: float) -> list[list[int]]:
    """2x2 confusion matrix [[tn, fp], [fn, tp]]; predicted positive when prob >= threshold.

    Rows are the actual class (0, 1), columns the predicted class, as KFP's
    `ClassificationMetrics.log_confusion_matrix` expects.

    Raises:
        ValueError: On bad rows or a threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    y = check_labels(labels)
    p = _scores(probs, y.size, name="probs", prob=True)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    return [[tn, fp], [fn, tp]]
