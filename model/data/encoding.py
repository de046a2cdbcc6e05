"""The feature spec: how raw feature columns become model inputs, fitted on the training split.

Three kinds of input (see `model.data.schema`):

- `id` (user_id, item_id): hashed into `buckets - 1` slots, `1 + id mod (buckets - 1)`; slot 0 is
  "missing". Ids never seen in training still land in a slot, so cold items get *some* vector.
- `categorical`: a vocabulary of the values seen in the training split; index 0 is "unknown"
  (missing, null or never seen in training), its documented default.
- `dense`: the raw float; the model normalizes it as `tanh((x - mean) / std)` (as ESM^2 does) with
  statistics of the training split. A missing value is replaced by the training mean, i.e. a
  normalized 0, its documented default.

The encoded form is what the exported inference program takes: `categorical` (B, C) int64 indices
into each feature's own table and `dense` (B, N) float32 raw values, in spec order. Everything
needed to reproduce the encoding outside Python is in `FeatureSpec.to_json()`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from model.data import schema

UNKNOWN_INDEX = 0


@dataclass(frozen=True)
class FeatureInfo:
    """One input feature and its encoding.

    Attributes:
        name: Column name.
        kind: `id`, `categorical` or `dense`.
        size: Embedding rows (categorical: vocabulary + unknown; id: hash buckets); 0 for dense.
        vocabulary: Categorical values in index order starting at 1 (as strings for strings,
            numbers for numbers); empty otherwise.
        mean: Dense training mean (also the fill value of a missing value); 0 otherwise.
        std: Dense training standard deviation (floored at 1e-6); 1 otherwise.
    """

    name: str
    kind: str
    size: int = 0
    vocabulary: tuple[str | int | float, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in (schema.KIND_ID, schema.KIND_CATEGORICAL, schema.KIND_DENSE):
            raise ValueError(
                f"feature {self.name}: kind must be id/categorical/dense, got {self.kind!r}"
            )
        if self.kind != schema.KIND_DENSE and self.size < 2:
            raise ValueError(f"feature {self.name}: size must be >= 2, got {self.size}")
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(
                f"feature {self.name}: bad normalization mean={self.mean} std={self.std}"
            )


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered input features of a model: categorical-like ones (id + categorical), then dense."""

    features: tuple[FeatureInfo, ...]

    @property
    def categorical(self) -> tuple[FeatureInfo, ...]:
        """The embedded features (ids and categoricals), in input order."""
        return tuple(f for f in self.features if f.kind != schema.KIND_DENSE)

    @property
    def dense(self) -> tuple[FeatureInfo, ...]:
        """The dense features, in input order."""
        return tuple(f for f in self.features if f.kind == schema.KIND_DENSE)

    @property
    def names(self) -> list[str]:
        """Every input column name."""
        return [f.name for f in self.features]

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: Mapping[str, str], hash_buckets: int) -> FeatureSpec:
        """Fit vocabularies and normalization statistics on the training split.

        Args:
            frame: Training rows holding every column of `kinds`.
            kinds: Feature name -> kind (`id`, `categorical`, `dense`), in the desired order.
            hash_buckets: Embedding rows per id feature (slot 0 included).

        Raises:
            ValueError: On a missing column or an unknown kind.
        """
        if hash_buckets < 2:
            raise ValueError(f"hash_buckets must be >= 2, got {hash_buckets}")
        infos = []
        for name, kind in kinds.items():
            if name not in frame.columns:
                raise ValueError(f"training table lacks feature column {name!r} (kind {kind})")
            col = frame[name]
            if kind == schema.KIND_ID:
                infos.append(FeatureInfo(name, kind, size=hash_buckets))
            elif kind == schema.KIND_CATEGORICAL:
                values = pd.unique(col.dropna())
                vocab = tuple(sorted(_plain(v) for v in values))
                infos.append(FeatureInfo(name, kind, size=len(vocab) + 1, vocabulary=vocab))
            elif kind == schema.KIND_DENSE:
                x = pd.to_numeric(col, errors="coerce").astype("float64")
                mean = float(x.mean()) if x.notna().any() else 0.0
                std = float(x.std(ddof=0)) if x.notna().sum() > 1 else 1.0
                infos.append(FeatureInfo(name, kind, mean=mean, std=max(std, 1e-6)))
            else:
                raise ValueError(f"feature {name}: unknown kind {kind!r}")
        spec = cls(tuple(infos))
        # Categorical-like features first, then dense: the order of the encoded arrays.
        return cls(spec.categorical + spec.dense)

    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Encode rows into (categorical (B, C) int64, dense (B, N) float32).

        Missing columns and nulls get the documented defaults (index 0 / the training mean).
        """
        n = len(frame)
        cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for j, f in enumerate(self.categorical):
            if f.name not in frame.columns:
                continue
            col = frame[f.name]
            if f.kind == schema.KIND_ID:
                ids = pd.to_numeric(col, errors="coerce")
                known = ids.notna().to_numpy()
                raw = ids.fillna(0).to_numpy().astype(np.int64)
                cat[:, j] = np.where(known, 1 + np.mod(raw, f.size - 1), UNKNOWN_INDEX)
            else:
                # Integer and string columns match the vocabulary as they are; anything else
                # (floats from nullable ints, numpy scalars in objects) goes through _plain.
                plain = col.dtype.kind in "iuO" or isinstance(col.dtype, pd.StringDtype)
                values = col if plain else col.map(_plain, na_action="ignore")
                codes = pd.Categorical(values, categories=list(f.vocabulary)).codes
                cat[:, j] = codes.astype(np.int64) + 1  # unknown (-1) -> 0
        dense = np.empty((n, len(self.dense)), dtype=np.float32)
        for j, f in enumerate(self.dense):
            if f.name not in frame.columns:
                dense[:, j] = f.mean
                continue
            x = pd.to_numeric(frame[f.name], errors="coerce").astype("float64")
            dense[:, j] = x.fillna(f.mean).to_numpy()
        return cat, dense

    def encode_records(self, rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """`encode` for a few rows given as mappings, without building a DataFrame.

        Same result as `encode(pd.DataFrame.from_records(rows))`, at a fraction of the cost for
        small batches (a served request): each feature is a dict lookup per row instead of a
        pandas categorical over the whole vocabulary. Non-finite numbers count as missing.
        """
        cat = np.zeros((len(rows), len(self.categorical)), dtype=np.int64)
        dense = np.empty((len(rows), len(self.dense)), dtype=np.float32)
        lookups = self._vocabulary_lookups
        for i, row in enumerate(rows):
            for j, f in enumerate(self.categorical):
                value = row.get(f.name)
                if value is None:
                    continue
                if f.kind == schema.KIND_ID:
                    raw = _as_number(value)
                    if raw is not None:
                        cat[i, j] = 1 + int(raw) % (f.size - 1)
                elif not (isinstance(value, float) and math.isnan(value)):
                    cat[i, j] = lookups[f.name].get(_plain(value), UNKNOWN_INDEX)
            for j, f in enumerate(self.dense):
                raw = _as_number(row.get(f.name))
                dense[i, j] = f.mean if raw is None else raw
        return cat, dense

    @cached_property
    def _vocabulary_lookups(self) -> dict[str, dict[str | int | float, int]]:
        return {
            f.name: {v: i + 1 for i, v in enumerate(f.vocabulary)}
            for f in self.categorical
            if f.kind == schema.KIND_CATEGORICAL
        }

    def defaults(self) -> dict[str, object]:
        """The value each feature takes when missing, as documented in config.json."""
        return {
            f.name: ("training mean" if f.kind == schema.KIND_DENSE else "unknown (index 0)")
            for f in self.features
        }

    def to_json(self) -> dict[str, object]:
        """A JSON-ready description (the `feature_spec` of config.json)."""
        return {
            "features": [asdict(f) | {"vocabulary": list(f.vocabulary)} for f in self.features],
            "encoding": {
                "id": "index = 1 + value mod (size - 1); 0 when missing",
                "categorical": "index = 1 + position in vocabulary; 0 when missing or unseen",
                "dense": "tanh((x - mean) / std) inside the model; missing -> mean",
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FeatureSpec:
        """Inverse of `to_json`."""
        features = []
        for raw in data["features"]:  # type: ignore[union-attr]
            item = dict(raw)
            item["vocabulary"] = tuple(item.get("vocabulary", ()))
            features.append(FeatureInfo(**item))
        return cls(tuple(features))


def _plain(value: object) -> str | int | float:
    """A JSON-safe scalar for vocabulary values (numpy scalars become Python ones)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (str, int, float)):
        return value
    return str(value)


