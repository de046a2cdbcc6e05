"""Is a simulated world an instrument that can show HM^3's gain? A model-free check, in minutes.

HM^3 can beat ESM^2 only by what its D-Micro labels reveal about purchase intent beyond the
features and the labels ESM^2 already reads (`model/world/label_information.py`). This bench
measures that on any world (seed, size, signals) without training a model: simulate the world
(or reuse the quality bench's copy under `.bench/quality/`), split its impressions by time as the
quality bench does, and print, per model family's label set, how much of each recurring part of
purchase intent (the item's, the age x category and gender x category cells') a read-out of the
features and train-window label rates recovers (gradient-boosted trees, cross-fitted; R^2
weighted by test clicks) and the CVR AUC ceiling those read-outs allow on the clicked test rows.
The information ceilings of `model/world/ceiling.py` are printed beside it.

Labels and features come straight from the world's files: the sampled outcomes of truth.parquet
(before the label builder's damage and quarantine) and the item snapshot of each impression's day
from items.parquet (what a point-in-time join returns). So the figures can differ from the
quality bench's table by the few rows the label builder quarantines.

A world whose "+ D-Micro" row does not rise above "+ D-Macro" cannot show HM^3 beating ESM^2,
whatever the models do; a world design is checked here, never against model scores.

Usage:
    nice -n 10 .venv/bin/python bench/world_information.py --impressions 3000000 --world-seed 1
    nice -n 10 .venv/bin/python bench/world_information.py --micro-signal 0 --json info.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import (  # noqa: E402  (the quality bench's)
    check_truth,
    label_information_table,
    simulate_world,
    world_name,
)

from model.data.split import split_by_time  # noqa: E402
from model.evaluate.metrics import auc  # noqa: E402
from model.world import world_files  # noqa: E402
from model.world.mechanism import DAY_US, WorldConfig  # noqa: E402

LABELS = ("click", "d_micro", "d_macro", "buy")
ITEM_FEATURES = ("item_cvr_30d", "item_ctr_7d", "item_sales_30d")
DEFAULT_SPLIT = (0.45, 0.15, 0.40)  # the quality bench's split (bench/quality.py)


def _days(table: pa.Table, column: str, cfg: WorldConfig) -> np.ndarray:
    """Day index in the world of a microsecond timestamp column."""
    micros = pc.cast(table[column], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    return (micros - cfg.start_us) // DAY_US


def world_frame(world_dir: Path, cfg: WorldConfig) -> pa.Table:
    """Impressions with their sampled labels and their day's item features."""
    impressions = pq.read_table(
        world_dir / "impressions.parquet", columns=["impression_id", "user_id", "item_id", "ts"]
    )
    truth = pq.read_table(
        world_dir / "truth.parquet", columns=["impression_id", "p_buy_given_click", *LABELS]
    ).to_pandas()
    items = pq.read_table(
        world_dir / "items.parquet", columns=["item_id", "event_timestamp", *ITEM_FEATURES]
    )
    frame = impressions.to_pandas().assign(day=_days(impressions, "ts", cfg))
    frame = frame.merge(truth, on="impression_id", validate="one_to_one")
    snapshots = items.to_pandas().assign(day=_days(items, "event_timestamp", cfg))
    frame = frame.merge(
        snapshots.drop(columns="event_timestamp"),
        on=["item_id", "day"],
        how="left",
        validate="many_to_one",
    )
    missing = frame[list(ITEM_FEATURES)].isna().any(axis=1)
    if missing.any():
        raise ValueError(f"{world_dir}: {int(missing.sum())} impressions have no item snapshot")
    return pa.Table.from_pandas(frame, preserve_index=False)


def information(world_dir: Path, split: Sequence[float]) -> dict:
    """The label information table and the information ceilings of one world."""
    cfg, _ = world_files.load_world(world_dir)
    parts = split_by_time(world_frame(world_dir, cfg), split)
    train, test = parts["train"].to_pandas(), parts["test"].to_pandas()
    clicked = test["click"].to_numpy() == 1
    buy = test["buy"].to_numpy()[clicked]
    readouts = world_files.label_information(world_dir, train, test)
    hidden, mismatch = world_files.ceiling_predictions(world_dir, test)
    check_truth(world_dir, mismatch)
    ceilings = {"oracle (all latents known)": test["p_buy_given_click"].to_numpy(), **hidden}
    return {
        "world": json.loads((world_dir / "world.json").read_text())["config"],
        "split": list(split),
        "clicked_test_rows": int(clicked.sum()),
        "test_purchases": int(buy.sum()),
        "label_information": {
            name: {"r2": v["r2"], "cvr_auc": auc(buy, v["cvr"][clicked])}
            for name, v in readouts.items()
        },
        "ceilings": {name: auc(buy, p[clicked]) for name, p in ceilings.items()},
    }


def report(doc: dict) -> str:
    """The two tables as markdown."""
    lines = [
        f"{doc['clicked_test_rows']:,} clicked test rows, {doc['test_purchases']:,} purchases",
        "",
        label_information_table(doc),
    ]
    lines += ["", "| information ceiling | CVR AUC |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in doc["ceilings"].items()]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impressions", type=int, default=3_000_000)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--micro-signal", type=float, default=defaults.micro_signal)
    parser.add_argument("--macro-signal", type=float, default=defaults.macro_signal)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--items", type=int, default=defaults.items)
    parser.add_argument(
        "--split", type=float, nargs=3, default=DEFAULT_SPLIT, metavar=("TRAIN", "VAL", "TEST")
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "quality")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    name = world_name(args)
    world_dir = args.out / name
    started = time.perf_counter()
    simulate_world(world_dir, args)
    doc = information(world_dir, args.split)
    doc["seconds"] = time.perf_counter() - started
    print(f"{name} (split {tuple(args.split)}, {doc['seconds']:.0f}s)\n")
    print(report(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
