"""Feast entities: the keys every feature view is joined on.

The join keys are the simulator's id columns (`model.data.schema.USERS` / `ITEMS`), INT64.
"""

from feast import Entity, ValueType

OWNER = "features@hm3"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A shopper; user_id as in impressions.parquet and users.parquet.",
    owner=OWNER,
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.INT64,
    description="A product; item_id as in impressions.parquet and items.parquet.",
    owner=OWNER,
)
