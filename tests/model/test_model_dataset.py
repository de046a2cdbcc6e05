"""Feature spec encoding, feature kinds from table metadata, and the time split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from model.data import schema
from model.data.dataset import TensorData
from model.data.encoding import FeatureSpec, feature_kinds
from model.data.split import split_by_time


def test_spec_fits_on_train_and_encodes_with_documented_defaults():
    train = pd.DataFrame(
        {
            "user_id": [10, 11, 12],
            "scene": ["home", "search", None],
            "brand_id": pd.array([3, None, 1], dtype="Int64"),
            "price": [10.0, 20.0, np.nan],
        }
    )
    kinds = {"user_id": "id", "scene": "categorical", "brand_id": "categorical", "price": "dense"}
    spec = FeatureSpec.fit(train, kinds, hash_buckets=5)
    assert [f.name for f in spec.features] == ["user_id", "scene", "brand_id", "price"]
    price = spec.dense[0]
    assert (price.mean, price.std) == (15.0, 5.0)
    new = pd.DataFrame(
        {"user_id": [10, None], "scene": ["search", "cart_page"], "brand_id": [1.0, 7.0]}
    )  # no price column at all
    cat, dense = spec.encode(new)
    assert cat.tolist() == [[1 + 10 % 4, 2, 1], [0, 0, 0]]  # id hashed; unseen/missing -> 0
    assert dense.tolist() == [[15.0], [15.0]]  # missing dense -> training mean
    again = FeatureSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec


def test_feature_kinds_come_from_table_metadata():
    kinds_json = json.dumps({"price": "dense", "brand_id": "categorical"}).encode()
    table_schema = pa.schema(
        [("price", pa.float64())], metadata={schema.FEATURE_KINDS_KEY: kinds_json}
    )
    kinds = feature_kinds(table_schema)
    assert list(kinds)[:5] == ["user_id", "item_id", "position", "scene", "device"]
    assert kinds["price"] == "dense" and kinds["user_id"] == "id"
    with pytest.raises(ValueError, match="metadata"):
        feature_kinds(pa.schema([("price", pa.float64())]))
    bad = {schema.FEATURE_KINDS_KEY: json.dumps({"price": "embedding"}).encode()}
    with pytest.raises(ValueError, match="price"):
        feature_kinds(pa.schema([("price", pa.float64())], metadata=bad))


def _table(n: int) -> pa.Table:
    ts = pd.date_range("2026-10-01", periods=n, freq="min", tz="UTC")
    return pa.table(
        {"ts": pa.array(ts.to_numpy(), pa.timestamp("us", tz="UTC")), "i": np.arange(n)}
    )


def test_split_by_time_is_ordered_and_proportional():
    parts = split_by_time(_table(1000).take(np.random.default_rng(0).permutation(1000)))
    sizes = {k: v.num_rows for k, v in parts.items()}
    assert sizes == {"train": 699, "validation": 150, "test": 151}
    last_train = parts["train"]["ts"][-1].as_py()
    assert last_train < parts["validation"]["ts"][0].as_py()
    assert parts["validation"]["ts"][-1].as_py() < parts["test"]["ts"][0].as_py()


def test_split_by_time_rejects_bad_input():
    with pytest.raises(ValueError, match="fractions"):
        split_by_time(_table(10), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="empty"):
        split_by_time(_table(2))


def test_tensor_data_rejects_labels_that_are_not_binary():
    spec = FeatureSpec.fit(pd.DataFrame({"x": [1.0, 2.0]}), {"x": "dense"}, 4)
    cols = {"x": [1.0, 2.0], "click": [1, 0], "d_micro": [0, 0], "d_macro": [0, 0], "buy": [2, 0]}
    with pytest.raises(ValueError, match="label 'buy' row 0"):
        TensorData.from_table(pa.table(cols), spec)
