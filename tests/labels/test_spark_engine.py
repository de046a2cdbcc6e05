"""Labels on Spark equal labels on DuckDB, row for row: the same rules, run by two engines."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tiny_logs import TinyLogs
from typer.testing import CliRunner

from model.data.labels import LABELS_FILE, QUARANTINE_FILE, REPORT_FILE, build_labels
from model.data.schema import SchemaError


def _tie_logs(root: Path, duplicate_of: str) -> tuple[Path, Path]:
    """A second file per table whose cases hinge on ties and on the order of input files."""
    logs = TinyLogs(root)
    user = 10**9  # no user of the simulated world
    # Two impressions of one pair at one instant: one target, the smallest id.
    logs.imp("tie-b", user, 1, 0).imp("tie-a", user, 1, 0).ev("e-tie-click", user, 1, 10)
    # Two clicks of one pair at one instant; the purchase hangs off that point.
    logs.imp("two-clicks", user, 2, 0)
    logs.ev("e-c1", user, 2, 100).ev("e-c2", user, 2, 100)
    logs.ev("e-buy", user, 2, 100, event_type="purchase")  # same instant as the clicks: counts
    # A click before any impression of its pair, and a micro event hanging off it.
    logs.imp("late-imp", user, 3, 50)
    logs.ev("e-early", user, 3, 40).ev("e-micro", user, 3, 41, "micro", "qa")
    # The same impression_id as a row of the first file: this later file's copy is the duplicate.
    logs.imp(duplicate_of, user, 4, 0)
    return logs.write()


def test_spark_labels_and_quarantine_equal_duckdb_on_a_damaged_log(
    spark: object, damaged_world: Path, tmp_path: Path
) -> None:
    from pipelines.cli import app

    first_id = pq.read_table(damaged_world / "impressions.parquet")["impression_id"][0].as_py()
    tie_imp, tie_ev = _tie_logs(tmp_path / "ties", first_id)
    impressions = [str(damaged_world / "impressions.parquet"), str(tie_imp)]
    events = [str(damaged_world / "events.parquet"), str(tie_ev)]
    duck = build_labels(impressions, events, tmp_path / "duckdb", engine="duckdb")

    # Spark as a user runs it: the CLI (in process, so it reuses the test session's JVM).
    args = ["labels", "--engine", "spark", "--spark-master", "local[2]"]
    for imp in impressions:
        args += ["--impressions", imp]
    for ev in events:
        args += ["--events", ev]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "spark")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["engine"] == "spark"

    for name in (LABELS_FILE, QUARANTINE_FILE):
        want = pq.read_table(tmp_path / "duckdb" / name)
        got = pq.read_table(tmp_path / "spark" / name)
        # Same columns and types (DuckDB marks columns without nulls "required"; not a contract).
        assert [(f.name, f.type) for f in got.schema] == [(f.name, f.type) for f in want.schema]
        assert got.to_pylist() == want.to_pylist(), name  # row for row, in the written order
    spark_report = json.loads((tmp_path / "spark" / REPORT_FILE).read_text())
    duck_report = json.loads((tmp_path / "duckdb" / REPORT_FILE).read_text())
    spark_report.pop("seconds"), duck_report.pop("seconds")
    assert spark_report == duck_report

    # The log really was damaged, and the tie cases came out as the rules say.
    assert {"duplicate", "never_shown", "no_click", "click_outside_window", "ts_out_of_range"} <= (
        set(duck.quarantine["events"])
    )
    labels = {
        r["impression_id"]: r for r in pq.read_table(tmp_path / "spark" / LABELS_FILE).to_pylist()
    }
    assert (labels["tie-a"]["click"], labels["tie-b"]["click"]) == (1, 0)
    assert (labels["two-clicks"]["click"], labels["two-clicks"]["buy"]) == (1, 1)
    assert labels["late-imp"]["click"] == 0
    quarantine = pq.read_table(tmp_path / "spark" / QUARANTINE_FILE).to_pylist()
    reasons = {r["event_id"] or r["impression_id"]: r["reason"] for r in quarantine}
    assert reasons["e-early"] == "click_without_impression"
    assert reasons["e-micro"] == "click_unattributed"
    duplicate = [r for r in quarantine if r["impression_id"] == first_id]
    assert [(r["reason"], r["file"]) for r in duplicate] == [("duplicate", str(tie_imp))]


@pytest.mark.parametrize("damage", ["missing", "mistyped"])
def test_bad_input_gets_the_same_error_from_both_engines(
    damage: str, small_world: Path, tmp_path: Path
) -> None:
    table = pq.read_table(small_world / "events.parquet")
    if damage == "missing":
        table = table.drop_columns(["event_type"])
    else:
        index = table.schema.get_field_index("user_id")
        table = table.set_column(index, "user_id", table["user_id"].cast(pa.string()))
    bad = tmp_path / "events.parquet"
    pq.write_table(table, bad)
    messages = {}
    for engine in ("duckdb", "spark"):
        with pytest.raises(SchemaError) as err:
            build_labels(small_world / "impressions.parquet", bad, tmp_path / engine, engine=engine)
        messages[engine] = str(err.value)
    assert messages["spark"] == messages["duckdb"]
    expected = {
        "missing": f"{bad}: missing column 'event_type' (expected string)",
        "mistyped": f"{bad}: column 'user_id' has type string, expected int64",
    }
    assert messages["spark"] == expected[damage]


def test_nanosecond_timestamps_are_refused_by_name_for_spark_only(
    small_world: Path, tmp_path: Path
) -> None:
    """Spark reads Parquet timestamps in microseconds at most; DuckDB reads nanoseconds."""
    table = pq.read_table(small_world / "impressions.parquet")
    index = table.schema.get_field_index("ts")
    table = table.set_column(index, "ts", table["ts"].cast(pa.timestamp("ns", tz="UTC")))
    nanos = tmp_path / "impressions.parquet"
    pq.write_table(table, nanos, coerce_timestamps=None)
    assert pq.read_schema(nanos).field("ts").type.unit == "ns"
    events = small_world / "events.parquet"
    with pytest.raises(SchemaError) as err:
        build_labels(nanos, events, tmp_path / "spark", engine="spark")
    assert str(err.value) == (
        f"{nanos}: column 'ts' has type timestamp[ns, tz=UTC]; Spark reads timestamps in "
        "microseconds at most: write it with pyarrow coerce_timestamps='us'"
    )
    assert not (tmp_path / "spark" / LABELS_FILE).exists()  # refused before anything ran
    build_labels(nanos, events, tmp_path / "duckdb", engine="duckdb")


def test_unknown_engine_and_bad_spark_url_are_refused() -> None:
    from model.data.label_engines import SparkTarget

    with pytest.raises(
        ValueError, match=r"engine must be one of \('duckdb', 'spark'\), got 'flink'"
    ):
        build_labels("x.parquet", "y.parquet", "out", engine="flink")
    with pytest.raises(ValueError, match="Spark Connect URL sc://HOST:PORT, got 'http://h:15002'"):
        SparkTarget(remote="http://h:15002")


def test_spark_on_a_cluster_reads_gcs_where_it_lies_and_checks_footers_first(
    small_world: Path, tmp_path: Path, gcs_bucket: str
) -> None:
    """A cluster's executors read gs:// themselves: nothing is downloaded, yet bad files are
    refused by name before Spark is asked for anything (the master below does not exist)."""
    from model import storage
    from model.data.label_engines import SparkTarget

    table = pq.read_table(small_world / "events.parquet").drop_columns(["event_type"])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    src = f"{gcs_bucket}/spark-src-{tmp_path.name}"
    storage.write_bytes_atomic(f"{src}/events.parquet", sink.getvalue().to_pybytes())
    storage.write_bytes_atomic(
        f"{src}/impressions.parquet", (small_world / "impressions.parquet").read_bytes()
    )
    nowhere = SparkTarget(master="spark://no-such-host.invalid:7077")
    with pytest.raises(SchemaError) as err:
        build_labels(
            f"{src}/impressions.parquet",
            f"{src}/events.parquet",
            tmp_path / "out",
            engine="spark",
            spark=nowhere,
        )
    assert str(err.value) == f"{src}/events.parquet: missing column 'event_type' (expected string)"
