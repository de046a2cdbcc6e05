r"""Graph labels from raw logs: one row per impression with click, d_micro, d_macro, buy.

Raw events are linked to impressions only by user, item and time, so labels come from
attribution on the behavior graph (see `../shared/docs/hm3.md`)::

    impression --> click --> D-Micro --> D-Macro --> purchase
                       \--> O-Micro --/    \--> O-Macro --/

Rules (all windows closed intervals, all in `LabelConfig`):

- A click belongs to the latest impression of the same user and item at or before it, if that
  impression is at most `click_window_s` older. Impressions of one user and item with the same
  timestamp are one attribution target: the smallest impression_id.
- A micro, macro or purchase event belongs to the latest click of the same user and item at or
  before it, if that click is at most the event's window older (`micro_window_s`,
  `macro_window_s`, `purchase_window_s`) and the click itself belongs to an impression. Clicks
  of one user and item at the same instant are one point: attributed if any of them is.
- d_micro = a micro event on a `d_micro_components` component; d_macro = an event of
  `d_macro_events`; buy = a purchase. All three hang off a click, so they imply click = 1.

Every input row is either used (an impression becomes a label row, an event is attributed) or
written to `quarantine.parquet` with one `reason` from `QUARANTINE_REASONS`; the counts must
balance or the run fails.

Engines: the rules are SQL written once (`model.data.label_rules`). Embedded DuckDB (the
default) runs it vectorized and multi-threaded, spills to disk under a memory limit and reads
Parquet files, folders and globs natively; Apache Spark (`engine="spark"`, local mode or a
cluster, `model.data.label_engines`) runs the same text transpiled by sqlglot. The 10M-row
impression table is only scanned; the as-of joins run on events and on the impressions of
user-item pairs that have events, which is a few percent of the table.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model import storage
from model.data import label_rules as rules
from model.data import schema
from model.data.label_engines import (
    ENGINES,
    LABELS_SCHEMA,
    QUARANTINE_SCHEMA,
    LabelEngine,
    SparkTarget,
    open_engine,
)

log = logging.getLogger(__name__)

LABELS_FILE = "labels.parquet"
QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "report.json"
GRAPH_FILE = "graph.svg"

QUARANTINE_REASONS: dict[str, str] = {
    "null_field": "an id or the timestamp is null",
    "unknown_event_type": "event_type is none of the configured click, micro, macro, purchase",
    "missing_component": "a micro event without a component",
    "duplicate": "same impression_id / event_id as an earlier row (the first is kept)",
    "ts_out_of_range": "timestamp before `earliest_ts`, or (events) outside the impressions' "
    "time range extended by the windows",
    "never_shown": "event of a user-item pair that has no impression at all",
    "click_without_impression": "click with no impression of its user-item at or before it",
    "impression_outside_window": "click whose latest impression is older than click_window_s",
    "no_click": "micro/macro/purchase with no click of its user-item at or before it",
    "click_outside_window": "micro/macro/purchase whose latest click is older than its window",
    "click_unattributed": "micro/macro/purchase whose click belongs to no impression",
}

# Nodes and edges of the behavior graph as reported (Fig. 1 of the HM^3 paper).
GRAPH_NODES: tuple[str, ...] = (
    "impression",
    "click",
    "d_micro",
    "o_micro",
    "d_macro",
    "o_macro",
    "buy",
)
GRAPH_EDGES: tuple[tuple[str, str], ...] = (
    ("impression", "click"),
    ("click", "d_micro"),
    ("click", "o_micro"),
    ("d_micro", "d_macro"),
    ("d_micro", "o_macro"),
    ("o_micro", "d_macro"),
    ("o_micro", "o_macro"),
    ("d_macro", "buy"),
    ("o_macro", "buy"),
)

_WINDOW_FIELDS = ("click_window_s", "micro_window_s", "macro_window_s", "purchase_window_s")
_US = rules.US


@dataclass(frozen=True)
class LabelConfig:
    """Attribution windows and which raw events form which graph node.

    Defaults follow the HM^3 paper (D-Macro = cart or favorite; D-Micro = pictures, Q&A, chat,
    reviews, SKU) with windows typical of e-commerce attribution.

    Attributes:
        click_window_s: A click belongs to an impression at most this many seconds older.
        micro_window_s: A micro event belongs to a click at most this much older (a session).
        macro_window_s: A macro event (cart, favorite, ...) belongs to a click this recent.
        purchase_window_s: A purchase belongs to a click this recent (attribution window).
        click_event: event_type of a click.
        micro_event: event_type of a micro behavior; its `component` names the page part.
        purchase_event: event_type of a purchase.
        macro_events: Every event_type that is a macro behavior (D-Macro or O-Macro).
        d_macro_events: The macro event types that form D-Macro; the rest are O-Macro.
        d_micro_components: Micro components that form D-Micro; any other is O-Micro.
        earliest_ts: ISO 8601 time; rows stamped earlier are broken clocks (UTC if naive).
    """

    click_window_s: int = 3600
    micro_window_s: int = 1800
    macro_window_s: int = 86_400
    purchase_window_s: int = 3 * 86_400
    click_event: str = schema.EVENT_CLICK
    micro_event: str = schema.EVENT_MICRO
    purchase_event: str = schema.EVENT_PURCHASE
    macro_events: tuple[str, ...] = (schema.EVENT_CART, schema.EVENT_FAVORITE)
    d_macro_events: tuple[str, ...] = (schema.EVENT_CART, schema.EVENT_FAVORITE)
    d_micro_components: tuple[str, ...] = schema.D_MICRO_COMPONENTS
    earliest_ts: str = "2000-01-01T00:00:00+00:00"

    def __post_init__(self) -> None:
        for name in _WINDOW_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer (seconds), got {value!r}")
        for name in ("click_event", "micro_event", "purchase_event"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        for name in ("macro_events", "d_macro_events", "d_micro_components"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{name} must be a list of non-empty strings, got {value!r}")
            if len(set(value)) != len(value):
                raise ValueError(f"{name} has repeated entries: {list(value)}")
        if not self.d_micro_components:
            raise ValueError("d_micro_components must name at least one component, got []")
        if not self.d_macro_events:
            raise ValueError("d_macro_events must name at least one event type, got []")
        outside = sorted(set(self.d_macro_events) - set(self.macro_events))
        if outside:
            raise ValueError(
                f"d_macro_events {outside} are not in macro_events {list(self.macro_events)}"
            )
        singles = [self.click_event, self.micro_event, self.purchase_event]
        all_types = [*singles, *self.macro_events]
        if len(set(all_types)) != len(all_types):
            raise ValueError(
                "click_event, micro_event, purchase_event and macro_events must be distinct, "
                f"got {all_types}"
            )
        self.earliest_us  # noqa: B018 - parses earliest_ts, raising ValueError if malformed

    @property
    def earliest_us(self) -> int:
        """`earliest_ts` as microseconds since the epoch."""
        try:
            when = datetime.fromisoformat(self.earliest_ts)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"earliest_ts must be an ISO 8601 time, got {self.earliest_ts!r}"
            ) from err
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return round(when.timestamp() * _US)

    @property
    def event_types(self) -> tuple[str, ...]:
        """Every event type the builder knows."""
        return (self.click_event, self.micro_event, *self.macro_events, self.purchase_event)

    @property
    def longest_window_s(self) -> int:
        """Latest an event can come after its impression and still be attributed."""
        after_click = max(self.micro_window_s, self.macro_window_s, self.purchase_window_s)
        return self.click_window_s + after_click

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LabelConfig:
        """Build from a JSON object; lists become tuples.

        Raises:
            ValueError: An unknown key (named) or an invalid value.
        """
        if not isinstance(values, dict):
            raise ValueError(f"label config must be a JSON object, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown label config key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def from_json(cls, text: str) -> LabelConfig:
        """Parse a JSON document (an object of field overrides)."""
        try:
            values = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"label config is not valid JSON: {err}") from err
        return cls.from_dict(values)


@dataclass(frozen=True)
class LabelReport:
    """What `build_labels` wrote: graph counts and rates, quarantine and accounting.

    Attributes:
        nodes: Impressions reaching each graph node (GRAPH_NODES).
        edges: For each edge "a>b": count of impressions on both nodes and rate = count / a
            (None when node a is empty).
        quarantine: {"impressions": {reason: rows}, "events": {reason: rows}}.
        accounting: Per input table: input rows, used rows, quarantined rows, balanced.
        config: The LabelConfig used.
        files: Output file names relative to the output folder.
        seconds: Wall time of the build.
    """

    nodes: dict[str, int]
    edges: dict[str, dict[str, float | None]]
    quarantine: dict[str, dict[str, int]]
    accounting: dict[str, dict[str, Any]]
    config: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the reason descriptions."""
        return asdict(self) | {"reasons": QUARANTINE_REASONS}

    @property
    def balanced(self) -> bool:
        """Whether every input row was used or quarantined."""
        return all(entry["balanced"] for entry in self.accounting.values())


