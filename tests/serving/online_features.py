"""What the transformer should serve, computed from the world's tables without Feast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from model.artifact import TrainedModel


def online_truth(world: Path, feast_repo: Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """What the online store should hold, from the world's tables, not from Feast.

    Returns:
        Every user's and item's latest snapshot row (by key column, indexed by id), and the
        documented default of each feature of the `hm3_v1` service.
    """
    from model.data import features

    infos = features.resolve_features(features.open_store(feast_repo), features.DEFAULT_SERVICE)
    latest = {}
    for name, key in (("users", "user_id"), ("items", "item_id")):
        snaps = pq.read_table(world / f"{name}.parquet").to_pandas()
        snaps = snaps.sort_values("event_timestamp", kind="stable")
        latest[key] = snaps.drop_duplicates(key, keep="last").set_index(key)
    return latest, features.feature_defaults(infos)


def feast_completed(
    rows: list[dict[str, Any]], online_truth: tuple[dict[str, pd.DataFrame], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Rows completed as the transformer documents, computed without Feast.

    Each feature is the instance's own value, else the entity's latest snapshot, else the
    feature's default (then listed as defaulted); the on-demand price_to_user_spend comes from the
    snapshot's price and user_avg_spend.

    Returns:
        The completed rows and, per row, the features that took their default.
    """
    from feature_repo.on_demand import price_to_user_spend

    latest, defaults = online_truth
    completed, defaulted = [], []
    for row in rows:
        values: dict[str, Any] = {}
        for key, table in latest.items():
            known = row[key] in table.index
            for name in table.columns.intersection(list(defaults)):
                value = table.at[row[key], name] if known else None
                values[name] = None if value is None or pd.isna(value) else value
        ratio = price_to_user_spend(
            {"price": [values["price"]], "user_avg_spend": [values["user_avg_spend"]]}
        )
        values |= {k: v[0] for k, v in ratio.items()}
        out, filled = dict(row), []
        for name, default in defaults.items():
            if name in out:
                continue
            if values[name] is None or pd.isna(values[name]):
                out[name] = default
                filled.append(name)
            else:
                out[name] = values[name]
        completed.append(out)
        defaulted.append(filled)
    return completed, defaulted


def offline_scores(model: TrainedModel, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """`predict` on a frame of these rows; features a row lacks are left out (defaulted)."""
    names = model.feature_spec.names
    frame = pd.DataFrame.from_records(rows, columns=names)
    return model.predict(frame)
