"""EarlyStopping on a scripted sequence of validation scores, with a tiny module's weights."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.train.early_stopping import EarlyStopping


def _run(scores: list[float], patience: int) -> tuple[EarlyStopping, nn.Linear, int]:
    """Feed `scores` epoch by epoch; at epoch e the module's weight is filled with e."""
    net = nn.Linear(2, 1)
    stopper = EarlyStopping(patience, net)
    epoch = 0
    while epoch < len(scores) and not stopper.should_stop:
        epoch += 1
        with torch.no_grad():
            net.weight.fill_(epoch)
            net.bias.fill_(-epoch)
        stopper.update(epoch, scores[epoch - 1], net)
    return stopper, net, epoch


def test_stops_after_patience_epochs_without_improvement_and_restores_the_best():
    stopper, net, last = _run([0.60, 0.70, 0.65, 0.69, 0.71], patience=2)
    assert last == 4  # epochs 3 and 4 did not beat epoch 2's 0.70
    assert (stopper.best_epoch, stopper.best_score, stopper.bad_epochs) == (2, 0.70, 2)
    assert net.weight[0, 0].item() == 4  # the live module holds the last epoch until restored
    stopper.restore(net)
    assert torch.equal(net.weight, torch.full((1, 2), 2.0))
    assert torch.equal(net.bias, torch.full((1,), -2.0))


def test_an_improvement_resets_the_patience():
    stopper, _, last = _run([0.5, 0.4, 0.6, 0.5, 0.55, 0.7], patience=2)
    assert last == 5
    assert (stopper.best_epoch, stopper.bad_epochs) == (3, 2)


def test_nan_keeps_the_latest_epoch_until_a_real_score_and_never_beats_one():
    net = nn.Linear(2, 1)
    stopper = EarlyStopping(1, net)
    for epoch, value in ((1, 9.0), (2, 8.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        assert stopper.update(epoch, math.nan, net) is True
    assert stopper.best_epoch == 2 and not stopper.should_stop
    with torch.no_grad():
        net.weight.fill_(7.0)
    assert stopper.update(3, 0.6, net) is True
    with torch.no_grad():
        net.weight.fill_(6.0)
    assert stopper.update(4, math.nan, net) is False
    assert stopper.should_stop and stopper.best_epoch == 3
    stopper.restore(net)
    assert torch.equal(net.weight, torch.full((1, 2), 7.0))


def test_counters_and_best_state_round_trip_into_a_fresh_stopper():
    stopper, net, _ = _run([0.60, 0.70, 0.65], patience=5)
    other = EarlyStopping(5, nn.Linear(2, 1))
    other.load(stopper.counters(), stopper.best_state)
    assert (other.best_epoch, other.best_score, other.bad_epochs) == (2, 0.70, 1)
    other.restore(net)
    assert torch.equal(net.weight, torch.full((1, 2), 2.0))
