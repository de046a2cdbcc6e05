"""Entire-space multi-task losses, looked up by task name.

A model declares its losses as `LossSpec`s (task -> label column, weight, optional mask column);
the trainer only sums what the model declared. Every loss is a binary cross-entropy on a task
*logit* (see `model.nn.graph`), so it is finite for any head output and for all-zero label batches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.data import schema


@dataclass(frozen=True)
class LossSpec:
    """One term of a model's loss.

    Attributes:
        task: Output name, e.g. `ctcvr`.
        label: Label column, one of `schema.LABEL_COLUMNS`.
        weight: Multiplier of this term.
        where: Optional label column restricting the term to rows where it is 1 (naive CVR is
            trained on clicked impressions only: `where="click"`). None means the entire space.
    """

    task: str
    label: str
    weight: float = 1.0
    where: str | None = None

    def __post_init__(self) -> None:
        if self.label not in schema.LABEL_COLUMNS:
            raise ValueError(
                f"loss {self.task}: label must be one of {schema.LABEL_COLUMNS}, got {self.label!r}"
            )
        if self.where is not None and self.where not in schema.LABEL_COLUMNS:
            raise ValueError(f"loss {self.task}: where must be a label column, got {self.where!r}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"loss {self.task}: weight must be finite and >= 0, got {self.weight}")


def multitask_loss(
    logits: Mapping[str, torch.Tensor],
    labels: Mapping[str, torch.Tensor],
    losses: Sequence[LossSpec],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of per-task BCE losses.

    Args:
        logits: Model outputs by task, each (B,).
        labels: Label columns by name, each (B,) float 0/1.
        losses: The model's declared loss terms.

    Returns:
        The total loss and each term (unweighted, detached) by task.

    Raises:
        KeyError: If a declared task or label is missing.
    """
    total = torch.zeros((), device=next(iter(logits.values())).device)
    terms: dict[str, torch.Tensor] = {}
    for spec in losses:
        logit = logits[spec.task].float()
        target = labels[spec.label]
        if spec.where is None:
            term = F.binary_cross_entropy_with_logits(logit, target)
        else:
            mask = labels[spec.where]
            per_row = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
            # A batch without any clicked row contributes 0, not NaN.
            term = (per_row * mask).sum() / mask.sum().clamp_min(1.0)
        total = total + spec.weight * term
        terms[spec.task] = term.detach()
    return total, terms
