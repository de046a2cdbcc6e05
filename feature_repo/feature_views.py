"""Batch feature views: what is known about a user or an item at a point in time.

Every feature is declared here (or in `on_demand.py`) exactly once. Its Field tags carry the two
facts downstream code needs and must not re-declare:

- `kind`: `categorical` (small vocabulary, embedded) or `dense` (numeric, normalized);
- `default`: the value used when the feature is missing at retrieval time (no snapshot within
  the ttl, an entity never seen, or a null in the source table). Categorical defaults are -1, an
  id no real category uses, so "unknown" gets its own embedding; dense defaults are the neutral
  value named in each description.
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field
from feast.data_source import DataSource
from feast.types import Float64, Int64, PrimitiveFeastType

from feature_repo.entities import OWNER, item, user
from model.data.schema import KIND_CATEGORICAL, KIND_DENSE

KIND_TAG = "kind"
DEFAULT_TAG = "default"
UNKNOWN_CATEGORY = -1

# Snapshots are written daily at 00:00 UTC; a value stays valid for two days so one missed
# snapshot does not blank a feature, and anything older is treated as missing.
USER_FEATURES_TTL = timedelta(days=2)
ITEM_FEATURES_TTL = timedelta(days=2)


def feature(
    name: str, dtype: PrimitiveFeastType, kind: str, default: float | int, description: str
) -> Field:
    """A Field tagged with its model kind and its documented default.

    Args:
        name: Feature name (the column name in features.parquet).
        dtype: Feast type, Int64 or Float64.
        kind: `categorical` or `dense`.
        default: Value used when the feature is missing or null.
        description: What the feature means.

    Raises:
        ValueError: On an unknown kind, or a default that does not fit the dtype.
    """
    if kind not in (KIND_CATEGORICAL, KIND_DENSE):
        raise ValueError(f"feature {name}: kind must be categorical or dense, got {kind!r}")
    if dtype == Int64 and not isinstance(default, int):
        raise ValueError(f"feature {name}: Int64 default must be an int, got {default!r}")
    return Field(
        name=name,
        dtype=dtype,
        description=description,
        tags={KIND_TAG: kind, DEFAULT_TAG: str(default)},
    )


def untagged(field: Field) -> Field:
    """The Field without tags and description (see `on_demand.py` for why)."""
    return Field(name=field.name, dtype=field.dtype)


def field_tags_on_view(fields: list[Field]) -> dict[str, str]:
    """Field tags encoded as view tags, `<feature>.<tag>` -> value."""
    return {f"{f.name}.{key}": value for f in fields for key, value in f.tags.items()}


USER_SCHEMA = [
    feature("age_bucket", Int64, KIND_CATEGORICAL, UNKNOWN_CATEGORY, "Age bucket 0-7."),
    feature("gender", Int64, KIND_CATEGORICAL, UNKNOWN_CATEGORY, "Gender code 0-2."),
    feature("city_tier", Int64, KIND_CATEGORICAL, UNKNOWN_CATEGORY, "City tier 1-5."),
    feature(
        "user_ctr_7d", Float64, KIND_DENSE, 0.0, "Click-through rate, last 7 days; 0 if unknown."
    ),
    feature(
        "user_cvr_30d", Float64, KIND_DENSE, 0.0, "Conversion rate, last 30 days; 0 if unknown."
    ),
    feature("user_avg_spend", Float64, KIND_DENSE, 0.0, "Average order value; 0 if unknown."),
    feature(
        "user_active_days_30d", Int64, KIND_DENSE, 0, "Active days of the last 30; 0 if unknown."
    ),
]

ITEM_SCHEMA = [
    feature("category_id", Int64, KIND_CATEGORICAL, UNKNOWN_CATEGORY, "Leaf category id."),
    feature("brand_id", Int64, KIND_CATEGORICAL, UNKNOWN_CATEGORY, "Brand id."),
    feature(
        "price", Float64, KIND_DENSE, 0.0, "Price that day, promotions included; 0 if unknown."
    ),
    feature(
        "item_ctr_7d", Float64, KIND_DENSE, 0.0, "Click-through rate, last 7 days; 0 if unknown."
    ),
    feature(
        "item_cvr_30d", Float64, KIND_DENSE, 0.0, "Conversion rate, last 30 days; 0 if unknown."
    ),
    feature("item_sales_30d", Int64, KIND_DENSE, 0, "Units sold, last 30 days; 0 if unknown."),
]


def user_features_view(source: DataSource) -> FeatureView:
    """User profile and behavior statistics over `source` (see `data_sources.users_source`)."""
    return FeatureView(
        name="user_features",
        entities=[user],
        ttl=USER_FEATURES_TTL,
        schema=USER_SCHEMA,
        source=source,
        online=True,
        description="User profile and behavior statistics, daily snapshots.",
        owner=OWNER,
        tags={"team": "hm3"},
    )


def item_features_view(source: DataSource) -> FeatureView:
    """Item catalog and behavior statistics over `source` (see `data_sources.items_source`)."""
    return FeatureView(
        name="item_features",
        entities=[item],
        ttl=ITEM_FEATURES_TTL,
        schema=ITEM_SCHEMA,
        source=source,
        online=True,
        description="Item catalog and behavior statistics, daily snapshots.",
        owner=OWNER,
        tags={"team": "hm3"},
    )
