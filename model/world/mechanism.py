"""The mechanism of the simulated world: its configuration, population and true probabilities.

No public data set logs micro behaviors, so we generate raw app logs from a world that follows
the behavior graph. Each user and item carries two latent vectors: an *interest* part that drives
clicks and a *purchase-intent* part that drives micro, macro and purchase behavior. The two are
correlated, so clicks tell a little about purchases, and micro and macro behaviors, which are far
more frequent than purchases, tell a lot. This is the data-sparsity setting where HM^3 helps.

Per impression (sigma = logistic function, a = latent affinities, pr = log(price / user spend))::

    p_click            = sigma(c0 + a_int + b_user(day) + 0.3 q_item - 0.03 (position - 1) + scene)
    p(D-Micro | click) = sigma(m0 + 0.9 a_buy + 0.4 q_item + 0.2 a_int)
    p(D-Macro | click, m) = sigma(M0 + a_buy - 0.3 pr + micro_signal * m)
    p(buy | click, m, M)  = sigma(B0 + a_buy + b_buy_user - 0.6 pr + 0.4 q_item
                                  + macro_signal * M + 0.5 micro_signal * m)

`click_probability` and `graph_probabilities` are these formulas as pure functions, and
`population(cfg)` rebuilds a world's fixed users and items (latents included), so an analysis can
recompute the truth or evaluate the same formulas with other latent inputs
(`model/world/ceiling.py`). Sampling from them is `model/world/sampling.py`; writing a world's
files is `model/world/simulator.py`, reading them back `model/world/world_files.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np

LATENT_DIM = 8
LATENT_SCALE = np.float32(1 / np.sqrt(2 * np.sqrt(LATENT_DIM)))  # of every latent vector
DAY_US = 86_400_000_000
SECOND_US = 1_000_000

# Intercepts chosen so the rates land mid-range of the realistic bands
# (CTR 2-6%, D-Micro|click 20-35%, D-Macro|click 8-15%, buy|click 1-4%) at the default signals.
CLICK_INTERCEPT = -3.45
MICRO_INTERCEPT = -1.35
MACRO_INTERCEPT = -2.65
BUY_INTERCEPT = -4.8
INTENT_CORRELATION = 0.5  # correlation of interest and purchase intent (own parts)
USER_BUY_BIAS_SD = 0.4  # prior of a user's purchase propensity b_buy_user
SCENE_EFFECT = np.array([0.0, 0.4, -0.2, 0.1], dtype=np.float32)  # per schema.SCENES
# Feature user_cvr_30d = sigma(BUY_INTERCEPT + lift + b_buy_user) * lognormal(0, noise), per day.
USER_CVR_FEATURE_LIFT = 2.0
USER_CVR_FEATURE_NOISE = 0.25


@dataclass(frozen=True)
class NoiseConfig:
    """Rates of deliberate log damage."""

    duplicate_event_rate: float = 0.005  # events logged twice, same event_id
    dropped_click_rate: float = 0.004  # clicks whose click event was never logged
    late_purchase_rate: float = 0.01  # purchases 4-10 days after the click
    bad_clock_rate: float = 0.0003  # events stamped near 1970-01-01
    orphan_purchase_rate: float = 0.0002  # per impression: purchases of never-shown items

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 0.5:
                raise ValueError(f"noise.{name} must be in [0, 0.5], got {value}")


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of one simulated world. Every field is recorded in `world.json`."""

    impressions: int = 1_000_000
    seed: int = 0
    users: int = 50_000
    items: int = 10_000
    days: int = 14
    micro_signal: float = 1.0
    macro_signal: float = 1.5
    start: str = "2026-10-01"
    categories: int = 40
    brands: int = 400
    noise: NoiseConfig = field(default_factory=NoiseConfig)

    def __post_init__(self) -> None:
        for name in ("impressions", "users", "items", "days", "categories", "brands"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("micro_signal", "macro_signal"):
            value = getattr(self, name)
            if not 0.0 <= value <= 5.0:
                raise ValueError(f"{name} must be in [0, 5], got {value}")
        try:
            datetime.strptime(self.start, "%Y-%m-%d")
        except ValueError as err:
            raise ValueError(f"start must be a date YYYY-MM-DD, got {self.start!r}") from err

    @property
    def start_us(self) -> int:
        """Start of the world as microseconds since the epoch (UTC midnight)."""
        start = datetime.strptime(self.start, "%Y-%m-%d").replace(tzinfo=UTC)
        return int(start.timestamp()) * SECOND_US


@dataclass
class Population:
    """Users and items with their latent and observable traits, fixed for the whole world."""

    user_weight_cdf: np.ndarray
    user_int: np.ndarray  # (U, K) interest
    user_buy: np.ndarray  # (U, K) purchase intent
    user_bias: np.ndarray  # (U,) click propensity
    user_buy_bias: np.ndarray  # (U,)
    user_drift: np.ndarray  # (U, D) day-to-day click propensity
    user_spend: np.ndarray  # (U,) typical spend per order
    user_static: dict[str, np.ndarray]
    item_weight_cdf: np.ndarray
    item_int: np.ndarray  # (I, K) category base + own part (see latent_pair)
    item_buy: np.ndarray  # (I, K)
    item_quality: np.ndarray  # (I,)
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray  # (I, D) price per day, promotions included
    category_int: np.ndarray  # (C, K) category bases of the item latents, before scaling
    category_buy: np.ndarray  # (C, K)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def latent_pair(
    rng: np.random.Generator,
    n: int,
    base_int: np.ndarray | float,
    base_buy: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw n (interest, purchase intent) latent vector pairs around the given bases.

    Users have base 0; items have their category's base. Per coordinate, interest =
    LATENT_SCALE (base + e1) and intent = LATENT_SCALE (base + rho e1 + sqrt(1 - rho^2) e2) with
    e1, e2 standard normal and rho = INTENT_CORRELATION. This is the prior of the latents, used by
    the world and by analyses that marginalize over unknown latents.

    Returns:
        (interest, intent), each (n, LATENT_DIM).
    """
    k, rho, scale = LATENT_DIM, INTENT_CORRELATION, LATENT_SCALE
    own_int = rng.standard_normal((n, k), dtype=np.float32)
    own_buy = rng.standard_normal((n, k), dtype=np.float32)
    interest = base_int + own_int
    intent = base_buy + rho * own_int + np.sqrt(1 - rho**2) * own_buy
    return interest * scale, intent * scale


def population(cfg: WorldConfig) -> Population:
    """The world's fixed users and items, latents included, exactly as `simulate` builds them."""
    return _make_population(cfg, np.random.default_rng([cfg.seed, 0]))


def _make_population(cfg: WorldConfig, rng: np.random.Generator) -> Population:
    k, n_users, n_items, n_days = LATENT_DIM, cfg.users, cfg.items, cfg.days
    user_int, user_buy = latent_pair(rng, n_users, 0.0, 0.0)
    cat_int = rng.standard_normal((cfg.categories, k), dtype=np.float32)
    cat_buy = rng.standard_normal((cfg.categories, k), dtype=np.float32)
    cat_pop = rng.lognormal(0.0, 1.0, cfg.categories)
    item_category = rng.choice(cfg.categories, size=n_items, p=cat_pop / cat_pop.sum())
    item_int, item_buy = latent_pair(rng, n_items, cat_int[item_category], cat_buy[item_category])

    drift_steps = rng.normal(0.0, 0.15, (n_users, n_days)).astype(np.float32)
    cat_log_price = rng.normal(np.log(40.0), 0.8, cfg.categories)
    base_price = np.exp(cat_log_price[item_category] + rng.normal(0.0, 0.4, n_items))
    promo = rng.random((n_items, n_days)) < 0.1
    item_price = np.round(base_price[:, None] * np.where(promo, 0.8, 1.0), 2)

    user_activity = rng.lognormal(0.0, 1.0, n_users)
    item_popularity = rng.lognormal(0.0, 1.2, n_items)
    return Population(
        user_weight_cdf=np.cumsum(user_activity) / user_activity.sum(),
        user_int=user_int,
        user_buy=user_buy,
        user_bias=rng.normal(0.0, 0.5, n_users).astype(np.float32),
        user_buy_bias=rng.normal(0.0, USER_BUY_BIAS_SD, n_users).astype(np.float32),
        user_drift=np.cumsum(drift_steps, axis=1),
        user_spend=np.exp(rng.normal(np.log(45.0), 0.6, n_users)),
        user_static={
            "age_bucket": rng.integers(0, 8, n_users),
            "gender": rng.integers(0, 3, n_users),
            "city_tier": rng.integers(1, 6, n_users),
            "activity": user_activity,
        },
        item_weight_cdf=np.cumsum(item_popularity) / item_popularity.sum(),
        item_int=item_int,
        item_buy=item_buy,
        item_quality=rng.normal(0.0, 0.5, n_items).astype(np.float32),
        item_category=item_category.astype(np.int64),
        item_brand=rng.integers(0, cfg.brands, n_items),
        item_price=item_price,
        category_int=cat_int,
        category_buy=cat_buy,
    )


@dataclass(frozen=True)
class GraphProbabilities:
    """Click-conditional probabilities of the behavior graph, one value per impression.

    Attributes:
        p_micro: p(D-Micro | click).
        p_macro: p(D-Macro | click, m) for m = 0, 1.
        p_buy: p(buy | click, m, M), indexed [m][M].
        p_macro_given_click: p(D-Macro | click), summed over m.
        p_buy_given_click: p(buy | click), summed over m and M (the oracle CVR).
    """

    p_micro: np.ndarray
    p_macro: tuple[np.ndarray, np.ndarray]
    p_buy: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    p_macro_given_click: np.ndarray
    p_buy_given_click: np.ndarray


def click_probability(
    a_int: np.ndarray,
    user_bias: np.ndarray,
    user_drift: np.ndarray,
    quality: np.ndarray,
    position: np.ndarray,
    scene_effect: np.ndarray,
) -> np.ndarray:
    """p_click of the module docstring, per impression (arrays broadcast together)."""
    logit_click = (
        CLICK_INTERCEPT
        + a_int
        + user_bias
        + user_drift
        + 0.3 * quality
        - 0.03 * (position - 1)
        + scene_effect
    )
    return sigmoid(logit_click)


def graph_probabilities(
    a_int: np.ndarray,
    a_buy: np.ndarray,
    quality: np.ndarray,
    price_ratio: np.ndarray,
    user_buy_bias: np.ndarray,
    micro_signal: float,
    macro_signal: float,
) -> GraphProbabilities:
    """The behavior graph after a click, per impression (arrays broadcast together).

    Pure: the same formulas the world samples from, so analyses can feed other latents.

    Args:
        a_int: Interest affinity, user interest . item interest.
        a_buy: Purchase-intent affinity, user intent . item intent.
        quality: Item quality q_item.
        price_ratio: log(price on the day / user spend).
        user_buy_bias: The user's purchase propensity b_buy_user.
        micro_signal: WorldConfig.micro_signal.
        macro_signal: WorldConfig.macro_signal.
    """
    p_micro = sigmoid(MICRO_INTERCEPT + 0.9 * a_buy + 0.4 * quality + 0.2 * a_int)
    logit_macro = MACRO_INTERCEPT + a_buy - 0.3 * price_ratio
    p_macro = (sigmoid(logit_macro), sigmoid(logit_macro + micro_signal))
    logit_buy = BUY_INTERCEPT + a_buy + user_buy_bias - 0.6 * price_ratio + 0.4 * quality
    micro_lift = 0.5 * micro_signal
    p_buy = (
        (sigmoid(logit_buy), sigmoid(logit_buy + macro_signal)),
        (sigmoid(logit_buy + micro_lift), sigmoid(logit_buy + macro_signal + micro_lift)),
    )
    p_macro_given_click = (1 - p_micro) * p_macro[0] + p_micro * p_macro[1]
    p_buy_given_click = sum(
        (p_micro if mic else 1 - p_micro)
        * (p_macro[mic] if mac else 1 - p_macro[mic])
        * p_buy[mic][mac]
        for mic in (0, 1)
        for mac in (0, 1)
    )
    return GraphProbabilities(
        p_micro=p_micro,
        p_macro=p_macro,
        p_buy=p_buy,
        p_macro_given_click=p_macro_given_click,
        p_buy_given_click=p_buy_given_click,
    )
