"""Feast data sources over the simulator's daily feature snapshots.

Where the data lives is a parameter, not a constant: the embedded repo (`definitions.py`) reads
`data/users.parquet` relative to this folder, a pipeline run points the same definitions at the
world it generated (`model.data.features.apply`), and production points them at BigQuery tables.

A location is a local path or `file://`/`gs://` URI (Parquet, read by the file or DuckDB offline
store, or by Spark as a `SparkSource`) or `bq://project.dataset.table` (BigQuery offline store).
"""

from __future__ import annotations

from feast import BigQuerySource, FileSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

TIMESTAMP_FIELD = "event_timestamp"  # as in model.data.schema.USERS / ITEMS
BIGQUERY_SCHEME = "bq://"


def snapshot_source(name: str, location: str, description: str, spark: bool = False) -> DataSource:
    """A batch source of daily snapshots stamped by `event_timestamp`.

    Args:
        name: Source name in the registry, e.g. "users_source".
        location: Parquet path/URI, or `bq://project.dataset.table`.
        description: What the table holds.
        spark: Parquet read by Feast's Spark offline store, which only takes `SparkSource`s.

    Returns:
        A FileSource (or SparkSource) for Parquet locations, a BigQuerySource for `bq://` ones.

    Raises:
        ValueError: If `location` is empty or a malformed `bq://` reference.
    """
    if not location:
        raise ValueError(f"{name}: location must be a path or URI, got {location!r}")
    if location.startswith(BIGQUERY_SCHEME):
        table = location[len(BIGQUERY_SCHEME) :]
        if table.count(".") != 2:
            raise ValueError(
                f"{name}: BigQuery location must be bq://project.dataset.table, got {location!r}"
            )
        return BigQuerySource(
            name=name, table=table, timestamp_field=TIMESTAMP_FIELD, description=description
        )
    if spark:
        return SparkSource(
            name=name,
            path=location,
            file_format="parquet",
            timestamp_field=TIMESTAMP_FIELD,
            description=description,
        )
    return FileSource(
        name=name,
        path=location,
        file_format=ParquetFormat(),
        timestamp_field=TIMESTAMP_FIELD,
        description=description,
    )


def users_source(location: str, spark: bool = False) -> DataSource:
    """The users table: one row per user and day (see `model.data.schema.USERS`)."""
    return snapshot_source(
        "users_source", location, "Daily user profile and behavior snapshots (00:00 UTC).", spark
    )


def items_source(location: str, spark: bool = False) -> DataSource:
    """The items table: one row per item and day (see `model.data.schema.ITEMS`)."""
    return snapshot_source(
        "items_source", location, "Daily item catalog and behavior snapshots (00:00 UTC).", spark
    )