class AccountingError(RuntimeError):
    """Input rows neither used nor quarantined (or counted twice): a bug, never bad input."""


# --- input resolution ---------------------------------------------------------------------------


def _local_files(
    specs: Sequence[str], name: str, scratch: Path, download: bool = True
) -> list[str]:
    """Every input file; gs:// objects are downloaded into `scratch` unless `download` is off.

    Off for Spark on a cluster: its executors read gs:// themselves, and the driver's scratch
    folder is not theirs.
    """
    files: list[str] = []
    for spec in specs:
        for uri in storage.parquet_files(spec, what=name):
            if storage.is_gcs(uri) and download:
                target = scratch / name / f"{len(files):06d}-{Path(uri).name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(storage.read_bytes(uri))
                files.append(str(target))
            else:
                files.append(uri)
    return files


def _validate(files: list[str], contract: Any, sources: list[str], engine: str) -> int:
    """Check every file's columns against the contract; return the total row count."""
    rows = 0
    for path, source in zip(files, sources, strict=True):
        # Only the footer is read, also from gs:// (byte ranges, not the whole object).
        with storage.open_binary(path) as handle:
            try:
                meta = pq.ParquetFile(handle)
            except (pa.ArrowException, OSError) as err:
                raise schema.SchemaError(f"{source}: not a readable Parquet file ({err})") from err
            schema.validate_columns(meta.schema_arrow, contract, source=source)
            if engine == "spark":
                schema.refuse_nanoseconds(meta.schema_arrow, source)
            rows += meta.metadata.num_rows
    return rows


