"""The rebuilt population and the factored graph formulas, and the information ceilings on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from model.world import ceiling, world_files
from model.world.mechanism import (
    BUY_INTERCEPT,
    USER_BUY_BIAS_SD,
    USER_CVR_FEATURE_LIFT,
    USER_CVR_FEATURE_NOISE,
    WorldConfig,
    click_probability,
    graph_probabilities,
    latent_pair,
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
def rows(world: Path, truth: pd.DataFrame) -> ceiling.ImpressionRows:
    return world_files.impression_rows(world, truth.impression_id, CFG)


@pytest.fixture(scope="module")
def user_cvr(world: Path, rows: ceiling.ImpressionRows) -> np.ndarray:
    """Each impression's user_cvr_30d snapshot of its day (users.parquet is user-major)."""
    users = pq.read_table(world / "users.parquet", columns=["user_cvr_30d"]).to_pandas()
    return users.user_cvr_30d.to_numpy().reshape(CFG.users, CFG.days)[rows.user, rows.day]


def test_rebuilt_population_reproduces_the_truth_exactly(
    world: Path, truth: pd.DataFrame, rows: ceiling.ImpressionRows
) -> None:
    pop = population(CFG)
    cfg, _ = world_files.load_world(world)
    assert cfg == CFG
    u, i = rows.user, rows.item
    a_int = np.einsum("nk,nk->n", pop.user_int[u], pop.item_int[i])
    a_buy = np.einsum("nk,nk->n", pop.user_buy[u], pop.item_buy[i])
    quality = pop.item_quality[i]
    price_ratio = np.log(pop.item_price[i, rows.day] / pop.user_spend[u])
    graph = graph_probabilities(
        a_int, a_buy, quality, price_ratio, pop.user_buy_bias[u], CFG.micro_signal, CFG.macro_signal
    )
    p_click = click_probability(
        a_int, pop.user_bias[u], pop.user_drift[u, rows.day], quality, rows.position,
        rows.scene_effect,
    )  # fmt: skip
    # Bit-for-bit: same population, same formulas, same float types as the simulation.
    np.testing.assert_array_equal(graph.p_buy_given_click, truth.p_buy_given_click)
    np.testing.assert_array_equal(graph.p_macro_given_click, truth.p_d_macro_given_click)
    np.testing.assert_array_equal(graph.p_micro, truth.p_d_micro_given_click)
    np.testing.assert_array_equal(p_click, truth.p_click)
    np.testing.assert_array_equal(ceiling.true_cvr(cfg, pop, rows), truth.p_buy_given_click)


def test_knowing_everything_is_the_oracle(
    truth: pd.DataFrame, rows: ceiling.ImpressionRows
) -> None:
    everything = ceiling.Knowledge("all known", False, "known", False)
    probs = ceiling.marginal_cvr(CFG, population(CFG), rows, everything)
    np.testing.assert_allclose(probs, truth.p_buy_given_click, rtol=1e-12)


@pytest.mark.parametrize("knowledge", ceiling.CEILINGS, ids=lambda k: k.name)
def test_ceilings_are_probabilities_that_differ_from_the_truth(
    truth: pd.DataFrame,
    rows: ceiling.ImpressionRows,
    user_cvr: np.ndarray,
    knowledge: ceiling.Knowledge,
) -> None:
    integration = ceiling.Integration(draws=512)
    probs = ceiling.marginal_cvr(CFG, population(CFG), rows, knowledge, integration, user_cvr)
    oracle = truth.p_buy_given_click.to_numpy()
    assert probs.shape == oracle.shape and np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()
    # Hiding latents shrinks the spread towards the mean but keeps what is still known.
    assert np.median(np.abs(np.log(probs / oracle))) > 0.1
    assert np.std(np.log(probs)) < np.std(np.log(oracle))
    assert np.corrcoef(np.log(probs), np.log(oracle))[0, 1] > 0.3


