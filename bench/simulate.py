"""Simulator throughput and peak memory: `python bench/simulate.py --impressions 1000000 10000000`.

Each size runs in a fresh subprocess so that peak RSS (ru_maxrss of the child) is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

CHILD = """
import json, sys, time
from model.world.mechanism import WorldConfig
from model.world.simulator import simulate
n, out = int(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
s = simulate(WorldConfig(impressions=n, seed=0), out)
print(json.dumps({"seconds": time.perf_counter() - t0, "events": s.events}))
"""


def run(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hm3-bench-") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), out], check=True, capture_output=True, text=True
        )
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_rss_gib"] = max(peak_kib, before) / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    table = Table(title="hm3 simulate (default world, seed 0)")
    for col in ("impressions", "events", "seconds", "impressions/s", "peak RSS GiB"):
        table.add_column(col, justify="right")
    for n in args.impressions:
        t0 = time.perf_counter()
        r = run(n)
        wall = time.perf_counter() - t0
        table.add_row(
            f"{n:,}",
            f"{r['events']:,}",
            f"{r['seconds']:.1f} (wall {wall:.1f})",
            f"{n / r['seconds']:,.0f}",
            f"{r['peak_rss_gib']:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
