"""Point-in-time correctness of historical retrieval on a hand-made timeline."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feature_helpers import DAY, T0, TIMELINE_ITEMS, applied_store, items_table, users_table

from model.data import features

HOUR = pd.Timedelta(hours=1)
US = pd.Timedelta(microseconds=1)


def entity_rows(rows: list[tuple[int, int, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": range(len(rows)),
            "user_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "item_id": pd.Series([r[1] for r in rows], dtype="int64"),
            "event_timestamp": pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


@pytest.mark.parametrize("part_rows", [features.ENTITY_ROWS, 2])
def test_values_before_at_and_after_the_impression(tmp_path, timeline, monkeypatch, part_rows):
    """Also with the entity rows sent to Feast two at a time (counts add up over the parts)."""
    monkeypatch.setattr(features, "ENTITY_ROWS", part_rows)
    store = applied_store(tmp_path / "repo", timeline)
    t0, day = pd.Timestamp(T0), pd.Timedelta(DAY)
    cases = [
        # (user, item, when, expected user_ctr_7d, expected price)
        (1, 1, t0 - HOUR, None, None),  # before any snapshot: missing
        (1, 1, t0, 0.1, 10.0),  # a snapshot stamped exactly at the impression counts
        (1, 1, t0 + 12 * HOUR, 0.1, 10.0),
        (1, 1, t0 + day - US, 0.1, 10.0),  # the next day's snapshot must not leak in
        (1, 1, t0 + day, 0.2, 20.0),
        (1, 1, t0 + 2 * day + HOUR, 0.3, 20.0),
        (1, 1, t0 + 3 * day - US, 0.3, 20.0),  # price: the T0+1d snapshot, almost ttl old
        (1, 1, t0 + 3 * day + HOUR, 0.3, None),  # price snapshot older than ttl (2 days)
        (1, 1, t0 + 4 * day + HOUR, None, None),  # every snapshot older than ttl
    ]
    frame, infos, filled = features.historical_features(store, entity_rows([c[:3] for c in cases]))
    defaults = features.feature_defaults(infos)
    assert list(frame["row"]) == list(range(len(cases)))  # input order kept
    for i, (_, _, when, ctr, price) in enumerate(cases):
        row = frame.iloc[i]
        want_ctr = defaults["user_ctr_7d"] if ctr is None else ctr
        want_price = defaults["price"] if price is None else price
        assert row["user_ctr_7d"] == pytest.approx(want_ctr), f"case {i} at {when}"
        assert row["price"] == pytest.approx(want_price), f"case {i} at {when}"
    assert filled["user_ctr_7d"] == 2
    assert filled["price"] == 3


def test_ttl_boundary_is_inclusive(tmp_path, timeline):
    """A snapshot exactly ttl old is still valid; one microsecond older is expired."""
    store = applied_store(tmp_path / "repo", timeline)
    last = pd.Timestamp(T0) + 2 * pd.Timedelta(DAY)  # user 1's last snapshot
    ttl = pd.Timedelta(store.get_feature_view("user_features").ttl)
    frame, _, _ = features.historical_features(
        store, entity_rows([(1, 2, last + ttl), (1, 2, last + ttl + US)])
    )
    assert list(frame["user_ctr_7d"]) == [0.3, 0.0]


@pytest.mark.parametrize("slice_rows", [features.ON_DEMAND_ROWS, 1])
def test_on_demand_ratio_uses_point_in_time_inputs(tmp_path, timeline, monkeypatch, slice_rows):
    """Also one row per call of the view: user 2's slice is all None (Arrow's null type)."""
    monkeypatch.setattr(features, "ON_DEMAND_ROWS", slice_rows)
    store = applied_store(tmp_path / "repo", timeline)
    t0, day = pd.Timestamp(T0), pd.Timedelta(DAY)
    rows = [(1, 1, t0 + HOUR), (1, 1, t0 + day + HOUR), (1, 1, t0 + 2 * day + HOUR)]
    frame, infos, filled = features.historical_features(
        store, entity_rows([*rows, (2, 2, t0 + HOUR)])
    )
    # 10/40 on day 0, 20/40 on day 1, 20/50 on day 2 (the latest snapshot would give 0.4 to every
    # row, the next day's 0.5 to day 0); user 2's spend is null in the table -> the default.
    assert list(frame["price_to_user_spend"]) == pytest.approx([0.25, 0.5, 0.4, 1.0])
    # The ratio is computed from the same row's point-in-time inputs.
    known = frame.iloc[:3]
    assert list(known["price_to_user_spend"]) == pytest.approx(
        list(known["price"] / known["user_avg_spend"])
    )
    assert filled["user_avg_spend"] == 1
    assert filled["price_to_user_spend"] == 1
    assert frame["user_avg_spend"].iloc[3] == features.feature_defaults(infos)["user_avg_spend"]


def test_unknown_entities_get_defaults_and_are_counted(tmp_path, timeline):
    store = applied_store(tmp_path / "repo", timeline)
    frame, infos, filled = features.historical_features(
        store, entity_rows([(999, 999, pd.Timestamp(T0) + HOUR)])
    )
    for info in infos:
        assert frame[info.name].iloc[0] == info.default
        assert filled[info.name] == 1
        assert str(frame[info.name].dtype) == info.dtype


def test_nan_in_a_source_table_is_missing(tmp_path):
    """A NaN feature value in a source table is filled with the default and counted, like a null."""
    data = tmp_path / "data"
    data.mkdir()
    nan = float("nan")
    pq.write_table(
        users_table([{"user_id": 1, "event_timestamp": T0, "user_ctr_7d": nan}]),
        data / "users.parquet",
    )
    pq.write_table(items_table(TIMELINE_ITEMS), data / "items.parquet")
    store = applied_store(tmp_path / "repo", data)
    frame, infos, filled = features.historical_features(
        store, entity_rows([(1, 1, pd.Timestamp(T0) + HOUR)])
    )
    assert frame["user_ctr_7d"].iloc[0] == features.feature_defaults(infos)["user_ctr_7d"]
    assert filled["user_ctr_7d"] == 1
    assert filled["price"] == 0


def test_rows_feast_duplicates_or_renumbers_are_an_error():
    """The row numbers that restore the input order must name each entity row exactly once."""
    assert list(features._input_order(pa.chunked_array([[2, 0], [1]]), 3)) == [1, 2, 0]
    for numbers in ([0, 0, 2], [0, 1, 3], [-1, 0, 1]):
        with pytest.raises(RuntimeError, match="duplicated or renumbered"):
            features._input_order(pa.chunked_array([numbers]), 3)


def test_file_store_row_loss_is_an_error(tmp_path, timeline):
    """Feast's dask `file` store drops rows without a snapshot; we refuse rather than lose them."""
    store = applied_store(tmp_path / "repo", timeline, offline="file")
    rows = entity_rows([(1, 1, pd.Timestamp(T0) + HOUR), (1, 1, pd.Timestamp(T0) - HOUR)])
    with pytest.raises(RuntimeError, match="returned 1 rows for 2 entity rows"):
        features.historical_features(store, rows)


def test_many_rows_come_back_in_input_order(tmp_path, timeline):
    """Feast's query returns rows in its own order; each row's values must land on that row.

    300,000 rows at shuffled times (DuckDB keeps a small input in order and splits a large one
    among its threads): user 1's user_ctr_7d tells the days apart (0.1, 0.2, 0.3), so a value
    restored to the wrong row shows.
    """
    import numpy as np

    store = applied_store(tmp_path / "repo", timeline)
    hours = np.random.default_rng(0).permutation(300_000) % 66  # days 0-2, shuffled
    ones = pd.Series(np.ones(len(hours), dtype=np.int64))
    entities = pd.DataFrame(
        {
            "user_id": ones,
            "item_id": ones,
            "event_timestamp": pd.Timestamp(T0) + pd.to_timedelta(hours, unit="h"),
        }
    )
    frame, _, _ = features.historical_features(store, entities)
    want = np.select([hours < 24, hours < 48], [0.1, 0.2], 0.3)
    assert frame["user_ctr_7d"].to_numpy() == pytest.approx(want)
