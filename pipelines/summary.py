"""What `hm3 run` prints at the end, and the optional long-lived local endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from model.evaluate.scoring import CHAMPION, GAPS, MIN_GAUC_USERS, ORACLE
from model.tasks import HEADLINE, OUTPUTS
from pipelines.local_run import LocalRunResult

# The headline first, then the registry order; cvr_entire gets its own line (`entire_line`).
COLUMNS = (HEADLINE, *(t for t in OUTPUTS if t != HEADLINE))


def print_summary(result: LocalRunResult) -> None:
    """Label rates, the model comparison, the gate decision and the served prediction."""
    console = Console()
    report = json.loads((result.out / "labels" / "report.json").read_text())
    rates = Table(title="graph labels: conditional rates along each edge")
    rates.add_column("edge")
    rates.add_column("count", justify="right")
    rates.add_column("rate", justify="right")
    for edge, values in report["edges"].items():
        rate = values.get("rate")
        rates.add_row(edge, f"{values['count']:,}", "-" if rate is None else f"{rate:.4f}")
    console.print(rates)

    metrics = json.loads((result.out / "metrics.json").read_text())
    gaps = metrics.pop(GAPS, {})
    table = Table(title="held-out test split: AUC [95% bootstrap interval] (GAUC for cvr)")
    table.add_column("model")
    for task in COLUMNS:
        table.add_column(task, justify="right")
    table.add_column("cvr gauc", justify="right")
    for name, tasks in metrics.items():
        table.add_row(
            name,
            *(auc_cell(tasks.get(t, {})) for t in COLUMNS),
            gauc_cell(tasks.get(HEADLINE, {})),
        )
    console.print(table)
    entire = entire_line(metrics)
    if entire:
        console.print(entire)
    console.print(candidate_sentence(metrics, gaps))
    unconverged = convergence_line(result.out / "models")
    if unconverged:
        console.print(unconverged)
    console.print(f"gate: [bold]{result.decision}[/bold]")
    for reason in result.reasons:
        console.print(f"  - {reason}")
    console.print(f"outputs: {result.out} (report: {result.out / 'report.html'})")
    if result.deployment:
        console.print(f"endpoint: {result.deployment.get('endpoint')} (stopped after the demo)")
        print(json.dumps({"prediction": result.deployment.get("prediction")}))


def auc_cell(values: dict) -> str:
    """AUC with its interval, "-" when the model has no such task or it is undefined."""
    if values.get("auc") is None:
        return "-"
    if values.get("auc_lo") is None:
        return f"{values['auc']:.4f}"
    return f"{values['auc']:.4f} [{values['auc_lo']:.3f}, {values['auc_hi']:.3f}]"


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
    model_dir: Path, feast_repo: Path | None = None, port: int = 8080
) -> None:
    """Serve `model_dir` on loopback until Ctrl-C, printing the URL and a curl request.

    With `feast_repo`, features the request does not carry come from its online store.
    """
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
    proc = subprocess.Popen(cmd)
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
        body = json.dumps({"instances": [{"user_id": 1, "item_id": 2}]})
        source = f"features from {feast_repo}" if feast_repo else "no Feast: defaults"
        console.print(f"serving {model_dir} at {url}, {source} (Ctrl-C to stop)")
        console.print(
            f"curl -s -H 'Content-Type: application/json' -d '{body}' {url}/v1/models/hm3:predict"
        )
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)
