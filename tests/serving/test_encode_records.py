"""The serving fast path `encode_records` encodes exactly as the pandas `encode` does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from model.data.encoding import FeatureSpec

KINDS = {
    "user_id": "id",
    "scene": "categorical",
    "brand_id": "categorical",
    "price": "dense",
    "rate": "dense",
}


def _spec() -> FeatureSpec:
    train = pd.DataFrame(
        {
            "user_id": [10, 11, 12, 13],
            "scene": ["home", "search", None, "cart"],
            "brand_id": pd.array([3, None, 1, 40], dtype="Int64"),
            "price": [10.0, 20.0, np.nan, 30.0],
            "rate": [0.1, 0.2, 0.3, 0.4],
        }
    )
    return FeatureSpec.fit(train, KINDS, hash_buckets=7)


def test_records_and_frame_encode_the_same_for_known_unknown_and_missing_values():
    spec = _spec()
    rows = [
        {"user_id": 10, "scene": "search", "brand_id": 3, "price": 12.5, "rate": 0.25},
        {"user_id": -3, "scene": "never-seen", "brand_id": 99, "price": None},  # rate absent
        {"user_id": None, "scene": None, "brand_id": None, "price": float("nan"), "rate": 1.0},
        {"user_id": 2**40 + 5, "brand_id": 40.0, "price": 7},  # float-typed vocabulary hit
        {},
    ]
    cat_records, dense_records = spec.encode_records(rows)
    frame = pd.DataFrame.from_records(rows, columns=list(KINDS))
    cat_frame, dense_frame = spec.encode(frame)
    assert cat_records.tolist() == cat_frame.tolist()
    np.testing.assert_array_equal(dense_records, dense_frame)
    # The documented defaults, spelled out: unknown or missing -> 0, missing dense -> mean.
    assert cat_records[4].tolist() == [0, 0, 0]
    assert dense_records[4].tolist() == [20.0, np.float32(0.25)]
    assert cat_records.dtype == np.int64 and dense_records.dtype == np.float32


def test_records_hash_ids_beyond_float_precision_exactly():
    # A frame with a null in the column holds ids as float64 and rounds 2**62 + 5; rows do not.
    cat, _ = _spec().encode_records([{"user_id": 2**62 + 5}])
    assert cat[0, 0] == 1 + (2**62 + 5) % 6


def test_records_encode_an_empty_batch():
    cat, dense = _spec().encode_records([])
    assert cat.shape == (0, 3) and dense.shape == (0, 2)
