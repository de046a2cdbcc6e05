r"""Table contracts shared by the simulator, the label builder, Feast and serving.

Every raw table the pipeline reads or writes is described here once, as an Arrow schema. Readers
validate against these schemas at the edge (see `validate_columns`) so that a missing or
mistyped column fails with the file, the column and the expected type named.

The behavior graph (see docs in README and `../shared/docs/hm3.md`)::

    impression --> click --> D-Micro --> D-Macro --> purchase
                       \--> O-Micro --/    \--> O-Macro --/
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

# Raw event types as an app logs them. Which of them form D-Macro is label configuration.
EVENT_CLICK = "click"
EVENT_MICRO = "micro"
EVENT_CART = "cart"
EVENT_FAVORITE = "favorite"
EVENT_PURCHASE = "purchase"
EVENT_TYPES: tuple[str, ...] = (
    EVENT_CLICK,
    EVENT_MICRO,
    EVENT_CART,
    EVENT_FAVORITE,
    EVENT_PURCHASE,
)

# Item-page components a micro event names. The first five are the paper's purchase-related
# components (D-Micro by default); the rest are other page interactions (O-Micro).
D_MICRO_COMPONENTS: tuple[str, ...] = ("pictures", "qa", "chat", "reviews", "sku")
O_MICRO_COMPONENTS: tuple[str, ...] = ("share", "shop", "coupon", "recommend", "specs")
MICRO_COMPONENTS: tuple[str, ...] = D_MICRO_COMPONENTS + O_MICRO_COMPONENTS

SCENES: tuple[str, ...] = ("home", "search", "cart_page", "detail_recs")
DEVICES: tuple[str, ...] = ("android", "ios", "web")

IMPRESSIONS = pa.schema(
    [
        pa.field("impression_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64()),
        pa.field("item_id", pa.int64()),
        pa.field("ts", TIMESTAMP),
        pa.field("position", pa.int32()),
        pa.field("scene", pa.string()),
        pa.field("device", pa.string()),
    ]
)

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.int64()),
        pa.field("item_id", pa.int64()),
        pa.field("ts", TIMESTAMP),
        pa.field("event_type", pa.string()),
        pa.field("component", pa.string()),  # null unless event_type == "micro"
    ]
)

USERS = pa.schema(
    [
        pa.field("user_id", pa.int64()),
        pa.field("event_timestamp", TIMESTAMP),
        pa.field("age_bucket", pa.int64()),
        pa.field("gender", pa.int64()),
        pa.field("city_tier", pa.int64()),
        pa.field("user_ctr_7d", pa.float64()),
        pa.field("user_cvr_30d", pa.float64()),
        pa.field("user_avg_spend", pa.float64()),
        pa.field("user_active_days_30d", pa.int64()),
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.int64()),
        pa.field("event_timestamp", TIMESTAMP),
        pa.field("category_id", pa.int64()),
        pa.field("brand_id", pa.int64()),
        pa.field("price", pa.float64()),
        pa.field("item_ctr_7d", pa.float64()),
        pa.field("item_cvr_30d", pa.float64()),
        pa.field("item_sales_30d", pa.int64()),
    ]
)

# Ground truth of the simulated world, per impression: the probabilities it was sampled from and
# the outcomes it sampled. `noisy` marks impressions whose logs were damaged on purpose (dropped
# click, late purchase, bad clock), where logged labels may legitimately differ from outcomes.
TRUTH = pa.schema(
    [
        pa.field("impression_id", pa.string(), nullable=False),
        pa.field("p_click", pa.float64()),
        pa.field("p_d_micro_given_click", pa.float64()),
        pa.field("p_d_macro_given_click", pa.float64()),
        pa.field("p_buy_given_click", pa.float64()),
        pa.field("click", pa.int8()),
        pa.field("d_micro", pa.int8()),
        pa.field("d_macro", pa.int8()),
        pa.field("buy", pa.int8()),
        # Counterfactual: a purchase drawn from p_buy_given_click for every impression, clicked
        # or not, with its own random stream (the selection-bias test, metric cvr_entire).
        pa.field("buy_if_clicked", pa.int8()),
        pa.field("noisy", pa.bool_()),
    ]
)

# Per-impression labels on the graph, as built from raw logs by the label builder.
LABEL_COLUMNS: tuple[str, ...] = ("click", "d_micro", "d_macro", "buy")

TABLES: dict[str, pa.Schema] = {
    "impressions": IMPRESSIONS,
    "events": EVENTS,
    "users": USERS,
    "items": ITEMS,
    "truth": TRUTH,
}


class SchemaError(ValueError):
    """A table lacks a column or has it with the wrong type."""


def refuse_nanoseconds(found: pa.Schema, source: str) -> None:
    """Refuse TIMESTAMP(NANOS) columns for Spark, which reads timestamps in microseconds at most.

    Spark's own error does not name the column, and Feast reports it as a missing data source.

    Raises:
        SchemaError: Naming the source and the column.
    """
    for f in found:
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns":
            raise SchemaError(
                f"{source}: column {f.name!r} has type {f.type}; Spark reads timestamps in "
                "microseconds at most: write it with pyarrow coerce_timestamps='us'"
            )


def validate_columns(
    actual: pa.Schema, expected: pa.Schema, source: str, columns: Iterable[str] | None = None
) -> None:
    """Check that `actual` has every column of `expected` with a compatible type.

    Integer widths and timestamp units may differ (they are cast on read); anything else must
    match. Extra columns are allowed.

    Args:
        actual: The schema found in the data.
        expected: The contract, e.g. `IMPRESSIONS`.
        source: File or table name used in the error message.
        columns: Only check these columns of `expected` (default: all).

    Raises:
        SchemaError: Naming the source, the column and the expected type.
    """
    wanted = list(columns) if columns is not None else expected.names
    for name in wanted:
        want = expected.field(name).type
        idx = actual.get_field_index(name)
        if idx < 0:
            raise SchemaError(f"{source}: missing column {name!r} (expected {want})")
        got = actual.field(idx).type
        if not _compatible(got, want):
            raise SchemaError(f"{source}: column {name!r} has type {got}, expected {want}")


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if got.equals(want):
        return True
    if pa.types.is_integer(want):
        return pa.types.is_integer(got)
    if pa.types.is_floating(want):
        return pa.types.is_floating(got) or pa.types.is_integer(got)
    if pa.types.is_timestamp(want):
        return pa.types.is_timestamp(got)
    if pa.types.is_string(want):
        return (
            pa.types.is_string(got)
            or pa.types.is_large_string(got)
            or (pa.types.is_dictionary(got) and pa.types.is_string(got.value_type))
        )
    return False


# Feature kinds travel with the data: the feature table written by retrieval carries a JSON map
# {feature_name: kind} in its Arrow schema metadata under this key, built from the Feast
# FeatureService (the one place feature lists are written). The trainer reads it from there.
FEATURE_KINDS_KEY = b"hm3.feature_kinds"
KIND_ID = "id"  # high-cardinality ids, hashed into buckets
KIND_CATEGORICAL = "categorical"  # small vocabularies
KIND_DENSE = "dense"  # numeric, normalized with training-split statistics

# Request-time context of an impression (not from Feast): known by the caller at serving time.
KEY_FEATURES: dict[str, str] = {"user_id": KIND_ID, "item_id": KIND_ID}
CONTEXT_FEATURES: dict[str, str] = {
    "position": KIND_CATEGORICAL,
    "scene": KIND_CATEGORICAL,
    "device": KIND_CATEGORICAL,
}
