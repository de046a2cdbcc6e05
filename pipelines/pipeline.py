"""The pipeline factories; runners (kfp.local, compile, submit) only choose where they run.

hm3-cvr (`create_pipeline`): load_logs -> (build_labels || retrieve_features) ->
join_training_table -> train_model for HM^3 and each baseline, one ParallelFor (HM^3 first, so
on kfp.local's two workers it trains beside the baselines instead of after them) ->
evaluate_model (deploy gate, picks the candidate by kind) -> dsl.If(decision == "deploy") ->
deploy_model.

hm3-materialize (`create_materialize_pipeline`): materialize_features, for a schedule.
"""

from collections.abc import Callable

from kfp import dsl

from components.build_labels import build_labels
from components.deploy_model import deploy_model
from components.evaluate_model import evaluate_model, gate_decision
from components.images import HM3_TRAIN_IMAGE
from components.load_logs import load_logs
from components.materialize_features import materialize_features
from components.retrieve_features import retrieve_features
from components.train_model import join_training_table, request_gpus, train_model
from components.trainjob import TrainJobSettings
from pipelines.cluster import ClusterSettings

PIPELINE_NAME = "hm3-cvr"
MATERIALIZE_PIPELINE_NAME = "hm3-materialize"
CANDIDATE_KIND = "hm3"
BASELINE_KINDS = ["esm2", "esmm", "naive"]
MODEL_KINDS = [CANDIDATE_KIND, *BASELINE_KINDS]


def check_nodes(nodes: int, use_gpu: bool) -> None:
    """Validate the number of training nodes.

    Raises:
        ValueError: nodes < 1, or nodes > 1 without GPUs: a multi-node TrainJob exists to add
            GPUs (one CPU pod already trains these models; its CPU count per node is not a
            compile flag).
    """
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    if nodes > 1 and not use_gpu:
        raise ValueError(
            f"nodes={nodes} needs use_gpu (--use-gpu): multi-node training runs a TrainJob of "
            "GPU nodes; CPU training stays in one pod"
        )