def _as_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, str | os.PathLike):
        return [os.fspath(spec)]
    return [os.fspath(s) for s in spec]


# --- the build ----------------------------------------------------------------------------------


def build_labels(
    impressions: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    events: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: LabelConfig | None = None,
    *,
    engine: str = "duckdb",
    threads: int | None = None,
    memory_limit: str = "4GB",
    spark: SparkTarget | None = None,
) -> LabelReport:
    """Build per-impression graph labels from raw impressions and events.

    Both engines run the same rules (`model.data.label_rules`) and write the same files with
    the same schema, row for row.

    Args:
        impressions: Parquet file(s), folder(s) or glob(s) of `schema.IMPRESSIONS`, local,
            file:// or gs:// (e.g. one file per day).
        events: The same for `schema.EVENTS`.
        out_dir: Folder (local or gs://) that receives labels.parquet, quarantine.parquet,
            report.json and graph.svg. A gs:// folder is uploaded and sealed with a manifest.
        config: Windows and node definitions (default: `LabelConfig()`).
        engine: `duckdb` (embedded, the default) or `spark` (local mode or a cluster).
        threads: DuckDB threads (default: all cores).
        memory_limit: DuckDB memory limit; larger intermediates spill to a temp folder.
        spark: Where Spark runs (default: the active session, else local[2]).

    Returns:
        The report also written to report.json.

    Raises:
        FileNotFoundError: An input matches no Parquet file.
        schema.SchemaError: A file lacks a column or has it mistyped (file, column and
            expected type named), whichever the engine: files are checked before it starts.
        ValueError: An unknown engine.
        AccountingError: Rows were lost or double-counted (a bug, never bad input).
    """
    config = config or LabelConfig()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hm3-labels-") as tmp:
        scratch = Path(tmp)
        remote_out = storage.is_gcs(out_dir)
        local_out = scratch / "out" if remote_out else Path(os.fspath(out_dir))
        local_out.mkdir(parents=True, exist_ok=True)

        imp_specs, ev_specs = _as_list(impressions), _as_list(events)
        spark = spark or SparkTarget()
        download = engine == "duckdb" or spark.local
        imp_files = _local_files(imp_specs, "impressions", scratch, download)
        ev_files = _local_files(ev_specs, "events", scratch, download)
        imp_rows = _validate(imp_files, schema.IMPRESSIONS, _sources(imp_specs, imp_files), engine)
        ev_rows = _validate(ev_files, schema.EVENTS, _sources(ev_specs, ev_files), engine)

        runner = open_engine(
            engine, scratch, threads=threads, memory_limit=memory_limit, spark=spark
        )
        try:
            report = _run_rules(runner, imp_files, ev_files, local_out, config)
        finally:
            runner.close()
        accounting = {
            "impressions": _balance(
                imp_rows, report["labels"], report["quarantine"]["impressions"]
            ),
            "events": _balance(ev_rows, report["events_used"], report["quarantine"]["events"]),
        }
        result = LabelReport(
            nodes=report["nodes"],
            edges=report["edges"],
            quarantine=report["quarantine"],
            accounting=accounting,
            config=config.to_dict(),
            files={
                "labels": LABELS_FILE,
                "quarantine": QUARANTINE_FILE,
                "report": REPORT_FILE,
                "graph": GRAPH_FILE,
            },
            seconds=round(time.perf_counter() - started, 3),
        )
        # Deferred: the presentation module imports this one.
        from model.data.labels_report import write_graph_picture

        write_graph_picture(result, local_out / GRAPH_FILE)
        storage.write_text_atomic(
            local_out / REPORT_FILE, json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        if not result.balanced:
            raise AccountingError(f"input rows not accounted for: {accounting}")
        if remote_out:
            storage.upload_dir(local_out, os.fspath(out_dir))
    log.info(
        "labels (%s): %d impressions, %d clicks, %d buys; quarantined %d impression and %d "
        "event rows; %.1f s",
        engine,
        result.nodes["impression"],
        result.nodes["click"],
        result.nodes["buy"],
        sum(result.quarantine["impressions"].values()),
        sum(result.quarantine["events"].values()),
        result.seconds,
    )
    return result


def _run_rules(
    engine: LabelEngine, imp_files: list[str], ev_files: list[str], out: Path, cfg: LabelConfig
) -> dict[str, Any]:
    """Run every rule step on `engine`; write labels.parquet and quarantine.parquet."""
    engine.define_inputs(imp_files, ev_files)
    for step in rules.impression_steps(cfg):
        engine.run(step)
    ((lo, hi, n_imp),) = engine.fetch(rules.BOUNDS_SQL)
    for step in rules.event_steps(cfg, *rules.event_bounds(cfg, lo, hi)):
        engine.run(step)
    labels = engine.write(rules.LABELS_SQL, out / LABELS_FILE, LABELS_SCHEMA, "snappy")
    engine.write(rules.QUARANTINE_SQL, out / QUARANTINE_FILE, QUARANTINE_SCHEMA, "zstd")
    quarantine: dict[str, dict[str, int]] = {"impressions": {}, "events": {}}
    for table, reason, n in engine.fetch(rules.QUARANTINE_COUNTS_SQL):
        quarantine[table][reason] = n
    nodes, edges = _graph_counts(engine, n_imp)
    ((events_used,),) = engine.fetch(rules.EVENTS_USED_SQL)
    return {
        "labels": labels,
        "nodes": nodes,
        "edges": edges,
        "quarantine": quarantine,
        "events_used": events_used,
    }


def _sources(specs: list[str], files: list[str]) -> list[str]:
    # Error messages name the file as the user gave it; downloaded copies name their spec.
    if all(not storage.is_gcs(s) for s in specs) or all(storage.is_gcs(f) for f in files):
        return files
    return [f"{','.join(specs)} ({Path(f).name})" for f in files]


def _balance(rows_in: int, used: int, quarantined: dict[str, int]) -> dict[str, Any]:
    held = sum(quarantined.values())
    return {
        "input": rows_in,
        "used": used,
        "quarantined": held,
        "balanced": rows_in == used + held,
    }


def _graph_counts(
    engine: LabelEngine, n_imp: int
) -> tuple[dict[str, int], dict[str, dict[str, float | None]]]:
    (row,) = engine.fetch(rules.GRAPH_COUNTS_SQL)
    click, dmi, omi, dma, oma, buy, dmi_dma, dmi_oma, omi_dma, omi_oma, dma_buy, oma_buy = row
    nodes = dict(zip(GRAPH_NODES, (n_imp, click, dmi, omi, dma, oma, buy), strict=True))
    edge_counts = {
        ("impression", "click"): click,
        ("click", "d_micro"): dmi,
        ("click", "o_micro"): omi,
        ("d_micro", "d_macro"): dmi_dma,
        ("d_micro", "o_macro"): dmi_oma,
        ("o_micro", "d_macro"): omi_dma,
        ("o_micro", "o_macro"): omi_oma,
        ("d_macro", "buy"): dma_buy,
        ("o_macro", "buy"): oma_buy,
    }
    edges = {
        f"{a}>{b}": {
            "count": edge_counts[(a, b)],
            # No rate (null in JSON) when the source node is empty.
            "rate": round(edge_counts[(a, b)] / nodes[a], 6) if nodes[a] else None,
        }
        for a, b in GRAPH_EDGES
    }
    return nodes, edges
