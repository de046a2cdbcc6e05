"""The evaluate_model component: direct call with real artifacts, and both gate branches of a
pipeline on kfp.local."""

# No `from __future__ import annotations`: KFP reads the component signatures' real types.
import json
import shutil
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components.evaluate_model import evaluate_model
from model.evaluate.registry import RegistryRecord, write_registry


def _outputs(tmp: Path) -> dict:
    (tmp / "evaluation").mkdir(parents=True)
    return {
        "metrics": Metrics(uri=str(tmp / "metrics.json")),
        "cvr_roc": ClassificationMetrics(uri=str(tmp / "cvr_roc")),
        "ctcvr_roc": ClassificationMetrics(uri=str(tmp / "ctcvr_roc")),
        "report": HTML(uri=str(tmp / "report.html")),
        "evaluation": Dataset(uri=str(tmp / "evaluation")),
        "candidate": Model(uri=str(tmp / "candidate")),
    }


def _kind(model: Path) -> str:
    return json.loads((model / "config.json").read_text())["kind"]


def _evaluate(
    models: tuple[Path, Path],
    eval_table: Path,
    small_world: Path,
    deploy: Path,
    out_dir: Path,
    min_cvr_auc: float,
    tolerance: float,
) -> tuple:
    """evaluate_model.python_func on (candidate, baseline); (result, outputs, metrics.json)."""
    out = _outputs(out_dir)
    result = evaluate_model.python_func(
        # The baseline first: the candidate is found by its kind, not by its place.
        models=[Model(uri=str(models[1])), Model(uri=str(models[0]))],
        candidate_kind=_kind(models[0]),
        data=Dataset(uri=str(eval_table)),
        labels=Dataset(uri=str(out_dir / "no-labels")),  # optional content: left out
        world=Dataset(uri=str(small_world)),
        deploy_dir=str(deploy),
        min_cvr_auc=min_cvr_auc,
        tolerance=tolerance,
        **out,
    )
    return result, out, json.loads((out_dir / "evaluation" / "metrics.json").read_text())


def test_python_func_with_real_artifacts(
    trained_models: dict[str, Path], eval_table: Path, small_world: Path, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    write_registry(
        str(deploy),
        RegistryRecord(
            model_uri=str(trained_models["naive"]), kind="naive", version="v0", cvr_auc=0.5
        ),
    )
    hm3, naive = trained_models["hm3"], trained_models["naive"]
    result, out, saved = _evaluate(
        (hm3, naive), eval_table, small_world, deploy, tmp_path / "out", 0.0, 0.0
    )
    # The champion (the naive artifact) is re-scored on the same rows; the verdict follows.
    candidate, champion = saved["hm3"]["cvr"]["auc"], saved["champion"]["cvr"]["auc"]
    assert champion == saved["naive"]["cvr"]["auc"]
    assert result.decision == ("deploy" if candidate >= champion else "hold")
    assert result.cvr_auc == pytest.approx(candidate, abs=1e-12)
    reasons = json.loads(result.reasons)
    assert reasons[0].startswith("candidate CVR AUC")
    assert f"champion v0 {saved['naive']['cvr']['auc']:.4f}" in reasons[1]
    assert set(saved) == {"hm3", "naive", "champion", "oracle", "gaps"}
    assert set(saved["gaps"]) == {"hm3-naive", "hm3-champion", "naive-champion"}
    scalars = out["metrics"].metadata
    assert scalars["hm3_cvr_auc"] == pytest.approx(saved["hm3"]["cvr"]["auc"], abs=1e-6)
    assert scalars["oracle_ctr_auc"] == pytest.approx(saved["oracle"]["ctr"]["auc"], abs=1e-6)
    assert scalars["hm3_cvr_auc_lo"] < scalars["hm3_cvr_auc"] < scalars["hm3_cvr_auc_hi"]
    assert scalars["gap_hm3-naive_cvr_mean"] == pytest.approx(
        saved["gaps"]["hm3-naive"]["cvr"]["mean"], abs=1e-6
    )
    roc = out["cvr_roc"].metadata
    assert roc["model"] == "hm3" and roc["task"] == "cvr"
    points = roc["confidenceMetrics"]
    assert points[0]["falsePositiveRate"] == 0 and points[-1]["recall"] == 1
    assert (
        sum(map(sum, (row["row"] for row in roc["confusionMatrix"]["rows"])))
        == (saved["hm3"]["cvr"]["rows"])
    )
    assert "<h1>HM<sup>3</sup> offline evaluation</h1>" in Path(out["report"].path).read_text()
    assert out["evaluation"].metadata["decision"] == result.decision
    # What deploys is a copy of the candidate the gate judged.
    copied = Path(out["candidate"].path)
    assert _kind(copied) == "hm3" and out["candidate"].metadata["kind"] == "hm3"
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in hm3.iterdir())
    assert out["evaluation"].metadata["champion_version"].startswith("naive-")
    # The component's thresholds decide, just either side of the measured AUCs. The worse of
    # the two models is the candidate and the better one the champion, so the tolerance matters.
    worse, better = (hm3, naive) if candidate < champion else (naive, hm3)
    gap = abs(champion - candidate)
    assert gap > 1e-3, (candidate, champion)
    low = min(candidate, champion)
    write_registry(
        str(deploy),
        RegistryRecord(model_uri=str(better), kind=better.name, version="v1", cvr_auc=0.5),
    )
    for name, min_cvr_auc, tolerance, verdict in [
        ("within-tolerance", low - 1e-4, gap + 1e-4, "deploy"),
        ("beyond-tolerance", low - 1e-4, gap - 1e-4, "hold"),
        ("below-minimum", low + 1e-4, gap + 1e-4, "hold"),
    ]:
        result, _, saved = _evaluate(
            (worse, better),
            eval_table,
            small_world,
            deploy,
            tmp_path / name,
            min_cvr_auc,
            tolerance,
        )
        assert saved["champion"]["cvr"]["auc"] - saved[worse.name]["cvr"]["auc"] == pytest.approx(
            gap, abs=1e-12
        )
        assert result.decision == verdict, (name, json.loads(result.reasons))


