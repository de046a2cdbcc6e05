"""The storage layer against local folders and a real GCS API emulator."""

from __future__ import annotations

import json
from pathlib import Path

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
