"""The training table: labels joined with features, split by time, held as tensors.

The training table is `labels.parquet` (one row per impression, graph labels) inner-joined with
`features.parquet` (Feast point-in-time features) on `impression_id`. Its Arrow schema keeps the
feature kinds metadata of the features file, so the model knows each column's kind without a
hard-coded list.

The split is by time: rows are cut at the 70% and 85% quantiles of `ts` (default fractions
0.7 / 0.15 / 0.15), so validation and test are strictly later than training, as in production
where a model predicts tomorrow from yesterday. Rows at a cut timestamp go to the later part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from model.data import schema
from model.data.encoding import FeatureSpec

log = logging.getLogger(__name__)


def join_training_table(
    labels_path: str | Path, features_path: str | Path, out_path: str | Path
) -> Path:
    """Inner-join labels and features on impression_id into one Parquet training table.

    Rows present on one side only are counted and logged (features are retrieved for every
    labelled impression, so a mismatch means an upstream problem worth seeing, not a silent drop).

    Args:
        labels_path: labels.parquet of the label builder.
        features_path: features.parquet of feature retrieval (with the kinds metadata).
        out_path: Where to write the joined table.

    Returns:
        The output path.

    Raises:
        schema.SchemaError: If a required column is missing or mistyped.
        ValueError: If the features lack the kinds metadata or an impression_id repeats.
    """
    labels = pq.read_table(labels_path)
    features = pq.read_table(features_path)
    schema.validate_columns(labels.schema, schema.IMPRESSIONS, str(labels_path))
    for name in schema.LABEL_COLUMNS:
        if name not in labels.column_names:
            raise schema.SchemaError(f"{labels_path}: missing label column {name!r} (int8 0/1)")
    if "impression_id" not in features.column_names:
        raise schema.SchemaError(f"{features_path}: missing column 'impression_id'")
    meta = features.schema.metadata or {}
    if schema.FEATURE_KINDS_KEY not in meta:
        raise ValueError(f"{features_path}: no {schema.FEATURE_KINDS_KEY.decode()} metadata")
    for table, path in ((labels, labels_path), (features, features_path)):
        ids = table["impression_id"]
        if pc.count_distinct(ids).as_py() != len(ids):
            raise ValueError(f"{path}: impression_id is not unique")
    clash = (set(features.column_names) & set(labels.column_names)) - {"impression_id"}
    if clash:
        raise ValueError(f"{features_path}: columns {sorted(clash)} also exist in the labels")
    joined = labels.join(features, "impression_id", join_type="inner")
    missing = labels.num_rows - joined.num_rows
    if missing or features.num_rows != joined.num_rows:
        log.warning(
            "join: %d labelled impressions without features, %d feature rows without labels",
            missing,
            features.num_rows - joined.num_rows,
        )
    joined = joined.sort_by("ts").replace_schema_metadata(
        {schema.FEATURE_KINDS_KEY: meta[schema.FEATURE_KINDS_KEY]}
    )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(joined, out)
    log.info("training table: %d rows -> %s", joined.num_rows, out)
    return out


@dataclass
class TensorData:
    """A split encoded once into contiguous tensors; batches are index gathers, no collate.

    Attributes:
        categorical: (R, C) int64 indices.
        dense: (R, N) float32 raw values.
        labels: Label column -> (R,) float32 0/1.
    """

    categorical: torch.Tensor
    dense: torch.Tensor
    labels: dict[str, torch.Tensor]

    @classmethod
    def from_table(cls, table: pa.Table, spec: FeatureSpec) -> TensorData:
        """Encode a (split of the) training table with a fitted spec.

        Raises:
            ValueError: If a label is missing, null, or not 0/1 (naming the column and row).
        """
        columns = [c for c in spec.names if c in table.column_names]
        frame = table.select(columns).to_pandas()
        cat, dense = spec.encode(frame)
        labels = {}
        for name in schema.LABEL_COLUMNS:
            if name not in table.column_names:
                raise ValueError(f"training table lacks label column {name!r}")
            col = table[name]
            if col.null_count:
                raise ValueError(f"label {name!r} has {col.null_count} nulls")
            values = col.to_numpy().astype(np.float32)
            bad = np.flatnonzero((values != 0) & (values != 1))
            if len(bad):
                raise ValueError(
                    f"label {name!r} row {int(bad[0])}: expected 0/1, got {values[bad[0]]}"
                )
            labels[name] = torch.from_numpy(values)
        return cls(torch.from_numpy(cat), torch.from_numpy(dense), labels)

    def __len__(self) -> int:
        return self.categorical.shape[0]

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rows `index` (on the data's device): categorical, dense, then labels in schema order."""
        return (
            self.categorical[index],
            self.dense[index],
            *(self.labels[n][index] for n in schema.LABEL_COLUMNS),
        )

    def to(self, device: torch.device) -> TensorData:
        """The split on `device`; on CUDA via page-locked memory and a non-blocking copy.

        A whole split is small next to an accelerator's memory (2M rows x ~20 columns is about
        300 MB), so it is copied once and batches are gathered on the device.
        """
        if device.type == "cpu":
            return self

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.pin_memory().to(device, non_blocking=True)

        return TensorData(
            move(self.categorical), move(self.dense), {k: move(v) for k, v in self.labels.items()}
        )
