"""The compiled pipeline: its tasks, their dependencies, images and GPU requests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from kfp_ir import parse_ir_strictly

from components.images import HM3_IMAGE, HM3_TRAIN_IMAGE
from pipelines.compile import compile_pipeline


def _all_tasks(spec: dict) -> dict[str, dict]:
    """Every task in the root DAG and nested DAGs (loops, conditions), by task name."""
    tasks: dict[str, dict] = {}
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        tasks.update(dag["tasks"])
    return tasks


@pytest.fixture(scope="module", params=[False, True], ids=["cpu", "gpu"])
def compiled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("ir") / "hm3.yaml"
    compile_pipeline(out, use_gpu=request.param, gpus=2)
    docs = list(yaml.safe_load_all(Path(out).read_text()))
    return request.param, docs[0], docs[1] if len(docs) > 1 else {}


def test_dag_has_every_step_in_order(compiled) -> None:
    _, spec, _ = compiled
    tasks = _all_tasks(spec)
    deps = {name: set(t.get("dependentTasks", [])) for name, t in tasks.items()}
    assert {
        "load-logs",
        "build-labels",
        "retrieve-features",
        "join-training-table",
        "for-loop-2",
        "train-model",
        "evaluate-model",
        "gate-decision",
        "deploy-model",
    } <= set(tasks)
    assert deps["build-labels"] == {"load-logs"} and deps["retrieve-features"] == {"load-logs"}
    assert deps["join-training-table"] == {"build-labels", "retrieve-features"}
    # One loop trains every kind, the candidate first: on kfp.local's two workers HM^3 trains
    # beside the baselines, not after them.
    assert deps["for-loop-2"] == {"join-training-table"}
    assert {"for-loop-2", "join-training-table"} <= deps["evaluate-model"]
    assert deps["gate-decision"] == {"evaluate-model"}
    # Evaluation always runs: a root-DAG task without a trigger policy (the IR's key is
    # camelCase; only the deploy step sits under the gate's condition).
    assert "evaluate-model" in spec["root"]["dag"]["tasks"]
    assert "triggerPolicy" not in tasks["evaluate-model"]
    condition = next(t for t in tasks.values() if "triggerPolicy" in t)
    assert "gate-decision" in condition["triggerPolicy"]["condition"]
    assert "deploy" in condition["triggerPolicy"]["condition"]
    loop = tasks["for-loop-2"]
    assert loop["parameterIterator"]["items"]["raw"] == '["hm3", "esm2", "esmm", "naive"]'


def test_images_and_accelerators(compiled) -> None:
    use_gpu, spec, _ = compiled
    executors = spec["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images["exec-train-model"] == HM3_TRAIN_IMAGE
    assert images["exec-load-logs"] == HM3_IMAGE and images["exec-deploy-model"] == HM3_IMAGE
    for name, executor in executors.items():
        command = " ".join(executor["container"].get("command", []))
        assert "pip install" not in command, f"{name} installs packages at run time"
        accelerator = executor["container"].get("resources", {}).get("accelerator")
        if name.startswith("exec-train-model") and use_gpu:
            assert accelerator["resourceType"] == "nvidia.com/gpu"
            assert accelerator["resourceCount"] == "2"
        else:
            assert accelerator is None, name


def _cli_compile(out: Path) -> dict[str, str]:
    """`hm3 compile --out OUT`; the image of every executor, by executor name."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["compile", "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    return {n: e["container"]["image"] for n, e in spec["deploymentSpec"]["executors"].items()}


