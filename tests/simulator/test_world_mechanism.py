"""The world's formulas, rebuilt population, calibration and controls, and the ceilings on them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from model.world import ceiling, world_files
from model.world.mechanism import (
    INTENT,
    SCENE_EFFECT,
    TARGET_RATES,
    ImpressionDraws,
    Intercepts,
    WorldConfig,
    draw_impressions,
    graph_probabilities,
    impression_probabilities,
    population,
)
from model.world.simulator import simulate

CFG = WorldConfig(impressions=4_000, seed=3, users=300, items=120, days=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ceiling_world")
    simulate(CFG, out)
    return out


@pytest.fixture(scope="module")
def truth(world: Path) -> pd.DataFrame:
    return pq.read_table(world / "truth.parquet").to_pandas()


@pytest.fixture(scope="module")
def rows(world: Path, truth: pd.DataFrame) -> ImpressionDraws:
    return world_files.impression_rows(world, truth.impression_id, CFG)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _explicit_cvr(c: Intercepts, intent, price_ratio, richness, saveability, s_mi, s_ma):
    """p(buy | click) summed over the four (micro, macro) branches, written out independently."""
    total = 0.0
    for m in (0, 1):
        p_m = _sigmoid(c.micro + s_mi * intent + richness)
        p_m = p_m if m else 1 - p_m
        for big_m in (0, 1):
            p_big = _sigmoid(c.macro + s_ma * intent + saveability + 1.0 * s_mi * m)
            p_big = p_big if big_m else 1 - p_big
            p_buy = _sigmoid(
                c.buy + intent - 0.6 * price_ratio + 1.5 * s_ma * big_m + 0.5 * s_mi * m
            )
            total = total + p_m * p_big * p_buy
    return total


@pytest.mark.parametrize("signals", [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (2.5, 0.5)])
def test_graph_probabilities_equal_the_explicit_four_branch_sum(signals) -> None:
    rng = np.random.default_rng(0)
    args = [rng.normal(0, 1, 500) for _ in range(4)]
    c = Intercepts(click=-3.0, micro=-1.2, macro=-2.5, buy=-4.0)
    graph = graph_probabilities(c, *args, *signals)
    np.testing.assert_allclose(graph.p_buy_given_click, _explicit_cvr(c, *args, *signals), 1e-12)
    m0, m1 = 1 - graph.p_micro, graph.p_micro
    np.testing.assert_allclose(
        graph.p_macro_given_click, m0 * graph.p_macro[0] + m1 * graph.p_macro[1], rtol=1e-12
    )


def test_micro_signal_zero_makes_micro_carry_no_purchase_information() -> None:
    """Neither through intent (no loading) nor causally (no lift on macro or purchase)."""
    c = Intercepts(click=-3.0, micro=-1.2, macro=-2.5, buy=-4.0)
    intent = np.linspace(-3, 3, 50)
    graph = graph_probabilities(c, intent, 0.1, 0.2, -0.1, 0.0, 1.0)
    assert np.ptp(graph.p_micro) == 0.0  # the same for every intent
    np.testing.assert_array_equal(graph.p_macro[0], graph.p_macro[1])
    for big_m in (0, 1):
        np.testing.assert_array_equal(graph.p_buy[0][big_m], graph.p_buy[1][big_m])
    both_zero = graph_probabilities(c, intent, 0.1, 0.2, -0.1, 0.0, 0.0)
    assert np.ptp(both_zero.p_macro[0]) == 0.0
    np.testing.assert_array_equal(both_zero.p_buy[0][0], both_zero.p_buy[1][1])


@pytest.mark.parametrize("signals", [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0), (2.0, 2.0)])
def test_calibrated_rates_sit_at_the_band_middles(signals) -> None:
    """Within 6%: the calibration sample and this one each carry a few % of sampling noise."""
    cfg = replace(CFG, users=3_000, items=800, micro_signal=signals[0], macro_signal=signals[1])
    pop = population(cfg)
    # A fresh sample, not the calibration one.
    draws = draw_impressions(cfg, pop, np.random.default_rng(99), 200_000)
    p_click, graph = impression_probabilities(cfg, pop, draws)
    w = p_click / p_click.sum()
    assert p_click.mean() == pytest.approx(TARGET_RATES["ctr"], rel=0.06)
    assert w @ graph.p_micro == pytest.approx(TARGET_RATES["micro"], rel=0.06)
    assert w @ graph.p_macro_given_click == pytest.approx(TARGET_RATES["macro"], rel=0.06)
    assert w @ graph.p_buy_given_click == pytest.approx(TARGET_RATES["buy"], rel=0.06)


def test_rebuilt_population_reproduces_the_truth_exactly(
    world: Path, truth: pd.DataFrame, rows: ImpressionDraws
) -> None:
    cfg, pop = world_files.load_world(world)
    assert cfg == CFG
    u, i = rows.user, rows.item
    c = pop.item_category[i]
    intent = (
        pop.item_own_intent[i]
        + pop.brand_intent[pop.item_brand[i]]
        + pop.category_intent[c]
        + pop.age_category[pop.user_static["age_bucket"][u], c]
        + pop.gender_category[pop.user_static["gender"][u], c]
        + pop.user_intent[u]
    )
    np.testing.assert_allclose(intent, pop.intent(u, i), rtol=1e-12)
    price_ratio = np.log(pop.item_price[i, rows.day] / pop.user_spend[u])
    expected = _explicit_cvr(
        pop.intercepts, intent, price_ratio, pop.item_richness[i], pop.item_saveability[i], 1, 1
    )
    np.testing.assert_allclose(truth.p_buy_given_click, expected, rtol=1e-9)
    p_click = _sigmoid(
        pop.intercepts.click + 0.5 * intent + pop.item_attractiveness[i] + pop.user_bias[u]
        + pop.user_drift[u, rows.day] - 0.03 * (rows.position - 1) + SCENE_EFFECT[rows.scene]
    )  # fmt: skip
    np.testing.assert_allclose(truth.p_click, p_click, rtol=1e-9)
    # Bit for bit through the module's own path: same population, same formulas.
    np.testing.assert_array_equal(ceiling.true_cvr(cfg, pop, rows), truth.p_buy_given_click)


def test_buy_if_clicked_is_drawn_from_the_click_conditional_probability(
    truth: pd.DataFrame,
) -> None:
    for rows in (truth, truth[truth.click == 0]):
        p = rows.p_buy_given_click.to_numpy()
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(rows.buy_if_clicked.sum() - p.sum()) < 4 * sd
    assert set(truth.buy_if_clicked.unique()) <= {0, 1}


def test_knowing_everything_is_the_oracle(truth: pd.DataFrame, rows: ImpressionDraws) -> None:
    probs = ceiling.marginal_cvr(CFG, population(CFG), rows, ceiling.Knowledge("all known", ()))
    np.testing.assert_allclose(probs, truth.p_buy_given_click, rtol=1e-12)


@pytest.mark.parametrize("knowledge", ceiling.CEILINGS, ids=lambda k: k.name)
def test_ceilings_are_probabilities_that_differ_from_the_truth(
    truth: pd.DataFrame, rows: ImpressionDraws, knowledge: ceiling.Knowledge
) -> None:
    probs = ceiling.marginal_cvr(CFG, population(CFG), rows, knowledge)
    oracle = truth.p_buy_given_click.to_numpy()
    assert probs.shape == oracle.shape and np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()
    # Hiding latents shrinks the spread towards the mean but keeps what is still known.
    assert np.median(np.abs(np.log(probs / oracle))) > 0.1
    assert np.std(np.log(probs)) < np.std(np.log(oracle))
    assert np.corrcoef(np.log(probs), np.log(oracle))[0, 1] > 0.3


@pytest.mark.parametrize("knowledge", ceiling.CEILINGS, ids=lambda k: k.name)
def test_quadrature_matches_plain_draws_of_the_hidden_parts(
    rows: ImpressionDraws, knowledge: ceiling.Knowledge
) -> None:
    """Each hidden part drawn from its own prior, summed, weighted by p_click per draw."""
    pop = population(CFG)
    some = np.arange(0, len(rows.user), len(rows.user) // 40)
    subset = ImpressionDraws(**{k: getattr(rows, k)[some] for k in rows.__dataclass_fields__})
    probs = ceiling.marginal_cvr(CFG, pop, subset, knowledge)
    rng = np.random.default_rng(123)
    draws = 100_000
    hidden = sum(rng.normal(0, getattr(INTENT, p), (len(some), draws)) for p in knowledge.hidden)
    known = pop.intent(subset.user, subset.item) - ceiling.hidden_intent(pop, subset, knowledge)
    u, i, d = subset.user, subset.item, subset.day
    intent = known[:, None] + hidden
    price_ratio = np.log(pop.item_price[i, d] / pop.user_spend[u])[:, None]
    p = _explicit_cvr(
        pop.intercepts, intent, price_ratio, pop.item_richness[i][:, None],
        pop.item_saveability[i][:, None], 1, 1,
    )  # fmt: skip
    weight = _sigmoid(
        pop.intercepts.click + 0.5 * intent + (pop.item_attractiveness[i] + pop.user_bias[u]
        + pop.user_drift[u, d] - 0.03 * (subset.position - 1) + SCENE_EFFECT[subset.scene])[:, None]
    )  # fmt: skip
    brute = (weight * p).sum(axis=1) / weight.sum(axis=1)
    np.testing.assert_allclose(probs, brute, rtol=0.02)
    # Without the click weighting the answer differs by more than the tolerance.
    unweighted = ceiling.marginal_cvr(CFG, pop, subset, knowledge, condition_on_click=False)
    assert np.max(np.abs(unweighted / brute - 1)) > 0.02


def test_knowledge_names_only_known_parts() -> None:
    with pytest.raises(ValueError, match="unknown intent parts"):
        ceiling.Knowledge("bad", ("user", "mood"))
