"""Copy a user's raw logs into a pipeline run, validating each table against its contract."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from model import storage
from model.data import schema

log = logging.getLogger(__name__)

REQUIRED = ("impressions", "events", "users", "items")


def ingest_logs(source_uri: str, out_dir: str | Path) -> dict[str, int]:
    """Copy impressions, events, users, items (and truth, if present) into `out_dir`.

    Partitioned tables (one file per day) are copied as folders of the same name.

    Returns:
        Rows per table.

    Raises:
        FileNotFoundError: A required table is missing.
        schema.SchemaError: A table is not readable Parquet, lacks a column or has it with the
            wrong type.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name in (*REQUIRED, "truth"):
        # The Parquet file `<name>.parquet`, or every Parquet file under the folder `<name>/`.
        single = storage.join(source_uri, f"{name}.parquet")
        try:
            uris = storage.parquet_files(
                single if storage.exists(single) else storage.join(source_uri, name)
            )
        except FileNotFoundError:
            if name == "truth":
                continue
            raise FileNotFoundError(
                f"{source_uri}: no {name}.parquet and no {name}/ folder of Parquet files"
            ) from None
        single = len(uris) == 1 and uris[0].endswith(f"{name}.parquet")
        targets = []
        for uri in uris:
            rel = Path(uri).name if single else Path(name, Path(uri).name)
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(uri))
            targets.append(str(target))
        try:
            dataset = ds.dataset(targets, format="parquet")
        except pa.ArrowInvalid as err:
            raise schema.SchemaError(
                f"{source_uri}:{name}: not a readable Parquet table (truncated or corrupt?): {err}"
            ) from err
        schema.validate_columns(dataset.schema, schema.TABLES[name], source=f"{source_uri}:{name}")
        counts[name] = dataset.count_rows()
        log.info("ingested %s: %d rows from %d file(s)", name, counts[name], len(uris))
    return counts
