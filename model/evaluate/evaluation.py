"""Offline evaluation of trained models on held-out data: metrics.json, plots, an HTML report.

Every model (HM^3 and each baseline, optionally the deployed champion) is scored on the same rows:
by default the "test" part of `model.data.dataset.split_by_time` of the training table. Tasks and
the
rows they are measured on:

| task     | label   | rows                  | oracle score (truth columns)           |
|----------|---------|-----------------------|----------------------------------------|
| ctr      | click   | all impressions       | p_click                                |
| cvr      | buy     | clicked impressions   | p_buy_given_click                      |
| ctcvr    | buy     | all impressions       | p_click * p_buy_given_click            |
| ct_micro | d_micro | all impressions       | p_click * p_d_micro_given_click        |
| ct_macro | d_macro | all impressions       | p_click * p_d_macro_given_click        |

CVR AUC on clicked impressions is the headline: it is what the deploy gate compares. The oracle
rows score the simulator's true probabilities on the same logged labels; no model beats them in
expectation, so the gap to the oracle is the honest measure of model quality.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from model import storage
from model.data import schema
from model.data.split import DEFAULT_SPLIT, split_by_time
from model.evaluate import metrics as m
from model.evaluate.gate import GateConfig, GateDecision, RegistryRecord, run_gate
from model.tasks import HEADLINE, TASKS

if TYPE_CHECKING:
    from model.artifact import TrainedModel

log = logging.getLogger(__name__)

ORACLE = "oracle"
CHAMPION = "champion"
METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.html"
GATE_FILE = "gate.json"
PLOTS_DIR = "plots"
HISTORY_FILE = "history.json"
SPLITS = ("train", "validation", "test", "all")
GAUC_WEIGHTS = ("impressions", "clicks")
TRUTH_COLUMNS = (
    "p_click",
    "p_d_micro_given_click",
    "p_d_macro_given_click",
    "p_buy_given_click",
)


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
    """

    split: str = "test"
    calibration_bins: int = 10
    gauc_weight: str = "impressions"
    roc_points: int = 200
    threshold: float | None = None

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

    def summary(self) -> dict[str, Any]:
        """The metrics.json entry: auc, gauc, logloss, ece, then counts."""
        return {
            "auc": self.auc,
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

    def metrics_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{model_name: {task: {auc, gauc, logloss, ece, ...}}, "oracle": {...}}."""
        return {
            name: {task: r.summary() for task, r in tasks.items()}
            for name, tasks in self.results.items()
        }


# --- scoring ------------------------------------------------------------------------------------


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
        frame: Evaluated rows: `user_id`, the label columns and optionally the truth columns.
        predictions: Model name -> task -> probabilities for every row of `frame`. A model
            scores only the tasks it predicts (the naive baseline predicts cvr only).
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
    labels = {c: m.check_labels(frame[c].to_numpy(), name=c) for c in schema.LABEL_COLUMNS}
    clicked = labels["click"] == 1
    users = frame["user_id"].to_numpy()
    results: dict[str, dict[str, TaskResult]] = {}
    for name, tasks in all_predictions.items():
        results[name] = {}
        for task, spec in TASKS.items():
            if task not in tasks:
                continue
            probs = np.asarray(tasks[task], dtype=np.float64)
            if probs.shape != (len(frame),):
                raise ValueError(
                    f"{name}: {task} predictions have shape {probs.shape}, expected ({len(frame)},)"
                )
            rows = clicked if spec.clicked_only else np.ones(len(frame), dtype=bool)
            weights = None if config.gauc_weight == "impressions" else labels["click"][rows]
            try:
                results[name][task] = score_task(
                    labels[spec.label][rows], probs[rows], users[rows], weights, config
                )
            except ValueError as err:
                raise ValueError(f"{name}: task {task}: {err}") from err
    return results


def headline_auc(frame: pd.DataFrame, predictions: Mapping[str, np.ndarray]) -> float | None:
    """CVR AUC on clicked rows (what the deploy gate compares); None when undefined."""
    spec = TASKS[HEADLINE]
    if HEADLINE not in predictions:
        raise ValueError(f"the model predicts no {HEADLINE!r}, which the deploy gate compares")
    clicked = m.check_labels(frame["click"].to_numpy(), name="click") == 1
    labels = frame[spec.label].to_numpy()[clicked]
    return _undefined(m.auc, labels, np.asarray(predictions[HEADLINE])[clicked])


# --- data and models ----------------------------------------------------------------------------


def training_split(models: Mapping[str, TrainedModel]) -> tuple[float, float, float]:
    """The time split every model was trained with (from its config.json), the same for all.

    Raises:
        ValueError: When two models were trained on different splits (both named): their test
            rows differ, so no common held-out set exists.
    """
    first, split = "", DEFAULT_SPLIT
    for name, model in models.items():
        trained_on = model.config.get("train_config", {}).get("split", DEFAULT_SPLIT)
        other = (float(trained_on[0]), float(trained_on[1]), float(trained_on[2]))
        if not first:
            first, split = name, other
        elif other != split:
            raise ValueError(
                f"models were trained on different time splits: {first!r} on {list(split)}, "
                f"{name!r} on {list(other)}; evaluate them separately or retrain on one split"
            )
    return split


def load_eval_frame(
    data_path: str,
    config: EvalConfig,
    truth_path: str | None = None,
    fractions: Sequence[float] = DEFAULT_SPLIT,
) -> tuple[pd.DataFrame, DataInfo]:
    """Read the training table (labels + features), take the evaluated split, join truth.

    Args:
        data_path: Parquet file or folder of the training table (local, file:// or gs://).
        config: Chooses the split.
        truth_path: Optional `truth.parquet` of a simulated world, joined on impression_id.
        fractions: Train / validation / test shares the models were trained with
            (`training_split`).

    Raises:
        ValueError: When truth does not cover every evaluated impression (named, with a count).
    """
    table = storage.read_parquet(data_path)
    schema.validate_columns(
        table.schema, schema.IMPRESSIONS, str(data_path), ["impression_id", "user_id", "ts"]
    )
    if config.split != "all":
        table = split_by_time(table, fractions)[config.split]
    frame = table.to_pandas()
    if truth_path:
        with storage.local_file(truth_path) as local:
            truth = pq.read_table(local, columns=["impression_id", *TRUTH_COLUMNS]).to_pandas()
        frame = frame.drop(columns=[c for c in TRUTH_COLUMNS if c in frame.columns])
        frame = frame.merge(truth, on="impression_id", how="left", validate="many_to_one")
        lacking = frame["p_click"].isna()
        if lacking.any():
            example = frame.loc[lacking, "impression_id"].iloc[0]
            raise ValueError(
                f"{truth_path}: no truth for {int(lacking.sum())} of {len(frame)} evaluated "
                f"impressions (e.g. impression_id {example!r})"
            )
    ts = frame["ts"]
    info = DataInfo(
        path=str(data_path),
        split=config.split,
        rows=len(frame),
        clicks=int(frame["click"].sum()) if "click" in frame else 0,
        buys=int(frame["buy"].sum()) if "buy" in frame else 0,
        ts_min=str(ts.min()) if len(frame) else "",
        ts_max=str(ts.max()) if len(frame) else "",
        truth=str(truth_path) if truth_path else None,
    )
    return frame, info


def parse_model_specs(specs: Sequence[str]) -> list[tuple[str | None, str]]:
    """Parse `--model` values: "DIR" or "NAME=DIR" -> (name or None, location).

    A value is "NAME=DIR" when the part before the first "=" is a plain name (letters, digits,
    "_", "-", "."), so paths and URIs containing "=" elsewhere stay intact.

    Raises:
        ValueError: On an empty value or name.
    """
    parsed: list[tuple[str | None, str]] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name and all(ch.isalnum() or ch in "_-." for ch in name):
            if not rest:
                raise ValueError(f"--model {spec!r}: empty location after {name}=")
            parsed.append((name, rest))
        elif not spec:
            raise ValueError("--model: empty value")
        else:
            parsed.append((None, spec))
    return parsed


def _predict(model: Any, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = model.predict(frame)
    return {task: np.asarray(v, dtype=np.float64) for task, v in out.items() if task in TASKS}


def _read_history(path: str) -> Any | None:
    location = storage.join(path, HISTORY_FILE)
    try:
        return json.loads(storage.read_text(location))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        log.warning("%s: unreadable training history (%s); left out of the report", location, err)
        return None


@dataclass(frozen=True)
class GateSpec:
    """Run the deploy gate for `candidate` against the champion recorded in `deploy_dir`.

    Attributes:
        deploy_dir: Deployment folder holding `registry.json` (local or gs://).
        candidate: Name or location (as passed to `evaluate_models`) of the candidate model.
        config: The gate's thresholds.
    """

    deploy_dir: str
    candidate: str
    config: GateConfig = field(default_factory=GateConfig)


def evaluate_models(
    models: Sequence[str] | Mapping[str, str],
    data_path: str,
    out_dir: str | Path,
    config: EvalConfig | None = None,
    truth_path: str | None = None,
    labels_dir: str | None = None,
    command: str = "",
    gate: GateSpec | None = None,
) -> Evaluation:
    """Evaluate model artifacts on the same rows; write metrics.json, details.json, the report.

    Args:
        models: Artifact locations ("DIR" or "NAME=DIR"), or a name -> location mapping.
            Unnamed models are named by their kind (hm3, esm2, esmm, naive).
        data_path: The training table (labels joined with features), Parquet.
        out_dir: Local output folder: metrics.json, details.json, report.html, plots/, and
            gate.json when `gate` is given.
        config: Evaluation settings (split, bins, GAUC weighting, threshold).
        truth_path: Optional truth.parquet for the oracle rows.
        labels_dir: Optional label-builder output folder (report.json, graph.svg/.png) whose
            graph and edge rates go into the report.
        command: The command line that produced this, recorded in the report.
        gate: When given, decide whether to deploy the named candidate; the champion from the
            deployment registry is evaluated on the same rows and reported as "champion".

    Raises:
        ValueError: On duplicate model names, an unknown candidate, or bad data.
    """
    from model.artifact import load_model

    config = config or EvalConfig()
    specs = list(models.items()) if isinstance(models, Mapping) else parse_model_specs(models)
    if not specs:
        raise ValueError("no models to evaluate")
    loaded: dict[str, tuple[str, TrainedModel]] = {}
    for name, location in specs:
        model = load_model(location)
        name = name or model.kind
        if name in loaded or name in (ORACLE, CHAMPION):
            raise ValueError(
                f"model name {name!r} is used twice or reserved; name models as NAME=DIR"
            )
        loaded[name] = (location, model)
    fractions = training_split({name: model for name, (_, model) in loaded.items()})
    frame, data_info = load_eval_frame(data_path, config, truth_path, fractions)
    log.info("evaluating %d model(s) on %d rows of %s", len(specs), len(frame), data_path)
    predictions: dict[str, dict[str, np.ndarray]] = {}
    infos: dict[str, ModelInfo] = {}
    histories: dict[str, Any] = {}
    for name, (location, model) in loaded.items():
        predictions[name] = _predict(model, frame)
        infos[name] = ModelInfo(name, model.kind, model.version, str(location))
        history = _read_history(str(location))
        if history is not None:
            histories[name] = history
    decision = None
    candidate = None
    if gate is not None:
        by_location = {info.path: name for name, info in infos.items()}
        candidate = gate.candidate if gate.candidate in infos else by_location.get(gate.candidate)
        if candidate is None:
            raise ValueError(
                f"gate candidate {gate.candidate!r} is neither the name nor the location of an "
                f"evaluated model {sorted(infos)}"
            )

        def score_champion(record: RegistryRecord) -> float | None:
            champion = load_model(record.model_uri)
            predictions[CHAMPION] = _predict(champion, frame)
            infos[CHAMPION] = ModelInfo(CHAMPION, champion.kind, champion.version, record.model_uri)
            return headline_auc(frame, predictions[CHAMPION])

        decision = run_gate(
            headline_auc(frame, predictions[candidate]),
            gate.deploy_dir,
            gate.config,
            score_champion,
        )
        log.info("deploy gate: %s (%s)", decision.verdict, "; ".join(decision.reasons))
    results = evaluate_predictions(frame, predictions, config)
    evaluation = Evaluation(
        results=results,
        models=infos,
        data=data_info,
        config=config,
        command=command,
        gate=decision,
        candidate=candidate,
    )
    write_outputs(evaluation, out_dir, histories=histories, labels_dir=labels_dir)
    return evaluation


# --- outputs ------------------------------------------------------------------------------------


def write_outputs(
    evaluation: Evaluation,
    out_dir: str | Path,
    histories: Mapping[str, Any] | None = None,
    labels_dir: str | None = None,
) -> dict[str, str]:
    """Write metrics.json, details.json, plots/*.png, report.html (and gate.json) to `out_dir`.

    Returns:
        Output kind -> file path; also stored in `evaluation.files`.
    """
    out = Path(out_dir)
    (out / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    files = {"metrics": str(out / METRICS_FILE), "details": str(out / DETAILS_FILE)}
    storage.write_text_atomic(files["metrics"], _json(evaluation.metrics_json()))
    details = {
        "data": evaluation.data.__dict__,
        "models": {k: v.__dict__ for k, v in evaluation.models.items()},
        "config": evaluation.config.__dict__,
        "command": evaluation.command,
        "results": {
            name: {task: r.details() for task, r in tasks.items()}
            for name, tasks in evaluation.results.items()
        },
        "gate": evaluation.gate.to_dict() if evaluation.gate else None,
    }
    storage.write_text_atomic(files["details"], _json(details))
    if evaluation.gate is not None:
        files["gate"] = str(out / GATE_FILE)
        storage.write_text_atomic(files["gate"], _json(evaluation.gate.to_dict()))
    plots = {
        "roc": plot_roc(evaluation.results),
        "calibration": plot_calibration(evaluation.results),
    }
    history_png = plot_histories(histories or {})
    if history_png is not None:
        plots["training"] = history_png
    for name, png in plots.items():
        files[f"plot_{name}"] = str(out / PLOTS_DIR / f"{name}.png")
        storage.write_bytes_atomic(files[f"plot_{name}"], png)
    labels = _read_label_report(labels_dir) if labels_dir else None
    files["report"] = str(out / REPORT_FILE)
    storage.write_text_atomic(files["report"], render_html(evaluation, plots, labels))
    evaluation.files = files
    return files


def _json(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None  # JSON has no NaN/inf
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), indent=2) + "\n"


def _model_names(results: Mapping[str, Mapping[str, TaskResult]]) -> list[str]:
    """Models first in given order, the champion next, the oracle last."""
    tail = [n for n in (CHAMPION, ORACLE) if n in results]
    return [n for n in results if n not in tail] + tail


def _style(name: str) -> dict[str, Any]:
    if name == ORACLE:
        return {"color": "black", "linestyle": "--", "linewidth": 1.2}
    if name == CHAMPION:
        return {"color": "grey", "linestyle": ":", "linewidth": 1.5}
    return {"linewidth": 1.5}


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_roc(results: Mapping[str, Mapping[str, TaskResult]]) -> bytes:
    """One ROC panel per task, every model (and the oracle, dashed) overlaid; AUC in legends."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(4.0 * len(TASKS), 4.2), layout="constrained")
    axes = fig.subplots(1, len(TASKS))
    for ax, (task, spec) in zip(axes, TASKS.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="lightgrey", linewidth=1)
        for name in _model_names(results):
            r = results[name].get(task)
            if r is None or r.roc is None:
                continue
            ax.plot(r.roc.fpr, r.roc.tpr, label=f"{name} {r.auc:.4f}", **_style(name))
        ax.set(title=spec.title, xlabel="false positive rate", ylabel="true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.legend(title="AUC", loc="lower right", fontsize=8)
    fig.suptitle("ROC curves on the evaluated rows")
    return _png(fig)


def plot_calibration(results: Mapping[str, Mapping[str, TaskResult]]) -> bytes:
    """Predicted vs observed rate per decile of predictions, one panel per task; ECE in legends."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0 * len(TASKS), 4.2), layout="constrained")
    axes = fig.subplots(1, len(TASKS))
    for ax, (task, spec) in zip(axes, TASKS.items(), strict=True):
        top = 0.0
        for name in _model_names(results):
            r = results[name].get(task)
            if r is None:
                continue
            cal = r.calibration
            ax.plot(
                cal.mean_predicted,
                cal.observed_rate,
                marker="o",
                markersize=3,
                label=f"{name} {r.ece:.4f}",
                **_style(name),
            )
            top = max(top, float(cal.mean_predicted.max()), float(cal.observed_rate.max()))
        top = top * 1.05 or 1.0
        ax.plot([0, top], [0, top], color="lightgrey", linewidth=1)
        ax.set(title=spec.title, xlabel="mean predicted rate", ylabel="observed rate")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.legend(title="ECE", loc="upper left", fontsize=8)
    fig.suptitle("Calibration: deciles of the prediction (on the diagonal = calibrated)")
    return _png(fig)


def history_series(history: Any) -> dict[str, list[float]]:
    """Numeric per-epoch series of a trainer's history.json, flattened to "a.b" names.

    Accepts a list of per-epoch objects, an object with such a list under "epochs", or an
    object of per-epoch lists. Non-numeric values are ignored.
    """
    if isinstance(history, dict) and isinstance(history.get("epochs"), list):
        history = history["epochs"]
    series: dict[str, list[float]] = {}

    def add(prefix: str, value: Any, index: int) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner, index)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            values = series.setdefault(prefix, [])
            values.extend([math.nan] * (index - len(values)))
            values.append(float(value))

    if isinstance(history, list):
        for i, epoch in enumerate(history):
            add("", epoch, i)
    elif isinstance(history, dict):
        for key, values in history.items():
            if isinstance(values, list):
                for i, value in enumerate(values):
                    add(str(key), value, i)
    series.pop("epoch", None)
    return series


def plot_histories(histories: Mapping[str, Any]) -> bytes | None:
    """Training curves per model: losses (left) and validation AUCs (right) per epoch."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    parsed = {name: history_series(h) for name, h in histories.items()}
    parsed = {name: s for name, s in parsed.items() if s}
    if not parsed:
        return None
    fig = Figure(figsize=(11, 3.6 * len(parsed)), layout="constrained")
    axes = fig.subplots(len(parsed), 2, squeeze=False)
    for (loss_ax, auc_ax), (name, series) in zip(axes, parsed.items(), strict=True):
        for key, values in series.items():
            epochs = np.arange(1, len(values) + 1)
            if "loss" in key:
                loss_ax.plot(epochs, values, marker="o", markersize=3, label=key)
            elif "auc" in key:
                auc_ax.plot(epochs, values, marker="o", markersize=3, label=key)
        loss_ax.set(title=f"{name}: training loss", xlabel="epoch", ylabel="loss")
        auc_ax.set(title=f"{name}: validation AUC", xlabel="epoch", ylabel="AUC")
        for ax in (loss_ax, auc_ax):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    return _png(fig)


@dataclass(frozen=True)
class _LabelReport:
    report: dict[str, Any]
    picture: str | None  # an <img> or inline <svg> element


def _read_label_report(labels_dir: str) -> _LabelReport | None:
    try:
        report = json.loads(storage.read_text(storage.join(labels_dir, "report.json")))
    except FileNotFoundError:
        log.warning("%s has no report.json; the label graph is left out", labels_dir)
        return None
    except json.JSONDecodeError as err:
        log.warning("%s/report.json is unreadable (%s); left out", labels_dir, err)
        return None
    picture = None
    for name, mime in (("graph.svg", "image/svg+xml"), ("graph.png", "image/png")):
        location = storage.join(labels_dir, name)
        if storage.exists(location):
            data = base64.b64encode(storage.read_bytes(location)).decode("ascii")
            picture = f'<img alt="label graph" src="data:{mime};base64,{data}">'
            break
    return _LabelReport(report=report, picture=picture)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_html(
    evaluation: Evaluation, plots: Mapping[str, bytes], labels: _LabelReport | None = None
) -> str:
    """A self-contained HTML report (images inlined), readable in the KFP UI or a browser."""
    e = html.escape
    results = evaluation.results
    names = _model_names(results)
    d = evaluation.data
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>HM3 evaluation</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
        "img{max-width:100%}.best{font-weight:bold}.deploy{color:#070}.hold{color:#a00}"
        "code{background:#f6f6f6;padding:1px 3px}</style></head><body>",
        "<h1>HM<sup>3</sup> offline evaluation</h1>",
        "<h2>Provenance</h2><ul>",
        f"<li>Data: <code>{e(d.path)}</code>, split <b>{e(d.split)}</b>: {d.rows:,} impressions, "
        f"{d.clicks:,} clicks, {d.buys:,} purchases, from {e(d.ts_min)} to {e(d.ts_max)}</li>",
        f"<li>Truth (oracle rows): <code>{e(d.truth)}</code></li>" if d.truth else "",
        f"<li>Command: <code>{e(evaluation.command or 'n/a')}</code></li>",
        f"<li>Generated: {datetime.now(UTC).isoformat(timespec='seconds')}</li></ul>",
        "<h3>Models</h3><table><tr><th>name</th><th>kind</th><th>version</th>"
        "<th>artifact</th></tr>",
    ]
    for info in evaluation.models.values():
        parts.append(
            f"<tr><td>{e(info.name)}</td><td>{e(info.kind)}</td><td>{e(info.version)}</td>"
            f"<td>{e(info.path)}</td></tr>"
        )
    parts.append("</table>")
    if evaluation.gate is not None:
        g = evaluation.gate
        parts.append(
            f"<h2>Deploy gate: <span class='{g.verdict}'>{g.verdict.upper()}</span> "
            f"(candidate {e(evaluation.candidate or '')})</h2><ul>"
        )
        parts.extend(f"<li>{e(reason)}</li>" for reason in g.reasons)
        parts.append("</ul>")
    parts.append(
        "<h2>AUC by task</h2><p>CVR is measured on clicked impressions (the headline), the other "
        "tasks on all impressions. <b>Bold</b>: best model (the oracle excluded). The oracle "
        "scores the true probabilities on the same labels; no model beats it in expectation.</p>"
    )
    parts.append(_table(results, names, "auc"))
    for key, title in (
        ("gauc", f"GAUC per user (weighted by {evaluation.config.gauc_weight})"),
        ("logloss", "Log loss (lower is better)"),
        ("ece", f"Expected calibration error, {evaluation.config.calibration_bins} bins"),
    ):
        parts.append(f"<h3>{e(title)}</h3>")
        parts.append(_table(results, names, key))
    parts.append(
        "<h3>Rows and skipped users</h3><p>GAUC leaves out users whose impressions all have the "
        "same label; the confusion matrix [[TN, FP], [FN, TP]] uses the stated threshold "
        "(default: the task's observed positive rate).</p><table><tr><th>model</th><th>task</th>"
        "<th>rows</th><th>positives</th><th>GAUC users</th><th>skipped users</th>"
        "<th>threshold</th><th>confusion</th></tr>"
    )
    for name in names:
        for task, r in results[name].items():
            parts.append(
                f"<tr><td>{e(name)}</td><td>{task}</td><td>{r.rows:,}</td><td>{r.positives:,}"
                f"</td><td>{r.gauc_users:,}</td><td>{r.gauc_skipped_users:,}</td>"
                f"<td>{r.threshold:.5f}</td><td>{r.confusion}</td></tr>"
            )
    parts.append("</table>")
    titles = {
        "roc": "ROC curves",
        "calibration": "Calibration",
        "training": "Training curves (from each model's history.json)",
    }
    for key, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h2>{e(titles.get(key, key))}</h2><img alt='{e(key)}' "
            f"src='data:image/png;base64,{data}'>"
        )
    if labels is not None:
        parts.append("<h2>Behavior graph of the labels (label builder)</h2>")
        if labels.picture:
            parts.append(labels.picture)
        edges = labels.report.get("edges")
        if isinstance(edges, dict) and edges:
            parts.append("<table><tr><th>edge</th><th>count</th><th>rate</th></tr>")
            for edge, value in edges.items():
                count = value.get("count") if isinstance(value, dict) else None
                rate = value.get("rate") if isinstance(value, dict) else value
                parts.append(
                    f"<tr><td>{e(str(edge))}</td><td>{e(str(count))}</td>"
                    f"<td>{_fmt(rate) if isinstance(rate, int | float) else e(str(rate))}</td></tr>"
                )
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def _table(results: Mapping[str, Mapping[str, TaskResult]], names: list[str], key: str) -> str:
    lower_is_better = key in ("logloss", "ece")
    best: dict[str, float] = {}
    for task in TASKS:
        values = [
            getattr(results[n][task], key)
            for n in names
            if n != ORACLE and task in results[n] and getattr(results[n][task], key) is not None
        ]
        if values:
            best[task] = min(values) if lower_is_better else max(values)
    rows = ["<table><tr><th>model</th>", *(f"<th>{t}</th>" for t in TASKS), "</tr>"]
    for name in names:
        rows.append(f"<tr><td>{html.escape(name)}</td>")
        for task in TASKS:
            r = results[name].get(task)
            value = getattr(r, key) if r is not None else None
            cls = (
                " class='best'"
                if value is not None and name != ORACLE and value == best.get(task)
                else ""
            )
            rows.append(f"<td{cls}>{_fmt(value) if r is not None else '-'}</td>")
        rows.append("</tr>")
    rows.append("</table>")
    return "".join(rows)
