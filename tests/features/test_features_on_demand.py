"""The on-demand ratio's UDF and how historical retrieval calls an on-demand view's UDF."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from feast import Field, OnDemandFeatureView
from feast.types import Float64
from feature_helpers import DAY, T0, applied_store

from feature_repo import definitions, on_demand
from model.data import features

PRICES = [10.0, None, 20.0, 5.0, 5.0, 1e308]
SPENDS = [40.0, 40.0, None, 0.0, -2.0, 1e-308]  # the last ratio overflows to inf
RATIOS = [0.25, None, None, None, None, None]  # None: missing, filled later from the default


def test_the_ratio_udf_gives_the_same_values_for_lists_and_arrays() -> None:
    """Feast hands lists (None for missing) online; retrieval hands arrays (NaN for missing)."""
    from_lists = on_demand.price_to_user_spend({"price": PRICES, "user_avg_spend": SPENDS})
    arrays = {
        "price": np.array(PRICES, dtype=np.float64),
        "user_avg_spend": np.array(SPENDS, dtype=np.float64),
    }
    from_arrays = on_demand.price_to_user_spend(arrays)
    for got in (from_lists, from_arrays):
        values = got["price_to_user_spend"]
        assert isinstance(values, list)  # Feast's online path needs a list
        assert [None if math.isnan(v) else v for v in values] == RATIOS


def _inputs() -> pa.Table:
    return pa.table(
        {"price": pa.array(PRICES, pa.float64()), "user_avg_spend": pa.array(SPENDS, pa.float64())}
    )


def _ratio_view(udf, tags: dict[str, str]) -> OnDemandFeatureView:
    defs = definitions.build("u", "i")
    users, items = defs.feature_views
    return OnDemandFeatureView(
        name="price_to_user_spend",
        sources=[users[["user_avg_spend"]], items[["price"]]],
        schema=[Field(name="price_to_user_spend", dtype=Float64)],
        udf=udf,
        udf_string="ratio",
        mode="python",
        tags=tags,
    )


def _ratio_outputs() -> list[features.ServiceFeature]:
    infos = features.service_features(
        definitions.build("u", "i").services[0],
        {v.name: v for v in (*definitions.build("u", "i").on_demand_views,)},
    )
    return [f for f in infos if f.view == "price_to_user_spend"]


@pytest.mark.parametrize("tagged", [True, False])
def test_only_a_view_tagged_columnar_gets_arrays(tagged: bool) -> None:
    """An untagged python-mode view (e.g. a team's own) keeps Feast's lists-in contract."""
    seen: list[type] = []

    def ratio(inputs):
        seen.append(type(inputs["price"]))
        return on_demand.price_to_user_spend(inputs)

    tags = {on_demand.COLUMNAR_UDF_TAG: "true"} if tagged else {}
    out = features._transform(_ratio_view(ratio, tags), _inputs(), _ratio_outputs())
    assert seen == [np.ndarray if tagged else list]
    got = out["price_to_user_spend"].to_pylist()
    assert [None if v is None or math.isnan(v) else v for v in got] == RATIOS


def test_a_store_whose_ratio_view_is_untagged_gives_the_same_features(tmp_path, timeline) -> None:
    """The registry's view decides: replaced by one without the tag, whose UDF takes lists
    only, retrieval still calls it through Feast and gets the same values."""
    import pandas as pd

    def list_only_ratio(inputs):
        if not isinstance(inputs["price"], list):
            raise TypeError(f"lists expected, got {type(inputs['price'])}")
        return on_demand.price_to_user_spend(inputs)

    store = applied_store(tmp_path / "repo", timeline)
    users = store.get_feature_view("user_features")
    items = store.get_feature_view("item_features")
    view = on_demand.price_to_user_spend_view(users, items)
    untagged = OnDemandFeatureView(
        name=view.name,
        sources=[users[["user_avg_spend"]], items[["price"]]],
        schema=view.schema,
        udf=list_only_ratio,
        udf_string="list_only_ratio",
        mode="python",
        tags={k: v for k, v in view.tags.items() if k != on_demand.COLUMNAR_UDF_TAG},
    )
    store.apply([untagged])
    assert on_demand.COLUMNAR_UDF_TAG not in store.get_on_demand_feature_view(view.name).tags
    t0 = pd.Timestamp(T0)
    entities = pd.DataFrame(
        {
            "user_id": pd.Series([1, 1, 2], dtype="int64"),
            "item_id": pd.Series([1, 1, 2], dtype="int64"),
            "event_timestamp": pd.to_datetime(
                [t0 + pd.Timedelta(hours=1), t0 + pd.Timedelta(DAY), t0 + pd.Timedelta(hours=1)],
                utc=True,
            ),
        }
    )
    frame, _, filled = features.historical_features(store, entities)
    assert list(frame["price_to_user_spend"]) == pytest.approx([0.25, 0.5, 1.0])
    assert filled["price_to_user_spend"] == 1