def _as_number(value: object) -> float | None:
    """A number from a raw value as `pd.to_numeric(errors="coerce")` reads it; None if missing.

    Non-finite numbers count as missing.
    """
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    if isinstance(value, int | np.integer):
        return int(value)  # exact for ids beyond 2**53
    return number


def feature_kinds(table_schema: pa.Schema) -> dict[str, str]:
    """The model input kinds of a training table: key and context features, then the table's own.

    Args:
        table_schema: Arrow schema of the joined training table, carrying the Feast kinds in its
            metadata under `schema.FEATURE_KINDS_KEY`.

    Raises:
        ValueError: If the metadata is missing or not a JSON object of known kinds.
    """
    meta = table_schema.metadata or {}
    if schema.FEATURE_KINDS_KEY not in meta:
        raise ValueError(
            f"training table has no {schema.FEATURE_KINDS_KEY.decode()} schema metadata; "
            "it must come from feature retrieval (model.data.features) joined with labels"
        )
    try:
        table_kinds = json.loads(meta[schema.FEATURE_KINDS_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{schema.FEATURE_KINDS_KEY.decode()} metadata is not JSON: {err}"
        ) from err
    if not isinstance(table_kinds, dict):
        raise ValueError(f"{schema.FEATURE_KINDS_KEY.decode()} metadata must be a JSON object")
    kinds = dict(schema.KEY_FEATURES) | dict(schema.CONTEXT_FEATURES)
    for name, kind in table_kinds.items():
        if kind not in (schema.KIND_CATEGORICAL, schema.KIND_DENSE, schema.KIND_ID):
            raise ValueError(f"feature {name!r} has unknown kind {kind!r} in table metadata")
        kinds[name] = kind
    return kinds
