"""Process-group setup and teardown for training: one process, torchrun, or a caller's group.

Launched by `torchrun` (RANK / WORLD_SIZE in the environment) the trainer starts its own process
group and destroys it when done; inside an already initialized group it joins that one and leaves
it alone. With one process every collective here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Dist:
    """This process's place in the training run.

    Attributes:
        rank: Global rank (0 writes checkpoints and the artifact).
        world: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        owns_group: Whether the trainer started the process group and must destroy it.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """`net` itself with one process, else DDP around it (gradients averaged over ranks)."""
        if self.world == 1:
            return net
        return nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over all ranks, in place."""
        if self.world > 1:
            dist.all_reduce(tensor)

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.world > 1:
            dist.barrier()


def _setup(device_kind: str) -> Dist:
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", 0)), owns_group=True)


@contextmanager
def distributed(device_kind: str) -> Iterator[Dist]:
    """Join or start the process group (nccl for `cuda`, else gloo); destroy it if started here."""
    ddp = _setup(device_kind)
    try:
        yield ddp
    finally:
        if ddp.owns_group:
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int) -> torch.device:
    """The torch device of a configured name; `auto` is cuda if present, `cuda` is this rank's."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)
