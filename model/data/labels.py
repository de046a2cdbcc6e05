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
  `macro_window_s`, `purchase_window_s`) and the click itself belongs to an impression.
- d_micro = a micro event on a `d_micro_components` component; d_macro = an event of
  `d_macro_events`; buy = a purchase. All three hang off a click, so they imply click = 1.

Every input row is either used (an impression becomes a label row, an event is attributed) or
written to `quarantine.parquet` with one `reason` from `QUARANTINE_REASONS`; the counts must
balance or the run fails.

Engine: DuckDB. Its ASOF JOIN is exactly "latest row of the same key at or before t", runs
vectorized and multi-threaded, spills to disk under a memory limit and reads Parquet files,
folders and globs natively. The 10M-row impression table is only scanned (never sorted or
materialized); the as-of joins run on events and on the impressions of user-item pairs that
have events, which is a few percent of the table.
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
from model.data import schema

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
_US = 1_000_000


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


def _local_files(specs: Sequence[str], name: str, scratch: Path) -> list[str]:
    """Local paths for every input file; gs:// objects are downloaded into `scratch`."""
    files: list[str] = []
    for spec in specs:
        for uri in storage.parquet_files(spec, what=name):
            if storage.is_gcs(uri):
                target = scratch / name / f"{len(files):06d}-{Path(uri).name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(storage.read_bytes(uri))
                files.append(str(target))
            else:
                files.append(uri)
    return files


def _validate(files: list[str], contract: Any, sources: list[str]) -> int:
    """Check every file's columns against the contract; return the total row count."""
    rows = 0
    for path, source in zip(files, sources, strict=True):
        try:
            meta = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise schema.SchemaError(f"{source}: not a readable Parquet file ({err})") from err
        schema.validate_columns(meta.schema_arrow, contract, source=source)
        rows += meta.metadata.num_rows
    return rows


def _as_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, str | os.PathLike):
        return [os.fspath(spec)]
    return [os.fspath(s) for s in spec]


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


# --- the build ----------------------------------------------------------------------------------


def build_labels(
    impressions: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    events: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    config: LabelConfig | None = None,
    *,
    threads: int | None = None,
    memory_limit: str = "4GB",
) -> LabelReport:
    """Build per-impression graph labels from raw impressions and events.

    Args:
        impressions: Parquet file(s), folder(s) or glob(s) of `schema.IMPRESSIONS`, local,
            file:// or gs:// (e.g. one file per day).
        events: The same for `schema.EVENTS`.
        out_dir: Folder (local or gs://) that receives labels.parquet, quarantine.parquet,
            report.json and graph.svg. A gs:// folder is uploaded and sealed with a manifest.
        config: Windows and node definitions (default: `LabelConfig()`).
        threads: DuckDB threads (default: all cores).
        memory_limit: DuckDB memory limit; larger intermediates spill to a temp folder.

    Returns:
        The report also written to report.json.

    Raises:
        FileNotFoundError: An input matches no Parquet file.
        schema.SchemaError: A file lacks a column or has it mistyped (file, column and
            expected type named).
        AccountingError: Rows were lost or double-counted (a bug, never bad input).
    """
    config = config or LabelConfig()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hm3-labels-") as tmp:
        scratch = Path(tmp)
        remote_out = storage.is_gcs(out_dir)
        local_out = scratch / "out" if remote_out else Path(os.fspath(out_dir))
        local_out.mkdir(parents=True, exist_ok=True)

        imp_specs, ev_specs = _as_list(impressions), _as_list(events)
        imp_files = _local_files(imp_specs, "impressions", scratch)
        ev_files = _local_files(ev_specs, "events", scratch)
        imp_rows = _validate(imp_files, schema.IMPRESSIONS, _sources(imp_specs, imp_files))
        ev_rows = _validate(ev_files, schema.EVENTS, _sources(ev_specs, ev_files))

        report = _run_duckdb(imp_files, ev_files, local_out, config, scratch, threads, memory_limit)
        used_imp = pq.ParquetFile(local_out / LABELS_FILE).metadata.num_rows
        accounting = {
            "impressions": _balance(imp_rows, used_imp, report["quarantine"]["impressions"]),
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
        "labels: %d impressions, %d clicks, %d buys; quarantined %d impression and %d event "
        "rows; %.1f s",
        result.nodes["impression"],
        result.nodes["click"],
        result.nodes["buy"],
        sum(result.quarantine["impressions"].values()),
        sum(result.quarantine["events"].values()),
        result.seconds,
    )
    return result