def create_pipeline(
    use_gpu: bool = False,
    gpus: int = 1,
    cluster: ClusterSettings | None = None,
    feature_store: str = "",
    nodes: int = 1,
    train_image: str = HM3_TRAIN_IMAGE,
) -> Callable[..., object]:
    """Build the pipeline function.

    Args:
        use_gpu: Request `gpus` NVIDIA GPUs for every training task (fixed at compile time,
            since a pod's resources are part of the compiled spec).
        gpus: GPUs per training task when `use_gpu` (per node when nodes > 1); the trainer runs
            DDP over them.
        cluster: Kubernetes pod settings for the compiled IR (None: none, as kfp.local runs).
        feature_store: Default of the `feature_store` parameter: an existing Feast store's
            feature_store.yaml (local or gs://); empty = each run registers its own repo.
        nodes: Training nodes per model: 1 trains in the step's pod; more makes each training
            step launch and await a Kubeflow Trainer TrainJob of `nodes` pods with `gpus` GPUs
            each (needs `use_gpu`; components/trainjob.py).
        train_image: The image of the TrainJob's pods when nodes > 1.

    Raises:
        ValueError: On a bad `nodes` (see `check_nodes`).
    """
    check_nodes(nodes, use_gpu)
    trainjob = (
        (cluster.trainjob(train_image, gpus) if cluster else TrainJobSettings(train_image, gpus))
        if nodes > 1
        else None
    )

    def _sized(task: dsl.PipelineTask, name: str, cpu: str, memory: str) -> dsl.PipelineTask:
        """Display name, resource requests and pod settings of a step."""
        task.set_display_name(name).set_cpu_request(cpu).set_memory_request(memory)
        return cluster.apply(task) if cluster else task

    def _train(table, kind, config_json) -> dsl.PipelineTask:  # noqa: ANN001
        if trainjob is not None:
            # This pod only launches and awaits the TrainJob: no GPU, little CPU and memory.
            task = train_model(
                table=table,
                model_kind=kind,
                config_json=config_json,
                nodes=nodes,
                trainjob_json=trainjob.to_json(),
            )
            return _sized(task, "train", "0.5", "1Gi")
        task = _sized(
            train_model(table=table, model_kind=kind, config_json=config_json), "train", "2", "8Gi"
        )
        if use_gpu:
            request_gpus(task, gpus)
            if cluster:
                cluster.apply_gpu(task)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="HM^3 CVR: labels from raw logs, Feast features, HM^3 and baselines, "
        "evaluation with a deploy gate, KServe deployment.",
    )
    def hm3_pipeline(
        deploy_dir: str,
        source_uri: str = "",
        impressions: int = 200_000,
        seed: int = 0,
        micro_signal: float = 1.0,
        macro_signal: float = 1.0,
        users: int = 2_000,
        items: int = 250,
        days: int = 14,
        label_config_json: str = "{}",
        label_engine: str = "duckdb",
        offline_store: str = "duckdb",
        spark_master: str = "local[2]",
        spark_remote: str = "",
        train_config_json: str = "{}",
        min_cvr_auc: float = 0.6,
        auc_tolerance: float = 0.002,
        deploy_mode: str = "local",
        canary_traffic_percent: int = 100,
        feature_store: str = feature_store,
    ) -> None:
        logs = _sized(
            load_logs(
                source_uri=source_uri,
                impressions=impressions,
                seed=seed,
                micro_signal=micro_signal,
                macro_signal=macro_signal,
                users=users,
                items=items,
                days=days,
            ),
            "load raw logs",
            "1",
            "4Gi",
        )
        labels = _sized(
            build_labels(
                world=logs.outputs["world"],
                config_json=label_config_json,
                engine=label_engine,
                spark_master=spark_master,
                spark_remote=spark_remote,
            ),
            "build graph labels",
            "2",
            "8Gi",
        )
        features = _sized(
            retrieve_features(
                world=logs.outputs["world"],
                offline_store=offline_store,
                spark_master=spark_master,
                feature_store_uri=feature_store,
            ),
            "retrieve Feast features",
            "2",
            "8Gi",
        )
        table = _sized(
            join_training_table(
                labels=labels.outputs["labels"], features=features.outputs["features"]
            ),
            "join labels and features",
            "1",
            "4Gi",
        )
        with dsl.ParallelFor(MODEL_KINDS, name="models") as kind:
            trained = _train(table.outputs["table"], kind, train_config_json)
        evaluation = evaluate_model(
            models=dsl.Collected(trained.outputs["model"]),
            candidate_kind=CANDIDATE_KIND,
            data=table.outputs["table"],
            labels=labels.outputs["labels"],
            world=logs.outputs["world"],
            deploy_dir=deploy_dir,
            min_cvr_auc=min_cvr_auc,
            tolerance=auc_tolerance,
        )
        _sized(evaluation, "evaluate and gate", "2", "8Gi")
        decision = _sized(
            gate_decision(evaluation=evaluation.outputs["evaluation"]),
            "gate decision",
            "0.1",
            "256Mi",
        )
        with dsl.If(decision.output == "deploy", name="gate-passed"):
            deploy = deploy_model(
                model=evaluation.outputs["candidate"],
                feature_store=features.outputs["feature_store"],
                deploy_dir=deploy_dir,
                cvr_auc=evaluation.outputs["cvr_auc"],
                mode=deploy_mode,
                canary_traffic_percent=canary_traffic_percent,
                feature_store_uri=feature_store,
            )
            _sized(deploy, "deploy on KServe", "1", "2Gi").set_caching_options(False)

    return hm3_pipeline


def create_materialize_pipeline(
    cluster: ClusterSettings | None = None, feature_store: str = ""
) -> Callable[..., object]:
    """Build the materialization pipeline: one step, for a schedule (`hm3 submit --schedule`).

    Args:
        cluster: Kubernetes pod settings for the compiled IR (None: none, as kfp.local runs).
        feature_store: Default of its `feature_store` parameter (the store to load).
    """

    @dsl.pipeline(
        name=MATERIALIZE_PIPELINE_NAME,
        description="Load the hm3_v1 feature views of an existing Feast store into its online "
        "store, incrementally, up to the run time.",
    )
    def hm3_materialize(
        feature_store: str = feature_store,
        feature_service: str = "hm3_v1",
        end: str = "",
    ) -> None:
        task = materialize_features(
            feature_store_uri=feature_store, feature_service=feature_service, end=end
        )
        task.set_display_name("materialize Feast online store")
        task.set_cpu_request("1").set_memory_request("4Gi")
        # Each run loads what is new since the previous one: never reuse a cached result.
        task.set_caching_options(False)
        if cluster:
            cluster.apply(task)

    return hm3_materialize
