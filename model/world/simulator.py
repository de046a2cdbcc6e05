"""Write a simulated world to files: raw logs, feature snapshots, truth and world.json.

`simulate(cfg, out_dir)` samples the world of `model/world/mechanism.py` chunk by chunk
(`model/world/sampling.py`) and writes `impressions.parquet`, `events.parquet`, `truth.parquet`,
the daily feature snapshots `users.parquet` and `items.parquet`, and `world.json` (the config and
a summary of what was written). Every file is written under a temporary name and renamed into
place when complete. Output is byte-for-byte deterministic for a given config. They are read back
by `model/world/world_files.py`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data import schema
from model.world.mechanism import DAY_US, WorldConfig, mechanism_record, population
from model.world.sampling import feature_tables, sample_chunk, with_event_ids

log = logging.getLogger(__name__)

CHUNK_IMPRESSIONS = 1_000_000


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote, for logs and tests."""

    out_dir: str
    impressions: int
    events: int
    clicks: int
    d_micro: int
    d_macro: int
    buys: int
    noisy_impressions: int

    def rates(self) -> dict[str, float]:
        """The graph's conditional rates of the sampled outcomes."""
        clicks = max(self.clicks, 1)
        return {
            "ctr": self.clicks / max(self.impressions, 1),
            "d_micro_given_click": self.d_micro / clicks,
            "d_macro_given_click": self.d_macro / clicks,
            "buy_given_click": self.buys / clicks,
        }


class _AtomicParquet:
    """A Parquet file written under a temporary name and renamed into place when complete."""

    def __init__(self, path: Path, table_schema: pa.Schema) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, table_schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=CHUNK_IMPRESSIONS)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def simulate(cfg: WorldConfig, out_dir: str | Path, progress: bool = False) -> SimulationSummary:
    """Generate a world and write its tables as Parquet into `out_dir`.

    Output is byte-for-byte deterministic for a given config.

    Args:
        cfg: World parameters.
        out_dir: Local folder; created if missing.
        progress: Show a progress bar on stderr.

    Returns:
        Counts of what was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop = population(cfg)

    n_chunks = -(-cfg.impressions // CHUNK_IMPRESSIONS)
    bounds = np.linspace(0, cfg.impressions, n_chunks + 1).astype(np.int64)
    t_bounds = cfg.start_us + np.linspace(0, cfg.days * DAY_US, n_chunks + 1).astype(np.int64)
    writers = {
        name: _AtomicParquet(out / f"{name}.parquet", schema.TABLES[name])
        for name in ("impressions", "events", "truth")
    }
    counts = dict.fromkeys(("events", "click", "d_micro", "d_macro", "buy", "noisy"), 0)
    with _progress_bar(progress, cfg.impressions) as advance:
        for chunk in range(n_chunks):
            lo, hi = int(bounds[chunk]), int(bounds[chunk + 1])
            part = sample_chunk(
                cfg, pop, chunk, hi - lo, lo, int(t_bounds[chunk]), int(t_bounds[chunk + 1])
            )
            dup_rng = np.random.default_rng([cfg.seed, 2, chunk])
            events = with_event_ids(
                part.events, counts["events"], dup_rng, cfg.noise.duplicate_event_rate
            )
            counts["events"] += part.events.num_rows
            writers["impressions"].write(part.impressions)
            writers["events"].write(events)
            writers["truth"].write(part.truth)
            for name in ("click", "d_micro", "d_macro", "buy", "noisy"):
                counts[name] += int(pc.sum(part.truth[name]).as_py() or 0)
            advance(hi - lo)
    for writer in writers.values():
        writer.close()

    users, items = feature_tables(cfg, pop, np.random.default_rng([cfg.seed, 3]))
    for name, table in (("users", users), ("items", items)):
        writer = _AtomicParquet(out / f"{name}.parquet", table.schema)
        writer.write(table)
        writer.close()

    events_written = pq.ParquetFile(out / "events.parquet").metadata.num_rows
    summary = SimulationSummary(
        out_dir=str(out),
        impressions=cfg.impressions,
        events=events_written,
        clicks=counts["click"],
        d_micro=counts["d_micro"],
        d_macro=counts["d_macro"],
        buys=counts["buy"],
        noisy_impressions=counts["noisy"],
    )
    world = {
        "config": asdict(cfg),
        "mechanism": mechanism_record(pop),
        "summary": asdict(summary) | {"rates": summary.rates()},
    }
    world["summary"].pop("out_dir")
    tmp = out / ".world.json.tmp"
    tmp.write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "world.json")
    log.info("simulated %d impressions, %d events into %s", cfg.impressions, events_written, out)
    return summary


class _progress_bar:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar over impressions, or a no-op."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("simulating impressions"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        task = self.bar.add_task("simulate", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