def test_compile_uses_the_images_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpu, train = "registry.example.com/hm3:test", "registry.example.com/hm3-train:test"
    monkeypatch.setenv("HM3_IMAGE", cpu)
    monkeypatch.setenv("HM3_TRAIN_IMAGE", train)
    images = _cli_compile(tmp_path / "hm3.yaml")
    assert {"exec-train-model", "exec-load-logs"} <= set(images)
    for name, image in images.items():
        assert image == (train if name.startswith("exec-train-model") else cpu), name


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compile_keeps_the_default_images_without_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None
) -> None:
    for name in ("HM3_IMAGE", "HM3_TRAIN_IMAGE"):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    images = _cli_compile(tmp_path / "hm3.yaml")
    for name, image in images.items():
        assert image == (HM3_TRAIN_IMAGE if name.startswith("exec-train-model") else HM3_IMAGE)


def test_every_step_but_deploy_is_cached(compiled) -> None:
    """On a cluster, rerunning after a fix reuses the steps that already succeeded; a deploy
    always runs, since it acts on the world (the serving endpoint), not only on artifacts."""
    _, spec, _ = compiled
    caching = {
        name: task.get("cachingOptions", {}).get("enableCache", False)
        for name, task in _all_tasks(spec).items()
        if "componentRef" in task and "dag" not in spec["components"][task["componentRef"]["name"]]
    }
    assert caching.pop("deploy-model") is False
    assert caching and all(caching.values()), caching


def test_every_step_has_resource_requests_and_a_display_name(compiled) -> None:
    _, spec, _ = compiled
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"].get("resources", {})
        assert resources.get("cpuRequest", 0) > 0, name
        assert resources.get("memoryRequest", 0) > 0, name
    steps = {
        name: task
        for name, task in _all_tasks(spec).items()
        if "dag" not in spec["components"][task["componentRef"]["name"]]
    }
    for name, task in steps.items():
        assert task.get("taskInfo", {}).get("name"), name
    display = {task["taskInfo"]["name"] for task in steps.values()}
    assert {"load raw logs", "retrieve Feast features", "deploy on KServe", "train"} <= display


def test_no_top_level_folder_shadows_an_importable_package() -> None:
    """Run from the repo root (python -m ..., python -c ...), a folder named like a package
    (`docker/` did) is imported instead of it; kfp.local then fails on `docker.DockerClient`."""
    from importlib.metadata import packages_distributions

    root = Path(__file__).resolve().parents[2]
    # Other distributions' top-level modules, plus optional ones kfp imports when present.
    # `docs` and `tests` are shipped by some sloppy wheels; shadowing those harms nobody.
    theirs = {m for m, dists in packages_distributions().items() if "hm3" not in dists}
    theirs = (theirs | {"docker", "kubernetes", "google"}) - {"docs", "tests"}
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert not folders & theirs, folders & theirs


def _ir_documents(path: Path) -> tuple[dict, dict | None]:
    docs = list(yaml.safe_load_all(path.read_text()))
    assert 1 <= len(docs) <= 2, len(docs)  # the pipeline spec, then the platform spec if any
    return docs[0], docs[1] if len(docs) == 2 else None