def test_a_missing_or_doubled_candidate_kind_is_refused(
    trained_models: dict[str, Path], eval_table: Path, small_world: Path, tmp_path: Path
) -> None:
    naive = trained_models["naive"]
    for models, kind in (((naive, naive), "naive"), ((naive,), "hm3")):
        with pytest.raises(ValueError, match="one model per kind, the candidate"):
            evaluate_model.python_func(
                models=[Model(uri=str(m)) for m in models],
                candidate_kind=kind,
                data=Dataset(uri=str(eval_table)),
                labels=Dataset(uri=str(tmp_path / "no-labels")),
                world=Dataset(uri=str(small_world)),
                deploy_dir=str(tmp_path / "deploy"),
                **_outputs(tmp_path / kind),
            )


@dsl.component(base_image="unused")
def _copy_dir(src: str, out: Output[Model]):
    """Publish an existing folder as an artifact (stands in for an upstream task)."""
    import shutil

    shutil.copytree(src, out.path)


@dsl.component(base_image="unused")
def _copy_data(src: str, out: Output[Dataset]):
    """Publish an existing file or folder as a Dataset artifact."""
    import shutil
    from pathlib import Path

    if Path(src).is_dir():
        shutil.copytree(src, out.path)
    else:
        shutil.copyfile(src, out.path)


@dsl.component(base_image="unused")
def _mark(model: Input[Model], marker: str):
    """Record which branch ran and with which model."""
    from pathlib import Path

    Path(marker).write_text(model.uri)


@dsl.pipeline
def _gate_pipeline(
    model_dirs: list,
    table: str,
    world_dir: str,
    deploy_dir: str,
    min_cvr_auc: float,
    deployed_marker: str,
    held_marker: str,
):
    with dsl.ParallelFor(model_dirs) as model_dir:
        model = _copy_dir(src=model_dir)
    data = _copy_data(src=table)
    world = _copy_data(src=world_dir)
    evaluation = evaluate_model(
        models=dsl.Collected(model.outputs["out"]),
        data=data.outputs["out"],
        labels=world.outputs["out"],
        world=world.outputs["out"],
        deploy_dir=deploy_dir,
        min_cvr_auc=min_cvr_auc,
    )
    with dsl.If(evaluation.outputs["decision"] == "deploy"):
        _mark(model=evaluation.outputs["candidate"], marker=deployed_marker)
    with dsl.Else():
        _mark(model=evaluation.outputs["candidate"], marker=held_marker)


@pytest.mark.parametrize(("min_cvr_auc", "branch"), [(0.0, "deployed"), (1.0, "held")])
def test_pipeline_gate_branches_on_kfp_local(
    trained_models: dict[str, Path],
    eval_table: Path,
    small_world: Path,
    tmp_path: Path,
    min_cvr_auc: float,
    branch: str,
) -> None:
    world = tmp_path / "world"
    world.mkdir()
    shutil.copyfile(small_world / "truth.parquet", world / "truth.parquet")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    _gate_pipeline(
        model_dirs=[str(trained_models["naive"]), str(trained_models["hm3"])],
        table=str(eval_table),
        world_dir=str(world),
        deploy_dir=str(tmp_path / "deploy"),
        min_cvr_auc=min_cvr_auc,
        deployed_marker=str(tmp_path / "deployed"),
        held_marker=str(tmp_path / "held"),
    )
    other = "held" if branch == "deployed" else "deployed"
    assert (tmp_path / branch).exists() and not (tmp_path / other).exists()
    marked = Path((tmp_path / branch).read_text())
    assert json.loads((marked / "config.json").read_text())["kind"] == "hm3"
    gate_files = list((tmp_path / "root").rglob("gate.json"))
    assert len(gate_files) == 1
    verdict = json.loads(gate_files[0].read_text())["verdict"]
    assert verdict == ("deploy" if branch == "deployed" else "hold")


def test_pipeline_compiles_with_condition_on_decision(tmp_path: Path) -> None:
    import yaml
    from kfp import compiler

    package = tmp_path / "gate.yaml"
    compiler.Compiler().compile(_gate_pipeline, str(package))
    spec = yaml.safe_load(package.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert any(image.startswith("ghcr.io/hm3/hm3:") for image in images)
    conditions: list[str] = []

    def collect(node: object) -> None:  # If/Else sit in a nested condition-branches DAG
        if isinstance(node, dict):
            if "triggerPolicy" in node:
                conditions.append(node["triggerPolicy"]["condition"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(spec)
    conditions.sort()
    decision = "inputs.parameter_values['pipelinechannel--evaluate-model-decision']"
    assert conditions == [f"!({decision} == 'deploy')", f"{decision} == 'deploy'"]
