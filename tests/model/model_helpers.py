"""Training tables for the model tests, built straight from a simulated world.

Test data construction only: the simulator's sampled outcomes are the labels and a pandas as-of
join of the daily user/item snapshots gives the features, with the kinds metadata written as the
feature contract says. The production path (label builder + Feast retrieval) is exercised by
bench/quality.py and the pipeline tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.data import schema

CATEGORICAL = ("age_bucket", "gender", "city_tier", "category_id", "brand_id")


def build_training_table(world: Path, out: Path, rows: int | None = None) -> Path:
    """Labels (truth outcomes) + as-of features of a world, as one Parquet training table."""
    imps = pq.read_table(world / "impressions.parquet").to_pandas()
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    if rows is not None:
        imps, truth = imps.iloc[:rows], truth.iloc[:rows]
    table = imps.merge(truth[["impression_id", *schema.LABEL_COLUMNS]], on="impression_id")
    table = table.sort_values("ts", kind="stable")
    for name in ("users", "items"):
        snaps = pq.read_table(world / f"{name}.parquet").to_pandas()
        key = "user_id" if name == "users" else "item_id"
        snaps = snaps.sort_values("event_timestamp")
        table = pd.merge_asof(
            table, snaps, left_on="ts", right_on="event_timestamp", by=key, direction="backward"
        ).drop(columns="event_timestamp")
    table["price_to_user_spend"] = table["price"] / table["user_avg_spend"]
    features = [c for c in table.columns if c not in schema.IMPRESSIONS.names]
    features = [c for c in features if c not in schema.LABEL_COLUMNS]
    kinds = {
        f: schema.KIND_CATEGORICAL if f in CATEGORICAL else schema.KIND_DENSE for f in features
    }
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    arrow = arrow.replace_schema_metadata({schema.FEATURE_KINDS_KEY: json.dumps(kinds).encode()})
    pq.write_table(arrow, out)
    return out


def fast_config(**overrides):
    """A small, quick model config for tests."""
    from model.train.trainer import TrainConfig

    base = dict(
        embedding_dim=8,
        hidden=(32, 16),
        dropout=0.0,
        batch_size=512,
        epochs=2,
        patience=5,
        hash_buckets=5_000,
        lr=3e-3,
        device="cpu",
        progress=False,
        threads=1,
    )
    return TrainConfig(**(base | overrides))


def random_inputs(batch: int, spec, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    cat = torch.stack(
        [torch.randint(0, f.size, (batch,), generator=g) for f in spec.categorical], dim=1
    )
    dense = torch.randn(batch, len(spec.dense), generator=g) * 3
    return cat, dense
