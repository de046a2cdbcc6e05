"""One pod, several GPUs: the training step runs the trainer under `torchrun --standalone`.

A step compiled with `--use-gpu --gpus G` (one node) gets G GPUs in its pod; one Python process
would use one of them. So when the configured device is CUDA and the pod sees more than one
GPU, the step starts `torchrun --standalone --nproc-per-node G -m pipelines.cli train ...`
(DDP over NCCL, rank 0 writes the artifact into the step's output folder, resuming from its
checkpoint like the one-process path) and reads what it wrote. Otherwise it trains in-process.

Plain typed Python, no kfp; torch is imported inside functions.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from components.trainjob import TrainOutcome, train_args

if TYPE_CHECKING:
    from model.train.trainer import TrainConfig

log = logging.getLogger(__name__)


def pod_processes(device: str) -> int:
    """Processes to train with in this pod: one per visible GPU for `auto`/`cuda`, else 1."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return max(torch.cuda.device_count(), 1)
    return 1


def standalone_command(table: str, out: str, config: TrainConfig, processes: int) -> list[str]:
    """`torchrun --standalone` with `processes` local ranks running `hm3 train --resume`."""
    if processes < 2:
        raise ValueError(f"torchrun needs processes >= 2, got {processes}")
    config_json = json.dumps(config.to_dict(), sort_keys=True)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        *train_args(table, out, config.model_kind, config_json),
        "--resume",
    ]


def train_in_pod(
    table: str | Path, out: str | Path, config: TrainConfig, processes: int | None = None
) -> TrainOutcome:
    """Train in this pod: in-process, or under torchrun over its GPUs; what the artifact holds.

    Args:
        table: The training table (local path or gs://).
        out: The local artifact folder (the step's `model.path`); resumes from its checkpoint.
        config: The training configuration.
        processes: Local ranks (None: `pod_processes(config.device)`).

    Raises:
        subprocess.CalledProcessError: torchrun failed (its ranks' output is in the step's log).
    """
    from model.train.trainer import train

    processes = processes or pod_processes(config.device)
    if processes == 1:
        return TrainOutcome.of(train(table, out, config, resume=True))
    command = standalone_command(str(table), str(out), config, processes)
    log.info("training on %d local processes: %s", processes, " ".join(command[:6]))
    subprocess.run(command, check=True)
    return TrainOutcome.read(out)
