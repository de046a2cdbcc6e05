"""The time split of the training table into train, validation and test: one definition.

The trainer splits with `TrainConfig.split` and records it in the model's config.json;
evaluation reads it back from there, so a model is scored only on rows it never trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

SPLITS: tuple[str, ...] = ("train", "validation", "test")

# Train / validation / test shares of the time split: the trainer's default, recorded in each
# model's config.json, which evaluation reads back (so a model is never scored on its own rows).
DEFAULT_SPLIT: tuple[float, float, float] = (0.7, 0.15, 0.15)


def split_by_time(
    table: pa.Table, fractions: Sequence[float] = DEFAULT_SPLIT
) -> dict[str, pa.Table]:
    """Split rows into train / validation / test by quantiles of `ts`.

    Args:
        table: Any table with a `ts` timestamp column.
        fractions: Shares of train, validation and test; positive, summing to 1.

    Returns:
        {"train", "validation", "test"} -> rows, each sorted by ts; schema metadata kept.

    Raises:
        ValueError: On bad fractions, a missing or null `ts`, or an empty part.
    """
    if len(fractions) != 3 or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three positive shares summing to 1, got {tuple(fractions)}"
        )
    if "ts" not in table.column_names:
        raise ValueError("table has no 'ts' column to split on")
    if table["ts"].null_count:
        raise ValueError(f"column 'ts' has {table['ts'].null_count} nulls; cannot split by time")
    table = table.sort_by("ts")
    ts = table["ts"].cast(pa.int64()).to_numpy()
    cuts = np.quantile(ts, np.cumsum(fractions)[:2], method="lower")
    # First row at or after each cut: rows sharing the cut timestamp go to the later part.
    bounds = [0, *np.searchsorted(ts, cuts, side="left").tolist(), len(ts)]
    parts = {}
    for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:], strict=True):
        if hi <= lo:
            raise ValueError(
                f"split {name!r} is empty ({len(ts)} rows, fractions {tuple(fractions)})"
            )
        parts[name] = table.slice(lo, hi - lo)
    return parts
