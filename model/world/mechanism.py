"""The mechanism of the simulated world: its configuration, population and true probabilities.

No public data set logs micro behaviors, so we generate raw app logs from a world that follows
HM^3's behavior graph. docs/world.md derives every number here; in short:

Purchase intent is a sum of effects on things that recur in the log often enough to be learned:

    intent(u, i) = item_i + brand_b(i) + category_c(i) + age_x_category[age_u, c(i)]
                   + gender_x_category[gender_u, c(i)] + user_u

Items have Zipf popularity, so head and torso items gather hundreds of clicks while the tail
stays sparse. The same intent drives clicks (partly), D-Micro, D-Macro and purchase; each
behavior's *signal* s is both its loading on intent and how much it raises the odds of what
follows, so s = 0 makes a behavior carry no information about purchase at all. Per impression
(sigma = logistic function, pr = log(price / user spend)):

    p_click               = sigma(c0 + 0.5 intent + attractive_i + b_u + drift_u(day)
                                  - 0.03 (position - 1) + scene)
    p(D-Micro | click)    = sigma(m0 + s_micro intent + richness_i)
    p(D-Macro | click, m) = sigma(M0 + s_macro intent + saveable_i + 1.0 s_micro m)
    p(buy | click, m, M)  = sigma(B0 + intent - 0.6 pr + 1.5 s_macro M + 0.5 s_micro m)

attractive_i, richness_i and saveable_i are item traits that drive one behavior each and say
nothing about purchase. The intercepts (c0, m0, M0, B0) are solved per world so that the rates
sit at the middle of the published bands whatever the signals (`calibrate`).

`click_probability` and `graph_probabilities` are these formulas as pure functions, and
`population(cfg)` rebuilds a world's fixed users and items, latents included, so an analysis can
recompute the truth or integrate over hidden latents (`model/world/ceiling.py`). Sampling is
`model/world/sampling.py`; writing a world's files `model/world/simulator.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from model.data import schema

DAY_US = 86_400_000_000
SECOND_US = 1_000_000

# Middles of the published bands (CTR 2-6%, D-Micro|click 20-35%, D-Macro|click 8-15%,
# buy|click 1-4%): the intercepts are solved to hit them (docs/world.md).
TARGET_RATES = {"ctr": 0.04, "micro": 0.275, "macro": 0.115, "buy": 0.025}
CALIBRATION_IMPRESSIONS = 100_000

ZIPF_EXPONENT = 1.0  # item popularity ~ rank^-1 (Zipf's law of e-commerce catalogs)
AGE_BUCKETS, GENDERS, CITY_TIERS = 8, 3, 5


@dataclass(frozen=True)
class IntentScales:
    """Standard deviations (logit units) of the additive parts of purchase intent."""

    item: float = 0.6
    brand: float = 0.3
    category: float = 0.3
    age_category: float = 0.3
    gender_category: float = 0.2
    user: float = 0.4


INTENT = IntentScales()
CLICK_INTENT_LOADING = 0.5  # people click partly because they mean to buy
ATTRACTIVENESS_SD = 0.5  # item traits that drive one behavior each, not purchase
RICHNESS_SD = 0.5
SAVEABILITY_SD = 0.3
USER_CLICK_BIAS_SD = 0.5
DRIFT_STEP_SD = 0.15  # day-to-day random walk of a user's click propensity
POSITION_SLOPE = -0.03
SCENE_EFFECT = np.array([0.0, 0.4, -0.2, 0.1], dtype=np.float64)  # per schema.SCENES
SCENE_SHARES = (0.5, 0.3, 0.1, 0.1)
DEVICE_SHARES = (0.55, 0.35, 0.10)
# Causal lifts (log-odds) at signal 1: D-Micro -> D-Macro, D-Micro -> buy, D-Macro -> buy.
MICRO_TO_MACRO, MICRO_TO_BUY, MACRO_TO_BUY = 1.0, 0.5, 1.5
PRICE_ON_BUY = -0.6


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

    impressions: int = 2_500_000
    seed: int = 0
    users: int = 20_000
    items: int = 2_000
    days: int = 14
    micro_signal: float = 1.0
    macro_signal: float = 1.0
    start: str = "2026-10-01"
    categories: int = 40
    brands: int = 200
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


@dataclass(frozen=True)
class Intercepts:
    """c0, m0, M0, B0 of the module docstring, solved by `calibrate`."""

    click: float = 0.0
    micro: float = 0.0
    macro: float = 0.0
    buy: float = 0.0


@dataclass
class Population:
    """Users and items with their latent and observable traits, fixed for the whole world."""

    user_weight_cdf: np.ndarray
    user_intent: np.ndarray  # (U,) the user's own purchase propensity
    user_bias: np.ndarray  # (U,) click propensity
    user_drift: np.ndarray  # (U, D) day-to-day click propensity
    user_spend: np.ndarray  # (U,) typical spend per order
    user_static: dict[str, np.ndarray]  # age_bucket, gender, city_tier, activity
    item_weight_cdf: np.ndarray
    item_own_intent: np.ndarray  # (I,) the item's own part of intent
    item_intent: np.ndarray  # (I,) own + brand + category parts
    brand_intent: np.ndarray  # (B,)
    category_intent: np.ndarray  # (C,)
    item_attractiveness: np.ndarray  # (I,)
    item_richness: np.ndarray  # (I,)
    item_saveability: np.ndarray  # (I,)
    item_category: np.ndarray
    item_brand: np.ndarray
    item_price: np.ndarray  # (I, D) price per day, promotions included
    age_category: np.ndarray  # (AGE_BUCKETS, C)
    gender_category: np.ndarray  # (GENDERS, C)
    intercepts: Intercepts = field(default_factory=Intercepts)

    def intent(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Purchase intent of (user, item) pairs: the sum of the module docstring."""
        category = self.item_category[item]
        return (
            self.item_intent[item]
            + self.age_category[self.user_static["age_bucket"][user], category]
            + self.gender_category[self.user_static["gender"][user], category]
            + self.user_intent[user]
        )

    def price_ratio(self, user: np.ndarray, item: np.ndarray, day: np.ndarray) -> np.ndarray:
        """log(price on the day / user spend)."""
        return np.log(self.item_price[item, day] / self.user_spend[user])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    """The inverse of `sigmoid`."""
    return float(np.log(p / (1.0 - p)))


