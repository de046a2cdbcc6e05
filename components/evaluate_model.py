"""KFP component `evaluate_model`: offline metrics, the HTML report and the deploy gate.

Wraps `model.evaluate.evaluation.evaluate_models` with the gate of `model.evaluate.gate`. The
gate's verdict is the
string output `decision` ("deploy" or "hold"), for a pipeline condition::

    evaluation = evaluate_model(models=dsl.Collected(trained.outputs["model"]), ...)
    with dsl.If(evaluation.outputs["decision"] == "deploy"):
        deploy_model(model=evaluation.outputs["candidate"], ...)

A string is compared rather than a bool because kfp.local's condition evaluator is known to
mis-evaluate some conditions silently (kubeflow/pipelines PR #13313); string equality is the
case both it and the cluster backend handle.
"""

from typing import List, NamedTuple  # noqa: UP035 - KFP's signature parser needs typing.List

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.images import HM3_IMAGE


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def evaluate_model(
    models: Input[List[Model]],  # noqa: UP006 - KFP's signature parser needs typing.List
    data: Input[Dataset],
    labels: Input[Dataset],
    world: Input[Dataset],
    deploy_dir: str,
    metrics: Output[Metrics],
    cvr_roc: Output[ClassificationMetrics],
    ctcvr_roc: Output[ClassificationMetrics],
    report: Output[HTML],
    evaluation: Output[Dataset],
    candidate: Output[Model],
    candidate_kind: str = "hm3",
    min_cvr_auc: float = 0.6,
    tolerance: float = 0.002,
    split: str = "test",
    gauc_weight: str = "impressions",
) -> NamedTuple(  # noqa: UP014
    "GateOutputs", [("decision", str), ("reasons", str), ("cvr_auc", float)]
):
    """Evaluate the candidate and baselines on the same held-out rows; decide on deployment.

    Args:
        models: The candidate and the baselines, e.g. `dsl.Collected` of one ParallelFor over
            the model kinds: trained side by side, the candidate is never queued behind them.
        data: The training table (labels joined with features), a Parquet file or folder.
        labels: The label builder's folder; its report.json and graph go into the report.
        world: The raw-logs folder; when it holds truth.parquet (simulated), oracle AUCs are
            added.
        deploy_dir: Deployment folder (local or gs://) holding the champion's registry.json.
        metrics: Scalars "<model>_<task>_<metric>" for every model, task and metric.
        cvr_roc: The candidate's CVR ROC curve and confusion matrix (threshold in metadata).
        ctcvr_roc: The same for CTCVR.
        report: The HTML report (tables, ROC, calibration, training curves, label graph).
        evaluation: Folder with metrics.json, details.json, gate.json and plots/.
        candidate: A copy of the candidate model, the one the gate judged (what deploys).
        candidate_kind: Which of `models` is the candidate (its config.json `kind`).
        min_cvr_auc: The gate's minimum CVR AUC.
        tolerance: How far below the champion's CVR AUC the candidate may be.
        split: The part of the time split to evaluate ("test", or "all" for a held-out file).
        gauc_weight: GAUC user weights: "impressions" or "clicks".

    Returns:
        decision: "deploy" or "hold".
        reasons: JSON list of the gate's reasons.
        cvr_auc: The candidate's CVR AUC (recorded with the champion on deployment).
    """
    import json
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from model.evaluate.evaluation import GateSpec, evaluate_models
    from model.evaluate.gate import GateConfig
    from model.evaluate.scoring import CHAMPION, GAPS, EvalConfig
    from model.tasks import HEADLINE

    if not deploy_dir:
        raise ValueError("deploy_dir must name the deployment folder holding registry.json")
    truth = Path(world.path, "truth.parquet")
    kinds = {json.loads(Path(m.path, "config.json").read_text())["kind"]: m for m in models}
    if len(kinds) != len(models) or candidate_kind not in kinds:
        raise ValueError(
            f"models must hold one model per kind, the candidate {candidate_kind!r} among them; "
            f"got kinds {sorted(kinds)} for {len(models)} models"
        )
    chosen = kinds.pop(candidate_kind)
    result = evaluate_models(
        [chosen.path, *(m.path for m in kinds.values())],
        data.path,
        evaluation.path,
        config=EvalConfig(split=split, gauc_weight=gauc_weight),
        truth_path=str(truth) if truth.exists() else None,
        labels_dir=labels.path,
        command=(
            f"kfp evaluate_model(candidate={chosen.uri}, baselines="
            f"{[m.uri for m in kinds.values()]}, data={data.uri}, deploy_dir={deploy_dir}, "
            f"min_cvr_auc={min_cvr_auc}, tolerance={tolerance}, split={split})"
        ),
        gate=GateSpec(deploy_dir, chosen.path, GateConfig(min_cvr_auc, tolerance)),
    )
    for name, tasks in result.results.items():
        for task, scored in tasks.items():
            values = scored.summary()
            for key in ("auc", "auc_lo", "auc_hi", "gauc", "logloss", "ece"):
                if values[key] is not None:
                    metrics.log_metric(f"{name}_{task}_{key}", round(values[key], 6))
    for pair, tasks in result.metrics_json()[GAPS].items():
        for key, value in tasks.get(HEADLINE, {}).items():
            metrics.log_metric(f"gap_{pair}_{HEADLINE}_{key}", round(value, 6))
    candidate_name = result.candidate
    for task, output in (("cvr", cvr_roc), ("ctcvr", ctcvr_roc)):
        scored = result.results[candidate_name].get(task)
        if scored is None or scored.roc is None:
            continue
        output.log_roc_curve(
            scored.roc.fpr.tolist(), scored.roc.tpr.tolist(), scored.roc.thresholds.tolist()
        )
        output.log_confusion_matrix(["negative", "positive"], scored.confusion)
        output.metadata.update(
            {"model": candidate_name, "task": task, "threshold": scored.threshold}
        )
    shutil.copyfile(result.files["report"], report.path)
    shutil.copytree(chosen.path, candidate.path, dirs_exist_ok=True)
    candidate.metadata.update(dict(chosen.metadata) | {"kind": candidate_kind})
    decision = result.gate
    evaluation.metadata.update(
        {
            "decision": decision.verdict,
            "candidate": candidate_name,
            "candidate_version": result.models[candidate_name].version,
            "candidate_cvr_auc": decision.candidate_cvr_auc,
            "champion_version": result.models[CHAMPION].version
            if CHAMPION in result.models
            else None,
            "champion_cvr_auc": decision.champion_cvr_auc,
        }
    )
    outputs = namedtuple("GateOutputs", ["decision", "reasons", "cvr_auc"])
    cvr_auc = decision.candidate_cvr_auc
    return outputs(
        decision.verdict, json.dumps(list(decision.reasons)), float(cvr_auc or float("nan"))
    )


@dsl.component(base_image=HM3_IMAGE, install_kfp_package=False)
def gate_decision(evaluation: Input[Dataset]) -> str:
    """The gate's verdict ("deploy" or "hold") from the evaluation folder's gate.json.

    A single-output component drives `dsl.If`: kfp.local (2.17.3) cannot resolve a condition on
    one field of a NamedTuple output and silently skips the branch (see PR #13313).
    """
    import json
    from pathlib import Path

    return json.loads(Path(evaluation.path, "gate.json").read_text())["verdict"]
