"""The pipeline's cost curve: `hm3 run` at growing sizes, wall time and peak memory per step.

Each size runs `hm3 run --impressions N --epochs E` in a fresh process, exactly as a user runs
it (kfp.local, every step a subprocess, then the local KServe endpoint and one prediction).
A sampler walks the process tree every 0.2 s: a process belongs to the step whose KFP executor
it runs or descends from (the step's task folder is in its `--executor_input`; a training step
is named by its model kind), so a step's peak RSS includes its children (e.g. Spark's JVM). A
step's seconds run from the first to the last sample that saw it (+-0.2 s). The run's peak RSS
is the largest sum over the whole tree; swap traffic is the machine's during the run.

The summary line compares the cost per impression of the largest size with the 2M one (the
issue's linearity target: <= 1.3x) and names the step that dominates the largest run.

Usage:
    nice -n 5 .venv/bin/python bench/pipeline.py                       # 200k, 2M, 10M, 1 epoch
    nice -n 5 .venv/bin/python bench/pipeline.py --impressions 200000 2000000 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 0.2
REFERENCE_SIZE = 2_000_000  # the linearity reference


def step_of(cmdline: Sequence[str]) -> str | None:
    """The pipeline step a KFP executor command line runs, or None for any other process.

    The step is the task folder of the executor's first output (`<run>/<task>/<output>`);
    training tasks are named `train-model-<kind>` from their `model_kind` parameter, because
    kfp.local numbers the parallel-for copies instead of naming them.
    """
    if "kfp.dsl.executor_main" not in cmdline or "--executor_input" not in cmdline:
        return None
    executor = json.loads(cmdline[cmdline.index("--executor_input") + 1])
    outputs = executor.get("outputs", {})
    uris = [a["uri"] for v in outputs.get("artifacts", {}).values() for a in v["artifacts"]]
    uris += [p["outputFile"] for p in outputs.get("parameters", {}).values()]
    if not uris:
        return None
    task = Path(uris[0]).parent.name
    kind = executor.get("inputs", {}).get("parameterValues", {}).get("model_kind")
    return f"train-model-{kind}" if task.startswith("train-model") and kind else task


@dataclass
class StepUsage:
    """What the sampler saw of one step."""

    first: float
    last: float
    peak_rss: int = 0


@dataclass
class TreeSampler:
    """Samples a process tree: per-step first/last sighting and peak RSS, and the tree's peak."""

    root: psutil.Process
    steps: dict[str, StepUsage] = field(default_factory=dict)
    peak_rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        """One pass over the tree."""
        now = time.monotonic()
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        seen: dict[int, tuple[int, int, str | None]] = {}  # pid -> (ppid, rss, own step)
        for proc in procs:
            try:
                seen[proc.pid] = (proc.ppid(), proc.memory_info().rss, step_of(proc.cmdline()))
            except (psutil.NoSuchProcess, psutil.AccessDenied, json.JSONDecodeError):
                continue

        def owner(pid: int) -> str | None:
            # A step's children (Spark's JVM, data loader workers) count towards the step.
            while pid in seen:
                ppid, _, step = seen[pid]
                if step:
                    return step
                pid = ppid
            return None

        usage: dict[str, int] = {}
        for pid, (_, rss, _) in seen.items():
            step = owner(pid)
            if step:
                usage[step] = usage.get(step, 0) + rss
        total = sum(rss for _, rss, _ in seen.values())
        self.peak_rss = max(self.peak_rss, total)
        for step, rss in usage.items():
            seen = self.steps.setdefault(step, StepUsage(first=now, last=now))
            seen.last, seen.peak_rss = now, max(seen.peak_rss, rss)

    def run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.sample()

    def stop(self) -> None:
        self._stop.set()


def run_pipeline(impressions: int, epochs: int, out: Path) -> dict:
    """Run `hm3 run` once and return its wall time, per-step usage and swap traffic."""
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("hm3")),
        "run",
        "--impressions",
        str(impressions),
        "--epochs",
        str(epochs),
        "--out",
        str(out),
    ]
    swap = psutil.swap_memory()
    start = time.monotonic()
    with log.open("w") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = TreeSampler(psutil.Process(proc.pid))
        thread = threading.Thread(target=sampler.run, daemon=True)
        thread.start()
        code = proc.wait()
        sampler.stop()
        thread.join()
    seconds = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"hm3 run --impressions {impressions} failed ({code}); see {log}")
    after = psutil.swap_memory()
    return {
        "impressions": impressions,
        "epochs": epochs,
        "seconds": seconds,
        "peak_rss": sampler.peak_rss,
        "swap_in": after.sin - swap.sin,
        "swap_out": after.sout - swap.sout,
        "steps": {
            name: {"start": s.first - start, "seconds": s.last - s.first, "peak_rss": s.peak_rss}
            for name, s in sorted(sampler.steps.items(), key=lambda kv: kv[1].first)
        },
        "log": str(log),
    }


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def report(results: Sequence[dict]) -> Table:
    """Seconds and peak RSS per step (rows) and size (columns)."""
    table = Table(title="hm3 run: wall time (s) / peak RSS (GiB) per step")
    table.add_column("step")
    for r in results:
        table.add_column(f"{r['impressions']:,}", justify="right")
    names = list(dict.fromkeys(n for r in results for n in r["steps"]))
    for name in names:
        cells = []
        for r in results:
            s = r["steps"].get(name)
            cells.append(f"{s['seconds']:.1f} / {_gib(s['peak_rss'])}" if s else "-")
        table.add_row(name, *cells)
    table.add_row("whole run", *(f"{r['seconds']:.1f} / {_gib(r['peak_rss'])}" for r in results))
    table.add_row(
        "us per impression", *(f"{1e6 * r['seconds'] / r['impressions']:.1f}" for r in results)
    )
    table.add_row(
        "swap in / out (MiB)",
        *(f"{r['swap_in'] / 2**20:.0f} / {r['swap_out'] / 2**20:.0f}" for r in results),
    )
    return table


def summary(results: Sequence[dict]) -> list[str]:
    """The linearity figure against the 2M run and the step that dominates the largest run."""
    lines = []
    largest = max(results, key=lambda r: r["impressions"])
    reference = next((r for r in results if r["impressions"] == REFERENCE_SIZE), None)
    if reference and largest is not reference:
        ratio = (largest["seconds"] / largest["impressions"]) / (
            reference["seconds"] / reference["impressions"]
        )
        verdict = "met" if ratio <= 1.3 else "NOT met"
        lines.append(
            f"cost per impression at {largest['impressions']:,} = {ratio:.2f}x that at "
            f"{REFERENCE_SIZE:,} (target <= 1.3x: {verdict})"
        )
    name, step = max(largest["steps"].items(), key=lambda kv: kv[1]["seconds"])
    lines.append(
        f"dominant step at {largest['impressions']:,}: {name} "
        f"({step['seconds']:.0f} s of {largest['seconds']:.0f} s)"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--impressions", type=int, nargs="+", default=[200_000, 2_000_000, 10_000_000]
    )
    parser.add_argument("--epochs", type=int, default=1, help="Epochs per model, every size.")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "pipeline")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON.")
    args = parser.parse_args(argv)
    console = Console()
    results = []
    for n in args.impressions:
        console.print(f"hm3 run --impressions {n:,} --epochs {args.epochs} ...")
        results.append(run_pipeline(n, args.epochs, args.work / f"run-{n}"))
        console.print(f"  {results[-1]['seconds']:.0f} s")
    console.print(report(results))
    for line in summary(results):
        console.print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
