"""The engines that run the label rules: embedded DuckDB, or Apache Spark (local or a cluster).

An engine does four things the rules (`model.data.label_rules`) leave to it: define the input
relations `imp_src` / `ev_src` from Parquet files, keep each rule step as a relation, fetch small
results, and write an output table. Reading and writing are where the engines differ (DuckDB
reads files and writes Parquet itself; Spark names rows by `_metadata` and its results travel to
the driver as Arrow); the rules in between are the same SQL text.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from model.data import schema
from model.data.label_rules import Step

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[2]"

# What both engines write, column for column; the Spark writer casts its Arrow result to these.
# Both carry the impression's own columns as the contract types them.
_IMPRESSION = [(f.name, f.type) for f in schema.IMPRESSIONS]
LABELS_SCHEMA = pa.schema(
    [*_IMPRESSION, *((c, pa.int8()) for c in schema.LABEL_COLUMNS), ("path", pa.string())]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("table", pa.string()),
        ("file", pa.string()),
        ("row_number", pa.int64()),
        ("reason", pa.string()),
        _IMPRESSION[0],
        ("event_id", pa.string()),
        *_IMPRESSION[1:],
        ("event_type", pa.string()),
        ("component", pa.string()),
    ]
)


class LabelEngine(Protocol):
    """What `build_labels` needs from an engine."""

    def define_inputs(self, imp_files: Sequence[str], ev_files: Sequence[str]) -> None:
        """Define `imp_src` and `ev_src` (columns in `label_rules`) over the Parquet files."""

    def run(self, step: Step) -> None:
        """Make `step.sql` available to later steps under `step.name`."""

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a small query."""

    def write(self, sql: str, path: Path, table_schema: pa.Schema, compression: str) -> int:
        """Write a query's rows (its `ts` in epoch microseconds) as Parquet; return the count."""

    def close(self) -> None:
        """Release what the engine holds (not a shared SparkSession)."""


@dataclass(frozen=True)
class SparkTarget:
    """Where Spark runs: a master URL (`local[2]`, `spark://...`, `yarn`) or a Spark Connect URL.

    Attributes:
        master: Master for a classic session; ignored when `remote` is set. Empty: the master
            spark-submit configured (a SparkApplication's driver, a Dataproc batch).
        remote: Spark Connect URL (`sc://host:15002`); inputs must then be paths the cluster
            reads (gs://), since the server, not this process, opens the files.
        conf: Extra Spark settings for a new session (an active session keeps its own).
    """

    master: str = DEFAULT_SPARK_MASTER
    remote: str | None = None
    conf: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.remote is not None and not self.remote.startswith("sc://"):
            raise ValueError(
                f"spark remote must be a Spark Connect URL sc://HOST:PORT, got {self.remote!r}"
            )
        if self.master != self.master.strip():
            raise ValueError(
                f"spark master must be a master URL such as local[2], got {self.master!r}"
            )

    @property
    def local(self) -> bool:
        """Whether Spark runs in this process's JVM, reading this machine's files."""
        return self.remote is None and self.master.startswith("local")


# --- DuckDB ------------------------------------------------------------------------------------


def _duckdb_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


