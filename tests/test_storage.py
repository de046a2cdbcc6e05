"""The storage layer against local folders and a real GCS API emulator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model import storage


@pytest.fixture(params=["local", "file", "gcs"])
def base(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "file":
        return f"file://{tmp_path / 'store'}"
    bucket = request.getfixturevalue("gcs_bucket")
    return f"{bucket}/{tmp_path.name}"


def _artifact(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "weights.bin").write_bytes(bytes(range(256)) * 100)
    (root / "sub" / "config.json").write_text(json.dumps({"kind": "hm3"}))
    return root


def test_text_round_trip_and_exists(base: str) -> None:
    uri = storage.join(base, "a", "record.json")
    assert not storage.exists(uri)
    storage.write_text_atomic(uri, '{"v": 1}')
    storage.write_text_atomic(uri, '{"v": 2}')
    assert storage.exists(uri)
    assert json.loads(storage.read_text(uri)) == {"v": 2}


def test_missing_file_names_the_uri(base: str) -> None:
    uri = storage.join(base, "nope.json")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        storage.read_bytes(uri)


def test_dir_round_trip_is_sealed_and_verified(base: str, tmp_path: Path) -> None:
    src = _artifact(tmp_path / "src")
    uri = storage.join(base, "models", "hm3")
    storage.upload_dir(src, uri)
    names = {Path(u).name for u in storage.list_files(uri)}
    assert names == {"weights.bin", "config.json", storage.MANIFEST}
    with storage.local_dir(uri) as got:
        assert (got / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
        assert json.loads((got / "sub" / "config.json").read_text()) == {"kind": "hm3"}


def test_unsealed_folder_is_refused(tmp_path: Path) -> None:
    src = _artifact(tmp_path / "half-written")
    with pytest.raises(storage.ArtifactError, match="no MANIFEST.json"):
        storage.verify_dir(src)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    src = _artifact(tmp_path / "model")
    storage.seal_dir(src)
    data = (src / "weights.bin").read_bytes()
    (src / "weights.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        storage.ArtifactError, match="weights.bin has 12800 bytes, manifest says 25600"
    ):
        storage.verify_dir(src)


def test_altered_file_is_detected(tmp_path: Path) -> None:
    src = _artifact(tmp_path / "model")
    storage.seal_dir(src)
    (src / "sub" / "config.json").write_text(json.dumps({"kind": "esm"}))
    with pytest.raises(storage.ArtifactError, match="does not match its SHA-256"):
        storage.verify_dir(src)


def test_gcs_folder_without_manifest_is_refused(gcs_bucket: str, tmp_path: Path) -> None:
    uri = f"{gcs_bucket}/unsealed"
    storage.write_text_atomic(f"{uri}/weights.bin", "x")
    with pytest.raises(storage.ArtifactError, match="no MANIFEST.json"):
        storage.download_dir(uri, tmp_path / "dl")


def test_local_file_of_gcs_object(gcs_bucket: str) -> None:
    uri = f"{gcs_bucket}/data/table.csv"
    storage.write_text_atomic(uri, "a,b\n1,2\n")
    with storage.local_file(uri) as path:
        assert path.read_text() == "a,b\n1,2\n"


# --- Parquet tables ---


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _table_folder(base: str) -> str:
    """A day-partitioned table under `base`/events, with a manifest and a nested partition."""
    folder = storage.join(base, "events")
    days = {"day=1.parquet": [1, 2], "day=2.parquet": [3], "late/day=3.parquet": [4, 5]}
    for name, ids in days.items():
        part = pa.table({"id": pa.array(ids, pa.int64()), "kind": [f"k{i}" for i in ids]})
        storage.write_bytes_atomic(storage.join(folder, name), _parquet(part))
    storage.write_text_atomic(storage.join(folder, storage.MANIFEST), "{}")
    return folder


def test_read_parquet_file_folder_and_glob(base: str) -> None:
    folder = _table_folder(base)
    whole = storage.read_parquet(folder)
    assert whole.column("id").to_pylist() == [1, 2, 3, 4, 5]  # sorted files, manifest skipped
    one = storage.read_parquet(storage.join(folder, "day=2.parquet"))
    assert one.to_pylist() == [{"id": 3, "kind": "k3"}]
    top = storage.read_parquet(storage.join(folder, "day=*.parquet"), columns=["id"])
    assert top.column_names == ["id"]
    assert top.column("id").to_pylist() == [1, 2, 3]


def test_parquet_files_lists_only_parquet(base: str) -> None:
    folder = _table_folder(base)
    names = [Path(u).name for u in storage.parquet_files(folder)]
    assert names == ["day=1.parquet", "day=2.parquet", "day=3.parquet"]


def test_read_parquet_concatenates_differing_files(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1], "extra": [None]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": [2], "extra": ["x"]}), tmp_path / "b.parquet")
    pq.write_table(pa.table({"id": [3]}), tmp_path / "c.parquet")
    table = storage.read_parquet(tmp_path)
    assert table.schema.field("extra").type == pa.string()
    assert table.column("extra").to_pylist() == [None, "x", None]


def test_missing_parquet_location_is_named(base: str) -> None:
    where = storage.join(base, "nothing-here")
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"events: no Parquet file matches {where!r}")
    ):
        storage.parquet_files(where, what="events")
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        storage.read_parquet(where)


def test_folder_without_parquet_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no table here")
    with pytest.raises(FileNotFoundError, match="no Parquet file matches .*empty"):
        storage.read_parquet(tmp_path / "empty")


def test_corrupt_parquet_is_named(base: str) -> None:
    folder = _table_folder(base)
    part = storage.join(folder, "day=2.parquet")
    storage.write_bytes_atomic(part, storage.read_bytes(part)[:-64])  # an interrupted upload
    with pytest.raises(storage.ParquetError) as caught:
        storage.read_parquet(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder}: not a readable Parquet table (truncated or corrupt?)")
    assert "day=2.parquet" in message


def test_missing_column_is_named(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1]}), tmp_path / "t.parquet")
    with pytest.raises(storage.ParquetError, match=r"t.parquet has no column\(s\) \['ts'\]"):
        storage.read_parquet(tmp_path / "t.parquet", columns=["id", "ts"])