def _sources(specs: list[str], files: list[str]) -> list[str]:
    # Error messages name the file as the user gave it; downloaded copies name their spec.
    if all(not storage.is_gcs(s) for s in specs):
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


def _run_duckdb(
    imp_files: list[str],
    ev_files: list[str],
    out: Path,
    cfg: LabelConfig,
    scratch: Path,
    threads: int | None,
    memory_limit: str,
) -> dict[str, Any]:
    """All set and as-of joins; writes labels.parquet and quarantine.parquet."""
    import duckdb

    con = duckdb.connect(config={"memory_limit": memory_limit})
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
        # Output order is set explicitly where it matters; not preserving it saves memory.
        con.execute("SET preserve_insertion_order = false")
        _define_views(con, imp_files, ev_files, cfg)
        return _attribute(con, out, cfg)
    finally:
        con.close()


def _define_views(con: Any, imp_files: list[str], ev_files: list[str], cfg: LabelConfig) -> None:
    # Timestamps become epoch microseconds: integer window arithmetic, and naive or tz-aware,
    # us or ns inputs all mean the same UTC instant.
    con.execute(
        f"""
        CREATE VIEW imp_src AS
        SELECT filename AS file, file_row_number AS row_number,
               CAST(impression_id AS VARCHAR) AS impression_id,
               CAST(user_id AS BIGINT) AS user_id, CAST(item_id AS BIGINT) AS item_id,
               epoch_us(ts) AS ts_us, CAST(position AS INTEGER) AS position,
               CAST(scene AS VARCHAR) AS scene, CAST(device AS VARCHAR) AS device
        FROM read_parquet({_sql_list(imp_files)}, filename = true, file_row_number = true,
                          union_by_name = true)
        """
    )
    row_reason = f"""
        CASE WHEN impression_id IS NULL OR user_id IS NULL OR item_id IS NULL OR ts_us IS NULL
               THEN 'null_field'
             WHEN ts_us < {cfg.earliest_us} THEN 'ts_out_of_range' END
    """
    con.execute(f"CREATE VIEW imp_checked AS SELECT *, {row_reason} AS reason FROM imp_src")
    # Duplicates among otherwise valid rows: the first row (by file, then row) is kept.
    con.execute(
        """
        CREATE TEMP TABLE imp_dup AS
        WITH hashes AS (
            -- Grouping 64-bit hashes is much cheaper than grouping 10M strings; hash
            -- collisions only widen the candidate set, the ranking below uses the real id.
            SELECT hash(impression_id) AS h FROM imp_checked WHERE reason IS NULL
            GROUP BY h HAVING count(*) > 1
        ), ranked AS (
            SELECT *, row_number() OVER (
                PARTITION BY impression_id ORDER BY file, row_number) AS copy
            FROM imp_checked
            WHERE reason IS NULL AND hash(impression_id) IN (SELECT h FROM hashes)
        )
        SELECT * EXCLUDE (copy, reason), 'duplicate' AS reason FROM ranked WHERE copy > 1
        """
    )
    con.execute(
        """
        CREATE VIEW imp_ok AS
        SELECT * EXCLUDE (reason) FROM imp_checked
        ANTI JOIN imp_dup USING (file, row_number)
        WHERE reason IS NULL
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE ev_src AS
        SELECT filename AS file, file_row_number AS row_number,
               CAST(event_id AS VARCHAR) AS event_id,
               CAST(user_id AS BIGINT) AS user_id, CAST(item_id AS BIGINT) AS item_id,
               epoch_us(ts) AS ts_us, CAST(event_type AS VARCHAR) AS event_type,
               CAST(component AS VARCHAR) AS component
        FROM read_parquet({_sql_list(ev_files)}, filename = true, file_row_number = true,
                          union_by_name = true)
        """
    )


