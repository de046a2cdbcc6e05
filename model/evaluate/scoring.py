"""Scoring of model predictions on evaluated rows: metrics per model and task, oracle, headline.

Computation only: no file I/O, no plots, no HTML. Each task of `model.tasks.TASKS` is scored
against its label on its rows (CVR on clicked impressions, the others on all impressions). When
the rows carry the simulator's truth columns, an "oracle" model scores the true probabilities on
the same logged labels; no model beats it in expectation, so the gap to the oracle is the honest
measure of model quality. CVR AUC on clicked impressions (`headline_auc`) is the headline: it is
what the deploy gate compares. A truth-only task (cvr_entire: the cvr output on every impression
against the counterfactual `buy_if_clicked`) is scored only when the rows carry its label.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from model.data import schema
from model.evaluate import metrics as m
from model.evaluate.gate import GateDecision
from model.tasks import HEADLINE, TASKS

ORACLE = "oracle"
GAPS = "gaps"
CHAMPION = "champion"
SPLITS = ("train", "validation", "test", "all")
GAUC_WEIGHTS = ("impressions", "clicks")
# Below this many users with both label classes, GAUC averages a handful of per-user AUCs on a
# few rows each: too noisy to read, so the report prints it as n/a with the reason.
MIN_GAUC_USERS = 100
# Canonical order of the kinds: gaps are named "a-b" with a before b in this order.
KIND_ORDER = ("hm3", "esm2", "esmm", "naive")
TRUTH_COLUMNS = (
    "p_click",
    "p_d_micro_given_click",
    "p_d_macro_given_click",
    "p_buy_given_click",
)
# Labels only a simulated world's truth.parquet has (never trained or served), in task order.
TRUTH_LABELS = tuple(dict.fromkeys(t.label for t in TASKS.values() if t.truth_only))


@dataclass(frozen=True)
class EvalConfig:
    """How models are evaluated.

    Attributes:
        split: Which part of `split_by_time` to evaluate on ("test", "validation", "train"), or
            "all" when the data file already is the held-out set.
        calibration_bins: Equal-count bins of the calibration table (10 = deciles).
        gauc_weight: Per-user weight of GAUC: "impressions" (rows) or "clicks".
        roc_points: Most points kept per ROC curve (plots and KFP ClassificationMetrics).
        threshold: Confusion-matrix threshold; None uses each task's observed positive rate on
            the evaluated rows (a rate-matched cut; 0.5 would call nearly everything negative
            for conversion rates of a few percent). The report states the value used.
        bootstrap: Bootstrap resamples of the evaluated rows for the 95% interval of every AUC
            and of every gap between two models (paired: the same resamples for all models).
            0 = no intervals.
        bootstrap_seed: Seed of the resamples.
    """

    split: str = "test"
    calibration_bins: int = 10
    gauc_weight: str = "impressions"
    roc_points: int = 200
    threshold: float | None = None
    bootstrap: int = 200
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.calibration_bins < 1:
            raise ValueError(f"calibration_bins must be >= 1, got {self.calibration_bins}")
        if self.gauc_weight not in GAUC_WEIGHTS:
            raise ValueError(f"gauc_weight must be one of {GAUC_WEIGHTS}, got {self.gauc_weight!r}")
        if self.roc_points < 2:
            raise ValueError(f"roc_points must be >= 2, got {self.roc_points}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] or None, got {self.threshold}")
        if self.bootstrap < 0:
            raise ValueError(
                f"bootstrap must be >= 0 resamples (0 = no intervals), got {self.bootstrap}"
            )


@dataclass(frozen=True)
class TaskResult:
    """All metrics of one model on one task.

    AUC-type values are None when undefined on the evaluated rows (a single label class).
    """

    auc: float | None
    gauc: float | None
    logloss: float
    ece: float
    rows: int
    positives: int
    gauc_users: int
    gauc_skipped_users: int
    calibration: m.Calibration
    roc: m.RocCurve | None
    threshold: float
    confusion: list[list[int]]
    auc_lo: float | None = None
    auc_hi: float | None = None
    # AUC on each bootstrap resample, the same resamples for every model on this task: the
    # paired draws behind the gaps. Not written to metrics.json.
    auc_draws: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def gauc_note(self) -> str | None:
        """Why GAUC is not worth reading on these rows, or None when it is."""
        if self.gauc is None or self.gauc_users < MIN_GAUC_USERS:
            return f"n/a: {self.gauc_users} user(s) with both classes (fewer than {MIN_GAUC_USERS})"
        return None

    def summary(self) -> dict[str, Any]:
        """The metrics.json entry: auc with its 95% interval, gauc, logloss, ece, then counts."""
        return {
            "auc": self.auc,
            "auc_lo": self.auc_lo,
            "auc_hi": self.auc_hi,
            "gauc": self.gauc,
            "logloss": self.logloss,
            "ece": self.ece,
            "rows": self.rows,
            "positives": self.positives,
            "gauc_users": self.gauc_users,
            "gauc_skipped_users": self.gauc_skipped_users,
        }

    def details(self) -> dict[str, Any]:
        """Summary plus calibration bins, ROC points and the confusion matrix."""
        roc = None
        if self.roc is not None:
            roc = {
                "fpr": self.roc.fpr.tolist(),
                "tpr": self.roc.tpr.tolist(),
                "thresholds": self.roc.thresholds.tolist(),
            }
        return {
            **self.summary(),
            "calibration": self.calibration.to_dict(),
            "roc": roc,
            "threshold": self.threshold,
            "confusion_matrix": self.confusion,
        }


@dataclass(frozen=True)
class ModelInfo:
    """Identity of an evaluated model, for the report."""

    name: str
    kind: str
    version: str
    path: str


@dataclass(frozen=True)
class DataInfo:
    """What the models were evaluated on."""

    path: str
    split: str
    rows: int
    clicks: int
    buys: int
    ts_min: str
    ts_max: str
    truth: str | None


@dataclass
class Evaluation:
    """The result of `evaluate_models`: metrics per model and task, and what produced them."""

    results: dict[str, dict[str, TaskResult]]
    models: dict[str, ModelInfo]
    data: DataInfo
    config: EvalConfig
    command: str = ""
    gate: GateDecision | None = None
    candidate: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def metrics_json(self) -> dict[str, Any]:
        """{model: {task: {auc, auc_lo, auc_hi, gauc, ...}}, "oracle": {...}, "gaps": {...}}.

        "gaps" (see `paired_gaps`) is the only top-level key that is not a model.
        """
        out: dict[str, Any] = {
            name: {task: r.summary() for task, r in tasks.items()}
            for name, tasks in self.results.items()
        }
        out[GAPS] = paired_gaps(self.results)
        return out


def _undefined(fn: Any, *args: Any) -> Any:
    """Value of a metric, or None when it is undefined on these rows (one label class)."""
    try:
        return fn(*args)
    except m.MetricError:
        return None


def score_task(
    labels: np.ndarray,
    probs: np.ndarray,
    users: np.ndarray,
    gauc_weights: np.ndarray | None,
    config: EvalConfig,
) -> TaskResult:
    """Every metric of one task on one set of rows.

    Args:
        labels: 0/1 labels of the evaluated rows.
        probs: Predicted probabilities, same shape.
        users: User id per row (GAUC groups).
        gauc_weights: Per-row GAUC weights (None = one per impression).
        config: Evaluation settings.
    """
    positives = int(np.sum(labels))
    threshold = config.threshold
    if threshold is None:
        threshold = positives / labels.size if labels.size else 0.5
    group = m.gauc(labels, probs, users, gauc_weights)
    cal = m.calibration(labels, probs, min(config.calibration_bins, max(labels.size, 1)))
    return TaskResult(
        auc=_undefined(m.auc, labels, probs),
        gauc=group.value,
        logloss=m.log_loss(labels, probs),
        ece=cal.ece,
        rows=int(labels.size),
        positives=positives,
        gauc_users=group.groups_used,
        gauc_skipped_users=group.groups_skipped,
        calibration=cal,
        roc=_undefined(m.roc_curve, labels, probs, config.roc_points),
        threshold=float(threshold),
        confusion=m.confusion_matrix(labels, probs, float(threshold)),
    )


def oracle_predictions(frame: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """True probabilities per task from the truth columns, or None if the frame has none."""
    present = [c for c in TRUTH_COLUMNS if c in frame.columns]
    if not present:
        return None
    missing = sorted(set(TRUTH_COLUMNS) - set(present))
    if missing:
        raise ValueError(f"data has truth columns {present} but lacks {missing}")
    p = {c: frame[c].to_numpy(dtype=np.float64) for c in TRUTH_COLUMNS}
    return {
        "ctr": p["p_click"],
        "cvr": p["p_buy_given_click"],
        "ctcvr": p["p_click"] * p["p_buy_given_click"],
        "ct_micro": p["p_click"] * p["p_d_micro_given_click"],
        "ct_macro": p["p_click"] * p["p_d_macro_given_click"],
    }


def evaluate_predictions(
    frame: pd.DataFrame,
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    config: EvalConfig | None = None,
) -> dict[str, dict[str, TaskResult]]:
    """Score each model's predictions (and the oracle, when the frame has truth) on the frame.

    Args:
        frame: Evaluated rows: `user_id`, the label columns and optionally the truth columns
            and truth-only labels (`TRUTH_LABELS`); a task whose label is absent is not scored.
        predictions: Model name -> output -> probabilities for every row of `frame`. A model
            is scored only on the tasks whose output it predicts (the naive baseline predicts
            cvr only, so it is scored on cvr and cvr_entire).
        config: Evaluation settings.

    Returns:
        Model name (plus "oracle" with truth) -> task -> result.

    Raises:
        ValueError: On a missing column, a prediction of the wrong length, or a model named
            "oracle".
    """
    config = config or EvalConfig()
    for column in ("user_id", *schema.LABEL_COLUMNS):
        if column not in frame.columns:
            raise ValueError(f"evaluation data lacks column {column!r}")
    if ORACLE in predictions:
        raise ValueError(f"model name {ORACLE!r} is reserved for the truth probabilities")
    all_predictions = dict(predictions)
    oracle = oracle_predictions(frame)
    if oracle is not None:
        all_predictions[ORACLE] = oracle
    present = (*schema.LABEL_COLUMNS, *(c for c in TRUTH_LABELS if c in frame.columns))
    labels = {c: m.check_labels(frame[c].to_numpy(), name=c) for c in present}
    clicked = labels["click"] == 1
    users = frame["user_id"].to_numpy()
    results: dict[str, dict[str, TaskResult]] = {name: {} for name in all_predictions}
    for number, (task, spec) in enumerate(TASKS.items()):
        if spec.label not in labels:
            continue  # a truth-only label, and these rows are not from a simulated world
        rows = clicked if spec.clicked_only else np.ones(len(frame), dtype=bool)
        weights = None if config.gauc_weight == "impressions" else labels["click"][rows]
        scored: dict[str, np.ndarray] = {}
        for name, tasks in all_predictions.items():
            if spec.model_output not in tasks:
                continue
            probs = np.asarray(tasks[spec.model_output], dtype=np.float64)
            if probs.shape != (len(frame),):
                raise ValueError(
                    f"{name}: {spec.model_output} predictions have shape {probs.shape}, "
                    f"expected ({len(frame)},)"
                )
            try:
                results[name][task] = score_task(
                    labels[spec.label][rows], probs[rows], users[rows], weights, config
                )
            except ValueError as err:
                raise ValueError(f"{name}: task {task}: {err}") from err
            scored[name] = probs[rows]
        if config.bootstrap and scored:
            # One resampling per task, shared by every model: the draws are paired.
            draws = m.bootstrap_auc(
                labels[spec.label][rows], scored, config.bootstrap, config.bootstrap_seed + number
            )
            for name, auc_draws in draws.items():
                results[name][task] = _with_interval(results[name][task], auc_draws)
    return results


def _with_interval(result: TaskResult, draws: np.ndarray) -> TaskResult:
    """The result with the 95% percentile interval of its AUC draws (None if undefined)."""
    if result.auc is None or np.isnan(draws).mean() > 0.025:
        return replace(result, auc_draws=draws)
    lo, hi = np.nanpercentile(draws, [2.5, 97.5])
    return replace(result, auc_lo=float(lo), auc_hi=float(hi), auc_draws=draws)


def gap_order(names: Sequence[str]) -> list[str]:
    """Model names in the canonical kind order (hm3, esm2, esmm, naive), then the rest."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))  # stable: the rest keep order


