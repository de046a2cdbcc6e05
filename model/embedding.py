"""The shared input layer: one embedding table for every categorical feature, normalized dense.

Shapes: B = batch, C = categorical-like features (ids + categoricals), N = dense features,
D = embedding dim. Output (B, C * D + N), computed once per batch and shared by every head.
"""

from __future__ import annotations

import torch
from torch import nn

from model.encoding import FeatureSpec


class FeatureEmbedding(nn.Module):
    """Embeds categorical indices and normalizes dense values into one shared vector.

    All categorical features live in a single `nn.Embedding` at per-feature row offsets, so one
    batch costs one gather (torchrec's fused-table idea, minus the sharding). Dense features are
    squashed as in ESM^2: `tanh((x - mean) / std)` with training-split statistics held as buffers,
    so they travel with the weights.
    """

    def __init__(self, spec: FeatureSpec, dim: int, sparse: bool = False) -> None:
        super().__init__()
        sizes = [f.size for f in spec.categorical]
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.int64).cumsum(0) if sizes else None
        self.register_buffer(
            "offsets", offsets if offsets is not None else torch.zeros(0, dtype=torch.int64)
        )
        # sparse=True: a step's gradient covers only the B * C rows it looked up, so the optimizer
        # touches those rows instead of the whole table (the main CPU cost at 100k+ buckets).
        self.table = nn.Embedding(max(sum(sizes), 1), dim, sparse=sparse)
        nn.init.normal_(self.table.weight, std=0.05)
        self.register_buffer(
            "mean", torch.tensor([f.mean for f in spec.dense], dtype=torch.float32)
        )
        self.register_buffer("std", torch.tensor([f.std for f in spec.dense], dtype=torch.float32))
        self.output_dim = len(sizes) * dim + len(spec.dense)

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(B, C) int64 indices and (B, N) raw floats -> (B, C * D + N)."""
        emb = self.table(categorical + self.offsets)  # (B, C, D)
        norm = torch.tanh((dense - self.mean) / self.std)  # (B, N)
        return torch.cat([emb.flatten(1), norm.to(emb.dtype)], dim=1)
