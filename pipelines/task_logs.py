"""Per-step log files for a kfp.local run, and the hook that says which step runs when.

kfp.local prints each task's executor input, the task's own output and its outputs through
`print`, `logging` and `warnings` in the orchestrating process, from the thread that runs the
task (ParallelFor iterations run on a thread pool, so two steps can print at once).
`capture_output` swaps sys.stdout and sys.stderr for a `StepRouter` that writes every line to
`run.log` and to the log of the step its thread is running; `observe_steps` wraps kfp.local's
task dispatcher so that a step's start and end (with its outputs) reach the caller.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colors task names and statuses

StartHook = Callable[[str], None]
EndHook = Callable[[str, bool, Mapping[str, Any]], None]


class StepRouter:
    """A text stream that files each complete line under run.log and the current step's log.

    Lines are buffered per thread until their newline, so two steps printing at once never
    interleave inside a line of run.log.
    """

    def __init__(self, folder: Path, echo: TextIO | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._run = (folder / "run.log").open("w", encoding="utf-8")
        self._steps: dict[str, TextIO] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._echo = echo

    def log_path(self, step: str) -> Path:
        """Where `step`'s log is written."""
        return self.folder / f"{step}.log"

    def begin(self, step: str) -> None:
        """From now on, this thread's lines belong to `step` (and run.log)."""
        handle = self.log_path(step).open("w", encoding="utf-8")
        with self._lock:
            self._steps[step] = handle
        self._local.step = step

    def end(self) -> None:
        """Close this thread's step log; its later lines go to run.log only."""
        self._flush_partial()
        step = getattr(self._local, "step", None)
        self._local.step = None
        if step is not None:
            with self._lock:
                self._steps.pop(step).close()

    def write(self, text: str) -> int:
        """Buffer `text`; write out the complete lines it ends."""
        head, newline, rest = (self._pending() + text).rpartition("\n")
        self._local.pending = rest
        if newline:
            self._write_lines(head + newline)
        return len(text)

    def flush(self) -> None:
        """Flush the files (complete lines only; a partial line waits for its newline)."""
        with self._lock:
            for handle in (self._run, *self._steps.values()):
                handle.flush()
            if self._echo is not None:
                self._echo.flush()

    def isatty(self) -> bool:
        """Never a terminal: libraries must not draw progress bars into log files."""
        return False

    def close(self) -> None:
        """Write this thread's partial line and close every file."""
        self._flush_partial()
        with self._lock:
            for handle in (self._run, *self._steps.values()):
                handle.close()
            self._steps.clear()

    def _pending(self) -> str:
        return getattr(self._local, "pending", "")

    def _flush_partial(self) -> None:
        if self._pending():
            self._write_lines(self._pending() + "\n")
            self._local.pending = ""

    def _write_lines(self, text: str) -> None:
        plain = ANSI.sub("", text)
        step = getattr(self._local, "step", None)
        with self._lock:
            self._run.write(plain)
            if step is not None:
                self._steps[step].write(plain)
            if self._echo is not None:
                self._echo.write(text)


@contextlib.contextmanager
def capture_output(router: StepRouter) -> Iterator[StepRouter]:
    """Send sys.stdout, sys.stderr and root logging to `router` for the block.

    The root logger's handlers are restored afterwards too: kfp.local swaps them per task,
    and with parallel tasks its restore can leave one of its own handlers behind.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.StreamHandler(router)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.handlers = [handler]
    try:
        with contextlib.redirect_stdout(router), contextlib.redirect_stderr(router):  # type: ignore[type-var]
            yield router
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        router.close()


def step_name(component_name: str, arguments: Mapping[str, Any]) -> str:
    """A readable, unique step name: `train-model-hm3` rather than `comp-train-model-2`."""
    # kfp names a second use of a component `comp-<name>-2`; the model kind tells them apart.
    name = re.sub(r"-\d+$", "", component_name.removeprefix("comp-"))
    kind = arguments.get("model_kind")
    return f"{name}-{kind}" if kind else name


@contextlib.contextmanager
def observe_steps(on_start: StartHook, on_end: EndHook) -> Iterator[None]:
    """Call `on_start(step)` and `on_end(step, succeeded, outputs)` around every kfp.local task.

    Both run on the thread that runs the task. kfp.local (2.17.3) has no callback API, so this
    wraps its dispatcher for the block and restores it after.
    """
    from kfp.local import status, task_dispatcher

    original = task_dispatcher.run_single_task_implementation

    def run_task(**kwargs: Any) -> tuple[dict[str, Any], Any]:
        step = step_name(kwargs["component_name"], kwargs["arguments"])
        on_start(step)
        outputs: dict[str, Any] = {}
        succeeded = False
        try:
            outputs, task_status = original(**kwargs)
            succeeded = task_status == status.Status.SUCCESS
            return outputs, task_status
        finally:
            on_end(step, succeeded, outputs)

    task_dispatcher.run_single_task_implementation = run_task
    try:
        yield
    finally:
        task_dispatcher.run_single_task_implementation = original


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last `lines` lines of a text file."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        return handle.read().splitlines()[-lines:]