def paired_gaps(
    results: Mapping[str, Mapping[str, TaskResult]],
) -> dict[str, dict[str, dict[str, float]]]:
    """AUC gap of every pair of models on every task both predict, with a paired 95% interval.

    Returns:
        {"a-b": {task: {"mean", "lo", "hi"}}}, a before b in `gap_order`; "mean" is the gap on
        the evaluated rows, lo and hi the 2.5 and 97.5 percentiles of the gap over the shared
        bootstrap resamples. The oracle is left out. Empty without bootstrap draws.
    """
    names = gap_order([n for n in results if n != ORACLE])
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for task in TASKS:
                ra, rb = results[a].get(task), results[b].get(task)
                if ra is None or rb is None or ra.auc is None or rb.auc is None:
                    continue
                if ra.auc_draws is None or rb.auc_draws is None:
                    continue
                diff = ra.auc_draws - rb.auc_draws
                if np.isnan(diff).mean() > 0.025:
                    continue
                lo, hi = np.nanpercentile(diff, [2.5, 97.5])
                out.setdefault(f"{a}-{b}", {})[task] = {
                    "mean": ra.auc - rb.auc,
                    "lo": float(lo),
                    "hi": float(hi),
                }
    return out


def headline_auc(frame: pd.DataFrame, predictions: Mapping[str, np.ndarray]) -> float | None:
    """CVR AUC on clicked rows (what the deploy gate compares); None when undefined."""
    spec = TASKS[HEADLINE]
    if HEADLINE not in predictions:
        raise ValueError(f"the model predicts no {HEADLINE!r}, which the deploy gate compares")
    clicked = m.check_labels(frame["click"].to_numpy(), name="click") == 1
    labels = frame[spec.label].to_numpy()[clicked]
    return _undefined(m.auc, labels, np.asarray(predictions[HEADLINE])[clicked])
