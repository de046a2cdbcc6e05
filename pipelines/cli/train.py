"""`hm3 train`: HM^3 and its baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli._common import fail

app = typer.Typer(rich_markup_mode="markdown")


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
        str,
        typer.Option(
            help="Artifact folder to write: local (created; checkpoints live inside) or gs:// "
            "(trained in a local temporary folder, uploaded by rank 0 once sealed)."
        ),
    ] = "out/model",
    config: Annotated[
        Path | None,
        typer.Option(
            help="JSON file of TrainConfig fields (embedding_dim, hidden, dropout, optimizer, "
            "lr, batch_size, epochs, patience, seed, device, hash_buckets, loss_weights, split, "
            "bf16, threads, ...); unset fields keep their defaults."
        ),
    ] = None,
    config_json: Annotated[
        str | None,
        typer.Option(help="The same TrainConfig fields as a JSON object, instead of --config."),
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
    Multi-GPU / multi-node: launch with `torchrun --nproc-per-node N -m pipelines.cli train ...`
    (on a cluster: `hm3 compile --use-gpu --nodes N`, which runs this command in a Kubeflow
    Trainer TrainJob, `--out` being the step's gs:// model artifact).
    """
    from model.train.trainer import TrainConfig
    from model.train.trainer import train as run_training

    overrides: dict[str, object] = {"model_kind": model_kind, "progress": progress}
    for name, value in (("epochs", epochs), ("seed", seed), ("device", device)):
        if value is not None:
            overrides[name] = value
    try:
        if config is not None and config_json is not None:
            raise ValueError("give --config or --config-json, not both")
        if config is not None:
            cfg = TrainConfig.from_file(config, **overrides)
        else:
            fields = json.loads(config_json or "{}")
            if not isinstance(fields, dict):
                raise ValueError(f"--config-json must be a JSON object, got {config_json!r}")
            cfg = TrainConfig.from_dict(fields | overrides)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise fail(str(err)) from err
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
