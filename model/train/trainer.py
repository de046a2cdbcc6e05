"""Training loop for every model kind: CPU, one GPU, or many with torchrun + DDP.

Data are encoded once into tensors (`model.data.dataset.TensorData`); a batch is an index gather,
not a per-row Dataset with a Python collate. Each epoch's shuffle and dropout are seeded from
`(seed, epoch)`, so a run is deterministic on CPU and `resume=True` after a kill continues from
the last epoch checkpoint to the same final weights as an uninterrupted run.

Multi-process: launched by `torchrun` (RANK / WORLD_SIZE in the environment) or inside an
already initialized process group, every rank builds the same model from the same seed, takes its
share of each global batch (`batch_size` rows over all ranks, so the loss curve matches one
process) and DDP averages the gradients. Rank 0 writes checkpoints and the artifact.
Across nodes (a Kubeflow Trainer `TrainJob`, `torchrun` on every node) nothing changes but the
ranks; a gs:// `out_dir` is trained into a local staging folder that rank 0 uploads once sealed.

`_train` is the epoch loop; its parts live next to it: `model.train.distributed` (process group,
device), `model.train.checkpoint` (last.pt, resume), `model.train.early_stopping` (best score,
patience, best weights) and, here, `_train_epoch` (one pass) and `_save` (the artifact).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from model import storage
from model.artifact import HISTORY, save_artifact
from model.data import schema
from model.data.dataset import TensorData
from model.data.encoding import FeatureSpec, feature_kinds
from model.data.split import DEFAULT_SPLIT, split_by_time
from model.devices import check_device_name
from model.evaluate import metrics
from model.nn.embedding import INTERACTIONS
from model.nn.losses import multitask_loss
from model.nn.nets import MODEL_KINDS, GraphNet, build_model
from model.tasks import HEADLINE, TASKS
from model.train.checkpoint import CHECKPOINT_DIR, checkpoint_path, load_checkpoint, save_checkpoint
from model.train.distributed import Dist, distributed, resolve_device
from model.train.early_stopping import EarlyStopping
from model.train.optim import LazyAdam

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")
EARLY_STOP_TASK = HEADLINE
# Seeds the row subset of `TrainConfig.train_fraction`; deliberately not the training seed.
TRAIN_SUBSET_SEED = 0


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Validated on construction.

    Attributes:
        model_kind: `hm3`, `esm2`, `esmm` or `naive`.
        embedding_dim: Embedding size per categorical feature.
        interaction: Explicit pairwise interaction of the embeddings fed to every tower, the same
            for every kind: `none`, `dot` (all categorical pairs, DLRM; the default, chosen on
            validation CVR AUC in docs/model.md) or `id_hadamard` (elementwise products of
            id-feature embeddings, e.g. user_id x item_id; NCF's GMF).
        hidden: Hidden layer sizes of every tower.
        dropout: Dropout after each hidden layer.
        optimizer: `adam`, `adamw`, `adagrad` or `sgd`.
        lr: Learning rate.
        embedding_lr: Learning rate of the embedding table; None = `lr`. Id rows are seen a few
            dozen times per epoch and Adam's per-row normalization gives each such update a
            full-size step, so the table memorizes ids long before the towers converge; the
            default 1e-4 (chosen on validation CVR AUC, docs/model.md) slows that down.
        feature_embedding_lr: Feature name -> learning rate of that categorical feature's rows of
            the table, overriding `embedding_lr` for it (e.g. `{"item_id": 1e-3}`: an item is
            seen far more often than a user, so its rows can learn faster before they memorize).
            Needs the sparse table and adam/adamw (a per-row rate of `LazyAdam`).
        embedding_l2: Strength lambda of a Gaussian prior on every embedding row (variance
            1 / (2 lambda), in units of the per-impression loss): each pass over the training
            split adds lambda * ||w||^2 once per row, applied lazily to the rows a batch uses,
            each weighted by 1 / its count in the split (the mini-batch aware regularization of
            DIN, Zhou et al. KDD 2018). Shrinks rarely seen ids toward 0. 0 = off.
        weight_decay: L2 / decoupled weight decay.
        batch_size: Rows per optimizer step, over all processes together.
        epochs: Maximum number of passes over the training split.
        patience: Stop after this many epochs without a better validation CVR AUC.
        seed: Seeds the initialization, the shuffles and dropout.
        device: `auto` (cuda if present), `cpu`, `cuda` or `cuda:N`.
        hash_buckets: Embedding rows per id feature (user_id, item_id).
        loss_weights: Task -> weight overrides of the model's declared losses.
        split: Train / validation / test shares of the time split.
        train_fraction: Share of the train split's rows to train on, in (0, 1]: a uniform random
            subset drawn after the time split (validation, test and the cut points unchanged),
            from a generator of its own that does not depend on `seed`, so every seed and kind
            trains on the same rows. The subsets are nested: the rows of a smaller fraction are
            among those of a larger one. The feature spec is fit on the subset. For data
            efficiency curves.
        bf16: Use bf16 autocast on CUDA (ignored on CPU).
        eval_batch_size: Rows per forward pass when validating.
        progress: Show a progress bar (rank 0 only).
        sparse_embeddings: Train the embedding table with sparse gradients (only the rows a
            batch uses are updated; much faster with large hash buckets). Dense on multi-GPU.
        threads: CPU threads for torch ops; 0 keeps torch's default. On a shared machine, 1 per
            process avoids OpenMP threads spinning against other jobs (8x faster measured).
        compile_towers: Compile the fused towers with `torch.compile` (TorchInductor), which
            fuses their element-wise work (ReLU and its gradient, bias) around the matmuls:
            12-16% more HM^3 samples/s on this 2-core CPU (bench/train.py --compile). Each new
            batch shape and the switch to evaluation compile again (seconds each, cached on
            disk), so it pays off on long trainings, not on the demo's. On a CPU it needs a C++
            compiler (`$CXX`, else g++); without one, training warns and runs eagerly.
    """

    model_kind: str = "hm3"
    embedding_dim: int = 16
    interaction: str = "dot"
    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.1
    optimizer: str = "adam"
    lr: float = 1e-3
    embedding_lr: float | None = 1e-4
    feature_embedding_lr: dict[str, float] = field(default_factory=dict)
    embedding_l2: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 2048
    epochs: int = 4
    patience: int = 2
    seed: int = 0
    device: str = "auto"
    hash_buckets: int = 100_000
    loss_weights: dict[str, float] = field(default_factory=dict)
    split: tuple[float, float, float] = DEFAULT_SPLIT
    train_fraction: float = 1.0
    bf16: bool = True
    eval_batch_size: int = 65_536
    progress: bool = True
    threads: int = 0
    sparse_embeddings: bool = True
    compile_towers: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "split", tuple(self.split))
        object.__setattr__(self, "loss_weights", dict(self.loss_weights))
        object.__setattr__(self, "feature_embedding_lr", dict(self.feature_embedding_lr))
        if self.model_kind not in MODEL_KINDS:
            raise ValueError(
                f"model_kind must be one of {sorted(MODEL_KINDS)}, got {self.model_kind!r}"
            )
        if self.interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {self.interaction!r}")
        for name in (
            "embedding_dim",
            "batch_size",
            "epochs",
            "patience",
            "hash_buckets",
            "eval_batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(
                f"hidden must be a non-empty list of positive integers, got {self.hidden!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.embedding_lr is not None and not (
            isinstance(self.embedding_lr, int | float)
            and math.isfinite(self.embedding_lr)
            and self.embedding_lr > 0
        ):
            raise ValueError(
                f"embedding_lr must be a positive number or null, got {self.embedding_lr!r}"
            )
        for name, rate in self.feature_embedding_lr.items():
            if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
                raise ValueError(
                    f"feature_embedding_lr[{name!r}] must be a positive number, got {rate!r}"
                )
        if self.feature_embedding_lr and not (
            self.sparse_embeddings and self.optimizer in ("adam", "adamw")
        ):
            raise ValueError(
                "feature_embedding_lr needs sparse_embeddings and optimizer adam or adamw, got "
                f"sparse_embeddings={self.sparse_embeddings}, optimizer={self.optimizer!r}"
            )
        if not (
            isinstance(self.embedding_l2, int | float)
            and math.isfinite(self.embedding_l2)
            and self.embedding_l2 >= 0
        ):
            raise ValueError(f"embedding_l2 must be a number >= 0, got {self.embedding_l2!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not isinstance(self.compile_towers, bool):
            raise ValueError(f"compile_towers must be true or false, got {self.compile_towers!r}")
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads must be an integer >= 0, got {self.threads!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        check_device_name(self.device)
        if (
            len(self.split) != 3
            or any(not s > 0 for s in self.split)
            or abs(sum(self.split) - 1) > 1e-6
        ):
            raise ValueError(f"split must be three positive shares summing to 1, got {self.split}")
        if not (
            isinstance(self.train_fraction, int | float)
            and not isinstance(self.train_fraction, bool)
            and 0.0 < self.train_fraction <= 1.0
        ):
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction!r}")
        tasks = {s.task for s in MODEL_KINDS[self.model_kind].default_losses}
        for task, weight in self.loss_weights.items():
            if task not in tasks:
                raise ValueError(
                    f"loss_weights: {self.model_kind} has no loss on task {task!r}; "
                    f"it has {sorted(tasks)}"
                )
            if not (math.isfinite(weight) and weight >= 0):
                raise ValueError(f"loss_weights[{task!r}] must be >= 0, got {weight}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a JSON-like mapping, rejecting unknown keys by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown train config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a JSON config file; `overrides` (e.g. model_kind from the CLI) win."""
        try:
            data = json.loads(storage.read_text(path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a train config must be a JSON object")
        return cls.from_dict(data | overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        out["split"] = list(self.split)
        return out


@dataclass(frozen=True)
class TrainResult:
    """What a run produced (rank 0; other ranks get the same history)."""

    out_dir: str
    version: str | None
    best_epoch: int
    history: list[dict[str, Any]]
    validation: dict[str, float]
    weights_sum: float


def make_optimizers(
    cfg: TrainConfig, net: GraphNet, spec: FeatureSpec | None = None
) -> list[torch.optim.Optimizer]:
    """The configured optimizer for dense parameters, plus a sparse one for a sparse table.

    Sparse embedding rows get the sparse counterpart of the configured optimizer: `LazyAdam`
    (SparseAdam's update without its coalesce: moments of a row move only when the row is used)
    for adam/adamw, Adagrad for adagrad, plain SGD for sgd; no weight decay on them. Adam and
    AdamW run their fused kernels (one pass over all dense parameters, on CPU and CUDA).
    `cfg.feature_embedding_lr` becomes LazyAdam's per-row rate; it needs the net's `spec`.
    """
    sparse, dense = net.parameter_groups()
    lr, wd = cfg.lr, cfg.weight_decay
    emb_lr = cfg.embedding_lr if cfg.embedding_lr is not None else lr
    table = net.embedding.table.weight
    if cfg.feature_embedding_lr and not sparse:
        # Multi-GPU training builds a dense table whatever the config says (see `_build_net`).
        raise ValueError(
            "feature_embedding_lr needs a sparse embedding table; this one is dense "
            "(multi-GPU DDP trains a dense table): drop feature_embedding_lr for this run"
        )
    # A dense table (sparse_embeddings off) is a parameter group of its own, at emb_lr.
    groups: list[dict[str, Any]] = [{"params": [p for p in dense if p is not table]}]
    if not sparse:
        groups.append({"params": [table], "lr": emb_lr})
    optimizers: list[torch.optim.Optimizer]
    if cfg.optimizer == "adam":
        optimizers = [torch.optim.Adam(groups, lr=lr, weight_decay=wd, fused=True)]
    elif cfg.optimizer == "adamw":
        optimizers = [torch.optim.AdamW(groups, lr=lr, weight_decay=wd, fused=True)]
    elif cfg.optimizer == "adagrad":
        optimizers = [torch.optim.Adagrad(groups, lr=lr, weight_decay=wd)]
    else:
        optimizers = [torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=wd)]
    if sparse:
        if cfg.optimizer in ("adam", "adamw"):
            scale = _row_lr_scale(cfg, spec, emb_lr, table) if cfg.feature_embedding_lr else None
            optimizers.append(LazyAdam(sparse, lr=emb_lr, row_scale=scale))
        elif cfg.optimizer == "adagrad":
            optimizers.append(torch.optim.Adagrad(sparse, lr=emb_lr))
        else:
            optimizers.append(torch.optim.SGD(sparse, lr=emb_lr))
    return optimizers


def _row_lr_scale(
    cfg: TrainConfig, spec: FeatureSpec | None, emb_lr: float, table: torch.Tensor
) -> torch.Tensor:
    """Per-row multiplier of `emb_lr` that gives each overridden feature its own rate."""
    if spec is None:
        raise ValueError("feature_embedding_lr needs the feature spec to find each feature's rows")
    names = [f.name for f in spec.categorical]
    unknown = sorted(set(cfg.feature_embedding_lr) - set(names))
    if unknown:
        raise ValueError(
            f"feature_embedding_lr names {unknown}, not categorical features of this table; "
            f"it has {names}"
        )
    scale = torch.ones(table.shape[0], dtype=table.dtype, device=table.device)
    start = 0
    for feature in spec.categorical:
        if feature.name in cfg.feature_embedding_lr:
            scale[start : start + feature.size] = cfg.feature_embedding_lr[feature.name] / emb_lr
        start += feature.size
    return scale


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUC, NaN when a validation split has a single label class (too small to judge)."""
    try:
        return metrics.auc(labels, scores)
    except metrics.MetricError:
        return float("nan")


@torch.no_grad()
def predict_logits(
    net: nn.Module, data: TensorData, batch_size: int, autocast: Any = nullcontext
) -> dict[str, np.ndarray]:
    """Task logits over a whole split, in order."""
    was_training = net.training
    net.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    for lo in range(0, len(data), batch_size):
        with autocast():
            out = net(data.categorical[lo : lo + batch_size], data.dense[lo : lo + batch_size])
        for task, logit in out.items():
            chunks.setdefault(task, []).append(logit.float().cpu())
    net.train(was_training)
    return {t: torch.cat(v).numpy() for t, v in chunks.items()}


def validation_metrics(logits: Mapping[str, np.ndarray], data: TensorData) -> dict[str, float]:
    """AUC of every output task on its label (CVR on clicked rows), keyed `auc_<task>`."""
    labels = {k: v.cpu().numpy() for k, v in data.labels.items()}
    out = {}
    for task, scores in logits.items():
        label, where = TASKS[task].label, TASKS[task].where
        mask = labels[where] == 1 if where else slice(None)
        out[f"auc_{task}"] = _auc(labels[label][mask], scores[mask])
    return out


class _Bar:
    """A rich progress bar with samples/s and the running loss, or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def start(self, epoch: int, total: int) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(
            TextColumn(f"epoch {epoch}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9,.0f} samples/s  loss {task.fields[loss]:.4f}"),
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task("train", total=total, rate=0.0, loss=float("nan"))

    def update(self, rows: int, rate: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=rows, rate=rate, loss=loss)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class _EmbeddingL2:
    """Mini-batch aware L2 on the embedding rows a batch uses (`TrainConfig.embedding_l2`).

    Each row's penalty is weighted by 1 / (its count in the training split), so it adds up to
    `strength * ||w||^2` per epoch however often the row occurs.
    """

    def __init__(self, strength: float, net: GraphNet, data: TensorData) -> None:
        self.strength = strength
        rows = (data.categorical + net.embedding.offsets.to(data.categorical.device)).flatten()
        counts = torch.bincount(rows, minlength=net.embedding.table.num_embeddings)
        self.inverse_counts = 1.0 / counts.clamp_min(1).float()

    def objective(self, loss: torch.Tensor, net: GraphNet, cat: torch.Tensor) -> torch.Tensor:
        """`loss` plus the penalty of the rows of a batch's categorical indices `cat`."""
        rows = cat + net.embedding.offsets  # (B, C) table rows of this batch
        squares = net.embedding.table(rows).float().pow(2).sum(-1)  # (B, C)
        penalty = (squares * self.inverse_counts[rows]).sum(1).mean()
        return loss + self.strength * penalty


@dataclass
class _Learner:
    """The model being trained and what one optimizer step needs.

    Attributes:
        net: The model; its state is what is checkpointed and saved.
        model: `net`, or DDP around it: what the forward and backward passes go through.
        optimizers: From `make_optimizers`.
        l2: The embedding L2 penalty, or None when off.
        autocast: A context manager factory: bf16 autocast on CUDA, else nothing.
        device: Where the model and the data live.
    """

    net: GraphNet
    model: nn.Module
    optimizers: list[torch.optim.Optimizer]
    l2: _EmbeddingL2 | None
    autocast: Callable[[], AbstractContextManager[Any]]
    device: torch.device

    def step(
        self, cat: torch.Tensor, dense: torch.Tensor, labels: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """One optimizer step on a batch; returns its (unregularized) loss."""
        with self.autocast():
            outputs = self.model(cat, dense)
        loss, _ = multitask_loss(outputs, labels, self.net.losses)
        objective = loss if self.l2 is None else self.l2.objective(loss, self.net, cat)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        objective.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss


@dataclass(frozen=True)
class _Data:
    """The encoded training and validation splits and the rows of every split."""

    spec: FeatureSpec
    train: TensorData
    validation: TensorData
    rows: dict[str, int]


class _RunLog:
    """Rank 0's per-epoch output: TensorBoard scalars and history.json (replaced atomically)."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.out = out
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict[str, Any], history: list[dict[str, Any]]) -> None:
        """Log an epoch's record and rewrite the history so far."""
        if self.writer is None:
            return
        for key, value in record.items():
            if key != "epoch":
                group = "validation" if key.startswith("auc_") else "train"
                self.writer.add_scalar(f"{group}/{key}", value, record["epoch"])
        self.writer.flush()
        # A reader (or a test polling it) never sees a half-written file.
        storage.write_text_atomic(self.out / HISTORY, json.dumps(history, indent=2) + "\n")

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def train(
    data_path: str | Path, out_dir: str | Path, config: TrainConfig, resume: bool = False
) -> TrainResult:
    """Train one model on the joined training table and write its artifact to `out_dir`.

    Args:
        data_path: The training table (labels joined with features, with the kinds metadata);
            local path, file:// or gs://.
        out_dir: Local artifact folder (checkpoints live in `<out_dir>/checkpoints` until the
            artifact is sealed), or a gs:// prefix: every rank then trains into a local
            temporary folder and rank 0 uploads the sealed artifact there (its MANIFEST.json
            last), so the nodes of a multi-node run need no shared file system.
        config: The run's configuration.
        resume: Continue from `<out_dir>/checkpoints/last.pt` if present; its config must match.
            Local `out_dir` only (a gs:// run keeps no checkpoint across restarts).

    Returns:
        The run's history, best epoch and validation metrics.

    Raises:
        ValueError: On bad data, a checkpoint of a different config, or `resume` with a gs://
            `out_dir`.
    """
    if storage.is_gcs(out_dir):
        return _train_to_gcs(data_path, str(out_dir), config, resume)
    with distributed(resolve_device(config.device, 0).type) as ddp:
        device = resolve_device(config.device, ddp.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if config.threads:
            torch.set_num_threads(config.threads)
        return _train(data_path, Path(out_dir), config, resume, ddp, device)


def _train_to_gcs(
    data_path: str | Path, uri: str, config: TrainConfig, resume: bool
) -> TrainResult:
    """Train into a local staging folder; rank 0 (the one with a version) uploads the artifact."""
    if resume:
        raise ValueError(f"resume needs a local out_dir (the checkpoint lives there), got {uri}")
    with tempfile.TemporaryDirectory(prefix="hm3-train-") as staging:
        result = train(data_path, staging, config)
        if result.version is not None:
            storage.upload_dir(staging, uri)
            log.info("artifact %s uploaded to %s", result.version, uri)
    return replace(result, out_dir=uri)


def _train(
    data_path: str | Path,
    out: Path,
    cfg: TrainConfig,
    resume: bool,
    ddp: Dist,
    device: torch.device,
) -> TrainResult:
    data = _load_data(data_path, cfg, device, ddp.world)
    torch.manual_seed(cfg.seed)
    net = _build_net(cfg, data.spec, ddp, device)
    optimizers = make_optimizers(cfg, net, data.spec)
    stopper = EarlyStopping(cfg.patience, net)
    ckpt_path = checkpoint_path(out)
    epoch, history = 0, []
    if resume:
        epoch, history = load_checkpoint(ckpt_path, cfg.to_dict(), net, optimizers, stopper, device)
    use_bf16 = cfg.bf16 and device.type == "cuda"
    learner = _Learner(
        net=net,
        model=ddp.wrap(net, device),
        optimizers=optimizers,
        l2=_EmbeddingL2(cfg.embedding_l2, net, data.train) if cfg.embedding_l2 > 0 else None,
        autocast=partial(torch.autocast, "cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext,
        device=device,
    )
    run_log = _RunLog(out, ddp.main)
    bar = _Bar(cfg.progress and ddp.main)

    while epoch < cfg.epochs and not stopper.should_stop:
        epoch += 1
        record = {"epoch": epoch, **_train_epoch(learner, data.train, epoch, cfg, ddp, bar)}
        logits = predict_logits(net, data.validation, cfg.eval_batch_size, learner.autocast)
        record |= validation_metrics(logits, data.validation)
        history.append(record)
        stopper.update(epoch, record[f"auc_{EARLY_STOP_TASK}"], net)
        log.info("epoch %d: %s", epoch, json.dumps({k: round(v, 5) for k, v in record.items()}))
        if ddp.main:
            run_log.write(record, history)
            save_checkpoint(ckpt_path, cfg.to_dict(), net, optimizers, stopper, epoch, history)
        ddp.barrier()
    run_log.close()

    stopper.restore(net)
    best = next((r for r in history if r["epoch"] == stopper.best_epoch), {})
    validation = {k: v for k, v in best.items() if k.startswith("auc_")}
    # Every rank reports the same sum when DDP kept the replicas in sync.
    weights_sum = float(sum(p.detach().double().sum() for p in net.parameters()))
    # One line per rank: in a multi-node job's logs every node shows it joined the same run.
    log.info(
        "rank %d of %d done: best epoch %d, weights sum %r",
        ddp.rank,
        ddp.world,
        stopper.best_epoch,
        weights_sum,
    )
    version = None
    if ddp.main:
        version = _save(net, data, cfg, out, stopper.best_epoch, validation)
    ddp.barrier()
    return TrainResult(str(out), version, stopper.best_epoch, history, validation, weights_sum)


def _load_data(data_path: str | Path, cfg: TrainConfig, device: torch.device, world: int) -> _Data:
    """Read the table, split it by time, fit the feature spec on train, encode train and val."""
    with storage.local_file(data_path) as local:
        table = pq.read_table(local)
    kinds = feature_kinds(table.schema)
    parts = split_by_time(table, cfg.split)
    train_split_rows = parts["train"].num_rows
    train_table = train_subset(parts["train"], cfg.train_fraction)
    train_cols = [c for c in kinds if c in table.column_names]
    spec = FeatureSpec.fit(train_table.select(train_cols).to_pandas(), kinds, cfg.hash_buckets)
    train_data = TensorData.from_table(train_table, spec).to(device)
    val_data = TensorData.from_table(parts["validation"], spec).to(device)
    log.info(
        "rows: train %d (train_fraction %g of %d), validation %d, test %d; "
        "inputs %d categorical + %d dense; device %s, world %d",
        len(train_data),
        cfg.train_fraction,
        train_split_rows,
        len(val_data),
        parts["test"].num_rows,
        len(spec.categorical),
        len(spec.dense),
        device,
        world,
    )
    rows = {k: v.num_rows for k, v in parts.items()} | {"train": train_table.num_rows}
    return _Data(spec, train_data, val_data, rows)


def train_subset(train: pa.Table, fraction: float) -> pa.Table:
    """A uniform random `fraction` of the train split's rows, in their original (time) order.

    The rows are the first round(fraction * n) (at least 1) of one fixed permutation of the n
    rows, drawn from a generator seeded with 0 and nothing else: the same rows for every
    training seed and model kind, and nested over fractions (f's rows are among 2f's).
    """
    if fraction >= 1.0:
        return train
    n = train.num_rows
    keep = max(1, round(fraction * n))
    order = np.random.default_rng(TRAIN_SUBSET_SEED).permutation(n)
    return train.take(np.sort(order[:keep]))


def _build_net(cfg: TrainConfig, spec: FeatureSpec, ddp: Dist, device: torch.device) -> GraphNet:
    """The configured model on `device`, initialized from torch's global RNG."""
    # NCCL has no sparse all-reduce: multi-GPU DDP trains the table with dense gradients.
    sparse = cfg.sparse_embeddings and not (ddp.world > 1 and device.type == "cuda")
    net = build_model(
        cfg.model_kind,
        spec,
        cfg.embedding_dim,
        cfg.hidden,
        cfg.dropout,
        cfg.loss_weights,
        sparse_embeddings=sparse,
        interaction=cfg.interaction,
    ).to(device)
    if cfg.compile_towers:
        compile_towers(net, device)
    return net


def compile_towers(net: GraphNet, device: torch.device) -> bool:
    """Compile `net`'s towers in place with `torch.compile`; False (and a warning) if it can't.

    Only the towers: TorchInductor cannot trace the embedding table's sparse gradients. In
    place (`Module.compile`), so the state dict and the saved artifact keep their names.
    """
    if device.type == "cpu":
        compiler = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(compiler) is None:
            log.warning(
                "compile_towers: no C++ compiler %r for TorchInductor on CPU; "
                "training the towers eagerly",
                compiler,
            )
            return False
    net.heads.compile()
    log.info("compile_towers: towers compiled with torch.compile on %s", device)
    return True


def _train_epoch(
    learner: _Learner, data: TensorData, epoch: int, cfg: TrainConfig, ddp: Dist, bar: _Bar
) -> dict[str, float]:
    """One pass over this rank's share of the training split.

    Returns:
        `train_loss` (mean over all ranks' rows), `samples_per_s` and `seconds`.
    """
    n = len(data)
    per_rank = max(cfg.batch_size // ddp.world, 1)
    global_batch = per_rank * ddp.world
    steps = n // global_batch + (1 if n % global_batch >= ddp.world else 0)
    # Shuffle and dropout depend only on (seed, epoch): resuming replays the same epoch.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
    order = order.to(learner.device)
    torch.manual_seed(cfg.seed * 100_003 + epoch)
    learner.model.train()
    loss_sum = torch.zeros((), device=learner.device, dtype=torch.float64)
    rows_seen = 0
    shown = 0
    started = time.perf_counter()
    bar.start(epoch, n)
    for step in range(steps):
        chunk = order[step * global_batch : (step + 1) * global_batch]
        index = torch.tensor_split(chunk, ddp.world)[ddp.rank]
        cat, dense, *label_values = data.batch(index)
        labels = dict(zip(schema.LABEL_COLUMNS, label_values, strict=True))
        loss = learner.step(cat, dense, labels)
        loss_sum += loss.detach().double() * len(index)
        rows_seen += len(index)
        if bar.enabled and (step % 20 == 0 or step == steps - 1):
            done = min((step + 1) * global_batch, n)
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(done - shown, rate, float(loss))
            shown = done
    bar.stop()
    seconds = time.perf_counter() - started
    totals = torch.stack(
        [loss_sum, torch.tensor(float(rows_seen), device=learner.device, dtype=torch.float64)]
    )
    ddp.all_reduce(totals)
    return {
        "train_loss": float(totals[0] / totals[1]),
        "samples_per_s": float(totals[1]) / seconds,
        "seconds": seconds,
    }


def _save(
    net: GraphNet,
    data: _Data,
    cfg: TrainConfig,
    out: Path,
    best_epoch: int,
    validation: dict[str, float],
) -> str:
    """Drop the checkpoints and write the sealed artifact of the (best) model; its version."""
    # Checkpoints are training state, not part of the sealed artifact.
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    architecture = {
        "kind": cfg.model_kind,
        "embedding_dim": cfg.embedding_dim,
        "interaction": cfg.interaction,
        "hidden": list(cfg.hidden),
        "dropout": cfg.dropout,
    }
    return save_artifact(
        net,
        data.spec,
        architecture,
        cfg.to_dict(),
        out,
        extra={"best_epoch": best_epoch, "validation": validation, "rows": data.rows},
    )