def _attribute(con: Any, out: Path, cfg: LabelConfig) -> dict[str, Any]:
    lo, hi, n_imp = con.execute("SELECT min(ts_us), max(ts_us), count(*) FROM imp_ok").fetchone()
    # With no valid impression nothing can be attributed; an empty range quarantines every event.
    lo = cfg.earliest_us if lo is None else lo
    hi = lo - 1 if hi is None else hi + cfg.longest_window_s * _US
    types = _sql_list(cfg.event_types)
    con.execute(
        f"""
        CREATE TEMP TABLE ev_checked AS
        WITH pre AS (
            SELECT *, CASE
                WHEN event_id IS NULL OR user_id IS NULL OR item_id IS NULL OR ts_us IS NULL
                    THEN 'null_field'
                WHEN event_type IS NULL OR NOT list_contains({types}, event_type)
                    THEN 'unknown_event_type'
                WHEN event_type = '{cfg.micro_event}' AND component IS NULL
                    THEN 'missing_component' END AS reason
            FROM ev_src
        ), ranked AS (
            SELECT *, CASE WHEN reason IS NULL THEN row_number() OVER (
                PARTITION BY event_id, reason IS NULL ORDER BY file, row_number) END AS copy
            FROM pre
        )
        SELECT * EXCLUDE (copy, reason), CASE
            WHEN reason IS NOT NULL THEN reason
            WHEN copy > 1 THEN 'duplicate'
            WHEN ts_us < {cfg.earliest_us} OR ts_us < {lo} OR ts_us > {hi}
                THEN 'ts_out_of_range' END AS reason
        FROM ranked
        """
    )
    con.execute(
        "CREATE TEMP TABLE pairs AS SELECT DISTINCT user_id, item_id FROM ev_checked "
        "WHERE reason IS NULL"
    )
    # The only pass over all impressions before the output: those of user-item pairs with events.
    # Same-timestamp impressions of a pair collapse to one target (smallest impression_id).
    con.execute(
        """
        CREATE TEMP TABLE targets AS
        SELECT user_id, item_id, ts_us, min(impression_id) AS impression_id
        FROM imp_ok SEMI JOIN pairs USING (user_id, item_id)
        GROUP BY user_id, item_id, ts_us
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE clicks AS
        SELECT c.file, c.row_number, c.user_id, c.item_id, c.ts_us,
               CASE WHEN t.ts_us IS NOT NULL AND c.ts_us - t.ts_us <= {cfg.click_window_s * _US}
                    THEN t.impression_id END AS impression_id,
               CASE WHEN t.ts_us IS NULL THEN 'click_without_impression'
                    WHEN c.ts_us - t.ts_us > {cfg.click_window_s * _US}
                        THEN 'impression_outside_window' END AS reason
        FROM (SELECT * FROM ev_checked
              WHERE reason IS NULL AND event_type = '{cfg.click_event}') c
        ASOF LEFT JOIN targets t
            ON c.user_id = t.user_id AND c.item_id = t.item_id AND c.ts_us >= t.ts_us
        """
    )
    window = f"""CASE o.event_type
        WHEN '{cfg.micro_event}' THEN {cfg.micro_window_s * _US}
        WHEN '{cfg.purchase_event}' THEN {cfg.purchase_window_s * _US}
        ELSE {cfg.macro_window_s * _US} END"""
    con.execute(
        f"""
        CREATE TEMP TABLE others AS
        SELECT o.file, o.row_number, o.event_type, o.component,
               CASE WHEN k.ts_us IS NOT NULL AND o.ts_us - k.ts_us <= {window}
                    THEN k.impression_id END AS impression_id,
               CASE WHEN k.ts_us IS NULL THEN 'no_click'
                    WHEN o.ts_us - k.ts_us > {window} THEN 'click_outside_window'
                    WHEN k.impression_id IS NULL THEN 'click_unattributed' END AS reason,
               o.user_id, o.item_id
        FROM (SELECT * FROM ev_checked
              WHERE reason IS NULL AND event_type <> '{cfg.click_event}') o
        ASOF LEFT JOIN clicks k
            ON o.user_id = k.user_id AND o.item_id = k.item_id AND o.ts_us >= k.ts_us
        """
    )
    # A pair with no impression at all is `never_shown`, whatever else is wrong with the event.
    con.execute(
        """
        CREATE TEMP TABLE attribution AS
        SELECT a.file, a.row_number, a.impression_id, a.event_type, a.component,
               CASE WHEN a.reason IS NOT NULL AND s.user_id IS NULL THEN 'never_shown'
                    ELSE a.reason END AS reason
        FROM (SELECT file, row_number, impression_id, 'click' AS event_type,
                     NULL::VARCHAR AS component, reason, user_id, item_id FROM clicks
              UNION ALL
              SELECT file, row_number, impression_id, event_type, component, reason,
                     user_id, item_id FROM others) a
        LEFT JOIN (SELECT DISTINCT user_id, item_id FROM targets) s
            ON a.user_id = s.user_id AND a.item_id = s.item_id
        """
    )
    d_micro, d_macro = _sql_list(cfg.d_micro_components), _sql_list(cfg.d_macro_events)
    con.execute(
        f"""
        CREATE TEMP TABLE graph AS
        SELECT impression_id,
               bool_or(event_type = '{cfg.micro_event}'
                       AND list_contains({d_micro}, component)) AS d_micro,
               bool_or(list_contains({d_macro}, event_type)) AS d_macro,
               bool_or(event_type = '{cfg.purchase_event}') AS buy
        FROM attribution WHERE reason IS NULL
        GROUP BY impression_id
        """
    )
    _write_labels(con, out / LABELS_FILE)
    quarantine = _write_quarantine(con, out / QUARANTINE_FILE)
    nodes, edges = _graph_counts(con, n_imp)
    (events_used,) = con.execute("SELECT count(*) FROM attribution WHERE reason IS NULL").fetchone()
    return {"nodes": nodes, "edges": edges, "quarantine": quarantine, "events_used": events_used}


