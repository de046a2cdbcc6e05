"""`hm3 evaluate`: offline metrics, report and deploy gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import fail

app = typer.Typer(rich_markup_mode="markdown")


@app.command()
def evaluate(
    model: Annotated[
        list[str],
        typer.Option(
            help="Model artifact folder (local, file:// or gs://), optionally NAME=DIR; "
            "repeat for each model. Unnamed models are named by their kind (hm3, esm2, ...)."
        ),
    ],
    data: Annotated[
        str,
        typer.Option(
            help="The joined training table (labels + features), a Parquet file, local or gs://."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Output folder: metrics.json, details.json, report.html, plots/.")
    ],
    split: Annotated[
        str,
        typer.Option(
            help="Rows to evaluate: the test, validation or train part of the time split "
            "(70/15/15 on ts quantiles), or all when DATA already is a held-out set."
        ),
    ] = "test",
    truth: Annotated[
        str | None,
        typer.Option(help="truth.parquet of a simulated world: adds the oracle AUC rows."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            help="Label builder output folder: its graph picture and edge rates go in the report."
        ),
    ] = None,
    gauc_weight: Annotated[
        str, typer.Option(help="GAUC per-user weight: impressions or clicks.")
    ] = "impressions",
    bins: Annotated[int, typer.Option(help="Calibration bins (equal-count; 10 = deciles).")] = 10,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Confusion-matrix threshold (default: each task's observed positive rate)."
        ),
    ] = None,
    deploy_dir: Annotated[
        str | None,
        typer.Option(
            help="Run the deploy gate against the champion in DEPLOY_DIR/registry.json "
            "(local or gs://); writes gate.json and exits 0 either way."
        ),
    ] = None,
    candidate: Annotated[
        str | None,
        typer.Option(help="Name of the gate's candidate model (default: the first --model)."),
    ] = None,
    min_cvr_auc: Annotated[
        float, typer.Option(help="Gate: minimum CVR AUC (clicked impressions).")
    ] = 0.6,
    tolerance: Annotated[
        float, typer.Option(help="Gate: how far below the champion's CVR AUC is still allowed.")
    ] = 0.002,
) -> None:
    """Evaluate trained models on the same held-out rows and write metrics.json and a report.

    For each model: AUC of CVR on clicked impressions (the headline), of CTR, CTCVR, CT-Micro
    and CT-Macro on all impressions; GAUC per user (single-class users skipped and counted);
    log loss; calibration per decile and ECE. With --truth, the oracle (true probabilities on
    the same labels). metrics.json is {model: {task: {auc, gauc, logloss, ece, ...}},
    "oracle": {...}}. With --deploy-dir, the champion is re-scored on the same rows and the
    decision (deploy or hold) with its reasons is printed and written to gate.json.
    """
    import shlex

    from model.evaluate.evaluation import GateSpec, evaluate_models, parse_model_specs
    from model.evaluate.gate import GateConfig
    from model.evaluate.scoring import EvalConfig
    from model.storage import ArtifactError

    try:
        config = EvalConfig(
            split=split, calibration_bins=bins, gauc_weight=gauc_weight, threshold=threshold
        )
        specs = parse_model_specs(model)
        gate = None
        if deploy_dir:
            chosen = candidate or specs[0][0] or specs[0][1]
            gate = GateSpec(deploy_dir, chosen, GateConfig(min_cvr_auc, tolerance))
    except ValueError as err:
        raise fail(str(err)) from err
    # The command as parsed (not sys.argv, which differs under wrappers), for the report.
    args = ["hm3", "evaluate", *(a for m in model for a in ("--model", m))]
    options = {"--data": data, "--out": out, "--split": split, "--truth": truth}
    options |= {"--labels": labels, "--gauc-weight": gauc_weight, "--bins": bins}
    options |= {"--threshold": threshold, "--deploy-dir": deploy_dir}
    if deploy_dir:
        options |= {"--candidate": candidate, "--min-cvr-auc": min_cvr_auc}
        options |= {"--tolerance": tolerance}
    args += [str(a) for key, value in options.items() if value is not None for a in (key, value)]
    command = shlex.join(args)
    try:
        result = evaluate_models(
            model,
            data,
            out,
            config=config,
            truth_path=truth,
            labels_dir=labels,
            command=command,
            gate=gate,
        )
    except (ValueError, FileNotFoundError, ArtifactError) as err:
        raise fail(str(err)) from err
    summary: dict[str, object] = {
        "out": str(out),
        "report": result.files["report"],
        "auc": {
            name: {t: None if r.auc is None else round(r.auc, 4) for t, r in tasks.items()}
            for name, tasks in result.results.items()
        },
    }
    if result.gate is not None:
        summary["gate"] = {"decision": result.gate.verdict, "reasons": list(result.gate.reasons)}
    typer.echo(json.dumps(summary))
