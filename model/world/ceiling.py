"""Information ceilings of CVR on a simulated world: the best score with some latents unknown.

The oracle (truth.parquet's p_buy_given_click) knows every latent trait of the world, including
each user's purchase-intent vector and propensity, which no model can learn when a user buys a
few hundredths of an item in the training window. To measure how much of the oracle's lead is
such information, rather than assert it, this module computes the exact click-conditional
probability of purchase under reduced knowledge:

    p(buy | click, known) = E[p_click * p_buy_given_click] / E[p_click]

with the expectation over the prior of the hidden latents as `model.world.mechanism.latent_pair` and
`USER_BUY_BIAS_SD` define it, and the same formulas (`click_probability`, `graph_probabilities`).
Weighting by p_click matters because the scored rows are clicked ones, and a click is evidence
about the hidden interest, which is correlated with purchase intent.

How the expectation is computed, and why: Monte Carlo noise in a score is lost ranking, so it
lowers AUC (64 independent draws per row cost 0.007 AUC on the 2M world). With the item's vectors
known, a hidden user's prior makes the affinities (a_int, a_buy) exactly bivariate normal (zero
mean, variances LATENT_SCALE^2 |item vector|^2, covariance from INTENT_CORRELATION) and
b_buy_user is normal, so Gauss-Hermite quadrature gives the expectation with no sampling noise.
When item vectors are hidden too, the affinities are no longer normal: user vectors, item own
parts (around each category's base) and b_buy_user are drawn by `latent_pair` and the prior, the
same draws for every row (common random numbers), so the remaining error varies smoothly across
rows (about +-0.001 AUC between seeds at 4096 draws). The unit tests check both against plain
per-row draws.

With `user_buy_bias="feature"`, b_buy_user is weighted by the likelihood of the row's
point-in-time user_cvr_30d feature, the world's noisy view of b_buy_user that every model sees.
Everything not hidden (item quality, the day's price, user spend, position, scene, the user's
click propensity and drift) is the world's truth, as the oracle has it.

Reading a world's files back and scoring the ceilings on an evaluated frame is
`model.world.world_files`; this module is the math only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.world.mechanism import (
    BUY_INTERCEPT,
    INTENT_CORRELATION,
    LATENT_SCALE,
    USER_BUY_BIAS_SD,
    USER_CVR_FEATURE_LIFT,
    USER_CVR_FEATURE_NOISE,
    Population,
    WorldConfig,
    click_probability,
    graph_probabilities,
    latent_pair,
)

USER_BIAS_MODES = ("known", "prior", "feature")


@dataclass(frozen=True)
class Knowledge:
    """What a ceiling does not know; everything else is the world's truth.

    Attributes:
        name: Row name in reports.
        hide_user_vectors: The user's interest and purchase-intent vectors follow the prior.
        user_buy_bias: b_buy_user is "known", follows the "prior", or follows the prior weighted
            by the likelihood of the row's user_cvr_30d "feature".
        hide_item_vectors: The item's vectors follow the prior given its category (category base
            + own part), so only category, price, quality and user spend remain known.
    """

    name: str
    hide_user_vectors: bool
    user_buy_bias: str
    hide_item_vectors: bool

    def __post_init__(self) -> None:
        if self.user_buy_bias not in USER_BIAS_MODES:
            raise ValueError(
                f"user_buy_bias must be one of {USER_BIAS_MODES}, got {self.user_buy_bias!r}"
            )


CEILINGS = (
    Knowledge("oracle without user intent", True, "prior", False),
    Knowledge("oracle without user intent, b_buy_user from feature", True, "feature", False),
    Knowledge("oracle without user or item intent", True, "prior", True),
    Knowledge("oracle without user or item intent, b_buy_user from feature", True, "feature", True),
)


@dataclass(frozen=True)
class Integration:
    """Accuracy settings of the expectation.

    Attributes:
        affinity_nodes: Gauss-Hermite nodes per dimension of (a_int, a_buy) for a hidden user
            (item vectors known).
        bias_nodes: Gauss-Hermite nodes for a hidden b_buy_user (item vectors known).
        draws: Monte Carlo draws shared by all rows when item vectors are hidden.
        seed: Seed of those draws.
        chunk_rows: Rows per vectorized block (memory is rows x nodes or rows x draws).
    """

    affinity_nodes: int = 8
    bias_nodes: int = 8
    draws: int = 4096
    seed: int = 0
    chunk_rows: int = 256

    def __post_init__(self) -> None:
        for name in ("affinity_nodes", "bias_nodes", "draws", "chunk_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ImpressionRows:
    """The world's inputs of some impressions, row-aligned with the evaluated frame."""

    user: np.ndarray
    item: np.ndarray
    day: np.ndarray
    position: np.ndarray
    scene_effect: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def take(self, index: np.ndarray) -> ImpressionRows:
        """The rows at `index`."""
        return ImpressionRows(
            user=self.user[index],
            item=self.item[index],
            day=self.day[index],
            position=self.position[index],
            scene_effect=self.scene_effect[index],
        )