def _write_labels(con: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(
        f"""
        COPY (
            SELECT i.impression_id, i.user_id, i.item_id, make_timestamptz(i.ts_us) AS ts,
                   i.position, i.scene, i.device,
                   CAST(g.impression_id IS NOT NULL AS TINYINT) AS click,
                   CAST(coalesce(g.d_micro, false) AS TINYINT) AS d_micro,
                   CAST(coalesce(g.d_macro, false) AS TINYINT) AS d_macro,
                   CAST(coalesce(g.buy, false) AS TINYINT) AS buy,
                   CASE WHEN g.impression_id IS NULL THEN 'impression'
                        ELSE 'impression>click>'
                             || CASE WHEN g.d_micro THEN 'd_micro' ELSE 'o_micro' END || '>'
                             || CASE WHEN g.d_macro THEN 'd_macro' ELSE 'o_macro' END
                             || CASE WHEN g.buy THEN '>buy' ELSE '' END END AS path
            FROM imp_ok i LEFT JOIN graph g USING (impression_id)
            ORDER BY i.ts_us, i.impression_id
        ) TO '{tmp}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE 1000000)
        """
    )
    os.replace(tmp, path)


def _write_quarantine(con: Any, path: Path) -> dict[str, dict[str, int]]:
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(
        """
        CREATE TEMP TABLE quarantine AS
        SELECT 'impressions' AS "table", file, row_number, reason, impression_id,
               NULL::VARCHAR AS event_id, user_id, item_id, ts_us, position, scene, device,
               NULL::VARCHAR AS event_type, NULL::VARCHAR AS component
        FROM imp_checked WHERE reason IS NOT NULL
        UNION ALL
        SELECT 'impressions', file, row_number, reason, impression_id, NULL, user_id, item_id,
               ts_us, position, scene, device, NULL, NULL
        FROM imp_dup
        UNION ALL
        SELECT 'events', e.file, e.row_number, coalesce(e.reason, a.reason), NULL, e.event_id,
               e.user_id, e.item_id, e.ts_us, NULL, NULL, NULL, e.event_type, e.component
        FROM ev_checked e LEFT JOIN attribution a USING (file, row_number)
        WHERE e.reason IS NOT NULL OR a.reason IS NOT NULL
        """
    )
    con.execute(
        f"""
        COPY (
            SELECT "table", file, row_number, reason, impression_id, event_id, user_id, item_id,
                   make_timestamptz(ts_us) AS ts, position, scene, device, event_type, component
            FROM quarantine ORDER BY "table", file, row_number
        ) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    os.replace(tmp, path)
    counts: dict[str, dict[str, int]] = {"impressions": {}, "events": {}}
    rows = con.execute(
        'SELECT "table", reason, count(*) FROM quarantine GROUP BY ALL ORDER BY ALL'
    ).fetchall()
    for table, reason, n in rows:
        counts[table][reason] = n
    return counts


def _graph_counts(
    con: Any, n_imp: int
) -> tuple[dict[str, int], dict[str, dict[str, float | None]]]:
    row = con.execute(
        """
        SELECT count(*),
               count(*) FILTER (d_micro), count(*) FILTER (NOT d_micro),
               count(*) FILTER (d_macro), count(*) FILTER (NOT d_macro), count(*) FILTER (buy),
               count(*) FILTER (d_micro AND d_macro), count(*) FILTER (d_micro AND NOT d_macro),
               count(*) FILTER (NOT d_micro AND d_macro),
               count(*) FILTER (NOT d_micro AND NOT d_macro),
               count(*) FILTER (d_macro AND buy), count(*) FILTER (NOT d_macro AND buy)
        FROM graph
        """
    ).fetchone()
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
