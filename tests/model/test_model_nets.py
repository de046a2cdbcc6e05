"""Model invariants on seeded tiny tensors: the graph rule, finite composition, stable losses."""

from __future__ import annotations

import pytest
import torch
from model_helpers import random_inputs

from model.data.encoding import FeatureInfo, FeatureSpec
from model.nn import graph
from model.nn.heads import FusedTowers
from model.nn.losses import LossSpec, multitask_loss
from model.nn.nets import MODEL_KINDS, build_model
from model.tasks import OUTPUTS, TASKS, Task, tasks_of

SPEC = FeatureSpec(
    (
        FeatureInfo("user_id", "id", size=50),
        FeatureInfo("scene", "categorical", size=5, vocabulary=("a", "b", "c", "d")),
        FeatureInfo("price", "dense", mean=40.0, std=20.0),
    )
)
EXPECTED_TASKS = {
    "hm3": {"ctr", "cvr", "ctcvr", "ct_micro", "ct_macro"},
    "esm2": {"ctr", "cvr", "ctcvr", "ct_macro"},
    "esmm": {"ctr", "cvr", "ctcvr"},
    "naive": {"cvr"},
}


def test_hm3_composition_follows_the_conditional_probability_rule():
    torch.manual_seed(0)
    logits = torch.randn(64, 6) * 3
    y = torch.sigmoid(logits.double())
    out = {k: torch.sigmoid(v.double()) for k, v in graph.compose_hm3(logits.double()).items()}
    q = y[:, 1] * y[:, 2] + (1 - y[:, 1]) * y[:, 3]
    cvr = q * y[:, 4] + (1 - q) * y[:, 5]
    torch.testing.assert_close(out["ctr"], y[:, 0])
    torch.testing.assert_close(out["ct_micro"], y[:, 0] * y[:, 1])
    torch.testing.assert_close(out["ct_macro"], y[:, 0] * q)
    torch.testing.assert_close(out["cvr"], cvr)
    torch.testing.assert_close(out["ctcvr"], out["ctr"] * out["cvr"])


def test_esm2_and_esmm_compositions():
    logits = torch.randn(32, 4, dtype=torch.float64) * 2
    y = torch.sigmoid(logits)
    out = {k: torch.sigmoid(v) for k, v in graph.compose_esm2(logits).items()}
    cvr = y[:, 1] * y[:, 2] + (1 - y[:, 1]) * y[:, 3]
    torch.testing.assert_close(out["cvr"], cvr)
    torch.testing.assert_close(out["ct_macro"], y[:, 0] * y[:, 1])
    torch.testing.assert_close(out["ctcvr"], y[:, 0] * cvr)
    esmm = {k: torch.sigmoid(v) for k, v in graph.compose_esmm(logits[:, :2]).items()}
    torch.testing.assert_close(esmm["ctcvr"], y[:, 0] * y[:, 1])


@pytest.mark.parametrize("scale", [1.0, 50.0, 1e4])
def test_composed_logits_stay_finite_at_any_scale(scale):
    logits = torch.randn(256, 6) * scale
    for name, logit in graph.compose_hm3(logits).items():
        assert torch.isfinite(logit).all(), name
    # Saturated heads: a product of two ~1 probabilities is ~1, of ~0 is ~0, never NaN.
    sat = graph.compose_hm3(torch.full((2, 6), 80.0) * torch.tensor([[1.0], [-1.0]]))
    assert torch.sigmoid(sat["ctcvr"][0]) > 0.99 and torch.sigmoid(sat["ctcvr"][1]) < 1e-10


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_every_kind_outputs_its_tasks_and_declares_losses_by_name(kind):
    torch.manual_seed(0)
    net = build_model(kind, SPEC, 4, (16, 8), 0.0)
    out = net(*random_inputs(10, SPEC))
    assert set(out) == set(net.tasks) == EXPECTED_TASKS[kind]
    assert all(v.shape == (10,) for v in out.values())
    assert {s.task for s in net.losses} <= set(out)


def test_evaluation_only_tasks_are_no_model_outputs():
    # cvr_entire scores the cvr output of every kind, but no net outputs it and nothing trains it.
    entire = TASKS["cvr_entire"]
    assert entire.truth_only and entire.model_output == "cvr" and "cvr_entire" not in OUTPUTS
    assert set(entire.kinds) == set(MODEL_KINDS)
    assert all("cvr_entire" not in tasks_of(kind) for kind in MODEL_KINDS)
    with pytest.raises(ValueError, match="truth_only label 'buy_if_clicked' is never trained"):
        Task("x", "buy_if_clicked", False, ("hm3",), "x", truth_only=True)


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_loss_is_finite_with_all_zero_labels_and_gradients_flow(kind):
    torch.manual_seed(0)
    net = build_model(kind, SPEC, 4, (16, 8), 0.1)
    cat, dense = random_inputs(32, SPEC)
    labels = {k: torch.zeros(32) for k in ("click", "d_micro", "d_macro", "buy")}
    loss, terms = multitask_loss(net(cat, dense), labels, net.losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert set(terms) == {s.task for s in net.losses}


def test_naive_loss_is_restricted_to_clicked_rows():
    logits = {"cvr": torch.tensor([5.0, -5.0, 0.0, 0.0])}
    labels = {
        "buy": torch.tensor([1.0, 0.0, 1.0, 0.0]),
        "click": torch.tensor([1.0, 1.0, 0.0, 0.0]),
    }
    loss, _ = multitask_loss(logits, labels, [LossSpec("cvr", "buy", where="click")])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits["cvr"][:2], labels["buy"][:2]
    )
    torch.testing.assert_close(loss, expected)
    # No clicked row at all: zero, not NaN.
    labels["click"] = torch.zeros(4)
    loss, _ = multitask_loss(logits, labels, [LossSpec("cvr", "buy", where="click")])
    assert loss.item() == 0.0


def test_loss_weights_scale_terms_and_unknown_tasks_are_rejected():
    net = build_model("hm3", SPEC, 4, (8,), 0.0, loss_weights={"ct_micro": 0.5})
    assert {s.task: s.weight for s in net.losses}["ct_micro"] == 0.5
    with pytest.raises(ValueError, match="cvr"):
        build_model("esmm", SPEC, 4, (8,), 0.0, loss_weights={"cvr": 1.0})
    with pytest.raises(ValueError, match="model kind"):
        build_model("mmoe", SPEC, 4, (8,), 0.0)


def test_fused_towers_equal_separate_mlps():
    torch.manual_seed(0)
    towers = FusedTowers(3, 5, (7, 4), dropout=0.0)
    x = torch.randn(9, 5)
    fused = towers(x)
    for k in range(3):
        h = x
        for i, (w, b) in enumerate(zip(towers.weights, towers.biases, strict=True)):
            h = h @ w[k] + b[k, 0]
            if i < len(towers.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(fused[:, k], h[:, 0])


def test_dense_features_are_normalized_with_tanh_and_missing_ids_use_slot_zero():
    net = build_model("esmm", SPEC, 4, (8,), 0.0)
    cat = torch.tensor([[0, 0]])
    shared = net.embedding(cat, torch.tensor([[60.0]]))
    assert shared.shape == (1, 2 * 4 + 1)
    torch.testing.assert_close(shared[0, -1], torch.tanh(torch.tensor(1.0)))
