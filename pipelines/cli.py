"""The `hm3` command line: every stage of the pipeline, runnable on its own.

Each command parses and validates its options, then calls one library function. Heavy imports
(torch, feast, kserve, kfp) happen inside the command that needs them, so `hm3 --help` is fast.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="hm3",
    help=(
        "HM^3 conversion-rate pipeline: simulate raw logs, build graph labels, retrieve Feast "
        "features, train HM^3 and its baselines, evaluate with a deploy gate, and serve on KServe."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder for the Parquet tables and world.json.")],
    impressions: Annotated[
        int, typer.Option(help="Number of impressions to generate.")
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    users: Annotated[int, typer.Option(help="Number of users.")] = 50_000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 10_000,
    days: Annotated[int, typer.Option(help="Days of logs (feature snapshots are daily).")] = 14,
    micro_signal: Annotated[
        float, typer.Option(help="How much D-Micro raises macro and purchase odds (0 = none).")
    ] = 1.0,
    macro_signal: Annotated[
        float, typer.Option(help="How much D-Macro raises purchase odds (0 = none).")
    ] = 1.5,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate raw e-commerce logs from a world with known conversion probabilities.

    Writes into OUT: impressions.parquet (what was shown), events.parquet (raw click, micro,
    cart, favorite and purchase events, linked to impressions only by user, item and time),
    users.parquet and items.parquet (daily feature snapshots for Feast), truth.parquet (the
    true probabilities and sampled outcomes per impression) and world.json (all parameters).
    """
    from model.world.simulator import WorldConfig
    from model.world.simulator import simulate as run_simulation

    try:
        cfg = WorldConfig(
            impressions=impressions,
            seed=seed,
            users=users,
            items=items,
            days=days,
            micro_signal=micro_signal,
            macro_signal=macro_signal,
        )
    except ValueError as err:
        raise _fail(str(err)) from err
    summary = run_simulation(cfg, out, progress=progress)
    rates = {k: round(v, 4) for k, v in summary.rates().items()}
    typer.echo(json.dumps({"out": str(out), "events": summary.events, "rates": rates}))


# --- labels: graph labels from raw logs ---------------------------------------------------------


@app.command()
def labels(
    impressions: Annotated[
        list[str],
        typer.Option(
            help="Impressions: a Parquet file, a folder of Parquet files (e.g. one per day) or a "
            "glob; local, file:// or gs://. Repeatable."
        ),
    ],
    events: Annotated[
        list[str],
        typer.Option(help="Raw events, in any of the forms --impressions accepts. Repeatable."),
    ],
    out: Annotated[
        str,
        typer.Option(
            help="Output folder (local or gs://): labels.parquet, quarantine.parquet, "
            "report.json, graph.svg."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            help='JSON object of LabelConfig overrides, e.g. {"purchase_window_s": 604800, '
            '"d_macro_events": ["cart"]}. Default: click within 1 h of the impression, micro '
            "within 30 min, macro within 1 day, purchase within 3 days of the click; "
            "D-Macro = cart or favorite; D-Micro = pictures, qa, chat, reviews, sku."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="DuckDB threads (default: all cores).")
    ] = None,
    memory_limit: Annotated[
        str, typer.Option(help="DuckDB memory limit; bigger intermediates spill to disk.")
    ] = "4GB",
) -> None:
    """Build per-impression labels (click, d_micro, d_macro, buy, path) from raw logs.

    Attributes each click to the latest impression of the same user and item within the click
    window, and each micro, macro and purchase event to the latest click within its window.
    Rows that cannot be used (null ids, unknown event types, bad clocks, duplicates,
    unattributable events) go to quarantine.parquet with a reason; every input row is either
    used or quarantined. Prints the graph counts and quarantine summary as JSON.
    """
    from model.data.labels import LabelConfig, build_labels
    from model.data.schema import SchemaError

    try:
        cfg = LabelConfig.from_json(config.read_text()) if config else LabelConfig()
        report = build_labels(
            impressions, events, out, cfg, threads=threads, memory_limit=memory_limit
        )
    except (ValueError, FileNotFoundError, SchemaError) as err:
        raise _fail(str(err)) from err
    typer.echo(
        json.dumps(
            {
                "out": out,
                "nodes": report.nodes,
                "quarantine": report.quarantine,
                "balanced": report.balanced,
                "seconds": report.seconds,
            }
        )
    )


