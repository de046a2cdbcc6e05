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

from model.tasks import HEADLINE, TASKS
from pipelines.local_run import LocalRunResult

# The headline first, then the registry order.
COLUMNS = (HEADLINE, *(t for t in TASKS if t != HEADLINE))


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
    table = Table(title="held-out test split: AUC (GAUC for cvr)")
    table.add_column("model")
    for task in COLUMNS:
        table.add_column(task, justify="right")
    table.add_column("cvr gauc", justify="right")
    for name, tasks in metrics.items():

        def cell(task: str, key: str = "auc", tasks: dict = tasks) -> str:
            value = tasks.get(task, {}).get(key)
            return "-" if value is None else f"{value:.4f}"

        table.add_row(name, *(cell(t) for t in COLUMNS), cell("cvr", "gauc"))
    console.print(table)
    console.print(f"gate: [bold]{result.decision}[/bold]")
    for reason in result.reasons:
        console.print(f"  - {reason}")
    console.print(f"outputs: {result.out} (report: {result.out / 'report.html'})")
    if result.deployment:
        console.print(f"endpoint: {result.deployment.get('endpoint')} (stopped after the demo)")
        print(json.dumps({"prediction": result.deployment.get("prediction")}))


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
