"""Dense FLOPs of a model's towers and the GEMM peak of the machine at the same shapes.

A dense layer `in -> out` on a batch of B costs three GEMMs per training step: forward
(B, in) @ (in, out), the input gradient (B, out) @ (out, in) and the weight gradient
(in, B) @ (B, out), each 2 * B * in * out FLOPs: 6 * in * out per sample, i.e. the usual
"6 x parameters x batch" with the parameters of the layers' weight matrices (biases, activations,
normalization, embeddings and the optimizer are not counted). The shapes are read from the model's
own layers (`nn.Linear` and our `FusedTowers`), never written down here.

The peak is what `torch.mm` reaches on this machine, with the same thread count, on exactly those
GEMMs (all three per layer), in the same run as the models: the best of them is the figure a
training step's tower FLOP/s is held against.
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch import nn

from model.nn.heads import FusedTowers

Shape = tuple[int, int]  # (in, out) of one dense layer


def gemm_shapes(net: nn.Module) -> dict[Shape, int]:
    """How many dense layers of each (in, out) shape `net` has (a fused (K, in, out) counts K)."""
    shapes: Counter[Shape] = Counter()
    for module in net.modules():
        if isinstance(module, nn.Linear):
            shapes[(module.in_features, module.out_features)] += 1
        elif isinstance(module, FusedTowers):
            for w in module.weights:
                towers, fan_in, fan_out = w.shape
                shapes[(fan_in, fan_out)] += towers
    return dict(shapes)


def flops_per_sample(shapes: dict[Shape, int]) -> int:
    """Forward + backward GEMM FLOPs per sample: 6 * in * out per layer."""
    return sum(6 * fan_in * fan_out * count for (fan_in, fan_out), count in shapes.items())


def gemms(batch: int, shape: Shape) -> dict[str, tuple[int, int, int]]:
    """The (m, k, n) of a layer's three training GEMMs, (m, k) @ (k, n)."""
    fan_in, fan_out = shape
    return {
        "forward": (batch, fan_in, fan_out),
        "grad_input": (batch, fan_out, fan_in),
        "grad_weight": (fan_in, batch, fan_out),
    }


def measure_peak(
    shapes: list[Shape],
    batch: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    seconds: float = 0.3,
) -> dict[str, float]:
    """FLOP/s of `torch.mm` on every training GEMM of `shapes` at `batch`, and the best of them.

    Each GEMM runs into a preallocated output, warmed up, then repeated for about `seconds`. The
    grad_weight GEMM reads its left operand transposed, as autograd does (`input.T @ grad`).

    Returns:
        {"peak": best FLOP/s, "<in>x<out> <gemm>": FLOP/s for each GEMM measured}.
    """
    rates: dict[str, float] = {}
    for shape in shapes:
        for kind, (m, k, n) in gemms(batch, shape).items():
            if kind == "grad_weight":
                a = torch.randn(k, m, device=device, dtype=dtype).T  # a view, like input.T
            else:
                a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            out = torch.empty(m, n, device=device, dtype=dtype)
            for _ in range(3):
                torch.mm(a, b, out=out)
            _sync(device)
            reps, started = 0, time.perf_counter()
            while True:
                for _ in range(5):
                    torch.mm(a, b, out=out)
                reps += 5
                _sync(device)
                elapsed = time.perf_counter() - started
                if elapsed >= seconds:
                    break
            rates[f"{shape[0]}x{shape[1]} {kind}"] = 2 * m * k * n * reps / elapsed
    return {"peak": max(rates.values()), **rates}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
