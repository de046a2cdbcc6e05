"""The shared input layer: one embedding table for every categorical feature, normalized dense.

Shapes: B = batch, C = categorical-like features (ids + categoricals), N = dense features,
D = embedding dim, P = feature pairs of the interaction. Output (B, C * D + I + N) with I the
interaction width (0, P or P * D, see `INTERACTIONS`), computed once per batch and shared by every
head.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from model.data import schema
from model.data.encoding import FeatureSpec

# How embedded features interact explicitly before the towers (the towers see the concatenated
# embeddings in every case):
#   none         no explicit interaction.
#   dot          <e_i, e_j> for every pair of categorical features (DLRM's dot interaction,
#                Naumov et al. 2019; the second-order term of a factorization machine).
#   id_hadamard  e_i * e_j (elementwise, D values) for every pair of `id` features, e.g.
#                user_id x item_id: generalized matrix factorization (NCF, He et al. 2017); a
#                tower's first layer turns it into a weighted dot product of its own, so each
#                head can learn its own user-item affinity.
INTERACTIONS: tuple[str, ...] = ("none", "dot", "id_hadamard")


class FeatureEmbedding(nn.Module):
    """Embeds categorical indices and normalizes dense values into one shared vector.

    All categorical features live in a single `nn.Embedding` at per-feature row offsets, so one
    batch costs one gather (torchrec's fused-table idea, minus the sharding). Dense features are
    squashed as in ESM^2: `tanh((x - mean) / std)` with training-split statistics held as buffers,
    so they travel with the weights. An optional parameter-free pairwise interaction of the
    embeddings (`INTERACTIONS`) is appended; it adds no weights, so the state dict is the same.
    """

    def __init__(
        self, spec: FeatureSpec, dim: int, sparse: bool = False, interaction: str = "none"
    ) -> None:
        super().__init__()
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
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
        self.interaction = interaction
        if interaction == "dot":
            members = list(range(len(sizes)))
        elif interaction == "id_hadamard":
            members = [i for i, f in enumerate(spec.categorical) if f.kind == schema.KIND_ID]
        else:
            members = []
        pairs = list(itertools.combinations(members, 2))
        # Not persistent: derived from the spec, so artifacts keep the same tensors.
        self.register_buffer(
            "left", torch.tensor([a for a, _ in pairs], dtype=torch.int64), persistent=False
        )
        self.register_buffer(
            "right", torch.tensor([b for _, b in pairs], dtype=torch.int64), persistent=False
        )
        width = len(pairs) * (dim if interaction == "id_hadamard" else 1)
        self.output_dim = len(sizes) * dim + width + len(spec.dense)

    def forward(self, categorical: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """(B, C) int64 indices and (B, N) raw floats -> (B, C * D + I + N)."""
        emb = self.table(categorical + self.offsets)  # (B, C, D)
        norm = torch.tanh((dense - self.mean) / self.std)  # (B, N)
        parts = [emb.flatten(1)]
        if self.left.numel():
            products = emb[:, self.left] * emb[:, self.right]  # (B, P, D)
            parts.append(products.sum(-1) if self.interaction == "dot" else products.flatten(1))
        parts.append(norm.to(emb.dtype))
        return torch.cat(parts, dim=1)
