"""Helpers of the Feast tests: hand-made feature tables and an applied store (not fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from model.data import features, schema

T0 = datetime(2026, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def users_table(rows: list[dict]) -> pa.Table:
    """A users table in the `schema.USERS` contract; unspecified features get fixed values."""
    base = {
        "age_bucket": 3,
        "gender": 1,
        "city_tier": 2,
        "user_ctr_7d": 0.05,
        "user_cvr_30d": 0.02,
        "user_avg_spend": 50.0,
        "user_active_days_30d": 10,
    }
    return pa.Table.from_pylist([base | r for r in rows], schema=schema.USERS)


def items_table(rows: list[dict]) -> pa.Table:
    """An items table in the `schema.ITEMS` contract."""
    base = {
        "category_id": 4,
        "brand_id": 7,
        "price": 25.0,
        "item_ctr_7d": 0.04,
        "item_cvr_30d": 0.03,
        "item_sales_30d": 5,
    }
    return pa.Table.from_pylist([base | r for r in rows], schema=schema.ITEMS)


# The hand-made timeline: user 1 has three daily snapshots whose user_ctr_7d tells them apart,
# user 2 has a null spend, item 1 changes price once. price / user_avg_spend of (user 1, item 1)
# differs on each day (10/40, 20/40, 20/50), so a ratio from the wrong day's inputs shows.
TIMELINE_USERS = [
    {"user_id": 1, "event_timestamp": T0, "user_ctr_7d": 0.1, "user_avg_spend": 40.0},
    {"user_id": 1, "event_timestamp": T0 + DAY, "user_ctr_7d": 0.2, "user_avg_spend": 40.0},
    {"user_id": 1, "event_timestamp": T0 + 2 * DAY, "user_ctr_7d": 0.3, "user_avg_spend": 50.0},
    {"user_id": 2, "event_timestamp": T0, "user_avg_spend": None},
]
TIMELINE_ITEMS = [
    {"item_id": 1, "event_timestamp": T0, "price": 10.0},
    {"item_id": 1, "event_timestamp": T0 + DAY, "price": 20.0},
    {"item_id": 2, "event_timestamp": T0, "price": 30.0},
]


def applied_store(
    repo_dir: Path,
    data: Path,
    online: tuple[str, str] = ("sqlite", "127.0.0.1:1"),
    offline: str = "duckdb",
    project: str = "hm3",
):
    """A store with the repo's definitions applied over data/users.parquet and items.parquet."""
    cfg = features.StoreConfig(
        repo_dir=str(repo_dir),
        online_store=online[0],
        redis=online[1],
        offline_store=offline,
        project=project,
    )
    store = features.open_store(features.write_repo_config(cfg))
    features.apply(store, str(data / "users.parquet"), str(data / "items.parquet"))
    return store
