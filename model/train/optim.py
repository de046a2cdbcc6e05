"""Lazy Adam for sparse embedding gradients, without coalescing them.

`torch.optim.SparseAdam` coalesces each gradient (a sort-and-reduce over every looked-up row,
B * C of them per step) and then applies the update through sparse-mask kernels; on this 2-core
CPU that was ~18% of an ESMM training step. This optimizer does the same arithmetic on dense
(U, D) blocks of the U distinct rows: one `unique`, one `index_add_` to sum duplicate rows, and
gathers/scatters of the moments. Same state layout (`step`, `exp_avg`, `exp_avg_sq`) and the same
update as SparseAdam, which a test pins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam whose moments of a row move only on steps that look the row up ("lazy" Adam).

    Accepts sparse COO gradients, coalesced or not (as `nn.Embedding(sparse=True)` and gloo's
    sparse all-reduce produce them). Per step and parameter, with g the summed gradient of the
    distinct rows r::

        m[r] += (1 - b1) * (g - m[r]);  v[r] += (1 - b2) * (g^2 - v[r])
        p[r] -= lr * s[r] * sqrt(1 - b2^t) / (1 - b1^t) * m[r] / (sqrt(v[r]) + eps)

    with s an optional per-row multiplier of the learning rate (`row_scale`, shape (rows,), 1
    when not given): rows of different features of one fused table can learn at different rates.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        row_scale: torch.Tensor | None = None,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if row_scale is not None and not (row_scale.dim() == 1 and bool((row_scale >= 0).all())):
            raise ValueError("row_scale must be a 1-D tensor of multipliers >= 0")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "row_scale": row_scale})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                if not param.grad.is_sparse:
                    raise RuntimeError("LazyAdam needs sparse gradients; use Adam for dense ones")
                self._update(
                    param, param.grad, group["lr"], beta1, beta2, group["eps"], group["row_scale"]
                )
        return loss

    def _update(
        self,
        param: torch.Tensor,
        grad: torch.Tensor,
        lr: float,
        beta1: float,
        beta2: float,
        eps: float,
        row_scale: torch.Tensor | None,
    ) -> None:
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        indices, values = grad._indices()[0], grad._values()
        if values.numel() == 0:
            return
        if grad.is_coalesced():
            rows, g = indices, values
        else:
            rows, inverse = torch.unique(indices, return_inverse=True)
            g = values.new_zeros((len(rows), *values.shape[1:])).index_add_(0, inverse, values)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        m = exp_avg.index_select(0, rows).lerp_(g, 1 - beta1)
        v = exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(g, g, value=1 - beta2)
        exp_avg.index_copy_(0, rows, m)
        exp_avg_sq.index_copy_(0, rows, v)
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        direction = m.div_(v.sqrt_().add_(eps))
        if row_scale is not None:
            direction.mul_(row_scale.index_select(0, rows).unsqueeze(1))
        updated = param.index_select(0, rows).add_(direction, alpha=-step_size)
        param.index_copy_(0, rows, updated)