def _price_ratio(pop: Population, rows: ImpressionRows) -> np.ndarray:
    return np.log(pop.item_price[rows.item, rows.day] / pop.user_spend[rows.user])


def true_cvr(cfg: WorldConfig, pop: Population, rows: ImpressionRows) -> np.ndarray:
    """p_buy_given_click from the real latents: reproduces truth.parquet (a consistency check)."""
    a_int = np.einsum("nk,nk->n", pop.user_int[rows.user], pop.item_int[rows.item])
    a_buy = np.einsum("nk,nk->n", pop.user_buy[rows.user], pop.item_buy[rows.item])
    return graph_probabilities(
        a_int,
        a_buy,
        pop.item_quality[rows.item],
        _price_ratio(pop, rows),
        pop.user_buy_bias[rows.user],
        cfg.micro_signal,
        cfg.macro_signal,
    ).p_buy_given_click


def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of E[f(t)], t ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / weights.sum()


def _feature_log_lik(log_obs: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Log-likelihood of user_cvr_30d given b_buy_user, up to a constant (log-normal noise)."""
    offset = BUY_INTERCEPT + USER_CVR_FEATURE_LIFT
    return -0.5 * ((log_obs + np.logaddexp(0.0, -(offset + b))) / USER_CVR_FEATURE_NOISE) ** 2


def _bias_nodes(
    knowledge: Knowledge, known: np.ndarray, log_obs: np.ndarray | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and log-weights of b_buy_user per row, each (rows, nodes).

    Args:
        knowledge: How b_buy_user is known.
        known: The rows' true b_buy_user.
        log_obs: log of the rows' user_cvr_30d (for "feature").
        n: Quadrature nodes.
    """
    rows = len(known)
    if knowledge.user_buy_bias == "known":
        return known[:, None].astype(np.float64), np.zeros((rows, 1))
    t, w = _hermite(n)
    if knowledge.user_buy_bias == "prior":
        b = USER_BUY_BIAS_SD * np.broadcast_to(t, (rows, n))
        return b, np.broadcast_to(np.log(w), b.shape)
    if log_obs is None:
        raise ValueError("user_buy_bias='feature' needs the user_cvr_30d of every row")
    # Importance quadrature: nodes on a Gaussian fitted to the posterior (the feature's mean
    # linearized at b = 0), weights prior x likelihood / proposal, so few nodes suffice.
    tau, sd0 = USER_CVR_FEATURE_NOISE, USER_BUY_BIAS_SD
    offset = BUY_INTERCEPT + USER_CVR_FEATURE_LIFT
    slope = 1.0 / (1.0 + np.exp(offset))  # d log sigma(offset + b) / db at b = 0
    precision = 1.0 / sd0**2 + slope**2 / tau**2
    mean = slope * (log_obs[:, None] + np.logaddexp(0.0, -offset)) / tau**2 / precision
    sd = 1.0 / np.sqrt(precision)
    b = mean + sd * t
    log_w = np.log(w) - 0.5 * (b / sd0) ** 2 + _feature_log_lik(log_obs[:, None], b) + 0.5 * t**2
    return b, log_w


def _expectation(
    cfg: WorldConfig,
    pop: Population,
    rows: ImpressionRows,
    a_int: np.ndarray,
    a_buy: np.ndarray,
    b: np.ndarray,
    log_w: np.ndarray,
    condition_on_click: bool,
) -> np.ndarray:
    """sum(w p_click p_buy_given_click) / sum(w p_click) per row, over axes 1 and 2.

    a_int, a_buy, b and log_w broadcast to (rows, A, B): the nodes or draws of one row. Both sums
    go through the simulator's own formulas.
    """

    def col(x: np.ndarray) -> np.ndarray:
        return x[:, None, None]

    quality = col(pop.item_quality[rows.item])
    p = graph_probabilities(
        a_int,
        a_buy,
        quality,
        col(_price_ratio(pop, rows)),
        b,
        cfg.micro_signal,
        cfg.macro_signal,
    ).p_buy_given_click
    if condition_on_click:
        p_click = click_probability(
            a_int,
            col(pop.user_bias[rows.user]),
            col(pop.user_drift[rows.user, rows.day]),
            quality,
            col(rows.position),
            col(rows.scene_effect),
        )
        log_w = log_w + np.log(p_click)
    log_w = np.broadcast_to(log_w, p.shape)
    weight = np.exp(log_w - log_w.max(axis=(1, 2), keepdims=True))
    return (weight * p).sum(axis=(1, 2)) / weight.sum(axis=(1, 2))


def marginal_cvr(
    cfg: WorldConfig,
    pop: Population,
    rows: ImpressionRows,
    knowledge: Knowledge,
    integration: Integration | None = None,
    user_cvr_feature: np.ndarray | None = None,
    condition_on_click: bool = True,
) -> np.ndarray:
    """p(buy | click, known inputs) per row, the hidden latents integrated over their prior.

    Item vectors known: Gauss-Hermite quadrature over the user's affinities and b_buy_user
    (exact to ~1e-5). Item vectors hidden (user vectors must be too): Monte Carlo with
    `integration.draws` draws of user vectors, item own parts (one per category, around its base)
    and b_buy_user, shared by all rows (common random numbers, so the Monte Carlo error varies
    smoothly across rows and disturbs their ranking little).

    Args:
        cfg: The world's config (signals).
        pop: Its population (`model.world.mechanism.population(cfg)`).
        rows: The evaluated impressions.
        knowledge: What is hidden.
        integration: Accuracy settings.
        user_cvr_feature: Each row's user_cvr_30d as the models see it; needed for
            user_buy_bias="feature".
        condition_on_click: Weight by p_click (the exact conditional on a clicked row); False
            gives the plain prior average of p_buy_given_click.

    Returns:
        Probabilities in [0, 1], one per row.

    Raises:
        ValueError: On item vectors hidden with user vectors known, or a missing feature.
    """
    integration = integration or Integration()
    n = len(rows)
    log_obs = None
    if knowledge.user_buy_bias == "feature":
        if user_cvr_feature is None or len(user_cvr_feature) != n:
            raise ValueError("user_buy_bias='feature' needs the user_cvr_30d of every row")
        log_obs = np.log(np.clip(np.asarray(user_cvr_feature, np.float64), 1e-5, 1.0))
    if knowledge.hide_item_vectors and not knowledge.hide_user_vectors:
        raise ValueError("hiding item vectors requires hiding user vectors too")
    if knowledge.hide_item_vectors:
        draw = _shared_draws(pop, integration)
    out = np.empty(n)
    for lo in range(0, n, integration.chunk_rows):
        index = np.arange(lo, min(lo + integration.chunk_rows, n))
        block = rows.take(index)
        block_obs = None if log_obs is None else log_obs[index]
        if knowledge.hide_item_vectors:
            category = pop.item_category[block.item]
            a_int = draw["a_int"][category][:, :, None]
            a_buy = draw["a_buy"][category][:, :, None]
            b = draw["b"][None, :, None]
            if knowledge.user_buy_bias == "known":
                b = pop.user_buy_bias[block.user][:, None, None].astype(np.float64)
            log_w = np.zeros((1, 1, 1))
            if block_obs is not None:
                log_w = _feature_log_lik(block_obs[:, None, None], b)
        else:
            a_int, a_buy, log_wa = _affinity_nodes(pop, block, knowledge, integration)
            b2, log_wb = _bias_nodes(
                knowledge, pop.user_buy_bias[block.user], block_obs, integration.bias_nodes
            )
            b = b2[:, None, :]
            log_w = log_wa[:, :, None] + log_wb[:, None, :]
            a_int, a_buy = a_int[:, :, None], a_buy[:, :, None]
        out[index] = _expectation(cfg, pop, block, a_int, a_buy, b, log_w, condition_on_click)
    return np.clip(out, 0.0, 1.0)


def _affinity_nodes(
    pop: Population, rows: ImpressionRows, knowledge: Knowledge, integration: Integration
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a_int, a_buy, log-weight) per row and node, each (rows, nodes), item vectors known.

    A hidden user's vectors follow the prior, so given the item's vectors x (interest) and y
    (intent) the affinities are bivariate normal with zero mean, variances s^2 |x|^2 and
    s^2 |y|^2 and covariance s^2 rho x.y (s = LATENT_SCALE, rho = INTENT_CORRELATION).
    """
    if not knowledge.hide_user_vectors:
        a_int = np.einsum("nk,nk->n", pop.user_int[rows.user], pop.item_int[rows.item])
        a_buy = np.einsum("nk,nk->n", pop.user_buy[rows.user], pop.item_buy[rows.item])
        return a_int[:, None], a_buy[:, None], np.zeros((len(rows), 1))
    x = pop.item_int[rows.item].astype(np.float64)
    y = pop.item_buy[rows.item].astype(np.float64)
    s2 = np.float64(LATENT_SCALE) ** 2
    sd_int = np.sqrt(s2 * np.einsum("nk,nk->n", x, x))
    cov = s2 * INTENT_CORRELATION * np.einsum("nk,nk->n", x, y)
    load = np.divide(cov, sd_int, out=np.zeros_like(cov), where=sd_int > 0)
    rest = np.sqrt(np.maximum(s2 * np.einsum("nk,nk->n", y, y) - load**2, 0.0))
    t, w = _hermite(integration.affinity_nodes)
    e1, e2 = (g.ravel() for g in np.meshgrid(t, t, indexing="ij"))
    a_int = sd_int[:, None] * e1
    a_buy = load[:, None] * e1 + rest[:, None] * e2
    return a_int, a_buy, np.broadcast_to(np.log(np.outer(w, w).ravel()), a_int.shape)


def _shared_draws(pop: Population, integration: Integration) -> dict[str, np.ndarray]:
    """Prior draws shared by all rows: affinities per category and draw, and b_buy_user.

    Users as `latent_pair` draws them (base 0); items as it draws them around each category's
    base, with the same own parts for every category (common random numbers).
    """
    rng = np.random.default_rng([integration.seed, 7])
    user_int, user_buy = latent_pair(rng, integration.draws, 0.0, 0.0)
    item_int, item_buy = latent_pair(
        rng, integration.draws, pop.category_int[:, None, :], pop.category_buy[:, None, :]
    )
    return {
        "a_int": np.einsum("dk,cdk->cd", user_int, item_int, dtype=np.float64),
        "a_buy": np.einsum("dk,cdk->cd", user_buy, item_buy, dtype=np.float64),
        "b": rng.normal(0.0, USER_BUY_BIAS_SD, integration.draws),
    }