def population(cfg: WorldConfig) -> Population:
    """The world's fixed users and items, latents and intercepts, exactly as `simulate` has them."""
    pop = _make_population(cfg, np.random.default_rng([cfg.seed, 0]))
    draws = draw_impressions(
        cfg, pop, np.random.default_rng([cfg.seed, 5]), CALIBRATION_IMPRESSIONS
    )
    return replace(pop, intercepts=calibrate(cfg, pop, draws))


def _zipf_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zipf weights rank^-ZIPF_EXPONENT, ranks shuffled over ids."""
    return rng.permutation(np.arange(1, n + 1, dtype=np.float64) ** -ZIPF_EXPONENT)


def _make_population(cfg: WorldConfig, rng: np.random.Generator) -> Population:
    n_users, n_items, n_days, n_cats = cfg.users, cfg.items, cfg.days, cfg.categories
    cat_pop = rng.lognormal(0.0, 1.0, n_cats)
    item_category = rng.choice(n_cats, size=n_items, p=cat_pop / cat_pop.sum()).astype(np.int64)
    item_brand = rng.integers(0, cfg.brands, n_items).astype(np.int64)
    item_own = rng.normal(0.0, INTENT.item, n_items)
    brand_intent = rng.normal(0.0, INTENT.brand, cfg.brands)
    category_intent = rng.normal(0.0, INTENT.category, n_cats)

    drift_steps = rng.normal(0.0, DRIFT_STEP_SD, (n_users, n_days))
    cat_log_price = rng.normal(np.log(40.0), 0.8, n_cats)
    base_price = np.exp(cat_log_price[item_category] + rng.normal(0.0, 0.4, n_items))
    promo = rng.random((n_items, n_days)) < 0.1
    item_price = np.round(base_price[:, None] * np.where(promo, 0.8, 1.0), 2)

    user_activity = rng.lognormal(0.0, 1.0, n_users)
    item_popularity = _zipf_weights(rng, n_items)
    return Population(
        user_weight_cdf=np.cumsum(user_activity) / user_activity.sum(),
        user_intent=rng.normal(0.0, INTENT.user, n_users),
        user_bias=rng.normal(0.0, USER_CLICK_BIAS_SD, n_users),
        user_drift=np.cumsum(drift_steps, axis=1),
        user_spend=np.exp(rng.normal(np.log(45.0), 0.6, n_users)),
        user_static={
            "age_bucket": rng.integers(0, AGE_BUCKETS, n_users),
            "gender": rng.integers(0, GENDERS, n_users),
            "city_tier": rng.integers(1, CITY_TIERS + 1, n_users),
            "activity": user_activity,
        },
        item_weight_cdf=np.cumsum(item_popularity) / item_popularity.sum(),
        item_own_intent=item_own,
        item_intent=item_own + brand_intent[item_brand] + category_intent[item_category],
        brand_intent=brand_intent,
        category_intent=category_intent,
        item_attractiveness=rng.normal(0.0, ATTRACTIVENESS_SD, n_items),
        item_richness=rng.normal(0.0, RICHNESS_SD, n_items),
        item_saveability=rng.normal(0.0, SAVEABILITY_SD, n_items),
        item_category=item_category,
        item_brand=item_brand,
        item_price=item_price,
        age_category=rng.normal(0.0, INTENT.age_category, (AGE_BUCKETS, n_cats)),
        gender_category=rng.normal(0.0, INTENT.gender_category, (GENDERS, n_cats)),
    )


def _draw(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(n), side="right")
    return np.minimum(idx, len(cdf) - 1)


@dataclass(frozen=True)
class ImpressionDraws:
    """Who saw what, where and when: the inputs of the probabilities, one value per impression."""

    user: np.ndarray
    item: np.ndarray
    day: np.ndarray
    position: np.ndarray
    scene: np.ndarray  # index into schema.SCENES
    device: np.ndarray  # index into schema.DEVICES


def draw_impressions(
    cfg: WorldConfig,
    pop: Population,
    rng: np.random.Generator,
    n: int,
    day: np.ndarray | None = None,
) -> ImpressionDraws:
    """Draw impressions: users by activity, items by popularity (Zipf), position, scene, device.

    Args:
        cfg: The world (days).
        pop: Its population (the popularity weights).
        rng: Random stream.
        n: How many.
        day: Each impression's day; uniform over the world's days when None.
    """
    if day is None:
        day = rng.integers(0, cfg.days, n)
    return ImpressionDraws(
        user=_draw(pop.user_weight_cdf, rng, n),
        item=_draw(pop.item_weight_cdf, rng, n),
        day=day,
        position=np.minimum(rng.geometric(0.12, n), 50).astype(np.int32),
        scene=rng.choice(len(schema.SCENES), size=n, p=SCENE_SHARES),
        device=rng.choice(len(schema.DEVICES), size=n, p=DEVICE_SHARES),
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
    intercepts: Intercepts,
    intent: np.ndarray,
    attractiveness: np.ndarray,
    user_bias: np.ndarray,
    user_drift: np.ndarray,
    position: np.ndarray,
    scene_effect: np.ndarray,
) -> np.ndarray:
    """p_click of the module docstring, per impression (arrays broadcast together)."""
    logit_click = (
        intercepts.click
        + CLICK_INTENT_LOADING * intent
        + attractiveness
        + user_bias
        + user_drift
        + POSITION_SLOPE * (position - 1)
        + scene_effect
    )
    return sigmoid(logit_click)


def graph_probabilities(
    intercepts: Intercepts,
    intent: np.ndarray,
    price_ratio: np.ndarray,
    richness: np.ndarray,
    saveability: np.ndarray,
    micro_signal: float,
    macro_signal: float,
) -> GraphProbabilities:
    """The behavior graph after a click, per impression (arrays broadcast together).

    Pure: the same formulas the world samples from, so analyses can feed other latents.

    Args:
        intercepts: The world's solved intercepts.
        intent: Purchase intent of the (user, item) pair.
        price_ratio: log(price on the day / user spend).
        richness: The item's micro-only trait.
        saveability: The item's macro-only trait.
        micro_signal: WorldConfig.micro_signal.
        macro_signal: WorldConfig.macro_signal.
    """
    p_micro = sigmoid(intercepts.micro + micro_signal * intent + richness)
    logit_macro = intercepts.macro + macro_signal * intent + saveability
    p_macro = (sigmoid(logit_macro), sigmoid(logit_macro + MICRO_TO_MACRO * micro_signal))
    logit_buy = intercepts.buy + intent + PRICE_ON_BUY * price_ratio
    micro_lift, macro_lift = MICRO_TO_BUY * micro_signal, MACRO_TO_BUY * macro_signal
    p_buy = (
        (sigmoid(logit_buy), sigmoid(logit_buy + macro_lift)),
        (sigmoid(logit_buy + micro_lift), sigmoid(logit_buy + macro_lift + micro_lift)),
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


def impression_probabilities(
    cfg: WorldConfig, pop: Population, draws: ImpressionDraws
) -> tuple[np.ndarray, GraphProbabilities]:
    """(p_click, graph) of drawn impressions with the population's intercepts."""
    user, item = draws.user, draws.item
    intent = pop.intent(user, item)
    p_click = click_probability(
        pop.intercepts,
        intent,
        pop.item_attractiveness[item],
        pop.user_bias[user],
        pop.user_drift[user, draws.day],
        draws.position,
        SCENE_EFFECT[draws.scene],
    )
    graph = graph_probabilities(
        pop.intercepts,
        intent,
        pop.price_ratio(user, item, draws.day),
        pop.item_richness[item],
        pop.item_saveability[item],
        cfg.micro_signal,
        cfg.macro_signal,
    )
    return p_click, graph


