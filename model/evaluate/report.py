"""Presentation of an evaluation: ROC, calibration and training-curve plots, the HTML report.

Pure functions of the scored results (`model.evaluate.scoring`): plots come back as PNG bytes,
the report as a self-contained HTML string; writing them is `model.evaluate.evaluation`'s job.
Matplotlib is imported inside the plot functions (no pyplot: no global state, no GUI backend).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from model.evaluate.scoring import (
    CHAMPION,
    MIN_GAUC_USERS,
    ORACLE,
    Evaluation,
    TaskResult,
    paired_gaps,
)
from model.tasks import HEADLINE, OUTPUTS, TASKS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _model_names(results: Mapping[str, Mapping[str, TaskResult]]) -> list[str]:
    """Models first in given order, the champion next, the oracle last."""
    tail = [n for n in (CHAMPION, ORACLE) if n in results]
    return [n for n in results if n not in tail] + tail


def _columns(results: Mapping[str, Mapping[str, TaskResult]]) -> list[str]:
    """Every model output, then the truth-only tasks scored on these rows (cvr_entire)."""
    scored = {task for tasks in results.values() for task in tasks}
    return [t for t, spec in TASKS.items() if not spec.truth_only or t in scored]


# One color per model on every plot of the page (matplotlib's tab10, fixed per kind), so that a
# model is found by its color in every panel; models of other names take the next free colors.
MODEL_COLORS = {"hm3": "#d62728", "esm2": "#1f77b4", "esmm": "#2ca02c", "naive": "#ff7f0e"}
SPARE_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def model_styles(names: list[str]) -> dict[str, dict[str, Any]]:
    """Line style per model name: its fixed color; the oracle black dashed, the champion grey."""
    spare = iter(SPARE_COLORS * (1 + len(names) // len(SPARE_COLORS)))
    styles: dict[str, dict[str, Any]] = {}
    for name in names:
        if name == ORACLE:
            styles[name] = {"color": "black", "linestyle": "--", "linewidth": 1.2}
        elif name == CHAMPION:
            styles[name] = {"color": "grey", "linestyle": ":", "linewidth": 1.5}
        else:
            styles[name] = {"color": MODEL_COLORS.get(name) or next(spare), "linewidth": 1.5}
    return styles


def how_to_read() -> str:
    """The few lines at the top of the report that say what to look at first."""
    colors = ", ".join(
        f"<span style='color:{color}'><b>{name}</b></span>" for name, color in MODEL_COLORS.items()
    )
    return (
        "<div class='how'><b>How to read this page.</b><ul>"
        f"<li>Every model keeps one color on every plot: {colors}; the oracle (the true "
        "probabilities: the ceiling) is black and dashed, a deployed champion grey and dotted."
        "</li><li>The headline is <b>cvr AUC</b> on clicked impressions (higher is better; 0.5 "
        "is a coin toss). Brackets hold its 95% bootstrap interval; when the paired interval of "
        "two models' gap contains 0, this test set does not tell them apart.</li>"
        "<li>The deploy gate says whether the candidate goes live, and why.</li>"
        "<li>Calibration: on the diagonal, a predicted 2% happens 2% of the time. Training "
        "curves: validation AUC per epoch on shared axes; a curve still rising at its last "
        "epoch stopped before converging. Each model's training loss sums its own losses "
        "(hm3 four, naive one): compare their shapes, not their levels.</li></ul></div>"
    )


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def plot_roc(results: Mapping[str, Mapping[str, TaskResult]]) -> bytes:
    """One ROC panel per model output, every model (and the oracle, dashed); AUC in legends."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(4.0 * len(OUTPUTS), 4.2), layout="constrained")
    axes = fig.subplots(1, len(OUTPUTS))
    styles = model_styles(_model_names(results))
    for ax, (task, spec) in zip(axes, OUTPUTS.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="lightgrey", linewidth=1)
        for name, style in styles.items():
            r = results[name].get(task)
            if r is None or r.roc is None:
                continue
            ax.plot(r.roc.fpr, r.roc.tpr, label=f"{name} {r.auc:.4f}", **style)
        ax.set(title=spec.title, xlabel="false positive rate", ylabel="true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.legend(title="AUC", loc="lower right", fontsize=8)
    fig.suptitle("ROC curves on the evaluated rows")
    return _png(fig)


def plot_calibration(results: Mapping[str, Mapping[str, TaskResult]]) -> bytes:
    """Predicted vs observed rate per decile of predictions, a panel per output; ECE in legends."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.0 * len(OUTPUTS), 4.2), layout="constrained")
    axes = fig.subplots(1, len(OUTPUTS))
    styles = model_styles(_model_names(results))
    for ax, (task, spec) in zip(axes, OUTPUTS.items(), strict=True):
        top = 0.0
        for name, style in styles.items():
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
                **style,
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
    """`history_figure` as PNG bytes, None without any curve."""
    fig = history_figure(histories)
    return None if fig is None else _png(fig)


def history_figure(histories: Mapping[str, Any]) -> Figure | None:
    """Training curves: a panel per series (training loss, each validation AUC), all models on it.

    Each model has its own color; the epoch axis is shared, and so is the AUC axis of every
    AUC panel, so that models and tasks compare at a glance.
    """
    from matplotlib.figure import Figure  # noqa: F811 - at run time, not only for typing

    parsed = {name: history_series(h) for name, h in histories.items()}
    parsed = {name: s for name, s in parsed.items() if s}
    every_key = list(dict.fromkeys(k for s in parsed.values() for k in s))
    losses = [k for k in every_key if "loss" in k]
    # The headline's validation AUC first, then the others in the order the trainer logs them.
    aucs = sorted((k for k in every_key if "auc" in k), key=lambda k: not k.endswith(HEADLINE))
    keys = losses + aucs
    if not keys:
        return None
    # One AUC range for every AUC panel (set, not `sharey`, so no panel clips another's data).
    auc_values = [v for s in parsed.values() for k in aucs for v in s.get(k, []) if v == v]
    auc_lo, auc_hi = (min(auc_values), max(auc_values)) if auc_values else (0.5, 1.0)
    pad = max(0.01, 0.05 * (auc_hi - auc_lo))
    last_epoch = max(len(v) for s in parsed.values() for v in s.values())
    columns = min(3, len(keys))
    rows = -(-len(keys) // columns)
    fig = Figure(figsize=(4.2 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    styles = model_styles(list(parsed))
    for ax, key in zip(axes, keys, strict=False):
        for name, series in parsed.items():
            if key in series:
                epochs = np.arange(1, len(series[key]) + 1)
                ax.plot(epochs, series[key], marker="o", markersize=3, label=name, **styles[name])
        is_auc = key in aucs
        ax.set(title=f"validation {key}" if is_auc else key, ylabel="AUC" if is_auc else "loss")
        ax.set(xlabel="epoch", xlim=(0.5, last_epoch + 0.5), xticks=range(1, last_epoch + 1))
        if is_auc:
            ax.set_ylim(auc_lo - pad, auc_hi + pad)
        ax.legend(fontsize=8)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    fig.suptitle("Training curves per epoch, every model on the same axes")
    return fig


@dataclass(frozen=True)
class LabelReport:
    """The label builder's report.json and its graph picture, shown in the HTML report."""

    report: dict[str, Any]
    picture: str | None  # an <img> or inline <svg> element


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_html(
    evaluation: Evaluation, plots: Mapping[str, bytes], labels: LabelReport | None = None
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
        "code{background:#f6f6f6;padding:1px 3px}"
        ".how{background:#f5f8fc;border:1px solid #d5e0ee;padding:0.2em 1em;max-width:60em}"
        "</style></head><body>",
        "<h1>HM<sup>3</sup> offline evaluation</h1>",
        how_to_read(),
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
        "tasks on all impressions. In brackets: the 95% bootstrap interval "
        f"({evaluation.config.bootstrap} resamples of the evaluated rows). <b>Bold</b>: the best "
        "model, only where its lead over the runner-up is significant (paired interval of the "
        "gap excludes 0; the oracle excluded). The oracle scores the true probabilities on the "
        "same labels; no model beats it in expectation.</p>"
    )
    if any("cvr_entire" in tasks for tasks in results.values()):
        parts.append(
            "<p><b>cvr_entire</b>: the cvr output on all impressions against "
            "<code>buy_if_clicked</code>, the purchase the simulator drew from p(buy | click) "
            "for every impression, clicked or not: the sample-selection-bias test (a CVR "
            "trained on clicked rows only has never seen most of these rows).</p>"
        )
    parts.append(_table(results, names, "auc"))
    parts.append(
        "<h3>Paired gaps</h3><p>Every pair of models, a minus b, on the same bootstrap "
        "resamples: an interval that excludes 0 is a difference beyond the test rows' sampling "
        "noise.</p>"
    )
    parts.append(_gaps_table(results))
    for key, title in (
        (
            "gauc",
            f"GAUC per user (weighted by {evaluation.config.gauc_weight}; n/a below "
            f"{MIN_GAUC_USERS} users with both classes)",
        ),
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


def _significant_best(
    results: Mapping[str, Mapping[str, TaskResult]],
    names: list[str],
    gaps: Mapping[str, Mapping[str, Mapping[str, float]]],
    task: str,
) -> str | None:
    """The model whose AUC lead over the runner-up has a paired interval above 0, if any."""
    ranked = sorted(
        (results[n][task].auc, n)
        for n in names
        if n != ORACLE and task in results[n] and results[n][task].auc is not None
    )
    if len(ranked) < 2:
        return None
    (_, runner_up), (_, best) = ranked[-2], ranked[-1]
    forward = gaps.get(f"{best}-{runner_up}", {}).get(task)
    backward = gaps.get(f"{runner_up}-{best}", {}).get(task)
    if forward is not None and forward["lo"] > 0:
        return best
    if backward is not None and backward["hi"] < 0:
        return best
    return None


def _cell(r: TaskResult | None, key: str) -> str:
    if r is None:
        return "-"
    if key == "auc" and r.auc is not None and r.auc_lo is not None:
        return f"{r.auc:.4f} <small>[{r.auc_lo:.4f}, {r.auc_hi:.4f}]</small>"
    if key == "gauc" and r.gauc_note is not None:
        return f"<span title='{html.escape(r.gauc_note)}'>{html.escape(r.gauc_note)}</span>"
    return _fmt(getattr(r, key))


def _table(results: Mapping[str, Mapping[str, TaskResult]], names: list[str], key: str) -> str:
    """One metric for every model and task; on AUC, the significantly best model in bold."""
    best: dict[str, str | None] = {}
    if key == "auc":
        gaps = paired_gaps(results)
        best = {task: _significant_best(results, names, gaps, task) for task in TASKS}
    columns = _columns(results)
    rows = ["<table><tr><th>model</th>", *(f"<th>{t}</th>" for t in columns), "</tr>"]
    for name in names:
        rows.append(f"<tr><td>{html.escape(name)}</td>")
        for task in columns:
            r = results[name].get(task)
            cls = " class='best'" if best.get(task) == name else ""
            rows.append(f"<td{cls}>{_cell(r, key)}</td>")
        rows.append("</tr>")
    rows.append("</table>")
    return "".join(rows)


def _gaps_table(results: Mapping[str, Mapping[str, TaskResult]]) -> str:
    """Paired AUC gap of every pair of models on the headline task, with its 95% interval."""
    gaps = paired_gaps(results)
    rows = [
        f"<table><tr><th>gap</th><th>{HEADLINE} AUC gap</th><th>95% interval</th>"
        "<th>significant</th></tr>"
    ]
    for pair, tasks in gaps.items():
        gap = tasks.get(HEADLINE)
        if gap is None:
            continue
        verdict = "yes" if gap["lo"] > 0 or gap["hi"] < 0 else "no"
        rows.append(
            f"<tr><td>{html.escape(pair)}</td><td>{gap['mean']:+.4f}</td>"
            f"<td>[{gap['lo']:+.4f}, {gap['hi']:+.4f}]</td><td>{verdict}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)
