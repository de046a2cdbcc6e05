"""The label rules, written once as SQL that DuckDB runs as is and Spark runs transpiled.

Every attribution window, dedupe rule, quarantine reason and graph node of `model.data.labels`
is defined here and nowhere else. The SQL is DuckDB's dialect restricted to what Spark SQL also
has (plain joins, window functions, CASE, IN lists); `model.data.label_engines` hands each step
to an engine, and the Spark engine transpiles it with sqlglot first. So the two engines cannot
drift apart: there is one text to change.

The as-of joins ("latest impression / click of the same user and item at or before t") are
written with a window, not DuckDB's ASOF JOIN, which Spark lacks: the two sides are stacked on
one timeline per user-item pair, ordered by time with the earlier side first on ties, and a
running `max` of the earlier side's timestamp is the latest one at or before each row. An
equi-join on that timestamp then fetches its id. Impressions with the same timestamp are one
target (smallest impression_id), and so are clicks with the same timestamp (smallest attributed
impression_id), so that join finds exactly one row and ties never depend on the engine.

Inputs are two relations every engine defines first, with these columns:

- `imp_src`: file, row_number, impression_id, user_id, item_id, ts_us, position, scene, device
- `ev_src`: file, row_number, event_id, user_id, item_id, ts_us, event_type, component

`file` and `row_number` (0-based, within the file) identify an input row; `ts_us` is the UTC
instant in epoch microseconds, so windows are integer arithmetic in both engines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.data.labels import LabelConfig

US = 1_000_000

IMP_COLUMNS = "file, row_number, impression_id, user_id, item_id, ts_us, position, scene, device"
EV_COLUMNS = "file, row_number, event_id, user_id, item_id, ts_us, event_type, component"


@dataclass(frozen=True)
class Step:
    """One named relation of the rules.

    Attributes:
        name: The relation later steps refer to.
        sql: A SELECT in DuckDB's dialect (Spark gets it transpiled).
        materialize: Keep the result (a temp table / cached frame) because later steps read it
            more than once; otherwise a view, recomputed where used.
    """

    name: str
    sql: str
    materialize: bool = False


def sql_list(items: Sequence[str]) -> str:
    """A parenthesized SQL list of string literals, quotes escaped, for `x IN (...)`."""
    return "(" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + ")"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def impression_steps(cfg: LabelConfig) -> list[Step]:
    """Impression checks and dedupe, ending in `imp_ok` (the impressions that get labels)."""
    checked = f"""
        SELECT {IMP_COLUMNS},
               CASE WHEN impression_id IS NULL OR user_id IS NULL OR item_id IS NULL
                         OR ts_us IS NULL THEN 'null_field'
                    WHEN ts_us < {cfg.earliest_us} THEN 'ts_out_of_range' END AS reason
        FROM imp_src
    """
    # Duplicates among otherwise valid rows: the first row (by file, then row) is kept. Grouping
    # hashes is much cheaper than grouping 10M strings; a collision only widens the candidate
    # set, the ranking uses the real id.
    duplicates = f"""
        WITH hashes AS (
            SELECT hash(impression_id) AS h FROM imp_checked WHERE reason IS NULL
            GROUP BY hash(impression_id) HAVING count(*) > 1
        ), ranked AS (
            SELECT {IMP_COLUMNS}, row_number() OVER (
                PARTITION BY impression_id ORDER BY file, row_number) AS copy
            FROM imp_checked
            WHERE reason IS NULL AND hash(impression_id) IN (SELECT h FROM hashes)
        )
        SELECT {IMP_COLUMNS}, 'duplicate' AS reason FROM ranked WHERE copy > 1
    """
    ok = f"""
        SELECT {_prefixed("c", IMP_COLUMNS)}
        FROM imp_checked c
        LEFT JOIN imp_dup d ON c.file = d.file AND c.row_number = d.row_number
        WHERE c.reason IS NULL AND d.file IS NULL
    """
    return [
        Step("imp_checked", checked),
        Step("imp_dup", duplicates, materialize=True),
        Step("imp_ok", ok),
    ]


# The time range of usable impressions; events outside it (widened by the windows) are bad clocks.
BOUNDS_SQL = "SELECT min(ts_us), max(ts_us), count(*) FROM imp_ok"


def event_bounds(cfg: LabelConfig, lo: int | None, hi: int | None) -> tuple[int, int]:
    """The closed range of event timestamps that can be attributed at all.

    With no valid impression nothing can be attributed; an empty range quarantines every event.
    """
    low = cfg.earliest_us if lo is None else lo
    high = low - 1 if hi is None else hi + cfg.longest_window_s * US
    return low, high


def event_steps(cfg: LabelConfig, lo: int, hi: int) -> list[Step]:
    """Event checks, both attributions and the per-impression graph (`graph`)."""
    types = sql_list(cfg.event_types)
    click, micro, purchase = _lit(cfg.click_event), _lit(cfg.micro_event), _lit(cfg.purchase_event)
    checked = f"""
        WITH pre AS (
            SELECT {EV_COLUMNS}, CASE
                WHEN event_id IS NULL OR user_id IS NULL OR item_id IS NULL OR ts_us IS NULL
                    THEN 'null_field'
                WHEN event_type IS NULL OR event_type NOT IN {types} THEN 'unknown_event_type'
                WHEN event_type = {micro} AND component IS NULL THEN 'missing_component'
                END AS reason
            FROM ev_src
        ), ranked AS (
            SELECT {EV_COLUMNS}, reason, CASE WHEN reason IS NULL THEN row_number() OVER (
                PARTITION BY event_id, reason IS NULL ORDER BY file, row_number) END AS copy
            FROM pre
        )
        SELECT {EV_COLUMNS}, CASE
            WHEN reason IS NOT NULL THEN reason
            WHEN copy > 1 THEN 'duplicate'
            WHEN ts_us < {cfg.earliest_us} OR ts_us < {lo} OR ts_us > {hi}
                THEN 'ts_out_of_range' END AS reason
        FROM ranked
    """
    pairs = "SELECT DISTINCT user_id, item_id FROM ev_checked WHERE reason IS NULL"
    # The only pass over all impressions before the output: those of user-item pairs with events.
    targets = """
        SELECT i.user_id, i.item_id, i.ts_us, min(i.impression_id) AS impression_id
        FROM imp_ok i JOIN pairs p ON i.user_id = p.user_id AND i.item_id = p.item_id
        GROUP BY i.user_id, i.item_id, i.ts_us
    """
    click_window = cfg.click_window_s * US
    clicks = f"""
        WITH c AS (
            SELECT file, row_number, user_id, item_id, ts_us FROM ev_checked
            WHERE reason IS NULL AND event_type = {click}
        ), {_latest("targets", "c", "file, row_number", _NULL_ROW_ID)}
        SELECT l.file, l.row_number, l.user_id, l.item_id, l.ts_us,
               CASE WHEN l.prior_ts IS NOT NULL AND l.ts_us - l.prior_ts <= {click_window}
                    THEN t.impression_id END AS impression_id,
               CASE WHEN l.prior_ts IS NULL THEN 'click_without_impression'
                    WHEN l.ts_us - l.prior_ts > {click_window}
                        THEN 'impression_outside_window' END AS reason
        FROM latest l
        LEFT JOIN targets t
            ON t.user_id = l.user_id AND t.item_id = l.item_id AND t.ts_us = l.prior_ts
        WHERE l.side = 1
    """
    window = f"""CASE l.event_type
        WHEN {micro} THEN {cfg.micro_window_s * US}
        WHEN {purchase} THEN {cfg.purchase_window_s * US}
        ELSE {cfg.macro_window_s * US} END"""
    # Clicks of one user-item at one instant are one point; an attributed one wins (min skips
    # nulls), so the event's attribution never depends on which tied click a join meets first.
    others = f"""
        WITH o AS (
            SELECT file, row_number, user_id, item_id, ts_us, event_type, component
            FROM ev_checked WHERE reason IS NULL AND event_type <> {click}
        ), points AS (
            SELECT user_id, item_id, ts_us, min(impression_id) AS impression_id
            FROM clicks GROUP BY user_id, item_id, ts_us
        ), {
        _latest(
            "points",
            "o",
            "file, row_number, event_type, component",
            f"{_NULL_ROW_ID}, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR)",
        )
    }
        SELECT l.file, l.row_number, l.event_type, l.component,
               CASE WHEN l.prior_ts IS NOT NULL AND l.ts_us - l.prior_ts <= {window}
                    THEN p.impression_id END AS impression_id,
               CASE WHEN l.prior_ts IS NULL THEN 'no_click'
                    WHEN l.ts_us - l.prior_ts > {window} THEN 'click_outside_window'
                    WHEN p.impression_id IS NULL THEN 'click_unattributed' END AS reason,
               l.user_id, l.item_id
        FROM latest l
        LEFT JOIN points p
            ON p.user_id = l.user_id AND p.item_id = l.item_id AND p.ts_us = l.prior_ts
        WHERE l.side = 1
    """
    # A pair with no impression at all is `never_shown`, whatever else is wrong with the event.
    attribution = f"""
        SELECT a.file, a.row_number, a.impression_id, a.event_type, a.component,
               CASE WHEN a.reason IS NOT NULL AND s.user_id IS NULL THEN 'never_shown'
                    ELSE a.reason END AS reason
        FROM (SELECT file, row_number, impression_id, {click} AS event_type,
                     CAST(NULL AS VARCHAR) AS component, reason, user_id, item_id FROM clicks
              UNION ALL
              SELECT file, row_number, impression_id, event_type, component, reason,
                     user_id, item_id FROM others) a
        LEFT JOIN (SELECT DISTINCT user_id, item_id FROM targets) s
            ON a.user_id = s.user_id AND a.item_id = s.item_id
    """
    d_micro, d_macro = sql_list(cfg.d_micro_components), sql_list(cfg.d_macro_events)
    graph = f"""
        SELECT impression_id,
               bool_or(event_type = {micro} AND component IN {d_micro}) AS d_micro,
               bool_or(event_type IN {d_macro}) AS d_macro,
               bool_or(event_type = {purchase}) AS buy
        FROM attribution WHERE reason IS NULL
        GROUP BY impression_id
    """
    return [
        Step("ev_checked", checked, materialize=True),
        Step("pairs", pairs, materialize=True),
        Step("targets", targets, materialize=True),
        Step("clicks", clicks, materialize=True),
        Step("others", others, materialize=True),
        Step("attribution", attribution, materialize=True),
        Step("graph", graph, materialize=True),
        Step("quarantine", _quarantine(), materialize=True),
    ]


_NULL_ROW_ID = "CAST(NULL AS VARCHAR), CAST(NULL AS BIGINT)"


def _latest(earlier: str, later: str, later_columns: str, null_columns: str) -> str:
    """CTE `latest`: each `later` row (side 1) with `prior_ts`, the latest `earlier` ts <= its ts.

    `earlier` has one row per (user_id, item_id, ts_us); side 0 sorts first on equal times, so a
    row at the same instant counts as "at or before".
    """
    # The `later` arm comes first: a UNION takes its column names from its first SELECT.
    return f"""timeline AS (
            SELECT user_id, item_id, ts_us, 1 AS side, CAST(NULL AS BIGINT) AS earlier_ts,
                   {later_columns}
            FROM {later}
            UNION ALL
            SELECT user_id, item_id, ts_us, 0, ts_us, {null_columns}
            FROM {earlier}
        ), latest AS (
            SELECT user_id, item_id, ts_us, side, {later_columns},
                   max(earlier_ts) OVER (
                       PARTITION BY user_id, item_id ORDER BY ts_us, side
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prior_ts
            FROM timeline
        )"""


def _prefixed(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _quarantine() -> str:
    return """
        SELECT 'impressions' AS "table", file, row_number, reason, impression_id,
               CAST(NULL AS VARCHAR) AS event_id, user_id, item_id, ts_us, position, scene,
               device, CAST(NULL AS VARCHAR) AS event_type, CAST(NULL AS VARCHAR) AS component
        FROM imp_checked WHERE reason IS NOT NULL
        UNION ALL
        SELECT 'impressions', file, row_number, reason, impression_id, CAST(NULL AS VARCHAR),
               user_id, item_id, ts_us, position, scene, device, CAST(NULL AS VARCHAR),
               CAST(NULL AS VARCHAR)
        FROM imp_dup
        UNION ALL
        SELECT 'events', e.file, e.row_number, coalesce(e.reason, a.reason),
               CAST(NULL AS VARCHAR), e.event_id, e.user_id, e.item_id, e.ts_us,
               CAST(NULL AS INTEGER), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
               e.event_type, e.component
        FROM ev_checked e
        LEFT JOIN attribution a ON e.file = a.file AND e.row_number = a.row_number
        WHERE e.reason IS NOT NULL OR a.reason IS NOT NULL
    """


# The outputs. `ts` is still epoch microseconds here; each engine's writer turns it into a UTC
# timestamp, the one thing the two dialects spell differently.
LABELS_SQL = """
    SELECT i.impression_id, i.user_id, i.item_id, i.ts_us AS ts, i.position, i.scene, i.device,
           CAST(g.impression_id IS NOT NULL AS TINYINT) AS click,
           CAST(coalesce(g.d_micro, false) AS TINYINT) AS d_micro,
           CAST(coalesce(g.d_macro, false) AS TINYINT) AS d_macro,
           CAST(coalesce(g.buy, false) AS TINYINT) AS buy,
           CASE WHEN g.impression_id IS NULL THEN 'impression'
                ELSE 'impression>click>'
                     || CASE WHEN g.d_micro THEN 'd_micro' ELSE 'o_micro' END || '>'
                     || CASE WHEN g.d_macro THEN 'd_macro' ELSE 'o_macro' END
                     || CASE WHEN g.buy THEN '>buy' ELSE '' END END AS path
    FROM imp_ok i LEFT JOIN graph g ON i.impression_id = g.impression_id
    ORDER BY i.ts_us, i.impression_id
"""

QUARANTINE_SQL = """
    SELECT "table", file, row_number, reason, impression_id, event_id, user_id, item_id,
           ts_us AS ts, position, scene, device, event_type, component
    FROM quarantine ORDER BY "table", file, row_number
"""

QUARANTINE_COUNTS_SQL = """
    SELECT "table", reason, count(*) FROM quarantine
    GROUP BY "table", reason ORDER BY "table", reason
"""

EVENTS_USED_SQL = "SELECT count(*) FROM attribution WHERE reason IS NULL"

# count(CASE ...) is 0, not NULL, on an empty graph, in both engines.
GRAPH_COUNTS_SQL = """
    SELECT count(*),
           count(CASE WHEN d_micro THEN 1 END), count(CASE WHEN NOT d_micro THEN 1 END),
           count(CASE WHEN d_macro THEN 1 END), count(CASE WHEN NOT d_macro THEN 1 END),
           count(CASE WHEN buy THEN 1 END),
           count(CASE WHEN d_micro AND d_macro THEN 1 END),
           count(CASE WHEN d_micro AND NOT d_macro THEN 1 END),
           count(CASE WHEN NOT d_micro AND d_macro THEN 1 END),
           count(CASE WHEN NOT d_micro AND NOT d_macro THEN 1 END),
           count(CASE WHEN d_macro AND buy THEN 1 END),
           count(CASE WHEN NOT d_macro AND buy THEN 1 END)
    FROM graph
"""
