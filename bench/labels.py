"""Label building speed and peak memory: ours on DuckDB and Spark local[2], and pandas.merge_asof.

    python bench/labels.py --impressions 1000000 10000000 [--impls duckdb spark pandas]

All implement the same rules (model/data/labels.py; DuckDB and Spark run the same SQL) on the same
simulated world and write the same labels.parquet; the table says whether each output is identical
to DuckDB's. Each run is a fresh subprocess, so peak RSS is its own: the child's ru_maxrss, and for
Spark the sampled RSS of the Python driver plus its JVM. Spark's seconds include starting the JVM.
Worlds are simulated once into .bench/ (gitignored) and reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".bench"

CHILD_OURS = """
import json, resource, sys, time
from model.data.labels import build_labels
world, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
report = build_labels(f"{world}/impressions.parquet", f"{world}/events.parquet", out)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "nodes": report.nodes, "quarantine": report.quarantine,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

CHILD_SPARK = """
import json, sys, threading, time
import psutil
from model.data.label_engines import SparkTarget
from model.data.labels import build_labels
world, out = sys.argv[1], sys.argv[2]
peak, me = [0], psutil.Process()
def sample():  # the JVM is a child process: its memory is not in our ru_maxrss
    while True:
        procs = [me, *me.children(recursive=True)]
        peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs if p.is_running()))
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
report = build_labels(f"{world}/impressions.parquet", f"{world}/events.parquet", out,
                      engine="spark", spark=SparkTarget(master="local[2]"))
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "nodes": report.nodes, "quarantine": report.quarantine,
                  "peak_kib": peak[0] // 1024}))
"""

