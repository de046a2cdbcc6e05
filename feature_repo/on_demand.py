"""On-demand feature views: computed from other features at request time, online and offline.

The same Python function runs for training and for serving, so the two cannot drift: online
inside `get_online_features`; offline through the view's own `OnDemandFeatureView.transform_arrow`,
which `model.data.features` calls on the point-in-time values of the view's inputs (Feast's
retrieval job would hand the function the whole result, keys and timestamps included, as Python
lists: most of the historical retrieval's time before).

Feast 0.67 keeps neither tags nor descriptions of an on-demand view's output Fields: its registry
reads them back bare (`OnDemandFeatureView._parse_features_from_proto`), and `==` on Fields then
fails wherever Feast compares them (feast-dev/feast#3617). So output Fields are declared with
`feature()` like all others, registered bare, and their tags travel on the view as
`<feature>.<tag>` (`field_tags_on_view`), where `model.data.features` reads them.
"""

from __future__ import annotations

import inspect
from typing import Any

from feast import FeatureView, OnDemandFeatureView
from feast.types import Float64

from feature_repo.entities import OWNER
from feature_repo.feature_views import feature, field_tags_on_view, untagged
from model.data.schema import KIND_DENSE

PRICE_TO_USER_SPEND_SCHEMA = [
    feature(
        "price_to_user_spend",
        Float64,
        KIND_DENSE,
        1.0,
        "Item price over the user's average order value; 1 (a typical price for this user) when "
        "either is unknown or the spend is not positive.",
    )
]


def price_to_user_spend(inputs: dict[str, list[Any]]) -> dict[str, list[float | None]]:
    """Ratio price / user_avg_spend per row; None where either is missing or spend <= 0.

    None rather than a default here: the retrieval layer fills every missing value from the
    Field's `default` tag and counts it, one rule for all features. Python mode (lists in, lists
    out) rather than pandas: online, a one-row request then costs microseconds instead of the
    ~5 ms of building DataFrames, and offline it is the same function on the whole column.
    """
    import math  # here, not at module level: Feast may rebuild the UDF from its source alone

    ratios: list[float | None] = []
    for price, spend in zip(inputs["price"], inputs["user_avg_spend"], strict=True):
        ratio = None
        if price is not None and spend is not None and spend > 0:
            ratio = price / spend
            if not math.isfinite(ratio):
                ratio = None
        ratios.append(ratio)
    return {"price_to_user_spend": ratios}


def price_to_user_spend_view(
    user_features: FeatureView, item_features: FeatureView
) -> OnDemandFeatureView:
    """The price-to-spend ratio over the given user and item feature views."""
    return OnDemandFeatureView(
        name="price_to_user_spend",
        sources=[user_features[["user_avg_spend"]], item_features[["price"]]],
        schema=[untagged(f) for f in PRICE_TO_USER_SPEND_SCHEMA],
        tags=field_tags_on_view(PRICE_TO_USER_SPEND_SCHEMA),
        udf=price_to_user_spend,
        udf_string=inspect.getsource(price_to_user_spend),
        mode="python",
        description="How expensive the item is for this user: price / user_avg_spend.",
        owner=OWNER,
    )
