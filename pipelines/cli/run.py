"""The pipeline as a whole: `hm3 run`, `hm3 compile`, `hm3 submit`, `hm3 bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import MICRO_SIGNAL_HELP, console, fail

app = typer.Typer(rich_markup_mode="markdown")

FEATURE_STORE_HELP = (
    "An existing Feast store's feature_store.yaml (local path or gs://): the run registers "
    "nothing and reads the hm3_v1 FeatureService from its registry, checked against "
    "feature_repo/ first. Default: the run's own Feast repo."
)


def _store_for_pods(uri: str) -> str:
    """A --feature-store as a cluster's pods will read it: gs:// or an absolute path.

    Raises:
        ValueError: For a relative local path (the pods do not share this folder).
    """
    if uri and "://" not in uri and not Path(uri).is_absolute():
        raise ValueError(
            f"--feature-store {uri!r} is a relative path; a pod reads it, so give gs://... or "
            "an absolute path mounted in the pods (e.g. a ConfigMap)"
        )
    return uri


@app.command()
def run(
    impressions: Annotated[int, typer.Option(help="Size of the simulated world.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of training.")] = 0,
    micro_signal: Annotated[float, typer.Option(help=MICRO_SIGNAL_HELP)] = 1.0,
    out: Annotated[Path, typer.Option(help="Output folder of the run.")] = Path("out"),
    keep_serving: Annotated[
        bool, typer.Option(help="Keep the local KServe endpoint up until Ctrl-C.")
    ] = False,
    epochs: Annotated[int, typer.Option(help="Training epochs per model.")] = 2,
    min_cvr_auc: Annotated[float, typer.Option(help="Deploy gate: minimum CVR AUC.")] = 0.55,
    source_uri: Annotated[
        str,
        typer.Option(
            help="Ingest raw logs from this folder (local or gs://) instead of simulating."
        ),
    ] = "",
    deploy_dir: Annotated[
        str,
        typer.Option(help="Deployment registry folder, local or gs:// (default OUT/deployment)."),
    ] = "",
    label_engine: Annotated[
        str, typer.Option(help="Label engine: duckdb (embedded) or spark (same labels).")
    ] = "duckdb",
    offline_store: Annotated[
        str, typer.Option(help="Feast offline store for features: duckdb or spark.")
    ] = "duckdb",
    spark_master: Annotated[
        str, typer.Option(help="Spark master for the Spark steps (local mode by default).")
    ] = "local[2]",
    feature_store: Annotated[str, typer.Option(help=FEATURE_STORE_HELP)] = "",
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", help="Stream every step's full log here too, not only to OUT/logs."
        ),
    ] = False,
) -> None:
    """Run the whole pipeline on kfp.local and serve the winner on a local KServe endpoint.

    Simulates a world, builds graph labels, retrieves Feast features point in time, trains
    HM^3, ESM^2, ESMM and naive CVR, evaluates them with the deploy gate and, if it passes,
    deploys HM^3 on a loopback KServe server that reads features from the run's Feast online
    store, and prints one prediction.

    One line per step shows while it runs; what the steps print goes to OUT/logs/STEP.log and
    OUT/logs/run.log (--verbose streams it here too). A failed step shows the end of its log
    and the run exits with code 1. OUT then holds metrics.json, report.html, models/KIND/,
    labels/, features/, feature_store/ (the run's Feast repo), deployment/, logs/ and kfp/ (the
    KFP local run's own outputs).
    """
    from pipelines.local_run import LocalRunConfig, StepFailed, run_local
    from pipelines.summary import print_summary, serve_until_interrupted

    if feature_store and "://" not in feature_store:
        # The steps run in other processes: hand them an absolute path, checked here.
        if not Path(feature_store).exists():
            raise fail(f"--feature-store {feature_store!r}: no such file or folder")
        feature_store = str(Path(feature_store).resolve())
    try:
        cfg = LocalRunConfig(
            out=out,
            impressions=impressions,
            seed=seed,
            micro_signal=micro_signal,
            epochs=epochs,
            min_cvr_auc=min_cvr_auc,
            source_uri=source_uri,
            deploy_dir=deploy_dir,
            label_engine=label_engine,
            offline_store=offline_store,
            spark_master=spark_master,
            feature_store=feature_store,
        )
    except ValueError as err:
        raise fail(str(err)) from err
    try:
        result = run_local(cfg, verbose=verbose)
    except StepFailed as err:
        # The step's log tail is on the screen already; say which step and exit non-zero.
        console.print(
            f"[red]hm3 run failed[/red] at step {err.step}; full log: {err.log}", soft_wrap=True
        )
        raise typer.Exit(code=1) from err
    print_summary(result)
    if keep_serving:
        serve_until_interrupted(
            result.out / "models" / "hm3",
            feature_store or result.out / "feature_store",
            log=result.out / "logs" / "serve.log",
        )


@app.command()
def compile(  # noqa: A001 - the subcommand is called compile
    out: Annotated[Path, typer.Option(help="Where to write the pipeline IR YAML.")] = Path(
        "hm3_pipeline.yaml"
    ),
    use_gpu: Annotated[
        bool, typer.Option(help="Request one nvidia.com/gpu for each training task.")
    ] = False,
    gpus: Annotated[
        int, typer.Option(help="GPUs per training task (per node with --nodes) when --use-gpu.")
    ] = 1,
    nodes: Annotated[
        int,
        typer.Option(
            help="Training nodes per model: more than 1 runs each training as a Kubeflow "
            "Trainer TrainJob (runtime torch-distributed) of NODES pods with --gpus GPUs each; "
            "needs --use-gpu."
        ),
    ] = 1,
    gpu_toleration: Annotated[
        list[str] | None,
        typer.Option(
            help="Taint the GPU steps tolerate, KEY[=VALUE]:EFFECT; repeatable (default: "
            "GKE's GPU taint)."
        ),
    ] = None,
    gpu_node_selector: Annotated[
        list[str] | None,
        typer.Option(help="Node label KEY=VALUE the GPU steps must run on; repeatable."),
    ] = None,
    gcs_secret: Annotated[
        str | None,
        typer.Option(
            help="Secret with a GCS service-account key as key.json, mounted in every step "
            "(omit with Workload Identity)."
        ),
    ] = None,
    pod_label: Annotated[
        list[str] | None,
        typer.Option(help="Label KEY=VALUE on every step's pod; repeatable."),
    ] = None,
    feature_store: Annotated[
        str,
        typer.Option(
            help=FEATURE_STORE_HELP + " Compiled in as the feature_store parameter's default; "
            "gs:// or an absolute path in the pods."
        ),
    ] = "",
    pipeline: Annotated[
        str,
        typer.Option(
            help="Which pipeline: cvr (hm3-cvr: labels, features, training, gate, deploy) or "
            "materialize (hm3-materialize: loads the --feature-store store's online store, "
            "for a schedule)."
        ),
    ] = "cvr",
) -> None:
    """Compile the pipeline to Kubeflow Pipelines IR YAML (the package `hm3 submit` sends).

    Component images default to the ones in components/images.py; set HM3_IMAGE (every
    component but training) and HM3_TRAIN_IMAGE (training) to point at your registry before
    compiling.

    The Kubernetes settings go into the IR's platform spec, which the KFP backend applies to
    each step's pod. With --use-gpu the training steps tolerate GKE's GPU taint
    (nvidia.com/gpu:NoSchedule) unless --gpu-toleration names others, and
    --gpu-node-selector pins them to a pool, e.g.
    cloud.google.com/gke-accelerator=nvidia-l4. Every pod carries the --pod-label labels
    (default app.kubernetes.io/part-of=hm3), e.g. team=ads for cost reports.

    --nodes N (N > 1, with --use-gpu) trains every model on N nodes: the training step launches
    a TrainJob on the cluster's Kubeflow Trainer and waits for it; the job's pods get the GPU,
    GCS key and label settings above. See the README's cluster section for what the cluster
    needs (Trainer v2, the torch-distributed runtime, RBAC for the pipeline's service account).
    """
    from pipelines.cluster import ClusterSettings, Toleration, parse_pairs
    from pipelines.compile import PIPELINES, compile_pipeline, images_from_env
    from pipelines.pipeline import check_nodes

    try:
        # Flags not given keep ClusterSettings' own defaults.
        given: dict = {}
        if gpu_toleration:
            given["gpu_tolerations"] = tuple(map(Toleration.parse, gpu_toleration))
        if pod_label:
            given["pod_labels"] = parse_pairs(pod_label, "--pod-label")
        cluster = ClusterSettings(
            gpu_node_selector=parse_pairs(gpu_node_selector, "--gpu-node-selector"),
            gcs_secret=gcs_secret,
            **given,
        )
        feature_store = _store_for_pods(feature_store)
        if pipeline not in PIPELINES:
            raise ValueError(f"--pipeline must be one of {PIPELINES}, got {pipeline!r}")
        check_nodes(nodes, use_gpu)
    except ValueError as err:
        raise fail(str(err)) from err
    path = compile_pipeline(
        out,
        use_gpu=use_gpu,
        gpus=gpus,
        cluster=cluster,
        feature_store=feature_store,
        pipeline=pipeline,
        nodes=nodes,
        **images_from_env(),
    )
    typer.echo(str(path))


@app.command()
def submit(
    host: Annotated[str, typer.Option(help="KFP API endpoint, e.g. https://kfp.example.com.")],
    package: Annotated[
        Path, typer.Option(help="Compiled IR YAML; compiled now when it does not exist.")
    ] = Path("hm3_pipeline.yaml"),
    experiment: Annotated[str, typer.Option(help="KFP experiment name.")] = "hm3",
    run_name: Annotated[str | None, typer.Option(help="Run name (default: timestamped).")] = None,
    pipeline_root: Annotated[
        str | None, typer.Option(help="gs://bucket/prefix for the run's artifacts.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Pipeline parameter NAME=VALUE (JSON values allowed); repeatable."),
    ] = None,
    feature_store: Annotated[
        str,
        typer.Option(
            help=FEATURE_STORE_HELP + " Sent as the run's feature_store parameter; gs:// or "
            "an absolute path in the pods."
        ),
    ] = "",
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Create a recurring run on this KFP cron schedule (6 fields, seconds first, "
            "e.g. '0 0 * * * *' hourly) instead of one run."
        ),
    ] = None,
    pipeline: Annotated[
        str,
        typer.Option(help="Pipeline to compile when --package does not exist: cvr or materialize."),
    ] = "cvr",
) -> None:
    """Submit the compiled pipeline to a Kubeflow Pipelines cluster with kfp.Client.

    With --schedule, a recurring run instead (one at a time, no catch-up), e.g. the
    materialization pipeline every hour: hm3 submit --package hm3_materialize.yaml --pipeline
    materialize --feature-store gs://BUCKET/feast/feature_store.yaml --schedule '0 0 * * * *'.
    """
    from pipelines.submit import check_cron, parse_params, schedule_run, submit_run

    try:
        arguments = parse_params(param or [])
        if feature_store:
            given = arguments.setdefault("feature_store", _store_for_pods(feature_store))
            if given != feature_store:
                raise ValueError(
                    f"--feature-store {feature_store!r} and --param feature_store={given!r} "
                    "disagree; give one"
                )
        if schedule is not None:
            check_cron(schedule)
    except ValueError as err:
        raise fail(str(err)) from err
    if not package.exists():
        from pipelines.compile import PIPELINES, compile_pipeline, images_from_env

        if pipeline not in PIPELINES:
            raise fail(f"--pipeline must be one of {PIPELINES}, got {pipeline!r}")
        compile_pipeline(package, pipeline=pipeline, **images_from_env())
    if schedule is not None:
        typer.echo(
            schedule_run(
                host,
                package,
                schedule,
                experiment=experiment,
                job_name=run_name,
                pipeline_root=pipeline_root,
                arguments=arguments,
            )
        )
        return
    url = submit_run(
        host,
        package,
        experiment=experiment,
        run_name=run_name,
        pipeline_root=pipeline_root,
        arguments=arguments,
    )
    typer.echo(url)


@app.command()
def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Benchmarks to run (default: all): names of scripts in bench/."),
    ] = None,
) -> None:
    """Run benchmark scripts from bench/, each printing ours next to its peer in one table."""
    import subprocess
    import sys

    folder = Path(__file__).resolve().parents[2] / "bench"
    available = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise fail(f"unknown benchmark(s) {unknown}; available: {available}")
    for name in chosen:
        console.rule(f"bench/{name}.py")
        subprocess.run([sys.executable, str(folder / f"{name}.py")], check=True)
