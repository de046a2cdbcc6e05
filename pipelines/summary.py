"""What `hm3 run` prints at the end, and the optional long-lived local endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from contextlib import nullcontext
from functools import partial
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from model.evaluate.scoring import CHAMPION, GAPS, MIN_GAUC_USERS, ORACLE
from model.tasks import HEADLINE, OUTPUTS
from pipelines.local_run import LocalRunResult
from pipelines.progress import duration

# The headline first, then the registry order; cvr_entire gets its own line (`entire_line`).
COLUMNS = (HEADLINE, *(t for t in OUTPUTS if t != HEADLINE))


def print_summary(result: LocalRunResult, console: Console | None = None) -> None:
    """What a person ran the pipeline for, in the order they ask it.

    Did it work and how long did it take; the graph labels; the model comparison; the gate;
    the endpoint, the request and its answer; where the files are.
    """
    console = console or Console()
    say = partial(console.print, highlight=False)  # prose: wrapped at the console's width
    # Commands, JSON and paths stay on one line each, so that they can be pasted.
    verbatim = partial(console.print, highlight=False, markup=False, soft_wrap=True)
    metrics = json.loads((result.out / "metrics.json").read_text())
    gaps = metrics.pop(GAPS, {})
    say(
        f"[bold]hm3 run succeeded[/bold] in {duration(result.seconds)}; "
        f"the deploy gate said [bold]{result.decision}[/bold]."
    )

    say("\n[bold]Graph labels[/bold]: conditional rate along each edge")
    report = json.loads((result.out / "labels" / "report.json").read_text())
    rates = Table(box=box.SIMPLE_HEAD, show_edge=False)
    rates.add_column("edge")
    rates.add_column("count", justify="right")
    rates.add_column("rate", justify="right")
    for edge, values in report["edges"].items():
        rate = values.get("rate")
        rates.add_row(edge, f"{values['count']:,}", "-" if rate is None else f"{rate:.4f}")
    console.print(rates)

    say(
        "\n[bold]Models[/bold] on the held-out test split: AUC, and under it its 95% bootstrap "
        "interval (cvr on clicked impressions, the rest on all)"
    )
    console.print(model_table(metrics))
    for line in (
        entire_line(metrics),
        candidate_sentence(metrics, gaps),
        convergence_line(result.out / "models"),
    ):
        if line:
            say(line)

    say(f"\n[bold]Deploy gate[/bold]: {result.decision}")
    for reason in result.reasons:
        say(f"  - {reason}")

    deployment = result.deployment or {}
    if deployment.get("request") is not None:
        store = f"Feast store {result.feature_store}" if result.feature_store else "run's Feast"
        say(
            f"\n[bold]Endpoint[/bold]: {deployment['endpoint']}, KServe on loopback with "
            f"features from the {store} online store; stopped after this request "
            "(hm3 run --keep-serving keeps one up). The request:"
        )
        verbatim(curl_command(str(deployment["endpoint"]), deployment["request"]))
        say("and the prediction it returned:")
        verbatim(json.dumps(deployment["prediction"], sort_keys=True))

    say("\n[bold]Files[/bold]")
    out = shown_path(result.out)
    files = {
        f"{out / 'report.html'}": "plots and tables, for a browser",
        f"{out / 'metrics.json'}": "every metric, with intervals",
        f"{out / 'models'}/": "one artifact per model",
        f"{out / 'logs'}/": "what the steps printed: STEP.log, run.log",
    }
    width = max(map(len, files))
    for path, what in files.items():
        verbatim(f"  {path:<{width}}  {what}")


def shown_path(path: Path) -> Path:
    """`path` relative to the working directory when it is below it (out/, not /home/...)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def model_table(metrics: dict) -> Table:
    """AUC per task (rows) and model (columns), the 95% bootstrap interval under each figure.

    Tasks down and models across, so that five or six models fit 80 columns.
    """
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("task")
    for name in metrics:
        table.add_column(name, justify="right")
    for task in COLUMNS:
        table.add_row(task, *(auc_cell(tasks.get(task, {})) for tasks in metrics.values()))
    table.add_row("cvr gauc", *(gauc_cell(tasks.get(HEADLINE, {})) for tasks in metrics.values()))
    return table


def curl_command(endpoint: str, request: object) -> str:
    """The curl that sends `request` to the endpoint's predict route, ready to paste."""
    body = json.dumps(request, separators=(",", ":"))
    return (
        f"curl -s -H 'Content-Type: application/json' -d '{body}' {endpoint}/v1/models/hm3:predict"
    )


