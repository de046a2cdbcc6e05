"""Evaluation fixtures: a training table from the small world and two real trained artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.data import schema

# A few Feast-like features, joined as of the impression time from the daily snapshots.
FEATURES = {
    "users": {"city_tier": schema.KIND_CATEGORICAL, "user_cvr_30d": schema.KIND_DENSE},
    "items": {"category_id": schema.KIND_CATEGORICAL, "price": schema.KIND_DENSE},
}


def build_table(world: Path, out: Path) -> Path:
    """Labels (the world's sampled outcomes) + as-of features, with the kinds metadata."""
    table = pq.read_table(world / "impressions.parquet").to_pandas()
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    table = table.merge(truth[["impression_id", *schema.LABEL_COLUMNS]], on="impression_id")
    table = table.sort_values("ts", kind="stable")
    kinds: dict[str, str] = {}
    for name, features in FEATURES.items():
        key = "user_id" if name == "users" else "item_id"
        snaps = pq.read_table(
            world / f"{name}.parquet", columns=[key, "event_timestamp", *features]
        )
        table = pd.merge_asof(
            table,
            snaps.to_pandas().sort_values("event_timestamp"),
            left_on="ts",
            right_on="event_timestamp",
            by=key,
            direction="backward",
        ).drop(columns="event_timestamp")
        kinds.update(features)
    arrow = pa.Table.from_pandas(table.reset_index(drop=True), preserve_index=False)
    arrow = arrow.replace_schema_metadata({schema.FEATURE_KINDS_KEY: json.dumps(kinds).encode()})
    pq.write_table(arrow, out)
    return out


@pytest.fixture(scope="session")
def eval_table(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_table(small_world, tmp_path_factory.mktemp("eval") / "training.parquet")


@pytest.fixture(scope="session")
def trained_models(eval_table: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real hm3 and naive artifacts, trained briefly on the table (seconds on a CPU)."""
    from model.train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("hm3", "naive"):
        config = TrainConfig(
            model_kind=kind,
            embedding_dim=8,
            hidden=(32, 16),
            dropout=0.0,
            batch_size=4096,
            epochs=1,
            hash_buckets=5_000,
            lr=3e-3,
            device="cpu",
            progress=False,
        )
        train(eval_table, root / kind, config)
        out[kind] = root / kind
    return out
