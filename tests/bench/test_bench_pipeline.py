"""bench/pipeline.py: which step a process belongs to, and what the sampler attributes to it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
bench_pipeline = importlib.util.module_from_spec(_spec)
sys.modules["bench_pipeline"] = bench_pipeline
_spec.loader.exec_module(bench_pipeline)


def _executor_input(task: str, kind: str | None = None) -> str:
    """An executor input as kfp.local passes it: outputs under <run>/<task>/<output>."""
    params = {"model_kind": kind} if kind else {"impressions": 1000}
    uri = f"/tmp/out/kfp/hm3-cvr-2026-12-01/{task}/model"
    return json.dumps(
        {
            "inputs": {"parameterValues": params},
            "outputs": {"artifacts": {"model": {"artifacts": [{"name": "model", "uri": uri}]}}},
        }
    )


def _cmdline(task: str, kind: str | None = None) -> list[str]:
    return [
        "python3",
        "-m",
        "kfp.dsl.executor_main",
        "--component_module_path",
        "/tmp/x/ephemeral_component.py",
        "--executor_input",
        _executor_input(task, kind),
        "--function_to_execute",
        "train_model",
    ]


def test_a_step_is_its_task_folder_and_a_training_step_its_model_kind() -> None:
    assert bench_pipeline.step_of(_cmdline("retrieve-features")) == "retrieve-features"
    # kfp.local numbers the parallel-for copies; the bench names them by kind.
    assert bench_pipeline.step_of(_cmdline("train-model-2", kind="esmm")) == "train-model-esmm"
    assert bench_pipeline.step_of(["hm3", "run", "--impressions", "1000"]) is None
    # The `sh -ec` wrapper kfp.local starts carries the module name inside its script only.
    wrapper = ["sh", "-ec", 'python3 -m kfp.dsl.executor_main "$@"', "--executor_input", "{}"]
    assert bench_pipeline.step_of(wrapper) is None


def test_a_steps_children_count_towards_its_peak_memory() -> None:
    # A real process tree: an "executor" of step build-labels whose child holds ~200 MB.
    child = "import time; x = bytearray(200 * 2**20); x[::4096] = b'1' * len(x[::4096]); " + (
        "time.sleep(60)"
    )
    parent = f"import subprocess, sys, time; subprocess.run([sys.executable, '-c', {child!r}])"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            parent,
            "kfp.dsl.executor_main",
            "--executor_input",
            _executor_input("build-labels"),
        ]
    )
    try:
        sampler = bench_pipeline.TreeSampler(psutil.Process(proc.pid))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sampler.sample()
            usage = sampler.steps.get("build-labels")
            if usage and usage.peak_rss > 200 * 2**20:
                break
            time.sleep(0.1)
        assert set(sampler.steps) == {"build-labels"}
        assert sampler.steps["build-labels"].peak_rss > 200 * 2**20
        assert sampler.peak_rss >= sampler.steps["build-labels"].peak_rss
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_summary_compares_the_cost_per_impression_with_the_2m_run() -> None:
    def run(n: int, seconds: float, steps: dict) -> dict:
        return {"impressions": n, "seconds": seconds, "steps": steps}

    results = [
        run(2_000_000, 100.0, {"train-model-hm3": {"seconds": 60.0}}),
        run(
            10_000_000,
            700.0,
            {"retrieve-features": {"seconds": 90.0}, "train-model-hm3": {"seconds": 400.0}},
        ),
    ]
    lines = bench_pipeline.summary(results)
    assert lines[0].startswith("cost per impression at 10,000,000 = 1.40x")
    assert lines[0].endswith("NOT met)")
    assert lines[1] == "dominant step at 10,000,000: train-model-hm3 (400 s of 700 s)"
