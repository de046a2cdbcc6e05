"""Early stopping on a validation score, keeping the best epoch's weights to restore."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class EarlyStopping:
    """Track the best validation score; stop after `patience` epochs without a better one.

    A NaN score (a validation split too small to judge, e.g. without a purchase) never beats a
    real score; until a real score arrives, each NaN epoch replaces the last as the best, so a
    split that cannot judge yields the most-trained weights, never the untrained ones.

    Attributes:
        patience: Epochs without a better score after which to stop.
        best_score: The best score so far (-inf before any).
        best_epoch: The epoch that scored it (0 before any).
        bad_epochs: Epochs since the last improvement.
        best_state: A copy of the module's state_dict at the best epoch.
    """

    def __init__(self, patience: int, module: nn.Module) -> None:
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state = _snapshot(module)

    @property
    def should_stop(self) -> bool:
        """Whether `patience` epochs in a row have not improved."""
        return self.bad_epochs >= self.patience

    def update(self, epoch: int, score: float, module: nn.Module) -> bool:
        """Record an epoch's score; on a new best, snapshot `module`. Returns whether it was."""
        unjudged = math.isnan(score) and self.best_score == -math.inf
        if unjudged or score > self.best_score:
            self.best_score = -math.inf if unjudged else score
            self.best_epoch, self.bad_epochs = epoch, 0
            self.best_state = _snapshot(module)
            return True
        self.bad_epochs += 1
        return False

    def restore(self, module: nn.Module) -> None:
        """Load the best epoch's state into `module`."""
        module.load_state_dict(self.best_state)

    def counters(self) -> dict[str, Any]:
        """The JSON-ready scalars (the checkpoint's names), without the best state."""
        return {
            "best_metric": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
        }

    def load(self, counters: dict[str, Any], best_state: dict[str, torch.Tensor]) -> None:
        """Continue from `counters()` and the best state of a checkpoint."""
        self.best_score = counters["best_metric"]
        self.best_epoch = counters["best_epoch"]
        self.bad_epochs = counters["bad_epochs"]
        self.best_state = best_state
