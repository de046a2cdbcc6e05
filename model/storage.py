"""One small storage layer for every data and model location: local paths, file:// and gs://.

Writes are atomic: a single file is written under a temporary name and renamed (local) or
uploaded as one object (GCS objects only become visible when complete). A folder (a model
artifact, a labels output) is uploaded file by file and then sealed by `MANIFEST.json`, written
last, which lists every file with its size and SHA-256; `download_dir` refuses a folder without
a manifest or whose files do not match it, so a half-written or truncated artifact is never read
as complete.

The GCS client honours `STORAGE_EMULATOR_HOST`, which the tests point at a real GCS API emulator.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import pyarrow as pa
    from google.cloud.storage import Bucket, Client

MANIFEST = "MANIFEST.json"


class ArtifactError(RuntimeError):
    """An artifact is missing, incomplete or corrupt."""


class ParquetError(ValueError):
    """A location holds a file that is not a readable Parquet table (truncated or corrupt)."""


def is_gcs(uri: str | os.PathLike[str]) -> bool:
    """True for a gs://bucket/prefix URI."""
    return str(uri).startswith("gs://")


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    base = str(base)
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(_local(base), *parts))


def _local(uri: str | os.PathLike[str]) -> Path:
    text = str(uri)
    return Path(text[len("file://") :]) if text.startswith("file://") else Path(text)


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"not a gs://bucket/... URI: {uri!r}")
    return bucket, key


@cache
def _client() -> Client:
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="hm3-local", credentials=AnonymousCredentials())
    return storage.Client()


