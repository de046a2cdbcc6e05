"""The training table held as tensors: a split encoded once for the trainer (`TensorData`).

The table is written by `model.data.training_table.join_training_table`. The split is by time
(`model.data.split.split_by_time`): rows are cut at the 70% and 85% quantiles of `ts` (default
fractions 0.7 / 0.15 / 0.15), so validation and test are strictly later than training, as in
production where a model predicts tomorrow from yesterday. Rows at a cut timestamp go to the later
part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from model.data import schema
from model.data.encoding import FeatureSpec


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
