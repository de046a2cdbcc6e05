"""Feast's Spark offline store gives the same point-in-time features as DuckDB, value for value."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_helpers import DAY, T0, TIMELINE_USERS, applied_store, users_table

from model.data import features
from model.data.schema import SchemaError

HOUR = pd.Timedelta(hours=1)
US = pd.Timedelta(microseconds=1)


def test_spark_store_equals_duckdb_value_for_value(spark, tmp_path, timeline):
    t0, day = pd.Timestamp(T0), pd.Timedelta(DAY)
    # Every case of the point-in-time rules: before any snapshot, exactly at one, a microsecond
    # before the next day's, at the ttl edge and past it, an unknown entity, a null spend.
    cases = [
        (1, 1, t0 - HOUR),
        (1, 1, t0),
        (1, 1, t0 + day - US),
        (1, 1, t0 + day),
        (1, 1, t0 + 3 * day - US),
        (1, 1, t0 + 3 * day + HOUR),
        (1, 2, t0 + 4 * day),
        (1, 2, t0 + 4 * day + US),
        (999, 999, t0 + HOUR),
        (2, 2, t0 + HOUR),
    ]
    rows = pd.DataFrame(
        {
            "row": range(len(cases)),
            "user_id": pd.Series([c[0] for c in cases], dtype="int64"),
            "item_id": pd.Series([c[1] for c in cases], dtype="int64"),
            "event_timestamp": pd.to_datetime([c[2] for c in cases], utc=True),
        }
    )
    duck = applied_store(tmp_path / "duckdb", timeline)
    on_spark = applied_store(tmp_path / "spark", timeline, offline="spark")
    want, infos, want_filled = features.historical_features(duck, rows)
    got, _, got_filled = features.historical_features(on_spark, rows)
    pd.testing.assert_frame_equal(got, want, check_exact=True)  # values and dtypes
    assert got_filled == want_filled
    assert want_filled["user_ctr_7d"] >= 3 and want_filled["price_to_user_spend"] >= 1
    assert "price_to_user_spend" in got.columns  # the on-demand view ran on Spark's rows
    # The result came back as Parquet that Spark staged in the repo, and was removed after.
    staging = tmp_path / "spark" / features.SPARK_STAGING
    assert on_spark.config.offline_store.staging_location == str(staging)
    assert staging.is_dir() and not list(staging.iterdir())

    # Materialized through Spark, the online store serves what DuckDB's materialization serves.
    features.materialize(duck)
    features.materialize(on_spark)
    keys = [
        {"user_id": 1, "item_id": 1},
        {"user_id": 2, "item_id": 2},
        {"user_id": 9, "item_id": 9},
    ]
    assert features.online_features(on_spark, keys) == features.online_features(duck, keys)
    assert [f.name for f in infos] == list(got.columns[4:])


def test_nanosecond_timestamps_are_refused_by_name(tmp_path, timeline):
    """Spark cannot read TIMESTAMP(NANOS); Feast would call it a missing data source."""
    table = users_table(TIMELINE_USERS)
    index = table.schema.get_field_index("event_timestamp")
    table = table.set_column(
        index, "event_timestamp", table["event_timestamp"].cast(pa.timestamp("ns", tz="UTC"))
    )
    pq.write_table(table, timeline / "users.parquet", coerce_timestamps=None)
    assert pq.read_schema(timeline / "users.parquet").field("event_timestamp").type.unit == "ns"
    with pytest.raises(SchemaError, match="event_timestamp' has type timestamp\\[ns, tz=UTC\\]"):
        applied_store(tmp_path / "spark", timeline, offline="spark")
    applied_store(tmp_path / "duckdb", timeline)  # DuckDB reads nanoseconds: no refusal there


def test_the_shipped_spark_config_opens_and_applies_spark_sources(tmp_path, timeline):
    """feature_repo/feature_store.spark.yaml is a valid Feast config whose apply registers
    SparkSources (Feast's Spark store reads no FileSource)."""
    import shutil
    from pathlib import Path

    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    shipped = Path(__file__).parents[2] / "feature_repo" / "feature_store.spark.yaml"
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    shutil.copy(shipped, repo / "feature_store.yaml")
    store = features.open_store(repo)
    assert store.config.offline_store.type == "spark"
    assert store.config.offline_store.spark_conf["spark.sql.session.timeZone"] == "UTC"
    features.apply(store, str(timeline / "users.parquet"), str(timeline / "items.parquet"))
    sources = store.list_data_sources()
    assert sorted(s.name for s in sources) == ["items_source", "users_source"]
    assert all(isinstance(s, SparkSource) for s in sources)
