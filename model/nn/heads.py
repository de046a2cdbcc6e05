"""Task towers: K independent MLPs evaluated together as batched matmuls.

HM^3 has six towers of identical shape over the same input. Running them as K separate
`nn.Sequential`s costs K small matmuls per layer; stacking their weights into (K, in, out) turns
each layer into one batched matmul: fewer, larger kernels, which matters most on a GPU.
The math is exactly that of K separate MLPs: no parameters are shared between towers.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FusedTowers(nn.Module):
    """K MLP towers `in -> hidden... -> 1` with ReLU and dropout, returning (B, K) logits.

    Every layer of all towers is one batched matmul (K, B, h) @ (K, h, h'); the first reads the
    shared input broadcast to (K, B, in) without a copy (stride 0 over K). Keeping activations in
    one contiguous (K, B, h) layout throughout avoids the transposes and the copies their
    gradients would need; ReLU runs in place (the matmuls' backward needs their inputs, not their
    outputs), which saves a fresh (K, B, h) buffer per layer. Measured ~10% faster per training
    step than one (B, in) @ (in, K * h1) GEMM followed by a transpose, on this 2-core CPU.
    """

    def __init__(
        self, towers: int, input_dim: int, hidden: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        if towers < 1:
            raise ValueError(f"towers must be >= 1, got {towers}")
        dims = [input_dim, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            # Same init as nn.Linear (uniform in +-1/sqrt(fan_in)), per tower.
            bound = 1.0 / math.sqrt(fan_in)
            w = torch.empty(towers, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(towers, 1, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.dropout = nn.Dropout(dropout)
        self.towers = towers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in) -> (B, K) logits."""
        h = x.unsqueeze(0).expand(self.towers, -1, -1)  # (K, B, in), a view
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)  # (K, B, out)
            if i < last:
                h = torch.relu_(h)
                if self.dropout.p > 0:
                    h = self.dropout(h)
        return h.squeeze(-1).transpose(0, 1)  # (B, K)
