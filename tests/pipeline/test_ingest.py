"""Ingesting user logs: whole files or day partitions, local or gs://, validated on the way in."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from model import storage
from model.data import schema
from model.data.ingest import ingest_logs


def _partition_events(world: Path, dest: Path) -> int:
    """Write the events as one Parquet file per day, as a cluster's log export would."""
    events = pq.read_table(world / "events.parquet")
    day = pc.strftime(events["ts"], format="%Y-%m-%d")
    for value in pc.unique(day).to_pylist():
        part = events.filter(pc.equal(day, value))
        pq.write_table(part, dest / "events" / f"day={value}.parquet")
    return events.num_rows


TABLES = ("impressions", "users", "items")  # copied whole; events are split by day


def _source(world: Path, dest: Path) -> int:
    (dest / "events").mkdir(parents=True)
    for name in TABLES:
        (dest / f"{name}.parquet").write_bytes((world / f"{name}.parquet").read_bytes())
    return _partition_events(world, dest)


def test_ingest_local_partitions(small_world: Path, tmp_path: Path) -> None:
    n_events = _source(small_world, tmp_path / "src")
    counts = ingest_logs(str(tmp_path / "src"), tmp_path / "run")
    assert counts["events"] == n_events
    assert "truth" not in counts
    assert (tmp_path / "run" / "events").is_dir()
    assert (
        counts["impressions"]
        == pq.ParquetFile(small_world / "impressions.parquet").metadata.num_rows
    )


def test_ingest_from_gcs(small_world: Path, tmp_path: Path, gcs_bucket: str) -> None:
    n_events = _source(small_world, tmp_path / "src")
    uri = f"{gcs_bucket}/logs-{tmp_path.name}"
    for path in sorted((tmp_path / "src").rglob("*.parquet")):
        storage.write_bytes_atomic(f"{uri}/{path.relative_to(tmp_path / 'src')}", path.read_bytes())
    counts = ingest_logs(uri, tmp_path / "run")
    rows = {n: pq.ParquetFile(small_world / f"{n}.parquet").metadata.num_rows for n in TABLES}
    assert counts == rows | {"events": n_events}
    for name in ("impressions", "users", "items"):
        copied = pq.read_table(tmp_path / "run" / f"{name}.parquet")
        assert copied.equals(pq.read_table(small_world / f"{name}.parquet")), name


def test_missing_table_is_named(small_world: Path, tmp_path: Path) -> None:
    _source(small_world, tmp_path / "src")
    (tmp_path / "src" / "items.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="no items.parquet and no items/ folder"):
        ingest_logs(str(tmp_path / "src"), tmp_path / "run")


def test_mistyped_column_is_named(small_world: Path, tmp_path: Path) -> None:
    _source(small_world, tmp_path / "src")
    users = pq.read_table(tmp_path / "src" / "users.parquet")
    users = users.set_column(
        users.schema.get_field_index("user_id"), "user_id", pc.cast(users["user_id"], "string")
    )
    pq.write_table(users, tmp_path / "src" / "users.parquet")
    with pytest.raises(
        schema.SchemaError, match="users: column 'user_id' has type string, expected int64"
    ):
        ingest_logs(str(tmp_path / "src"), tmp_path / "run")


def test_truncated_table_is_named(small_world: Path, tmp_path: Path) -> None:
    _source(small_world, tmp_path / "src")
    items = tmp_path / "src" / "items.parquet"
    items.write_bytes(items.read_bytes()[:-64])  # an interrupted upload
    with pytest.raises(schema.SchemaError, match="items: not a readable Parquet table"):
        ingest_logs(str(tmp_path / "src"), tmp_path / "run")