@pytest.mark.parametrize("flags", [[], ["--use-gpu", "--gpus", "2"]], ids=["cpu", "gpu"])
def test_hm3_compile_output_parses_strictly_as_the_backend_reads_it(
    tmp_path: Path, flags: list[str]
) -> None:
    """`hm3 compile` writes IR whose every field the KFP backend's protos know."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "hm3.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    pipeline, platform = _ir_documents(out)
    spec = parse_ir_strictly(pipeline, platform)
    assert spec.pipeline_info.name == "hm3-cvr"
    assert {"load-logs", "evaluate-model", "gate-decision"} <= set(spec.root.dag.tasks)


def test_strict_parsing_rejects_what_the_backend_rejects(tmp_path: Path) -> None:
    """The check has teeth: an unknown field anywhere, or a mistyped one, is refused by name."""
    from google.protobuf.json_format import ParseError
    from kfp import compiler, dsl, kubernetes

    out = tmp_path / "hm3.yaml"
    compile_pipeline(out)
    pipeline, _ = _ir_documents(out)

    def container(doc: dict) -> dict:
        return doc["deploymentSpec"]["executors"]["exec-train-model"]["container"]

    for field, edit in [
        ("pipelineRoot", lambda doc: doc.update(pipelineRoot="gs://x")),  # defaultPipelineRoot
        ("imageUri", lambda doc: container(doc).update(imageUri="x")),
        ("env", lambda doc: container(doc).update(env={"A": "1"})),  # a map where a list belongs
    ]:
        broken = copy.deepcopy(pipeline)
        edit(broken)
        with pytest.raises(ParseError, match=field):
            parse_ir_strictly(broken)

    @dsl.component(base_image="python:3.11")
    def noop():  # kfp reads a return annotation as an output type
        pass

    @dsl.pipeline(name="with-platform-spec")
    def with_platform_spec():
        kubernetes.add_node_selector(noop(), "cloud.google.com/gke-accelerator", "nvidia-h100")

    small = tmp_path / "small.yaml"
    compiler.Compiler().compile(with_platform_spec, str(small))
    pipeline, platform = _ir_documents(small)
    assert platform is not None
    parse_ir_strictly(pipeline, platform)
    executor = next(
        iter(platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values())
    )
    executor["nodeSelectr"] = {"labels": {}}
    with pytest.raises(ParseError, match="nodeSelectr"):
        parse_ir_strictly(pipeline, platform)


def test_spark_parameters_reach_the_spark_steps(compiled) -> None:
    """label_engine, offline_store and the Spark location are pipeline parameters wired to the
    two steps that use them, defaulting to the embedded engines."""
    _, spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    defaults = {name: params[name].get("defaultValue") for name in params}
    assert (defaults["label_engine"], defaults["offline_store"]) == ("duckdb", "duckdb")
    assert (defaults["spark_master"], defaults["spark_remote"]) == ("local[2]", "")
    tasks = _all_tasks(spec)

    def wired(task: str) -> dict[str, str]:
        inputs = tasks[task]["inputs"]["parameters"]
        return {
            k: v["componentInputParameter"]
            for k, v in inputs.items()
            if "componentInputParameter" in v
        }

    labels, features = wired("build-labels"), wired("retrieve-features")
    assert (labels["engine"], labels["spark_master"], labels["spark_remote"]) == (
        "label_engine",
        "spark_master",
        "spark_remote",
    )
    assert (features["offline_store"], features["spark_master"]) == (
        "offline_store",
        "spark_master",
    )


def test_feature_store_parameter_reaches_retrieval_and_deployment(compiled) -> None:
    """`feature_store` (an existing store's yaml; empty = the run's own repo) is a pipeline
    parameter wired to the two steps that read Feast."""
    _, spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["feature_store"]["defaultValue"] == ""
    tasks = _all_tasks(spec)
    # Inside the gate's condition the parameter arrives through the condition's own inputs.
    for task, name in (
        ("retrieve-features", "feature_store"),
        ("deploy-model", "pipelinechannel--feature_store"),
    ):
        inputs = tasks[task]["inputs"]["parameters"]
        assert inputs["feature_store_uri"] == {"componentInputParameter": name}, task


def test_hm3_compile_feature_store_sets_the_parameters_default(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import app

    out = tmp_path / "hm3.yaml"
    uri = "gs://team-feast/prod/feature_store.yaml"
    result = CliRunner().invoke(app, ["compile", "--out", str(out), "--feature-store", uri])
    assert result.exit_code == 0, result.output
    pipeline, _ = _ir_documents(out)
    assert pipeline["root"]["inputDefinitions"]["parameters"]["feature_store"]["defaultValue"] == (
        uri
    )
    result = CliRunner().invoke(
        app, ["compile", "--out", str(out), "--feature-store", "feast/feature_store.yaml"]
    )
    assert result.exit_code == 2
    assert "--feature-store 'feast/feature_store.yaml' is a relative path" in result.output
