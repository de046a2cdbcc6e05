"""Offline evaluation of trained models on held-out data: metrics.json, plots, an HTML report.

Every model (HM^3 and each baseline, optionally the deployed champion) is scored on the same rows:
by default the "test" part of `model.data.split.split_by_time` of the training table, with the
split the models were trained with. The tasks and the rows each is measured on are the table of
`model.tasks`.

This module is the I/O and the orchestration: it reads the evaluated rows, the model artifacts
and their training histories, runs the deploy gate, and writes metrics.json, details.json,
gate.json, plots/*.png and report.html. The metrics are computed by `model.evaluate.scoring`, the
plots and the report are drawn by `model.evaluate.report`.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from model import storage
from model.data import schema
from model.data.split import DEFAULT_SPLIT, split_by_time
from model.evaluate.gate import GateConfig, run_gate
from model.evaluate.registry import RegistryRecord
from model.evaluate.report import (
    LabelReport,
    plot_calibration,
    plot_histories,
    plot_roc,
    render_html,
)
from model.evaluate.scoring import (
    CHAMPION,
    ORACLE,
    TRUTH_COLUMNS,
    TRUTH_LABELS,
    DataInfo,
    EvalConfig,
    Evaluation,
    ModelInfo,
    evaluate_predictions,
    headline_auc,
)
from model.tasks import OUTPUTS

if TYPE_CHECKING:
    from model.artifact import TrainedModel

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
DETAILS_FILE = "details.json"
REPORT_FILE = "report.html"
GATE_FILE = "gate.json"
PLOTS_DIR = "plots"
HISTORY_FILE = "history.json"


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
        truth_path: Optional `truth.parquet` of a simulated world, joined on impression_id:
            the true probabilities and the truth-only labels it has (`buy_if_clicked`).
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
            # Truth written before a truth-only label existed lacks it: its task is not scored.
            names = pq.read_schema(local).names
            columns = [*TRUTH_COLUMNS, *(c for c in TRUTH_LABELS if c in names)]
            truth = pq.read_table(local, columns=["impression_id", *columns]).to_pandas()
        frame = frame.drop(columns=[c for c in columns if c in frame.columns])
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
    return {task: np.asarray(v, dtype=np.float64) for task, v in out.items() if task in OUTPUTS}


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


def _read_label_report(labels_dir: str) -> LabelReport | None:
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
    return LabelReport(report=report, picture=picture)
