"""What `hm3 run` shows while the pipeline runs: one line per step, its headline figure at the end.

On a terminal, running steps show a spinner with their elapsed time; when a step ends, one
permanent line says how it ended, how long it took and its headline figure (read from the
step's KFP outputs). A failed step's line is followed by the last lines of its log and the
log's path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from pipelines.task_logs import StepRouter, tail

TAIL_LINES = 30


def _meta(outputs: Mapping[str, Any], name: str) -> dict[str, Any]:
    """An output artifact's metadata (a parameter output is returned as {"value": ...})."""
    value = outputs.get(name)
    if value is None:
        return {}
    return dict(getattr(value, "metadata", None) or {"value": value})


def _n(value: Any) -> str:
    """A count from KFP metadata (floats there) with thousands separators."""
    return "?" if value is None else f"{int(value):,}"


def headline(step: str, outputs: Mapping[str, Any]) -> str:
    """The one figure a person wants from a finished step, from its KFP outputs."""
    # Training steps are named by their model kind (train-model-hm3, ...).
    task = "train-model" if step.startswith("train-model-") else step
    if task == "load-logs":
        world, stats = _meta(outputs, "world"), _meta(outputs, "stats")
        return (
            f"{_n(world.get('impressions'))} impressions, {_n(stats.get('events_rows'))} events "
            f"({world.get('source', '?')})"
        )
    if task == "build-labels":
        labels, stats = _meta(outputs, "labels"), _meta(outputs, "label_stats")
        quarantined = [
            f"{_n(stats.get(f'quarantined_{what}'))} {what}"
            for what in ("events", "impressions")
            if stats.get(f"quarantined_{what}")
        ]
        return f"{_n(labels.get('impressions'))} labels; " + (
            "quarantined " + ", ".join(quarantined) if quarantined else "nothing quarantined"
        )
    if task == "retrieve-features":
        stats = _meta(outputs, "metrics")
        filled = (
            f", {_n(stats['filled_total'])} values defaulted" if stats.get("filled_total") else ""
        )
        return (
            f"{_n(stats.get('features'))} Feast features for {_n(stats.get('rows'))} "
            f"impressions{filled}"
        )
    if task == "join-training-table":
        return f"{_n(_meta(outputs, 'table').get('rows'))} rows"
    if task == "train-model":
        stats = _meta(outputs, "metrics")
        auc = stats.get("validation_auc_cvr")
        epochs = stats.get("epochs_run")
        return (
            f"{_n(epochs)} epoch{'' if epochs == 1 else 's'}; best validation CVR AUC "
            f"{'?' if auc is None else f'{auc:.4f}'} at epoch {_n(stats.get('best_epoch'))}"
        )
    if task == "evaluate-model":
        auc = _meta(outputs, "cvr_auc").get("value")
        decision = _meta(outputs, "decision").get("value", "?")
        return f"test CVR AUC {'?' if auc is None else f'{auc:.4f}'}; gate says {decision}"
    if task == "gate-decision":
        return str(_meta(outputs, "Output").get("value", "?"))
    if task == "deploy-model":
        return f"served at {_meta(outputs, 'deployment').get('endpoint', '?')}, answered"
    return ""


def duration(seconds: float) -> str:
    """`42.1 s` under a minute, `2 min 03 s` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


class StepView:
    """Draws the step lines on `console`; `started`/`ended` are kfp.local's step hooks.

    Both hooks run on the thread that runs the step, so they also tell the router which step
    that thread's output belongs to.
    """

    def __init__(self, console: Console, router: StepRouter, quiet: bool = True) -> None:
        self.console = console
        self.router = router
        self.quiet = quiet  # False: the full logs stream to the console, so no spinner
        self.failed: str | None = None
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        # A live spinner only on a terminal; piped output gets the permanent lines alone.
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,  # stdout belongs to the router while the run lasts
            redirect_stderr=False,
            disable=not (quiet and console.is_terminal),
        )
        self._rows: dict[str, TaskID] = {}

    def __enter__(self) -> StepView:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def started(self, step: str) -> None:
        """A step began on this thread."""
        self.router.begin(step)
        with self._lock:
            self._started[step] = time.monotonic()
            self._rows[step] = self._progress.add_task(f"{step} running")

    def ended(self, step: str, succeeded: bool, outputs: Mapping[str, Any]) -> None:
        """A step ended on this thread: its line, and on failure its log's tail."""
        self.router.end()
        with self._lock:
            seconds = time.monotonic() - self._started.pop(step)
            self._progress.remove_task(self._rows.pop(step))
            self._progress.refresh()  # or the next print redraws the spinner of a gone step
        log = self.router.log_path(step)
        # soft_wrap: a long line is the terminal's to wrap, never split in piped output.
        if succeeded:
            line = f"[green]ok[/green]   {step:<19} {seconds:5.1f} s  "
            self.console.print(
                line + escape(headline(step, outputs)), highlight=False, soft_wrap=True
            )
            return
        self.failed = self.failed or step
        self.console.print(
            f"[red]FAIL[/red] {step:<19} {seconds:5.1f} s  log: {log}",
            highlight=False,
            soft_wrap=True,
        )
        if self.quiet:
            self.console.rule(f"last {TAIL_LINES} lines of {log.name}", style="red")
            for text in tail(log, TAIL_LINES):
                self.console.print(text, markup=False, highlight=False, soft_wrap=True)
            self.console.rule(style="red")
