"""Run the pipeline on kfp.local (SubprocessRunner) and lay its outputs out for people.

`run_local` executes the same pipeline function that `hm3 compile` compiles, then copies the
outputs from the KFP local pipeline root into a stable layout under `out`:
`metrics.json`, `report.html`, `models/<kind>/`, `labels/`, `features/`, `feature_store/` (the
run's Feast repo with its materialized SQLite online store), `deployment/` and the KFP local run
itself under `kfp/`. Everything kfp.local and the components print goes to `logs/<step>.log`
and `logs/run.log`; the console shows one line per step (`pipelines.progress`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

log = logging.getLogger(__name__)

# kfp.local runs at most two ParallelFor iterations at once (its ParallelExecutor's cap), and
# the pipeline trains every model kind in one ParallelFor: each training task gets half the cores.
LOCAL_PARALLEL_TASKS = 2


def training_threads(cores: int | None = None) -> int:
    """Torch threads per local training task, so that the two tasks at a time fill the cores."""
    return max(1, (cores or os.cpu_count() or 1) // LOCAL_PARALLEL_TASKS)


@dataclass(frozen=True)
class LocalRunConfig:
    """Options of a local run; the pipeline parameters they map to are named alongside."""

    out: Path = Path("out")
    impressions: int = 200_000
    seed: int = 0
    micro_signal: float = 1.0
    users: int = 2_000
    items: int = 250
    epochs: int = 2
    min_cvr_auc: float = 0.55
    train_overrides: dict[str, object] = field(default_factory=dict)
    source_uri: str = ""  # raw logs to ingest (local, file:// or gs://); empty = simulate
    deploy_dir: str = ""  # deployment registry folder (local or gs://); empty = out/deployment
    label_engine: str = "duckdb"  # label_engine: duckdb or spark
    offline_store: str = "duckdb"  # offline_store: Feast's duckdb or spark offline store
    spark_master: str = "local[2]"  # spark_master: for both Spark steps
    feature_store: str = ""  # feature_store: an existing store's yaml; empty = the run's own

    def __post_init__(self) -> None:
        if self.impressions < 1_000:
            raise ValueError(f"impressions must be >= 1000, got {self.impressions}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")


@dataclass
class LocalRunResult:
    """Where the outputs landed and what the run decided."""

    out: Path
    run_dir: Path
    decision: str
    reasons: list[str]
    deployment: dict[str, object] | None
    seconds: float = 0.0  # wall time of the pipeline
    logs: Path | None = None  # logs/<step>.log and logs/run.log
    feature_store: str = ""  # the existing store the run used; empty = out/feature_store


class StepFailed(RuntimeError):
    """A pipeline step failed; its log names the cause."""

    def __init__(self, step: str, log: Path) -> None:
        super().__init__(f"step {step} failed; its log: {log}")
        self.step = step
        self.log = log


def run_local(cfg: LocalRunConfig, verbose: bool = False) -> LocalRunResult:
    """Execute the whole pipeline locally and collect its outputs under `cfg.out`.

    Args:
        cfg: The run's options.
        verbose: Stream every step's full log to stdout (they go to `out/logs/` either way);
            otherwise stdout shows one line per step.

    Raises:
        StepFailed: If a step fails (its log's tail has been printed already).
    """
    from kfp import local

    from pipelines.pipeline import create_pipeline
    from pipelines.progress import StepView
    from pipelines.task_logs import StepRouter, capture_output, observe_steps

    out = cfg.out.resolve()
    root = out / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    train_config = {
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "threads": training_threads(),
    } | cfg.train_overrides
    # The console is bound to today's stdout before the router takes sys.stdout over.
    console = Console(file=sys.stdout)
    router = StepRouter(out / "logs", echo=sys.stdout if verbose else None)
    start = time.monotonic()
    with (
        StepView(console, router, quiet=not verbose) as view,
        capture_output(router),
        observe_steps(view.started, view.ended),
    ):
        local.init(
            runner=local.SubprocessRunner(use_venv=False),
            pipeline_root=str(root),
            raise_on_error=True,
        )
        try:
            create_pipeline()(
                deploy_dir=cfg.deploy_dir or str(out / "deployment"),
                source_uri=cfg.source_uri,
                impressions=cfg.impressions,
                seed=cfg.seed,
                micro_signal=cfg.micro_signal,
                users=cfg.users,
                items=cfg.items,
                train_config_json=json.dumps(train_config),
                min_cvr_auc=cfg.min_cvr_auc,
                label_engine=cfg.label_engine,
                offline_store=cfg.offline_store,
                spark_master=cfg.spark_master,
                feature_store=cfg.feature_store,
            )
        except RuntimeError as err:
            if view.failed is None:
                raise
            raise StepFailed(view.failed, router.log_path(view.failed)) from err
    seconds = time.monotonic() - start
    new = sorted(set(root.iterdir()) - before)
    if len(new) != 1:
        raise RuntimeError(f"expected one new run folder under {root}, found {new}")
    result = collect_outputs(new[0], out)
    result.seconds, result.logs = seconds, router.folder
    result.feature_store = cfg.feature_store
    return result


def _task_dirs(run_dir: Path, prefix: str) -> list[Path]:
    return sorted(p for p in run_dir.rglob(f"{prefix}*") if p.is_dir())


def _copy(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


def collect_outputs(run_dir: Path, out: Path) -> LocalRunResult:
    """Copy a finished local run's artifacts into the documented layout under `out`."""
    for task, output, name in (
        ("build-labels", "labels", "labels"),
        ("retrieve-features", "features", "features"),
        ("retrieve-features", "feature_store", "feature_store"),
    ):
        (task_dir,) = _task_dirs(run_dir, task)
        _copy(task_dir / output, out / name)
    for config in run_dir.rglob("model/config.json"):
        kind = json.loads(config.read_text())["kind"]
        _copy(config.parent, out / "models" / kind)
    (evaluation_dir,) = _task_dirs(run_dir, "evaluate-model")
    _copy(evaluation_dir / "evaluation" / "metrics.json", out / "metrics.json")
    _copy(evaluation_dir / "report", out / "report.html")
    gate = json.loads((evaluation_dir / "evaluation" / "gate.json").read_text())
    deployment = None
    for path in run_dir.rglob("deploy-model*/deployment"):
        deployment = json.loads(path.read_text())
    return LocalRunResult(
        out=out,
        run_dir=run_dir,
        decision=gate.get("verdict", gate.get("decision", "")),
        reasons=list(gate.get("reasons", [])),
        deployment=deployment,
    )
