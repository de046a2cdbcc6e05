"""Each kind's loss terms as the papers define them, and the total loss against a hand computation.

The expected terms are written out here from docs (hm3.md), not read from the code: HM^3 trains
pCTR on click, pCTMi on d_micro, pCTMa on d_macro and pCTCVR on buy, all over the entire
impression space; ESM^2 drops the micro term; ESMM keeps CTR and CTCVR; the naive baseline trains
CVR on buy over clicked impressions only. The totals are recomputed in float64 with `math`, so a
label, mask or weight that is declared but not used changes the number.
"""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import random_inputs

from model.data.encoding import FeatureInfo, FeatureSpec
from model.nn.losses import LossSpec, multitask_loss
from model.nn.nets import MODEL_KINDS, build_model

SPEC = FeatureSpec(
    (
        FeatureInfo("user_id", "id", size=50),
        FeatureInfo("scene", "categorical", size=5, vocabulary=("a", "b", "c", "d")),
        FeatureInfo("price", "dense", mean=40.0, std=20.0),
    )
)

# (task, label, mask) per kind, from the papers; mask None = all impressions.
PAPER_LOSSES: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "hm3": (
        ("ctr", "click", None),
        ("ct_micro", "d_micro", None),
        ("ct_macro", "d_macro", None),
        ("ctcvr", "buy", None),
    ),
    "esm2": (("ctr", "click", None), ("ct_macro", "d_macro", None), ("ctcvr", "buy", None)),
    "esmm": (("ctr", "click", None), ("ctcvr", "buy", None)),
    "naive": (("cvr", "buy", "click"),),
}
# Distinct, non-unit weights per task, so a weight stored but not applied (or applied to the
# wrong term) changes the total.
WEIGHTS = {"ctr": 0.3, "ct_micro": 2.5, "ct_macro": 0.7, "ctcvr": 4.0, "cvr": 1.7}

# Eight impressions: the label columns all differ from one another, buy and the micro/macro
# labels only where click = 1, and some clicked rows without a purchase.
LABELS = {
    "click": [1, 1, 1, 1, 1, 0, 0, 0],
    "d_micro": [1, 1, 0, 1, 0, 0, 0, 0],
    "d_macro": [1, 0, 1, 1, 0, 0, 0, 0],
    "buy": [1, 0, 0, 1, 0, 0, 0, 0],
}
# The loss runs in float32 (`multitask_loss` casts logits); every mutation moves it by far more.
REL = 1e-5


def bce(logit: float, label: float) -> float:
    """-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))], in float64 by hand."""
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(label * math.log(p) + (1.0 - label) * math.log(1.0 - p))


def hand_loss(
    logits: dict[str, list[float]],
    labels: dict[str, list[int]],
    terms: tuple[tuple[str, str, str | None], ...],
    weights: dict[str, float],
) -> tuple[float, dict[str, float]]:
    """The weighted sum of mean BCEs over each term's rows (all rows, or where mask = 1)."""
    total, per_task = 0.0, {}
    for task, label, mask in terms:
        rows = [j for j in range(len(labels[label])) if mask is None or labels[mask][j] == 1]
        per_task[task] = sum(bce(logits[task][j], labels[label][j]) for j in rows) / len(rows)
        total += weights[task] * per_task[task]
    return total, per_task


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_each_kind_declares_exactly_the_papers_loss_terms(kind):
    net = build_model(kind, SPEC, 4, (8,), 0.0)
    expected = tuple(LossSpec(t, label, 1.0, mask) for t, label, mask in PAPER_LOSSES[kind])
    assert net.losses == expected
    assert MODEL_KINDS[kind].default_losses == expected


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_loss_weights_reach_the_declared_terms(kind):
    weights = {t: WEIGHTS[t] for t, _, _ in PAPER_LOSSES[kind]}
    net = build_model(kind, SPEC, 4, (8,), 0.0, loss_weights=weights)
    expected = tuple(LossSpec(t, lab, weights[t], mask) for t, lab, mask in PAPER_LOSSES[kind])
    assert net.losses == expected


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
def test_total_loss_of_each_kind_equals_the_papers_weighted_bce_by_hand(kind):
    torch.manual_seed(0)
    weights = {t: WEIGHTS[t] for t, _, _ in PAPER_LOSSES[kind]}
    net = build_model(kind, SPEC, 4, (8,), 0.0, loss_weights=weights)
    cat, dense = random_inputs(8, SPEC, seed=3)
    with torch.no_grad():
        outputs = net(cat, dense)
    labels = {k: torch.tensor(v, dtype=torch.float32) for k, v in LABELS.items()}
    total, terms = multitask_loss(outputs, labels, net.losses)

    logits = {task: out.tolist() for task, out in outputs.items()}
    want_total, want_terms = hand_loss(logits, LABELS, PAPER_LOSSES[kind], weights)
    assert total.item() == pytest.approx(want_total, rel=REL)
    assert set(terms) == set(want_terms)
    for task, term in terms.items():
        assert term.item() == pytest.approx(want_terms[task], rel=REL), task


def test_multitask_loss_on_fixed_logits_matches_the_hand_computation():
    logits = {
        "ctr": [2.0, -1.0, 0.5, 3.0, -0.2, -2.0, 1.5, -4.0],
        "ctcvr": [0.3, -2.5, 1.0, 2.0, -1.0, 0.0, -3.0, 0.7],
        "cvr": [1.0, -0.5, 2.0, 0.1, -1.5, 4.0, -4.0, 3.0],
    }
    labels = {k: torch.tensor(v, dtype=torch.float32) for k, v in LABELS.items()}
    specs = [
        LossSpec("ctr", "click", 0.3),
        LossSpec("ctcvr", "buy", 4.0),
        LossSpec("cvr", "buy", 1.7, where="click"),
    ]
    total, terms = multitask_loss(
        {k: torch.tensor(v, dtype=torch.float32) for k, v in logits.items()}, labels, specs
    )
    # By hand: ctr over 8 rows, ctcvr over 8 rows, cvr over the 5 clicked rows only.
    ctr = sum(bce(z, y) for z, y in zip(logits["ctr"], LABELS["click"], strict=True)) / 8
    ctcvr = sum(bce(z, y) for z, y in zip(logits["ctcvr"], LABELS["buy"], strict=True)) / 8
    cvr = sum(bce(logits["cvr"][j], LABELS["buy"][j]) for j in range(5)) / 5
    assert total.item() == pytest.approx(0.3 * ctr + 4.0 * ctcvr + 1.7 * cvr, rel=REL)
    # The terms are reported unweighted.
    assert terms["ctr"].item() == pytest.approx(ctr, rel=REL)
    assert terms["ctcvr"].item() == pytest.approx(ctcvr, rel=REL)
    assert terms["cvr"].item() == pytest.approx(cvr, rel=REL)