def _brute_force(
    rows: ceiling.ImpressionRows, feature: np.ndarray | None, hide_items: bool, draws: int
) -> np.ndarray:
    """Independent Monte Carlo per row, the latents drawn by `latent_pair` as the world does."""
    pop = population(CFG)
    rng = np.random.default_rng(123)
    u, i, n = rows.user, rows.item, len(rows)
    user_int, user_buy = latent_pair(rng, n * draws, 0.0, 0.0)
    user_int, user_buy = user_int.reshape(n, draws, -1), user_buy.reshape(n, draws, -1)
    item_int, item_buy = pop.item_int[i][:, None, :], pop.item_buy[i][:, None, :]
    if hide_items:
        category = np.repeat(pop.item_category[i], draws)
        item_int, item_buy = latent_pair(
            rng, n * draws, pop.category_int[category], pop.category_buy[category]
        )
        item_int, item_buy = item_int.reshape(n, draws, -1), item_buy.reshape(n, draws, -1)
    b = rng.normal(0.0, USER_BUY_BIAS_SD, (n, draws))
    a_int = np.einsum("ndk,ndk->nd", user_int, np.broadcast_to(item_int, user_int.shape))
    a_buy = np.einsum("ndk,ndk->nd", user_buy, np.broadcast_to(item_buy, user_buy.shape))
    quality = pop.item_quality[i][:, None]
    price_ratio = np.log(pop.item_price[i, rows.day] / pop.user_spend[u])[:, None]
    p = graph_probabilities(
        a_int, a_buy, quality, price_ratio, b, CFG.micro_signal, CFG.macro_signal
    ).p_buy_given_click
    weight = click_probability(
        a_int, pop.user_bias[u][:, None], pop.user_drift[u, rows.day][:, None], quality,
        rows.position[:, None], rows.scene_effect[:, None],
    )  # fmt: skip
    if feature is not None:
        expected = -np.logaddexp(0.0, -(BUY_INTERCEPT + USER_CVR_FEATURE_LIFT + b))
        z = (np.log(feature)[:, None] - expected) / USER_CVR_FEATURE_NOISE
        weight = weight * np.exp(-0.5 * z**2)
    return (weight * p).sum(axis=1) / weight.sum(axis=1)


@pytest.mark.parametrize(
    ("knowledge", "tolerance"),
    [
        (ceiling.CEILINGS[0], 0.015),
        (ceiling.CEILINGS[1], 0.015),
        (ceiling.CEILINGS[2], 0.04),
        (ceiling.CEILINGS[3], 0.04),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_integration_matches_brute_force_monte_carlo(
    rows: ceiling.ImpressionRows,
    user_cvr: np.ndarray,
    knowledge: ceiling.Knowledge,
    tolerance: float,
) -> None:
    """Quadrature (item known) and shared draws (item hidden) agree with plain latent draws.

    Without the click weighting the medians are ~0.09-0.12, so the tolerances detect it.
    """
    some = np.arange(0, len(rows), len(rows) // 40)
    subset, feature = rows.take(some), user_cvr[some]
    integration = ceiling.Integration(draws=16_384)
    probs = ceiling.marginal_cvr(CFG, population(CFG), subset, knowledge, integration, feature)
    uses_feature = knowledge.user_buy_bias == "feature"
    brute = _brute_force(
        subset, feature if uses_feature else None, knowledge.hide_item_vectors, 50_000
    )
    rel = np.abs(probs / brute - 1)
    assert np.median(rel) < tolerance, np.median(rel)
    assert np.max(rel) < 4 * tolerance, np.max(rel)


def test_feature_knowledge_needs_the_feature(rows: ceiling.ImpressionRows) -> None:
    with pytest.raises(ValueError, match="user_cvr_30d"):
        ceiling.marginal_cvr(CFG, population(CFG), rows, ceiling.CEILINGS[1])
    with pytest.raises(ValueError, match="requires hiding user vectors"):
        knowledge = ceiling.Knowledge("items only", False, "known", True)
        ceiling.marginal_cvr(CFG, population(CFG), rows, knowledge)