CHILD_PANDAS = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from labels import pandas_labels
world, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
result = pandas_labels(f"{world}/impressions.parquet", f"{world}/events.parquet", out)
seconds = time.perf_counter() - t0
print(json.dumps(result | {"seconds": seconds,
                           "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def pandas_labels(impressions: str, events: str, out_dir: str) -> dict:
    """The same rules as model.data.labels, written the straightforward way with
    pandas.merge_asof."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from model.data.labels import LabelConfig

    cfg = LabelConfig()
    us = 1_000_000

    def read(path: str) -> pd.DataFrame:
        table = pq.read_table(path)
        ts_us = pc.cast(pc.cast(table["ts"], pa.timestamp("us", tz="UTC")), pa.int64())
        return table.append_column("ts_us", ts_us).to_pandas()

    imp = read(impressions)
    imp["row"] = np.arange(len(imp))
    imp["reason"] = None
    nulls = imp[["impression_id", "user_id", "item_id", "ts_us"]].isna().any(axis=1)
    imp.loc[nulls, "reason"] = "null_field"
    imp.loc[imp["reason"].isna() & (imp["ts_us"] < cfg.earliest_us), "reason"] = "ts_out_of_range"
    valid = imp["reason"].isna()
    dup = valid & imp[valid].duplicated("impression_id").reindex(imp.index, fill_value=False)
    imp.loc[dup, "reason"] = "duplicate"
    ok = imp[imp["reason"].isna()]

    ev = read(events)
    ev["row"] = np.arange(len(ev))
    ev["reason"] = None
    nulls = ev[["event_id", "user_id", "item_id", "ts_us"]].isna().any(axis=1)
    ev.loc[nulls, "reason"] = "null_field"
    unknown = ev["reason"].isna() & ~ev["event_type"].isin(cfg.event_types)
    ev.loc[unknown, "reason"] = "unknown_event_type"
    no_comp = ev["reason"].isna() & (ev["event_type"] == cfg.micro_event) & ev["component"].isna()
    ev.loc[no_comp, "reason"] = "missing_component"
    valid = ev["reason"].isna()
    dup = valid & ev[valid].duplicated("event_id").reindex(ev.index, fill_value=False)
    ev.loc[dup, "reason"] = "duplicate"
    lo, hi = ok["ts_us"].min(), ok["ts_us"].max() + cfg.longest_window_s * us
    out_of_range = ev["reason"].isna() & (
        (ev["ts_us"] < max(lo, cfg.earliest_us)) | (ev["ts_us"] > hi)
    )
    ev.loc[out_of_range, "reason"] = "ts_out_of_range"
    ev_ok = ev[ev["reason"].isna()]

    keys = ["user_id", "item_id"]
    # Same-timestamp impressions of a pair: the smallest impression_id is the target (a
    # groupby-min on object strings would fall back to a Python loop, so sort and drop instead).
    targets = (
        ok[[*keys, "ts_us", "impression_id"]]
        .sort_values([*keys, "ts_us", "impression_id"])
        .drop_duplicates([*keys, "ts_us"])
        .assign(imp_ts=lambda d: d["ts_us"])
        .sort_values("ts_us")
    )
    clicks = ev_ok[ev_ok["event_type"] == cfg.click_event].sort_values("ts_us")
    clicks = pd.merge_asof(clicks, targets, on="ts_us", by=keys, direction="backward")
    too_old = clicks["ts_us"] - clicks["imp_ts"] > cfg.click_window_s * us
    clicks["att_reason"] = np.select(
        [clicks["imp_ts"].isna(), too_old],
        ["click_without_impression", "impression_outside_window"],
        None,
    )
    clicks.loc[clicks["att_reason"].notna(), "impression_id"] = None

    anchors = clicks[[*keys, "ts_us", "impression_id"]].rename(
        columns={"impression_id": "click_imp"}
    )
    anchors["click_ts"] = anchors["ts_us"]
    others = ev_ok[ev_ok["event_type"] != cfg.click_event].sort_values("ts_us")
    others = pd.merge_asof(others, anchors, on="ts_us", by=keys, direction="backward")
    window = np.select(
        [others["event_type"] == cfg.micro_event, others["event_type"] == cfg.purchase_event],
        [cfg.micro_window_s * us, cfg.purchase_window_s * us],
        cfg.macro_window_s * us,
    )
    others["att_reason"] = np.select(
        [
            others["click_ts"].isna(),
            others["ts_us"] - others["click_ts"] > window,
            others["click_imp"].isna(),
        ],
        ["no_click", "click_outside_window", "click_unattributed"],
        None,
    )
    others["impression_id"] = others["click_imp"].where(others["att_reason"].isna())

    attributed = pd.concat(
        [
            clicks[[*keys, "row", "event_type", "component", "impression_id", "att_reason"]],
            others[[*keys, "row", "event_type", "component", "impression_id", "att_reason"]],
        ]
    )
    shown = ok[keys].drop_duplicates().assign(shown=True)
    attributed = attributed.merge(shown, on=keys, how="left")
    never = attributed["att_reason"].notna() & attributed["shown"].isna()
    attributed.loc[never, "att_reason"] = "never_shown"

    used = attributed[attributed["att_reason"].isna()]
    graph = (
        used.assign(
            d_micro=(used["event_type"] == cfg.micro_event)
            & used["component"].isin(cfg.d_micro_components),
            d_macro=used["event_type"].isin(cfg.d_macro_events),
            buy=used["event_type"] == cfg.purchase_event,
        )
        .groupby("impression_id")[["d_micro", "d_macro", "buy"]]
        .any()
    )
    graph["click"] = True

    labels = ok.merge(graph, left_on="impression_id", right_index=True, how="left")
    for name in ("click", "d_micro", "d_macro", "buy"):
        labels[name] = labels[name].eq(True).astype("int8")  # NaN (no event) -> 0
    path = np.where(labels["d_micro"] == 1, "d_micro", "o_micro").astype(object)
    path = "impression>click>" + path + np.where(labels["d_macro"] == 1, ">d_macro", ">o_macro")
    path = path + np.where(labels["buy"] == 1, ">buy", "")
    labels["path"] = np.where(labels["click"] == 1, path, "impression")
    labels = labels.sort_values(["ts_us", "impression_id"])
    columns = [
        "impression_id",
        "user_id",
        "item_id",
        "ts",
        "position",
        "scene",
        "device",
        "click",
        "d_micro",
        "d_macro",
        "buy",
        "path",
    ]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pandas(labels[columns], preserve_index=False),
        f"{out_dir}/labels.parquet",
        compression="zstd",
    )
    held = pd.concat(
        [
            imp.loc[imp["reason"].notna(), ["reason"]].assign(table="impressions"),
            ev.loc[ev["reason"].notna(), ["reason"]].assign(table="events"),
            attributed.loc[attributed["att_reason"].notna(), ["att_reason"]]
            .rename(columns={"att_reason": "reason"})
            .assign(table="events"),
        ]
    )
    held.to_parquet(f"{out_dir}/quarantine.parquet")
    quarantine: dict[str, dict[str, int]] = {"impressions": {}, "events": {}}
    for (table, reason), n in held.groupby(["table", "reason"]).size().items():
        quarantine[table][reason] = int(n)
    return {
        "nodes": {
            "impression": len(labels),
            "click": int(labels["click"].sum()),
            "buy": int(labels["buy"].sum()),
        },
        "quarantine": quarantine,
    }


CHILDREN = {
    "duckdb": ("ours (DuckDB)", CHILD_OURS),
    "spark": ("ours (Spark local[2])", CHILD_SPARK),
    "pandas": ("pandas.merge_asof", CHILD_PANDAS),
}


def world_for(n: int) -> Path:
    """A default simulated world (seed 0) of n impressions, simulated once and cached."""
    name = f"world_{n // 1_000_000}m" if n % 1_000_000 == 0 else f"world_{n}"
    world = CACHE / name
    if not (world / "world.json").exists():
        from model.world.mechanism import WorldConfig
        from model.world.simulator import simulate

        simulate(WorldConfig(impressions=n, seed=0), world)
    return world


def run(child: str, world: Path, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", child, str(world), str(out), str(Path(__file__).parent)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def identical(a: Path, b: Path) -> bool:
    cols = ["impression_id", "ts", "click", "d_micro", "d_macro", "buy", "path"]
    left = pq.read_table(a / "labels.parquet", columns=cols)
    right = pq.read_table(b / "labels.parquet", columns=cols)
    return left.num_rows == right.num_rows and all(
        left[c].combine_chunks().equals(right[c].cast(left[c].type).combine_chunks()) for c in cols
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impressions", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--impls", nargs="+", choices=list(CHILDREN), default=list(CHILDREN), help="what to run"
    )
    args = parser.parse_args()
    table = Table(
        title="hm3 labels: ours (DuckDB, Spark local[2]) vs pandas.merge_asof, same rules"
    )
    for col in (
        "impressions",
        "events",
        "impl",
        "seconds",
        "impressions/s",
        "peak RSS GiB",
        "labels identical",
    ):
        table.add_column(col, justify="right")
    for n in args.impressions:
        world = world_for(n)
        n_events = pq.ParquetFile(world / "events.parquet").metadata.num_rows
        with tempfile.TemporaryDirectory(prefix="hm3-bench-labels-") as tmp:
            results = {}
            for impl in ("duckdb", *(i for i in args.impls if i != "duckdb")):
                t0 = time.perf_counter()
                results[impl] = run(CHILDREN[impl][1], world, Path(tmp, impl))
                results[impl]["wall"] = time.perf_counter() - t0
                results[impl]["same"] = identical(Path(tmp, "duckdb"), Path(tmp, impl))
                results[impl]["same_q"] = (
                    results["duckdb"]["quarantine"] == results[impl]["quarantine"]
                )
        for impl, r in results.items():
            same, same_q = r["same"], r["same_q"]
            table.add_row(
                f"{n:,}",
                f"{n_events:,}",
                CHILDREN[impl][0],
                f"{r['seconds']:.1f}",
                f"{n / r['seconds']:,.0f}",
                f"{r['peak_kib'] / 2**20:.2f}",
                f"{'yes' if same else 'NO'} (quarantine {'same' if same_q else 'DIFFERS'})",
            )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