# --- pipeline: run, compile, submit, bench ------------------------------------------------------


@app.command()
def run(
    impressions: Annotated[int, typer.Option(help="Size of the simulated world.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Seed of the world and of training.")] = 0,
    micro_signal: Annotated[
        float, typer.Option(help="How much D-Micro raises macro and purchase odds.")
    ] = 1.0,
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
) -> None:
    """Run the whole pipeline on kfp.local and serve the winner on a local KServe endpoint.

    Simulates a world, builds graph labels, retrieves Feast features point in time, trains
    HM^3, ESM^2, ESMM and naive CVR, evaluates them with the deploy gate and, if it passes,
    deploys HM^3 on a loopback KServe server that reads features from the run's Feast online
    store, and prints one prediction. OUT then holds metrics.json, report.html,
    models/<kind>/, labels/, features/, feature_store/ (the run's Feast repo), deployment/ and
    kfp/ (the KFP local run's own outputs).
    """
    from pipelines.local_run import LocalRunConfig, run_local
    from pipelines.summary import print_summary, serve_until_interrupted

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
        )
    except ValueError as err:
        raise _fail(str(err)) from err
    result = run_local(cfg)
    print_summary(result)
    if keep_serving:
        serve_until_interrupted(result.out / "models" / "hm3", result.out / "feature_store")


@app.command()
def compile(  # noqa: A001 - the subcommand is called compile
    out: Annotated[Path, typer.Option(help="Where to write the pipeline IR YAML.")] = Path(
        "hm3_pipeline.yaml"
    ),
    use_gpu: Annotated[
        bool, typer.Option(help="Request one nvidia.com/gpu for each training task.")
    ] = False,
    gpus: Annotated[int, typer.Option(help="GPUs per training task when --use-gpu.")] = 1,
) -> None:
    """Compile the pipeline to Kubeflow Pipelines IR YAML (the package `hm3 submit` sends).

    Component images default to the ones in components/images.py; set HM3_IMAGE and
    HM3_TRAIN_IMAGE to point at your registry before compiling.
    """
    from pipelines.compile import compile_pipeline

    path = compile_pipeline(out, use_gpu=use_gpu, gpus=gpus)
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
) -> None:
    """Submit the compiled pipeline to a Kubeflow Pipelines cluster with kfp.Client."""
    from pipelines.submit import parse_params, submit_run

    if not package.exists():
        from pipelines.compile import compile_pipeline

        compile_pipeline(package)
    try:
        arguments = parse_params(param or [])
    except ValueError as err:
        raise _fail(str(err)) from err
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

    folder = Path(__file__).resolve().parents[1] / "bench"
    available = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    chosen = names or available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise _fail(f"unknown benchmark(s) {unknown}; available: {available}")
    for name in chosen:
        console.rule(f"bench/{name}.py")
        subprocess.run([sys.executable, str(folder / f"{name}.py")], check=True)


# --- features: Feast apply, materialize, retrieve, online ----------------------------------------

