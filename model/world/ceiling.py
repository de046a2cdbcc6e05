"""Information ceilings of CVR on a simulated world: the best score with some latents unknown.

The oracle (truth.parquet's p_buy_given_click) knows every latent of the world, including each
user's own purchase propensity, which no model can learn from the few purchases a user makes in
the training window. To measure how much of the oracle's lead is such information, rather than
assert it, this module computes the exact click-conditional probability of purchase under
reduced knowledge:

    p(buy | click, known) = E[p_click * p_buy_given_click] / E[p_click]

with the expectation over the prior of the hidden parts of purchase intent
(`model.world.mechanism.INTENT`) and the world's own formulas (`click_probability`,
`graph_probabilities`). Weighting by p_click matters because the scored rows are clicked ones,
and a click is evidence about intent (clicks load on it).

Intent is a sum of independent normal parts, so the hidden parts add up to one normal variable
whose variance is the sum of theirs, and Gauss-Hermite quadrature in that one dimension gives the
expectation with no sampling noise (Monte Carlo noise in a score is lost ranking, so it would
lower AUC). Everything not hidden (the other parts of intent, item traits, price, user spend,
position, scene, the user's click propensity and drift) is the world's truth, as the oracle has
it. The unit tests check the quadrature against plain draws.

Reading a world's files back and scoring the ceilings on an evaluated frame is
`model.world.world_files`; this module is the math only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from model.world.mechanism import (
    INTENT,
    SCENE_EFFECT,
    ImpressionDraws,
    Population,
    WorldConfig,
    click_probability,
    graph_probabilities,
    impression_probabilities,
)

# The additive parts of intent, named as in IntentScales.
INTENT_PARTS = tuple(asdict(INTENT))


@dataclass(frozen=True)
class Knowledge:
    """What a ceiling does not know; everything else is the world's truth.

    Attributes:
        name: Row name in reports.
        hidden: Parts of intent integrated over their prior (names of INTENT_PARTS).
    """

    name: str
    hidden: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.hidden) - set(INTENT_PARTS))
        if unknown:
            raise ValueError(f"unknown intent parts {unknown}; expected some of {INTENT_PARTS}")

    @property
    def hidden_sd(self) -> float:
        """Standard deviation of the sum of the hidden parts under their prior."""
        return float(np.sqrt(sum(getattr(INTENT, part) ** 2 for part in self.hidden)))


CEILINGS = (
    Knowledge("oracle without the user's own intent", ("user",)),
    Knowledge("oracle without user or item own intent", ("user", "item")),
    # What learning the demographic x category cells can be worth at most, to any model.
    Knowledge(
        "oracle without user own or demographic x category intent",
        ("user", "age_category", "gender_category"),
    ),
)


@dataclass(frozen=True)
class Integration:
    """Accuracy settings of the expectation.

    Attributes:
        nodes: Gauss-Hermite nodes over the hidden intent.
        chunk_rows: Rows per vectorized block (memory is rows x nodes).
    """

    nodes: int = 32
    chunk_rows: int = 65_536

    def __post_init__(self) -> None:
        for name in ("nodes", "chunk_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def true_cvr(cfg: WorldConfig, pop: Population, rows: ImpressionDraws) -> np.ndarray:
    """p_buy_given_click from the real latents: reproduces truth.parquet (a consistency check)."""
    return impression_probabilities(cfg, pop, rows)[1].p_buy_given_click


def hidden_intent(pop: Population, rows: ImpressionDraws, knowledge: Knowledge) -> np.ndarray:
    """The true value of the hidden parts of intent, per row."""
    category = pop.item_category[rows.item]
    parts = {
        "user": pop.user_intent[rows.user],
        "item": pop.item_own_intent[rows.item],
        "brand": pop.brand_intent[pop.item_brand[rows.item]],
        "category": pop.category_intent[category],
        "age_category": pop.age_category[pop.user_static["age_bucket"][rows.user], category],
        "gender_category": pop.gender_category[pop.user_static["gender"][rows.user], category],
    }
    return sum((parts[name] for name in knowledge.hidden), np.zeros(len(rows.user)))


def marginal_cvr(
    cfg: WorldConfig,
    pop: Population,
    rows: ImpressionDraws,
    knowledge: Knowledge,
    integration: Integration | None = None,
    condition_on_click: bool = True,
) -> np.ndarray:
    """p(buy | click, known inputs) per row, the hidden intent integrated over its prior.

    Args:
        cfg: The world's config (signals).
        pop: Its population (`model.world.mechanism.population(cfg)`).
        rows: The evaluated impressions.
        knowledge: What is hidden.
        integration: Accuracy settings.
        condition_on_click: Weight by p_click (the exact conditional on a clicked row); False
            gives the plain prior average of p_buy_given_click.

    Returns:
        Probabilities in [0, 1], one per row.
    """
    integration = integration or Integration()
    t, w = np.polynomial.hermite_e.hermegauss(integration.nodes)
    w = w / w.sum()
    nodes = knowledge.hidden_sd * t
    known = pop.intent(rows.user, rows.item) - hidden_intent(pop, rows, knowledge)
    n = len(rows.user)
    out = np.empty(n)
    for lo in range(0, n, integration.chunk_rows):
        block = slice(lo, min(lo + integration.chunk_rows, n))
        user, item, day = rows.user[block], rows.item[block], rows.day[block]

        def col(x: np.ndarray) -> np.ndarray:
            return x[:, None]

        intent = col(known[block]) + nodes
        p = graph_probabilities(
            pop.intercepts,
            intent,
            col(pop.price_ratio(user, item, day)),
            col(pop.item_richness[item]),
            col(pop.item_saveability[item]),
            cfg.micro_signal,
            cfg.macro_signal,
        ).p_buy_given_click
        weight = np.broadcast_to(w, p.shape)
        if condition_on_click:
            weight = weight * click_probability(
                pop.intercepts,
                intent,
                col(pop.item_attractiveness[item]),
                col(pop.user_bias[user]),
                col(pop.user_drift[user, day]),
                col(rows.position[block]),
                col(SCENE_EFFECT[rows.scene[block]]),
            )
        out[block] = (weight * p).sum(axis=1) / weight.sum(axis=1)
    return np.clip(out, 0.0, 1.0)