def auc_cell(values: dict) -> str:
    """AUC with its interval, "-" when the model has no such task or it is undefined."""
    if values.get("auc") is None:
        return "-"
    if values.get("auc_lo") is None:
        return f"{values['auc']:.4f}"
    # "0.644" -> ".644": the interval fits under its figure, and six models fit 80 columns.
    lo, hi = (f"{values[k]:.3f}".removeprefix("0") for k in ("auc_lo", "auc_hi"))
    return f"{values['auc']:.4f}\n{lo}-{hi}"


def gauc_cell(values: dict) -> str:
    """GAUC, or n/a when too few users have both classes to read it (the report says why)."""
    if values.get("gauc") is None or values.get("gauc_users", 0) < MIN_GAUC_USERS:
        return "n/a"
    return f"{values['gauc']:.4f}"


def entire_line(metrics: dict) -> str | None:
    """Each model's CVR AUC on all impressions against buy_if_clicked; None without that label."""
    cells = [
        f"{name} {auc:.4f}"
        for name, tasks in metrics.items()
        if (auc := tasks.get("cvr_entire", {}).get("auc")) is not None
    ]
    if not cells:
        return None
    return "cvr AUC on all impressions vs buy_if_clicked (selection-bias test): " + ", ".join(cells)


def candidate_sentence(metrics: dict, gaps: dict, candidate: str = "hm3") -> str:
    """One sentence on HM^3's CVR AUC against the best baseline, with the paired interval."""
    baselines = {
        name: tasks[HEADLINE]["auc"]
        for name, tasks in metrics.items()
        if name not in (candidate, ORACLE, CHAMPION)
        and tasks.get(HEADLINE, {}).get("auc") is not None
    }
    if candidate not in metrics or not baselines:
        return f"no {candidate} and baseline CVR AUC to compare"
    best = max(baselines, key=lambda n: baselines[n])
    gap = gaps.get(f"{candidate}-{best}", {}).get(HEADLINE)
    if gap is None:
        return f"{candidate} vs best baseline {best}: no paired interval (bootstrap off)"
    text = (
        f"{candidate} vs best baseline {best}: CVR AUC gap {gap['mean']:+.4f} "
        f"[{gap['lo']:+.4f}, {gap['hi']:+.4f}] (paired bootstrap 95%)"
    )
    if gap["lo"] <= 0 <= gap["hi"]:
        return text + ": not significant at this size; see bench/quality.py"
    return text + (": significant" if gap["lo"] > 0 else ": significantly worse")


def convergence_line(models_dir: Path) -> str | None:
    """A warning naming the models whose best epoch was their last: still improving when stopped.

    Entire-space models need more passes than naive CVR (their CVR tower sees negatives only
    through pCTR x pCVR), so a budget that stops them early can manufacture naive's lead.
    """
    stopped = []
    for config_path in sorted(models_dir.glob("*/config.json")):
        config = json.loads(config_path.read_text())
        budget = config["train_config"]["epochs"]
        if config["best_epoch"] == budget:
            stopped.append(f"{config['kind']} ({budget})")
    if not stopped:
        return None
    return (
        "not converged: best epoch = epoch budget for " + ", ".join(stopped) + "; validation "
        "CVR AUC was still rising, so this ordering is not that of trained-out models "
        "(bench/quality.py trains each to its own convergence)"
    )


def serve_until_interrupted(
    model_dir: Path, feast_repo: Path | None = None, port: int = 8080, log: Path | None = None
) -> None:
    """Serve `model_dir` on loopback until Ctrl-C, printing the URL and the demo's curl request.

    With `feast_repo`, features the request does not carry come from its online store. The
    server's own output goes to `log` (default: the terminal).
    """
    from components.serving.deploy import DEFAULT_INSTANCE

    console = Console()
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "serve",
        "--model",
        str(model_dir),
        "--http-port",
        str(port),
    ]
    if feast_repo is not None:
        cmd += ["--feast-repo", str(feast_repo)]
    with open(log, "a") if log else nullcontext() as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT if sink else None)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(120):
                try:
                    with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"the local endpoint did not become ready at {url}")
            source = f"features from {feast_repo}" if feast_repo else "no Feast: defaults"
            console.print(f"serving {model_dir} at {url}, {source} (Ctrl-C to stop)")
            if log:
                console.print(f"server log: {log}")
            request = {"instances": [DEFAULT_INSTANCE]}
            console.print(curl_command(url, request), highlight=False, soft_wrap=True)
            proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            proc.terminate()
            proc.wait(timeout=30)