features_app = typer.Typer(
    help=(
        "Feast feature store (feature_repo/): register the definitions over a world's tables, "
        "load the online store, retrieve point-in-time training features, read online features."
    ),
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")

_REPO_HELP = (
    "Feast repo folder of this run: feature_store.yaml, registry and SQLite online store "
    "(written by `hm3 features apply`)."
)


@features_app.command("apply")
def features_apply(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP)],
    data: Annotated[
        str | None,
        typer.Option(help="World folder or gs:// prefix holding users.parquet and items.parquet."),
    ] = None,
    users: Annotated[
        str | None, typer.Option(help="Users table (path, gs:// or bq://p.d.t); overrides --data.")
    ] = None,
    items: Annotated[
        str | None, typer.Option(help="Items table (path, gs:// or bq://p.d.t); overrides --data.")
    ] = None,
    online: Annotated[str, typer.Option(help="Online store: sqlite or redis.")] = "sqlite",
    redis: Annotated[str, typer.Option(help="Redis host:port (with --online redis).")] = (
        "127.0.0.1:6379"
    ),
    offline: Annotated[str, typer.Option(help="Offline store: duckdb or file.")] = "duckdb",
    config: Annotated[
        Path | None,
        typer.Option(
            help="Use this feature_store.yaml (e.g. feature_repo/feature_store.production.yaml) "
            "instead of writing one into --repo; --online/--redis/--offline are then ignored."
        ),
    ] = None,
) -> None:
    """Register feature_repo's entities, views and services (hm3_v1) over a world's tables.

    Validates the tables against the schema contract first (missing or mistyped columns, null
    keys are errors; null feature values are reported and later filled with defaults). Prints
    the table checks as JSON.
    """
    from model.data import features

    users = users or (f"{data.rstrip('/')}/users.parquet" if data else None)
    items = items or (f"{data.rstrip('/')}/items.parquet" if data else None)
    if users is None or items is None:
        raise _fail("give --data, or both --users and --items")
    try:
        if config is None:
            cfg = features.StoreConfig(
                repo_dir=str(repo), online_store=online, redis=redis, offline_store=offline
            )
            config = features.write_repo_config(cfg)
        store = features.open_store(config)
        checks = features.apply(store, users, items)
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    typer.echo(json.dumps([features.report_dict(c) for c in checks]))


@features_app.command("materialize")
def features_materialize(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP + " Or a feature_store.yaml file.")],
    start: Annotated[
        datetime | None,
        typer.Option(help="Start (UTC); default: the earliest snapshot in the sources."),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(help="End (UTC); default: the latest snapshot plus one second."),
    ] = None,
) -> None:
    """Load the latest snapshot per user and item into the online store. Prints a JSON report.

    Plain `feast materialize START END` in the repo folder does the same; Feast's
    `materialize-incremental` starts at now minus the ttl, which misses a simulated world
    dated in the past.
    """
    from model.data import features

    try:
        report = features.materialize(features.open_store(repo), start, end)
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    typer.echo(json.dumps(features.report_dict(report)))


@features_app.command("retrieve")
def features_retrieve(
    out: Annotated[str, typer.Option(help="Output folder: features.parquet and report.json.")],
    data: Annotated[
        str | None,
        typer.Option(help="World folder: apply over its tables in a temporary repo; retrieve."),
    ] = None,
    repo: Annotated[
        Path | None, typer.Option(help=_REPO_HELP + " Use an applied repo instead of --data.")
    ] = None,
    impressions: Annotated[
        str | None,
        typer.Option(help="Entity rows with --repo (with --data: DATA/impressions.parquet)."),
    ] = None,
    service: Annotated[str, typer.Option(help="Feast FeatureService to retrieve.")] = "hm3_v1",
    offline: Annotated[str, typer.Option(help="Offline store with --data: duckdb or file.")] = (
        "duckdb"
    ),
) -> None:
    """Point-in-time features for every impression: features.parquet + report.json in OUT.

    One row per impression: impression_id and every feature of SERVICE (column = feature
    name), missing values replaced by each feature's documented default and counted in
    report.json; the {feature: kind} map is in the Parquet metadata.
    """
    from model import storage
    from model.data import features

    if (data is None) == (repo is None):
        raise _fail("give exactly one of --data and --repo")
    try:
        if data is not None:
            report = features.retrieve_world(data, out, service, offline_store=offline)
        else:
            if impressions is None:
                raise _fail("--impressions is required with --repo")
            report = features.retrieve_historical(
                features.open_store(repo),
                impressions,
                storage.join(out, features.FEATURES_FILE),
                service,
            )
            storage.write_text_atomic(
                storage.join(out, features.REPORT_FILE),
                json.dumps(features.report_dict(report), indent=2) + "\n",
            )
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    typer.echo(json.dumps({"out": out, "rows": report.rows, "filled": report.filled_total}))


