"""Benchmark: our metrics vs scikit-learn on the same arrays, side by side.

AUC on 10M scores (3% positives) with few ties and with heavy ties (scores rounded to 3
decimals), log loss on 10M, and GAUC per user against the usual per-user scikit-learn loop.
Prints one table: wall time (median of repeats) and the value of each side, and their absolute
difference. Run: `nice -n 10 .venv/bin/python bench/metrics.py [--rows 10000000]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from model.evaluate import metrics as ours


def _timed(fn: Callable[[], float], repeats: int) -> tuple[float, float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def _sklearn_gauc(y: np.ndarray, s: np.ndarray, users: np.ndarray) -> float:
    frame = pd.DataFrame({"y": y, "s": s, "u": users})
    total, weight = 0.0, 0
    for _, group in frame.groupby("u", sort=False):
        if group["y"].nunique() < 2:
            continue
        total += skm.roc_auc_score(group["y"], group["s"]) * len(group)
        weight += len(group)
    return total / weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--gauc-rows", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y = (rng.random(args.rows) < 0.03).astype(np.int8)
    smooth = rng.random(args.rows) * 0.8 + 0.2 * y  # few ties
    tied = np.round(smooth, 3)  # ~1000 distinct values: heavy ties
    probs = np.clip(smooth, 1e-6, 1 - 1e-6)
    n = args.gauc_rows
    users = rng.integers(0, args.users, n)

    cases = [
        (
            f"AUC, {args.rows:,} scores, few ties",
            lambda: ours.auc(y, smooth),
            lambda: skm.roc_auc_score(y, smooth),
        ),
        (
            f"AUC, {args.rows:,} scores, 3-decimal ties",
            lambda: ours.auc(y, tied),
            lambda: skm.roc_auc_score(y, tied),
        ),
        (
            f"log loss, {args.rows:,}",
            lambda: ours.log_loss(y, probs),
            lambda: skm.log_loss(y, probs),
        ),
        (
            f"GAUC, {n:,} rows, {args.users:,} users",
            lambda: ours.gauc(y[:n], tied[:n], users).value,
            lambda: _sklearn_gauc(y[:n], tied[:n], users),
        ),
    ]
    header = f"{'case':<40} {'ours s':>8} {'sklearn s':>10} {'speed-up':>9} {'|diff|':>9}"
    print(header)
    print("-" * len(header))
    for name, mine, peer in cases:
        t_ours, v_ours = _timed(mine, args.repeats)
        t_peer, v_peer = _timed(peer, 1 if name.startswith("GAUC") else args.repeats)
        print(
            f"{name:<40} {t_ours:>8.2f} {t_peer:>10.2f} {t_peer / t_ours:>8.1f}x "
            f"{abs(v_ours - v_peer):>9.1e}"
        )


if __name__ == "__main__":
    main()