def _bucket(name: str) -> Bucket:
    return _client().bucket(name)


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a file (or, for gs://, an object) exists."""
    if is_gcs(uri):
        bucket, key = _split(str(uri))
        return _bucket(bucket).blob(key).exists()
    return _local(uri).exists()


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    """Read a whole file.

    Raises:
        FileNotFoundError: Naming the URI.
    """
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, key = _split(str(uri))
        try:
            return _bucket(bucket).blob(key).download_as_bytes()
        except NotFound as err:
            raise FileNotFoundError(f"no such object: {uri}") from err
    return _local(uri).read_bytes()


def read_text(uri: str | os.PathLike[str]) -> str:
    """Read a whole UTF-8 text file."""
    return read_bytes(uri).decode("utf-8")


def write_bytes_atomic(uri: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that readers see either the old content or all of the new one."""
    if is_gcs(uri):
        bucket, key = _split(str(uri))
        _bucket(bucket).blob(key).upload_from_string(data)
        return
    path = _local(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(uri: str | os.PathLike[str], text: str) -> None:
    """Write a UTF-8 text file atomically."""
    write_bytes_atomic(uri, text.encode("utf-8"))


def list_files(uri: str | os.PathLike[str]) -> list[str]:
    """Every file under a folder or prefix, as full paths/URIs, sorted."""
    if is_gcs(uri):
        bucket, key = _split(str(uri))
        prefix = key.rstrip("/") + "/" if key else ""
        blobs = _client().list_blobs(bucket, prefix=prefix)
        return sorted(f"gs://{bucket}/{b.name}" for b in blobs if not b.name.endswith("/"))
    root = _local(uri)
    if root.is_file():
        return [str(root)]
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def seal_dir(local_dir: str | os.PathLike[str]) -> dict[str, dict[str, object]]:
    """Write `MANIFEST.json` into a finished local folder and return its entries."""
    root = _local(local_dir)
    entries = {
        str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": _digest(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    write_text_atomic(root / MANIFEST, json.dumps({"files": entries}, indent=2, sort_keys=True))
    return entries


def verify_dir(local_dir: str | os.PathLike[str]) -> None:
    """Check a local folder against its manifest.

    Raises:
        ArtifactError: Naming the folder and the first missing, truncated or altered file.
    """
    root = _local(local_dir)
    manifest = root / MANIFEST
    if not manifest.exists():
        raise ArtifactError(
            f"{root}: no {MANIFEST}; the artifact is incomplete or was never sealed"
        )
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as err:
        raise ArtifactError(f"{manifest}: unreadable manifest ({err})") from err
    for name, entry in files.items():
        path = root / name
        if not path.exists():
            raise ArtifactError(f"{root}: {name} is listed in {MANIFEST} but missing")
        if path.stat().st_size != entry["size"]:
            raise ArtifactError(
                f"{root}: {name} has {path.stat().st_size} bytes, manifest says {entry['size']}"
                " (truncated or altered)"
            )
        if _digest(path) != entry["sha256"]:
            raise ArtifactError(f"{root}: {name} does not match its SHA-256 in {MANIFEST}")


def upload_dir(local_dir: str | os.PathLike[str], uri: str | os.PathLike[str]) -> str:
    """Copy a local folder to a local path or gs:// prefix, sealing it with a manifest last."""
    root = _local(local_dir)
    seal_dir(root)
    target = str(uri)
    if not is_gcs(target):
        dest = _local(target)
        if dest.resolve() != root.resolve():
            staging = dest.with_name(f".{dest.name}.incoming")
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(root, staging)
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(staging, dest)
        return str(dest)
    bucket_name, key = _split(target)
    bucket = _bucket(bucket_name)
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST]
    for path in files:
        bucket.blob(f"{key.rstrip('/')}/{path.relative_to(root)}").upload_from_filename(str(path))
    bucket.blob(f"{key.rstrip('/')}/{MANIFEST}").upload_from_filename(str(root / MANIFEST))
    return target


def download_dir(uri: str | os.PathLike[str], local_dir: str | os.PathLike[str]) -> Path:
    """Fetch a sealed folder to a local folder and verify it against its manifest."""
    dest = _local(local_dir)
    if not is_gcs(uri):
        src = _local(uri)
        verify_dir(src)
        if src.resolve() != dest.resolve():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest
    bucket_name, key = _split(str(uri))
    prefix = key.rstrip("/") + "/"
    manifest_blob = _bucket(bucket_name).blob(prefix + MANIFEST)
    if not manifest_blob.exists():
        raise ArtifactError(f"{uri}: no {MANIFEST}; the artifact is incomplete or was never sealed")
    for name in list_files(uri):
        rel = name[len(f"gs://{bucket_name}/{prefix}") :]
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _bucket(bucket_name).blob(prefix + rel).download_to_filename(str(target))
    verify_dir(dest)
    return dest


@contextmanager
def local_file(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local path holding the file at `uri` (a temporary copy for gs://)."""
    if not is_gcs(uri):
        path = _local(uri)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="hm3-") as tmp:
        path = Path(tmp) / Path(_split(str(uri))[1]).name
        path.write_bytes(read_bytes(uri))
        yield path


@contextmanager
def open_binary(uri: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A seekable reader; for gs:// one that fetches only the byte ranges read (a footer).

    Raises:
        FileNotFoundError: Naming the URI.
    """
    if not is_gcs(uri):
        with _local(uri).open("rb") as handle:
            yield handle
        return
    from google.api_core.exceptions import NotFound

    bucket, key = _split(str(uri))
    try:
        blob = _bucket(bucket).get_blob(key)
    except NotFound as err:
        raise FileNotFoundError(f"no such object: {uri}") from err
    if blob is None:
        raise FileNotFoundError(f"no such object: {uri}")
    with blob.open("rb") as handle:
        yield handle


@contextmanager
def local_dir(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local folder holding the verified, sealed folder at `uri` (a temporary copy for gs://)."""
    if not is_gcs(uri):
        verify_dir(uri)
        yield _local(uri)
        return
    with tempfile.TemporaryDirectory(prefix="hm3-") as tmp:
        yield download_dir(uri, tmp)


# --- Parquet tables -----------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def _has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def parquet_files(location: str | os.PathLike[str], *, what: str | None = None) -> list[str]:
    """Every Parquet file a location names, as full paths/URIs, sorted.

    The location is local, file:// or gs:// and names one file (any name), a folder (every
    `*.parquet` file under it, at any depth; other files such as a manifest are skipped) or a
    glob (`*`, `?`, `[...]`; every file it matches, at any depth for `**`).

    Args:
        location: A file, folder or glob.
        what: A name for the table in the error message (e.g. "events").

    Raises:
        FileNotFoundError: Nothing matches; names `what` and the location.
    """
    spec = os.fspath(location)
    if is_gcs(spec):
        if _has_glob(spec):
            parts = spec.split("/")
            prefix = "/".join(parts[: next(i for i, p in enumerate(parts) if _has_glob(p))])
            found = [u for u in list_files(prefix) if fnmatch(u, spec)]
        elif exists(spec):
            found = [spec]
        else:
            found = [u for u in list_files(spec) if u.endswith(".parquet")]
    else:
        local = str(_local(spec))
        path = Path(local)
        if _has_glob(local):
            found = sorted(p for p in glob.glob(local, recursive=True) if Path(p).is_file())
        elif path.is_dir():
            found = sorted(str(p) for p in path.rglob("*.parquet") if p.is_file())
        else:
            found = [local] if path.is_file() else []
    if not found:
        head = f"{what}: " if what else ""
        raise FileNotFoundError(f"{head}no Parquet file matches {spec!r}")
    return found


def read_parquet(
    location: str | os.PathLike[str], columns: Sequence[str] | None = None
) -> pa.Table:
    """Read a Parquet table from a file, folder or glob, local, file:// or gs://.

    The files of a folder or glob (see `parquet_files`) are read in sorted order and
    concatenated; a column missing from some files is null there, and a column that is null in
    one file takes its type from the others.

    Args:
        location: A file, folder or glob.
        columns: Read only these columns (default: all).

    Raises:
        FileNotFoundError: Nothing matches the location (named).
        ParquetError: A file is not readable Parquet or lacks a requested column (location and
            file named).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for uri in parquet_files(location):
        data = read_bytes(uri) if is_gcs(uri) else None
        wanted = None if columns is None else list(columns)
        try:
            names = pq.read_schema(uri if data is None else pa.BufferReader(data)).names
            missing = [c for c in wanted or () if c not in names]
            if not missing:
                source = uri if data is None else pa.BufferReader(data)
                tables.append(pq.read_table(source, columns=wanted))
        except (pa.ArrowException, OSError) as err:
            raise ParquetError(
                f"{os.fspath(location)}: not a readable Parquet table (truncated or corrupt?): "
                f"{uri}: {err}"
            ) from err
        if missing:
            raise ParquetError(f"{os.fspath(location)}: {uri} has no column(s) {missing}")
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")