class DuckDBEngine:
    """Embedded DuckDB: multi-threaded, spills to `scratch` beyond `memory_limit`."""

    def __init__(self, scratch: Path, threads: int | None, memory_limit: str) -> None:
        """Open an in-memory database with its spill folder in `scratch`."""
        import duckdb

        self.con = duckdb.connect(config={"memory_limit": memory_limit})
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self.con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
        # Output order is set explicitly where it matters; not preserving it saves memory.
        self.con.execute("SET preserve_insertion_order = false")
        # Naive timestamps are UTC, as on Spark: the cast to TIMESTAMPTZ reads them in this zone.
        self.con.execute("SET TimeZone = 'UTC'")

    def define_inputs(self, imp_files: Sequence[str], ev_files: Sequence[str]) -> None:
        """Views over the files; timestamps become epoch microseconds (UTC whatever the unit).

        Through TIMESTAMPTZ because DuckDB's epoch_us has no TIMESTAMPTZ_NS overload (a
        nanosecond UTC column failed to bind); nanoseconds round to the nearest microsecond.
        """
        self.con.execute(
            f"""
            CREATE VIEW imp_src AS
            SELECT filename AS file, file_row_number AS row_number,
                   CAST(impression_id AS VARCHAR) AS impression_id,
                   CAST(user_id AS BIGINT) AS user_id, CAST(item_id AS BIGINT) AS item_id,
                   epoch_us(CAST(ts AS TIMESTAMPTZ)) AS ts_us,
                   CAST(position AS INTEGER) AS position,
                   CAST(scene AS VARCHAR) AS scene, CAST(device AS VARCHAR) AS device
            FROM read_parquet({_duckdb_list(imp_files)}, filename = true,
                              file_row_number = true, union_by_name = true)
            """
        )
        self.con.execute(
            f"""
            CREATE TEMP TABLE ev_src AS
            SELECT filename AS file, file_row_number AS row_number,
                   CAST(event_id AS VARCHAR) AS event_id,
                   CAST(user_id AS BIGINT) AS user_id, CAST(item_id AS BIGINT) AS item_id,
                   epoch_us(CAST(ts AS TIMESTAMPTZ)) AS ts_us,
                   CAST(event_type AS VARCHAR) AS event_type,
                   CAST(component AS VARCHAR) AS component
            FROM read_parquet({_duckdb_list(ev_files)}, filename = true,
                              file_row_number = true, union_by_name = true)
            """
        )

    def run(self, step: Step) -> None:
        """A temp table when materialized, else a view."""
        kind = "TEMP TABLE" if step.materialize else "VIEW"
        self.con.execute(f"CREATE {kind} {step.name} AS {step.sql}")

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows."""
        return self.con.execute(sql).fetchall()

    def write(self, sql: str, path: Path, table_schema: pa.Schema, compression: str) -> int:
        """COPY straight to Parquet: the 10M-row label table never enters Python."""
        tmp = path.with_name(f".{path.name}.tmp")
        names = ", ".join(
            'make_timestamptz("ts") AS "ts"' if n == "ts" else f'"{n}"' for n in table_schema.names
        )
        self.con.execute(
            f"COPY (SELECT {names} FROM ({sql})) TO '{tmp}' "
            f"(FORMAT parquet, COMPRESSION {compression}, ROW_GROUP_SIZE 1000000)"
        )
        os.replace(tmp, path)
        return pq.ParquetFile(path).metadata.num_rows

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


# --- Spark -------------------------------------------------------------------------------------


def spark_sql(sql: str) -> str:
    """The rules' DuckDB SQL in Spark's dialect (sqlglot), e.g. VARCHAR -> STRING, quoting."""
    import sqlglot

    return sqlglot.transpile(sql, read="duckdb", write="spark")[0]


# A new local session: no web UI; few shuffle partitions (the default 200 is sized for a
# cluster, and on local[2] each partition is a task of fixed overhead); a driver heap that holds
# the collected label table (about 1 GB per 10M rows as Arrow).
_LOCAL_CONF: tuple[tuple[str, str], ...] = (
    ("spark.ui.enabled", "false"),
    ("spark.sql.shuffle.partitions", "4"),
    ("spark.driver.memory", "4g"),
)


def spark_session(target: SparkTarget) -> SparkSession:
    """The active SparkSession, or a new one for `target`.

    A process that already has a session (a test session, a notebook, Feast's) keeps it:
    `getOrCreate` would return it anyway and ignore new settings, so say so in the log.
    """
    from pyspark.sql import SparkSession

    if target.remote:
        return SparkSession.builder.remote(target.remote).getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        log.info("reusing the active SparkSession (master %s)", active.sparkContext.master)
        return active
    builder = SparkSession.builder.appName("hm3-labels")
    if target.master:
        builder = builder.master(target.master)
    local = _LOCAL_CONF if target.master.startswith("local") else _LOCAL_CONF[:1]
    for key, value in (*local, *target.conf):
        builder = builder.config(key, value)
    return builder.getOrCreate()


class SparkEngine:
    """Spark SQL on a session; relations are temp views, materialized ones cached."""

    def __init__(self, target: SparkTarget) -> None:
        """Get the session; timestamps in UTC and ANSI casts (errors, not silent nulls)."""
        self.spark = spark_session(target)
        self.spark.conf.set("spark.sql.session.timeZone", "UTC")
        # Feast turns this on in a session it shares; with it, the backquoted names sqlglot
        # writes (`table`) would be read as regular expressions.
        self.spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "false")
        self.cached: list[DataFrame] = []

    def _read(self, files: Sequence[str], columns: str) -> DataFrame:
        frame = self.spark.read.option("mergeSchema", "true").parquet(*files)
        frame = frame.selectExpr(
            "*", "_metadata.file_path AS _path", "_metadata.row_index AS row_number"
        )
        # Spark names a file by its URI (file:/tmp/x.parquet); rows must carry the name the
        # caller gave, as DuckDB's do, so that quarantine rows and the dedupe order agree.
        names = self.spark.createDataFrame(
            [(uri, f) for f in files for uri in _spark_uris(f)], "_path STRING, file STRING"
        ).dropDuplicates(["_path"])
        return frame.join(names.hint("broadcast"), "_path", "left").selectExpr(*columns.split(";"))

    def define_inputs(self, imp_files: Sequence[str], ev_files: Sequence[str]) -> None:
        """Temp views with the same columns and types as DuckDB's."""
        self._read(
            imp_files,
            "file;row_number;CAST(impression_id AS STRING) AS impression_id;"
            "CAST(user_id AS BIGINT) AS user_id;CAST(item_id AS BIGINT) AS item_id;"
            "unix_micros(CAST(ts AS TIMESTAMP)) AS ts_us;CAST(position AS INT) AS position;"
            "CAST(scene AS STRING) AS scene;CAST(device AS STRING) AS device",
        ).createOrReplaceTempView("imp_src")
        events = self._read(
            ev_files,
            "file;row_number;CAST(event_id AS STRING) AS event_id;"
            "CAST(user_id AS BIGINT) AS user_id;CAST(item_id AS BIGINT) AS item_id;"
            "unix_micros(CAST(ts AS TIMESTAMP)) AS ts_us;"
            "CAST(event_type AS STRING) AS event_type;CAST(component AS STRING) AS component",
        ).cache()
        self.cached.append(events)
        events.createOrReplaceTempView("ev_src")

    def run(self, step: Step) -> None:
        """A temp view; a cached one, computed now, when the step is read more than once.

        Computed now because a lazily filled cache was slower: on 1M impressions, local[2],
        the build took over 8 minutes with lazy caches and under 4 with each filled in turn
        (a later query then reads finished caches instead of planning over unfilled ones).
        """
        frame = self.spark.sql(spark_sql(step.sql))
        if step.materialize:
            frame = frame.cache()
            frame.count()
            self.cached.append(frame)
        frame.createOrReplaceTempView(step.name)

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """All rows, as tuples."""
        return [tuple(row) for row in self.spark.sql(spark_sql(sql)).collect()]

    def write(self, sql: str, path: Path, table_schema: pa.Schema, compression: str) -> int:
        """Collect the result to the driver as Arrow and write one Parquet file.

        One file, as DuckDB writes: the driver holds the table once (about 1 GB per 10M
        labels). Beyond that, write a folder of part files instead (readers take folders).
        """
        table = self.spark.sql(spark_sql(sql)).toArrow()
        columns = [
            table["ts"].cast(pa.int64()).cast(field.type)
            if field.name == "ts"
            else table[field.name].cast(field.type)
            for field in table_schema
        ]
        out = pa.Table.from_arrays(columns, schema=table_schema)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(out, tmp, compression=compression, row_group_size=1_000_000)
        os.replace(tmp, path)
        return out.num_rows

    def close(self) -> None:
        """Drop the cached relations; the session stays for the next build or Feast."""
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()


def _spark_uris(path: str) -> list[str]:
    """The names Spark may give a file in `_metadata.file_path`."""
    if "://" in path:
        return [path]
    absolute = str(Path(path).absolute())
    return [f"file:{quote(absolute)}", f"file://{quote(absolute)}", Path(absolute).as_uri()]


def open_engine(
    engine: str,
    scratch: Path,
    *,
    threads: int | None = None,
    memory_limit: str = "4GB",
    spark: SparkTarget | None = None,
) -> LabelEngine:
    """The engine named `engine` (`ENGINES`).

    Raises:
        ValueError: An unknown engine name.
    """
    if engine == "duckdb":
        return DuckDBEngine(scratch, threads, memory_limit)
    if engine == "spark":
        return SparkEngine(spark or SparkTarget())
    raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