@features_app.command("online")
def features_online(
    repo: Annotated[Path, typer.Option(help=_REPO_HELP + " Or a feature_store.yaml file.")],
    user_id: Annotated[list[int], typer.Option(help="User id; repeat for several rows.")],
    item_id: Annotated[list[int], typer.Option(help="Item id, one per --user-id.")],
    service: Annotated[str, typer.Option(help="Feast FeatureService to read.")] = "hm3_v1",
) -> None:
    """Read online features by feature service; prints values and missing rows as JSON."""
    from model.data import features

    if len(user_id) != len(item_id):
        raise _fail(f"{len(user_id)} --user-id but {len(item_id)} --item-id; give one of each")
    rows = [{"user_id": u, "item_id": i} for u, i in zip(user_id, item_id, strict=True)]
    try:
        result = features.online_features(features.open_store(repo), rows, service)
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    typer.echo(json.dumps({"values": result.values, "missing": result.missing}))


# --- train: HM^3 and its baselines ---------------------------------------------------------------


@app.command()
def train(
    data: Annotated[
        str,
        typer.Option(
            help="The joined training table (labels + features.parquet, with the feature kinds "
            "metadata): a Parquet file, local or gs://."
        ),
    ],
    model_kind: Annotated[
        str, typer.Option(help="Model to train: hm3, esm2, esmm or naive.")
    ] = "hm3",
    out: Annotated[
        Path, typer.Option(help="Artifact folder to write (created; checkpoints live inside).")
    ] = Path("out/model"),
    config: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of TrainConfig fields (embedding_dim, hidden, dropout, optimizer, "
            "lr, batch_size, epochs, patience, seed, device, hash_buckets, loss_weights, split, "
            "bf16, threads, ...); unset fields keep their defaults."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue from OUT/checkpoints/last.pt after an interruption.")
    ] = False,
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    device: Annotated[
        str | None, typer.Option(help="Override the device: auto (cuda if present), cpu, cuda.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train one model on a training table and write its artifact folder.

    The table is split by time on `ts` (default 70% train, 15% validation, 15% test, cut at ts
    quantiles); vocabularies and normalization statistics are fitted on the train part, early
    stopping watches the validation CVR AUC (clicked impressions). OUT receives
    model.safetensors, config.json, model.pt2 (torch.export program), history.json,
    tensorboard/ and MANIFEST.json. Defaults: TrainConfig in model/train/trainer.py (embedding 16,
    towers 256-128-64, Adam lr 1e-3, batch 2048, 4 epochs, seed 0, device auto).
    Multi-GPU / multi-node: launch with `torchrun --nproc-per-node N -m pipelines.cli train ...`.
    """
    from model.train.trainer import TrainConfig
    from model.train.trainer import train as run_training

    overrides: dict[str, object] = {"model_kind": model_kind, "progress": progress}
    for name, value in (("epochs", epochs), ("seed", seed), ("device", device)):
        if value is not None:
            overrides[name] = value
    try:
        cfg = (
            TrainConfig.from_file(config, **overrides)
            if config is not None
            else TrainConfig.from_dict(overrides)
        )
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    result = run_training(data, out, cfg, resume=resume)
    if result.version is not None:
        typer.echo(
            json.dumps(
                {
                    "out": result.out_dir,
                    "version": result.version,
                    "best_epoch": result.best_epoch,
                    "validation": {k: round(v, 5) for k, v in result.validation.items()},
                }
            )
        )


# --- serve: KServe predictor / Feast transformer -------------------------------------------------


@app.command(
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve a model artifact on KServe (V1 and V2 protocols); `hm3 serve --help` lists all flags.

    hm3 serve --model DIR [--feast-repo DIR] [--http-port 8080] [any KServe model server flag].
    Inputs: the model artifact folder (local, file:// or gs://) and optionally a Feast repo
    (applied and materialized) to fetch features requests do not carry. Serves
    /v1/models/hm3:predict and /v2/models/hm3/infer until SIGTERM/SIGINT. Defaults: port
    8080, model name hm3, feature service hm3_v1, max batch 512, max body 4 MiB.
    """
    import sys

    from components.serving import server

    # kserve.model_server parses sys.argv when imported; give it the serve arguments only.
    sys.argv = ["hm3 serve", *ctx.args]
    server.main(ctx.args)


# --- evaluate: offline metrics, report and deploy gate ------------------------------------------


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
        raise _fail(str(err)) from err
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
    except (ValueError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
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


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
