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

# A python-mode view with this tag set to "true" declares that its UDF also takes numpy float
# arrays (NaN for missing) in place of lists; `model.data.features` then calls it column-wise.
COLUMNAR_UDF_TAG = "hm3.columnar_udf"

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


def price_to_user_spend(inputs: dict[str, Any]) -> dict[str, list[float]]:
    """Ratio price / user_avg_spend per row; NaN where either is missing or spend <= 0.

    NaN rather than a default here: the retrieval layer fills every missing value (None or NaN)
    from the Field's `default` tag and counts it, one rule for all features. Python mode rather
    than pandas: online, a one-row request then costs microseconds instead of the ~5 ms of
    building DataFrames. The inputs may be lists (Feast's python mode, None for missing) or
    numpy float arrays (NaN for missing): historical retrieval hands this view's columns over as
    arrays (tag `COLUMNAR_UDF_TAG`), skipping Feast's conversion of 10M rows to Python lists.
    """
    import numpy as np  # here, not at module level: Feast may rebuild the UDF from its source alone

    price = np.asarray(inputs["price"], dtype=np.float64)  # None -> NaN
    spend = np.asarray(inputs["user_avg_spend"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = price / np.where(spend > 0, spend, np.nan)
    ratio[~np.isfinite(ratio)] = np.nan
    return {"price_to_user_spend": ratio.tolist()}


def price_to_user_spend_view(
    user_features: FeatureView, item_features: FeatureView
) -> OnDemandFeatureView:
    """The price-to-spend ratio over the given user and item feature views."""
    return OnDemandFeatureView(
        name="price_to_user_spend",
        sources=[user_features[["user_avg_spend"]], item_features[["price"]]],
        schema=[untagged(f) for f in PRICE_TO_USER_SPEND_SCHEMA],
        tags={**field_tags_on_view(PRICE_TO_USER_SPEND_SCHEMA), COLUMNAR_UDF_TAG: "true"},
        udf=price_to_user_spend,
        udf_string=inspect.getsource(price_to_user_spend),
        mode="python",
        description="How expensive the item is for this user: price / user_avg_spend.",
        owner=OWNER,
    )
