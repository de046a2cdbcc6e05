"""Bad input fails with an error naming the column, row or reference."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_helpers import T0, TIMELINE_USERS, applied_store, users_table

from model.data import features, schema


@pytest.fixture()
def store(tmp_path, timeline):
    return applied_store(tmp_path / "repo", timeline)


def frame(**columns) -> pd.DataFrame:
    base = {
        "user_id": pd.Series([1, 2], dtype="int64"),
        "item_id": pd.Series([1, 2], dtype="int64"),
        "event_timestamp": pd.to_datetime([T0, T0], utc=True),
    }
    return pd.DataFrame(base | columns)


def test_entity_frame_without_entity_column(store):
    with pytest.raises(ValueError, match="entity dataframe: missing column 'item_id'"):
        features.historical_features(store, frame().drop(columns="item_id"))
    with pytest.raises(ValueError, match="missing column 'event_timestamp'"):
        features.historical_features(store, frame().drop(columns="event_timestamp"))


def test_entity_frame_with_non_timestamp_event_timestamp(store):
    with pytest.raises(ValueError, match="'event_timestamp' must be a timestamp, got object"):
        features.historical_features(store, frame(event_timestamp=["2026-10-01", "2026-10-02"]))


def test_entity_frame_with_null_key(store):
    with pytest.raises(ValueError, match=r"column 'user_id' has 1 nulls \(first at row 1\)"):
        features.historical_features(store, frame(user_id=pd.Series([1, None], dtype="Int64")))


def test_unknown_feature_service(store):
    with pytest.raises(features.FeatureReferenceError, match=r"'hm3_v9'; registered: \['hm3_v1'\]"):
        features.historical_features(store, frame(), "hm3_v9")


def test_unknown_feature_reference(store):
    with pytest.raises(features.FeatureReferenceError, match="'user_features:shoe_size'"):
        features.historical_features(
            store, frame(), ["user_features:age_bucket", "user_features:shoe_size"]
        )
    with pytest.raises(features.FeatureReferenceError, match="'nope:price'"):
        features.online_features(store, [{"user_id": 1, "item_id": 1}], ["nope:price"])


def test_feature_references_select_a_subset(store):
    out, infos, _ = features.historical_features(
        store, frame(), ["item_features:price", "user_features:gender"]
    )
    assert [f.name for f in infos] == ["price", "gender"]
    assert list(out.columns) == ["user_id", "item_id", "event_timestamp", "price", "gender"]


def test_feature_table_with_null_key(tmp_path):
    bad = tmp_path / "users.parquet"
    rows = [*TIMELINE_USERS[:2], {**TIMELINE_USERS[2], "event_timestamp": None}]
    pq.write_table(users_table(rows), bad)
    with pytest.raises(
        ValueError, match=r"column 'event_timestamp' has 1 null values \(first at row 2\)"
    ):
        features.check_feature_table(str(bad), schema.USERS, ["user_id", "event_timestamp"])


def test_feature_table_with_missing_or_mistyped_column(tmp_path):
    table = users_table(TIMELINE_USERS)
    missing = tmp_path / "missing.parquet"
    pq.write_table(table.drop_columns(["city_tier"]), missing)
    with pytest.raises(schema.SchemaError, match="missing column 'city_tier'"):
        features.check_feature_table(str(missing), schema.USERS, ["user_id"])
    mistyped = tmp_path / "mistyped.parquet"
    pq.write_table(table.set_column(3, "gender", pa.array(["f"] * len(table))), mistyped)
    with pytest.raises(schema.SchemaError, match="column 'gender' has type string"):
        features.check_feature_table(str(mistyped), schema.USERS, ["user_id"])


def test_feature_table_nulls_are_counted_not_errors(tmp_path):
    path = tmp_path / "users.parquet"
    pq.write_table(users_table(TIMELINE_USERS), path)
    check = features.check_feature_table(str(path), schema.USERS, ["user_id", "event_timestamp"])
    assert check.rows == len(TIMELINE_USERS)
    assert check.nulls["user_avg_spend"] == 1
    assert sum(check.nulls.values()) == 1


def test_impressions_with_duplicate_ids(tmp_path, store):
    path = tmp_path / "impressions.parquet"
    row = {
        "impression_id": "x",
        "user_id": 1,
        "item_id": 1,
        "ts": T0,
        "position": 1,
        "scene": "home",
        "device": "ios",
    }
    pq.write_table(pa.Table.from_pylist([row, row], schema=schema.IMPRESSIONS), path)
    with pytest.raises(ValueError, match="duplicate impression_id values, e.g. 'x'"):
        features.retrieve_historical(store, str(path), str(tmp_path / "f.parquet"))


def test_store_config_names_the_field():
    with pytest.raises(ValueError, match="online_store must be one of .* got 'memcached'"):
        features.StoreConfig(repo_dir="r", online_store="memcached")
    with pytest.raises(ValueError, match="redis must be host:port, got 'localhost'"):
        features.StoreConfig(repo_dir="r", redis="localhost")


def test_impressions_without_ts_column(tmp_path, store):
    path = tmp_path / "impressions.parquet"
    pq.write_table(pa.table({"impression_id": ["a"], "user_id": [1], "item_id": [1]}), path)
    with pytest.raises(schema.SchemaError, match="missing column 'ts'"):
        features.retrieve_historical(store, str(path), str(tmp_path / "f.parquet"))


def test_on_demand_only_reference_needs_the_source_keys(store):
    """An on-demand feature alone still needs the keys of the views it reads."""
    with pytest.raises(ValueError, match="missing column 'item_id'"):
        features.historical_features(
            store, frame().drop(columns="item_id"), ["price_to_user_spend:price_to_user_spend"]
        )
    out, _, _ = features.historical_features(
        store, frame(), ["price_to_user_spend:price_to_user_spend"]
    )
    assert list(out.columns)[-1] == "price_to_user_spend"


def test_on_demand_view_over_request_data_is_refused():
    """Historical retrieval hands on-demand views their source features only, not entity columns."""
    view = SimpleNamespace(name="discounted", source_request_sources={"discount_request": None})
    store = SimpleNamespace(list_on_demand_feature_views=lambda: [view])
    info = features.ServiceFeature("discounted_price", "discounted", "float64", "dense", 0.0, "")
    with pytest.raises(ValueError, match=r"'discounted' reads request data \['discount_request'\]"):
        features._on_demand_views(store, [info])
