"""Benchmark: our metrics vs scikit-learn on the same arrays, side by side.

AUC on 10M scores (3% positives) with few ties and with heavy ties (scores rounded to 3
decimals), log loss on 10M, GAUC per user against the usual per-user scikit-learn loop, and
paired bootstrap AUCs (4 models on the same resamples, as evaluation draws its intervals)
against scikit-learn on each explicit resample. Prints one table: wall time (median of repeats)
and the value of each side, and their absolute difference.
Run: `nice -n 10 .venv/bin/python bench/metrics.py [--rows 10000000]`.
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


def _sklearn_bootstrap(y: np.ndarray, scores: dict[str, np.ndarray], resamples: int) -> float:
    """Mean AUC over the models and the same resamples as `bootstrap_auc(..., seed=0)`."""
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(resamples):
        rows = rng.integers(0, y.size, y.size)
        draws.extend(skm.roc_auc_score(y[rows], s[rows]) for s in scores.values())
    return float(np.mean(draws))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--gauc-rows", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--bootstrap-rows", type=int, default=300_000)
    parser.add_argument("--resamples", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    y = (rng.random(args.rows) < 0.03).astype(np.int8)
    smooth = rng.random(args.rows) * 0.8 + 0.2 * y  # few ties
    tied = np.round(smooth, 3)  # ~1000 distinct values: heavy ties
    probs = np.clip(smooth, 1e-6, 1 - 1e-6)
    n = args.gauc_rows
    users = rng.integers(0, args.users, n)
    b = args.bootstrap_rows
    models = {f"m{i}": np.round(smooth[:b] + 0.05 * i * rng.random(b), 4) for i in range(4)}

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
        (
            f"bootstrap AUC, {b:,} rows, 4 x {args.resamples}",
            lambda: float(
                np.mean(list(ours.bootstrap_auc(y[:b], models, args.resamples, seed=0).values()))
            ),
            lambda: _sklearn_bootstrap(y[:b], models, args.resamples),
        ),
    ]
    header = f"{'case':<40} {'ours s':>8} {'sklearn s':>10} {'speed-up':>9} {'|diff|':>9}"
    print(header)
    print("-" * len(header))
    for name, mine, peer in cases:
        t_ours, v_ours = _timed(mine, args.repeats)
        once = name.startswith(("GAUC", "bootstrap"))
        t_peer, v_peer = _timed(peer, 1 if once else args.repeats)
        print(
            f"{name:<40} {t_ours:>8.2f} {t_peer:>10.2f} {t_peer / t_ours:>8.1f}x "
            f"{abs(v_ours - v_peer):>9.1e}"
        )


if __name__ == "__main__":
    main()