def _solve(rate: Callable[[float], float], target: float) -> float:
    """The intercept at which the increasing function `rate` equals `target` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(45):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rate(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)


def calibrate(cfg: WorldConfig, pop: Population, draws: ImpressionDraws) -> Intercepts:
    """Intercepts that put the world's expected rates at TARGET_RATES, whatever the signals.

    Solved in graph order on a fixed sample of impressions: CTR over impressions, then each
    click-conditional rate over the sample weighted by p_click (the clicked population).
    """
    # The population still has zero intercepts here, so this is p_click at c0 = 0.
    p_click0, _ = impression_probabilities(cfg, pop, draws)
    logit_click = np.log(p_click0) - np.log1p(-p_click0)
    user, item = draws.user, draws.item
    intent = pop.intent(user, item)
    c0 = _solve(lambda c: float(sigmoid(logit_click + c).mean()), TARGET_RATES["ctr"])
    weight = sigmoid(logit_click + c0)
    weight = weight / weight.sum()
    inputs = (intent, pop.price_ratio(user, item, draws.day))
    traits = (pop.item_richness[item], pop.item_saveability[item])
    signals = (cfg.micro_signal, cfg.macro_signal)

    def clicked_rate(name: str, fixed: Intercepts) -> Callable[[float], float]:
        def rate(value: float) -> float:
            graph = graph_probabilities(replace(fixed, **{name: value}), *inputs, *traits, *signals)
            p = {"micro": graph.p_micro, "macro": graph.p_macro_given_click}.get(name)
            return float(weight @ (graph.p_buy_given_click if p is None else p))

        return rate

    found = Intercepts(click=c0)
    for name in ("micro", "macro", "buy"):
        found = replace(found, **{name: _solve(clicked_rate(name, found), TARGET_RATES[name])})
    return found


def mechanism_record(pop: Population) -> dict:
    """The mechanism's constants and the world's solved intercepts, for world.json."""
    return {
        "target_rates": TARGET_RATES,
        "intercepts": asdict(pop.intercepts),
        "intent_sd": asdict(INTENT),
        "zipf_exponent": ZIPF_EXPONENT,
        "click_intent_loading": CLICK_INTENT_LOADING,
        "attractiveness_sd": ATTRACTIVENESS_SD,
        "richness_sd": RICHNESS_SD,
        "saveability_sd": SAVEABILITY_SD,
        "user_click_bias_sd": USER_CLICK_BIAS_SD,
        "drift_step_sd": DRIFT_STEP_SD,
        "position_slope": POSITION_SLOPE,
        "scene_effect": SCENE_EFFECT.tolist(),
        "causal_lifts": {
            "micro_to_macro": MICRO_TO_MACRO,
            "micro_to_buy": MICRO_TO_BUY,
            "macro_to_buy": MACRO_TO_BUY,
        },
        "price_on_buy": PRICE_ON_BUY,
        "calibration_impressions": CALIBRATION_IMPRESSIONS,
    }
