"""The epoch checkpoint (`<out>/checkpoints/last.pt`) that `resume=True` continues from.

One file, rewritten atomically after every epoch by rank 0: the model and optimizer states, the
early-stopping counters and best weights, the epoch, the history, and the run's config, which a
resume must match.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.train.early_stopping import EarlyStopping

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT = "last.pt"


def checkpoint_path(out: Path) -> Path:
    """Where the checkpoint of a run writing into `out` lives."""
    return out / CHECKPOINT_DIR / CHECKPOINT


def _config_key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def save_checkpoint(
    path: Path,
    config: Mapping[str, Any],
    net: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    stopper: EarlyStopping,
    epoch: int,
    history: list[dict[str, Any]],
) -> None:
    """Write the state after `epoch`. Atomic: a kill while writing leaves the previous one."""
    state = {"epoch": epoch, **stopper.counters(), "history": history}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(
        {
            "model": net.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "best_model": stopper.best_state,
            "state": json.dumps(state),
            "config": _config_key(config),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(
    path: Path,
    config: Mapping[str, Any],
    net: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    stopper: EarlyStopping,
    device: torch.device,
) -> tuple[int, list[dict[str, Any]]]:
    """Load a checkpoint, if there is one, into the model, optimizers and early stopping.

    Returns:
        The last finished epoch and the history so far; `(0, [])` without a checkpoint.

    Raises:
        ValueError: If the checkpoint was written with a different config.
    """
    if not path.exists():
        log.info("no checkpoint at %s; starting from scratch", path)
        return 0, []
    ckpt = torch.load(path, map_location=device, weights_only=True)
    if ckpt["config"] != _config_key(config):
        raise ValueError(f"{path}: checkpoint was written with a different train config")
    net.load_state_dict(ckpt["model"])
    for optimizer, saved in zip(optimizers, ckpt["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    state = json.loads(ckpt["state"])
    stopper.load(state, ckpt["best_model"])
    log.info("resumed after epoch %d from %s", state["epoch"], path)
    return state["epoch"], state["history"]
