"""Presentation of a `LabelReport`: the behavior graph picture (SVG/PNG) and an HTML report.

The computation (rules, DuckDB attribution, counts) is `model.data.labels`; this module only
draws what it reports. `build_labels` writes `graph.svg` with `write_graph_picture`; the KFP
component embeds it in `report_html`.
"""

from __future__ import annotations

import os
from pathlib import Path

from model import storage
from model.data.labels import GRAPH_EDGES, QUARANTINE_REASONS, LabelReport

_LAYOUT: dict[str, tuple[float, float]] = {
    "impression": (0.0, 0.0),
    "click": (1.0, 0.0),
    "d_micro": (2.0, 0.6),
    "o_micro": (2.0, -0.6),
    "d_macro": (3.0, 0.6),
    "o_macro": (3.0, -0.6),
    "buy": (4.0, 0.0),
}
_LABEL_NAMES = {
    "impression": "Impression",
    "click": "Click",
    "d_micro": "D-Micro",
    "o_micro": "O-Micro",
    "d_macro": "D-Macro",
    "o_macro": "O-Macro",
    "buy": "Purchase",
}


def write_graph_picture(report: LabelReport, path: str | os.PathLike[str]) -> None:
    """Draw the behavior graph with node counts and conditional edge rates (like Fig. 1).

    Args:
        report: The counts and rates to draw.
        path: Where to write; the suffix picks the format, `.svg` or `.png`.

    Raises:
        ValueError: Another suffix.
    """
    import io

    fmt = Path(os.fspath(path)).suffix.lstrip(".").lower()
    if fmt not in ("svg", "png"):
        raise ValueError(f"graph picture path must end in .svg or .png, got {os.fspath(path)!r}")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax = fig.add_subplot()
    ax.set_xlim(-0.5, 4.5)
    ax.set_ylim(-1.05, 1.05)
    ax.axis("off")
    for a, b in GRAPH_EDGES:
        (xa, ya), (xb, yb) = _LAYOUT[a], _LAYOUT[b]
        ax.annotate(
            "",
            xy=(xb - 0.3, yb - 0.3 * (yb - ya)),
            xytext=(xa + 0.3, ya + 0.3 * (yb - ya)),
            arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 1.2},
        )
        rate = report.edges[f"{a}>{b}"]["rate"]
        text = "n/a" if rate is None else f"{rate:.2%}"
        # The two crossing micro->macro edges meet mid-way: label them near their source.
        t = 0.3 if ya != yb and a.endswith("micro") else 0.5
        ax.text(
            xa + t * (xb - xa),
            ya + t * (yb - ya) + 0.08,
            text,
            ha="center",
            fontsize=9,
            color="#1f4e79",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
        )
    for node, (x, y) in _LAYOUT.items():
        ax.text(
            x,
            y,
            f"{_LABEL_NAMES[node]}\n{report.nodes[node]:,}",
            ha="center",
            va="center",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.4", "fc": "#e8f0fa", "ec": "#1f4e79"},
        )
    held = {t: sum(r.values()) for t, r in report.quarantine.items()}
    ax.set_title(
        "Behavior graph: impressions per node, conditional rate per edge "
        f"(quarantined: {held.get('impressions', 0):,} impression rows, "
        f"{held.get('events', 0):,} event rows)",
        fontsize=10,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, bbox_inches="tight", dpi=110)
    storage.write_bytes_atomic(path, buffer.getvalue())


def report_html(report: LabelReport, svg: str) -> str:
    """A self-contained HTML page (graph picture, rates, quarantine, accounting) for the KFP UI."""
    import html

    def table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
        )
        header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        return f"<table><tr>{header}</tr>{cells}</table>"

    edges = [
        (
            k.replace(">", " → "),
            f"{v['count']:,}",
            "n/a" if v["rate"] is None else f"{v['rate']:.4f}",
        )
        for k, v in report.edges.items()
    ]
    held = [
        (t, r, f"{n:,}", QUARANTINE_REASONS.get(r, ""))
        for t, reasons in report.quarantine.items()
        for r, n in reasons.items()
    ]
    books = [
        (t, f"{a['input']:,}", f"{a['used']:,}", f"{a['quarantined']:,}", str(a["balanced"]))
        for t, a in report.accounting.items()
    ]
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
        f"<h3>Graph labels</h3>{svg}"
        f"<h4>Edges</h4>{table(edges, ('edge', 'impressions', 'rate'))}"
        f"<h4>Quarantine</h4>{table(held, ('table', 'reason', 'rows', 'meaning'))}"
        f"<h4>Accounting</h4>{table(books, ('table', 'input', 'used', 'quarantined', 'ok'))}"
        "</body></html>"
    )
