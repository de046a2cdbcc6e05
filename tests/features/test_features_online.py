"""Apply -> materialize -> online read, the same suite on SQLite and on a real Redis server."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from feature_helpers import DAY, T0, applied_store

from model.data import features


@pytest.fixture()
def store(tmp_path, timeline, online_store):
    # A fresh project per test: Redis keys are namespaced by project, the server is shared.
    project = f"t{uuid.uuid4().hex[:10]}"
    return applied_store(tmp_path / "repo", timeline, online=online_store, project=project)


def test_round_trip_serves_the_latest_snapshot(store):
    report = features.materialize(store)
    assert report.views == ["user_features", "item_features"]
    assert pd.Timestamp(report.end) == pd.Timestamp(T0 + 2 * DAY) + pd.Timedelta(seconds=1)
    result = features.online_features(store, [{"user_id": 1, "item_id": 1}])
    assert result.missing == {}
    assert result.values["user_ctr_7d"] == [0.3]  # user 1's last snapshot
    assert result.values["user_avg_spend"] == [50.0]
    assert result.values["price"] == [20.0]  # item 1's last snapshot
    assert result.values["price_to_user_spend"] == [pytest.approx(0.4)]  # computed on request
    assert result.values["age_bucket"] == [3]


def test_missing_values_are_filled_and_reported(store):
    features.materialize(store)
    rows = [
        {"user_id": 1, "item_id": 2},
        {"user_id": 2, "item_id": 1},
        {"user_id": 77, "item_id": 1},
    ]
    result = features.online_features(store, rows)
    infos = {f.name: f for f in features.resolve_features(store)}
    assert result.values["user_avg_spend"][1] == infos["user_avg_spend"].default  # null in table
    assert result.values["price_to_user_spend"][1] == infos["price_to_user_spend"].default
    assert result.missing["user_avg_spend"] == [1, 2]
    assert result.missing["price_to_user_spend"] == [1, 2]
    assert result.missing["age_bucket"] == [2]  # user 77 was never seen
    assert "price" not in result.missing
    for name, values in result.values.items():
        assert len(values) == 3
        assert all(isinstance(v, int if infos[name].dtype == "int64" else float) for v in values)


def test_online_equals_offline_at_the_latest_snapshot(store):
    """What serving reads equals what training retrieved for the same moment."""
    features.materialize(store)
    rows = [
        {"user_id": 1, "item_id": 1},
        {"user_id": 1, "item_id": 2},
        {"user_id": 2, "item_id": 2},
    ]
    online = features.online_features(store, rows)
    entities = pd.DataFrame(rows).astype("int64")
    entities["event_timestamp"] = pd.Timestamp(T0 + 2 * DAY)
    offline, infos, _ = features.historical_features(store, entities)
    for info in infos:
        assert online.values[info.name] == pytest.approx(list(offline[info.name])), info.name


def test_bad_rows_name_row_and_key(store):
    with pytest.raises(ValueError, match=r"row 1: missing join key 'item_id'"):
        features.online_features(store, [{"user_id": 1, "item_id": 1}, {"user_id": 1}])
    with pytest.raises(ValueError, match=r"row 0: join key 'user_id' must be an int, got '1'"):
        features.online_features(store, [{"user_id": "1", "item_id": 1}])


def test_sqlite_and_redis_give_identical_answers(tmp_path, timeline, redis_server):
    rows = [{"user_id": u, "item_id": i} for u in (1, 2, 5) for i in (1, 2, 9)]
    answers = {}
    for kind, address in (("sqlite", "127.0.0.1:1"), ("redis", redis_server)):
        project = f"t{uuid.uuid4().hex[:10]}"
        store = applied_store(tmp_path / kind, timeline, online=(kind, address), project=project)
        features.materialize(store)
        answers[kind] = features.online_features(store, rows)
    assert answers["sqlite"] == answers["redis"]
