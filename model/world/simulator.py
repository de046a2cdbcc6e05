"""A simulated e-commerce world whose true conversion probabilities are known.

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

`truth.parquet` holds p_click and the three click-conditional probabilities marginalized over
the intermediate nodes (e.g. p_buy_given_click sums over m and M); these are the oracle scores.
`click_probability` and `graph_probabilities` are these formulas as pure functions, and
`population(cfg)` rebuilds a world's fixed users and items (latents included), so an analysis can
recompute the truth or evaluate the same formulas with other latent inputs
(`model/world/ceiling.py`).

The daily user and item feature snapshots are noisy views of some traits (user_cvr_30d of
b_buy_user, item_cvr_30d of q_item, user_avg_spend of the spend); the latent vectors never appear.

Logs are damaged on purpose, as real logs are: duplicated events, clicks that were never logged
(so their purchases have no click), purchases long after the attribution window, device clocks
reset to 1970, and purchases of items never shown in the feed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.data import schema

log = logging.getLogger(__name__)

LATENT_DIM = 8
LATENT_SCALE = np.float32(1 / np.sqrt(2 * np.sqrt(LATENT_DIM)))  # of every latent vector
DAY_US = 86_400_000_000
SECOND_US = 1_000_000
CHUNK_IMPRESSIONS = 1_000_000

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


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote, for logs and tests."""

    out_dir: str
    impressions: int
    events: int
    clicks: int
    d_micro: int
    d_macro: int
    buys: int
    noisy_impressions: int

    def rates(self) -> dict[str, float]:
        """The graph's conditional rates of the sampled outcomes."""
        clicks = max(self.clicks, 1)
        return {
            "ctr": self.clicks / max(self.impressions, 1),
            "d_micro_given_click": self.d_micro / clicks,
            "d_macro_given_click": self.d_macro / clicks,
            "buy_given_click": self.buys / clicks,
        }


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


def _sigmoid(x: np.ndarray) -> np.ndarray:
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
    return _sigmoid(logit_click)


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
    p_micro = _sigmoid(MICRO_INTERCEPT + 0.9 * a_buy + 0.4 * quality + 0.2 * a_int)
    logit_macro = MACRO_INTERCEPT + a_buy - 0.3 * price_ratio
    p_macro = (_sigmoid(logit_macro), _sigmoid(logit_macro + micro_signal))
    logit_buy = BUY_INTERCEPT + a_buy + user_buy_bias - 0.6 * price_ratio + 0.4 * quality
    micro_lift = 0.5 * micro_signal
    p_buy = (
        (_sigmoid(logit_buy), _sigmoid(logit_buy + macro_signal)),
        (_sigmoid(logit_buy + micro_lift), _sigmoid(logit_buy + macro_signal + micro_lift)),
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


def _draw(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(n), side="right")
    return np.minimum(idx, len(cdf) - 1)


def _ids(prefix: str, start: int, n: int, width: int = 10) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("datetime64[us]"), type=schema.TIMESTAMP)


@dataclass
class _Chunk:
    impressions: pa.Table
    truth: pa.Table
    events: pa.Table


def _simulate_chunk(
    cfg: WorldConfig, pop: Population, chunk: int, n: int, first_index: int, t0: int, t1: int
) -> _Chunk:
    """Impressions with ts in [t0, t1), their outcomes and their raw event logs."""
    rng = np.random.default_rng([cfg.seed, 1, chunk])
    ts = np.sort(rng.integers(t0, t1, n))
    day = np.minimum((ts - cfg.start_us) // DAY_US, cfg.days - 1)
    user = _draw(pop.user_weight_cdf, rng, n)
    item = _draw(pop.item_weight_cdf, rng, n)
    position = np.minimum(rng.geometric(0.12, n), 50).astype(np.int32)
    scene = rng.choice(len(schema.SCENES), size=n, p=[0.5, 0.3, 0.1, 0.1])
    device = rng.choice(len(schema.DEVICES), size=n, p=[0.55, 0.35, 0.10])
    scene_effect = SCENE_EFFECT[scene]

    a_int = np.einsum("nk,nk->n", pop.user_int[user], pop.item_int[item])
    a_buy = np.einsum("nk,nk->n", pop.user_buy[user], pop.item_buy[item])
    quality = pop.item_quality[item]
    price_ratio = np.log(pop.item_price[item, day] / pop.user_spend[user])

    p_click = click_probability(
        a_int, pop.user_bias[user], pop.user_drift[user, day], quality, position, scene_effect
    )
    graph = graph_probabilities(
        a_int,
        a_buy,
        quality,
        price_ratio,
        pop.user_buy_bias[user],
        cfg.micro_signal,
        cfg.macro_signal,
    )
    p_micro, p_macro, p_buy = graph.p_micro, graph.p_macro, graph.p_buy
    p_macro_given_click, p_buy_given_click = graph.p_macro_given_click, graph.p_buy_given_click

    click = rng.random(n) < p_click
    d_micro = click & (rng.random(n) < p_micro)
    d_macro = click & (rng.random(n) < np.where(d_micro, p_macro[1], p_macro[0]))
    p_buy_realized = np.select(
        [d_micro & d_macro, d_micro & ~d_macro, ~d_micro & d_macro],
        [p_buy[1][1], p_buy[1][0], p_buy[0][1]],
        p_buy[0][0],
    )
    buy = click & (rng.random(n) < p_buy_realized)

    events, noisy = _event_logs(cfg, rng, ts, user, item, click, d_micro, d_macro, buy)
    impression_ids = _ids("imp", first_index, n)
    impressions = pa.table(
        {
            "impression_id": impression_ids,
            "user_id": pa.array(user.astype(np.int64)),
            "item_id": pa.array(item.astype(np.int64)),
            "ts": _timestamps(ts),
            "position": pa.array(position),
            "scene": pa.array(np.array(schema.SCENES, dtype=object)[scene], pa.string()),
            "device": pa.array(np.array(schema.DEVICES, dtype=object)[device], pa.string()),
        },
        schema=schema.IMPRESSIONS,
    )
    truth = pa.table(
        {
            "impression_id": impression_ids,
            "p_click": p_click.astype(np.float64),
            "p_d_micro_given_click": p_micro.astype(np.float64),
            "p_d_macro_given_click": p_macro_given_click.astype(np.float64),
            "p_buy_given_click": p_buy_given_click.astype(np.float64),
            "click": click.astype(np.int8),
            "d_micro": d_micro.astype(np.int8),
            "d_macro": d_macro.astype(np.int8),
            "buy": buy.astype(np.int8),
            "noisy": noisy,
        },
        schema=schema.TRUTH,
    )
    return _Chunk(impressions=impressions, truth=truth, events=events)


def _event_logs(
    cfg: WorldConfig,
    rng: np.random.Generator,
    ts: np.ndarray,
    user: np.ndarray,
    item: np.ndarray,
    click: np.ndarray,
    d_micro: np.ndarray,
    d_macro: np.ndarray,
    buy: np.ndarray,
) -> tuple[pa.Table, np.ndarray]:
    """Raw events of the clicked impressions, in time order, plus log damage.

    Returns the events (event_id filled later) and the per-impression `noisy` flag.
    """
    noise = cfg.noise
    n = len(ts)
    noisy = np.zeros(n, dtype=bool)
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (imp, ts, type, comp)
    type_code = {t: i for i, t in enumerate(schema.EVENT_TYPES)}
    no_component = -1

    clicked = np.flatnonzero(click)
    click_ts = (
        ts[clicked] + SECOND_US + rng.exponential(20.0, len(clicked)).astype(np.int64) * SECOND_US
    )
    click_ts_full = np.zeros(n, dtype=np.int64)
    click_ts_full[clicked] = click_ts
    logged = rng.random(len(clicked)) >= noise.dropped_click_rate
    noisy[clicked[~logged]] = True
    rows.append((clicked[logged], click_ts[logged], type_code["click"], no_component))

    # Micro: purchase-related components for D-Micro, other components for anyone who clicked.
    def micro(who: np.ndarray, lam: float, components: tuple[str, ...], offset: int) -> None:
        count = 1 + rng.poisson(lam, len(who)) if offset == 0 else rng.poisson(lam, len(who))
        imp = np.repeat(who, count)
        comp = offset + rng.integers(0, len(components), len(imp))
        when = click_ts_full[imp] + rng.integers(2, 600, len(imp)) * SECOND_US
        rows.append((imp, when, type_code["micro"], comp))

    micro(np.flatnonzero(d_micro), 0.8, schema.D_MICRO_COMPONENTS, 0)
    micro(clicked, 0.6, schema.O_MICRO_COMPONENTS, len(schema.D_MICRO_COMPONENTS))

    # Macro after micro: cart and/or favorite 10-40 minutes after the click.
    macro_who = np.flatnonzero(d_macro)
    macro_ts = np.zeros(n, dtype=np.int64)
    macro_ts[macro_who] = (
        click_ts_full[macro_who]
        + (600 + rng.exponential(900.0, len(macro_who)).astype(np.int64)) * SECOND_US
    )
    cart = rng.random(len(macro_who)) < 0.7
    favorite = ~cart | (rng.random(len(macro_who)) < 0.3)
    rows.append((macro_who[cart], macro_ts[macro_who[cart]], type_code["cart"], no_component))
    fav_ts = macro_ts[macro_who[favorite]] + rng.integers(0, 120, favorite.sum()) * SECOND_US
    rows.append((macro_who[favorite], fav_ts, type_code["favorite"], no_component))

    # Purchase last: after the macro event (or 10 minutes after the click), hours later.
    buyers = np.flatnonzero(buy)
    after = np.maximum(macro_ts[buyers], click_ts_full[buyers] + 600 * SECOND_US)
    buy_ts = after + (60 + rng.exponential(6 * 3600.0, len(buyers)).astype(np.int64)) * SECOND_US
    late = rng.random(len(buyers)) < noise.late_purchase_rate
    buy_ts[late] += rng.integers(4 * 86_400, 10 * 86_400, late.sum()) * SECOND_US
    noisy[buyers[late]] = True
    rows.append((buyers, buy_ts, type_code["purchase"], no_component))

    imp = np.concatenate([r[0] for r in rows])
    when = np.concatenate([r[1] for r in rows])
    etype = np.concatenate([np.full(len(r[0]), r[2], dtype=np.int8) for r in rows])
    comp = np.concatenate([np.broadcast_to(np.asarray(r[3]), r[0].shape) for r in rows])

    bad_clock = rng.random(len(imp)) < noise.bad_clock_rate
    when[bad_clock] = rng.integers(0, 86_400, bad_clock.sum()) * SECOND_US
    noisy[imp[bad_clock]] = True

    order = np.argsort(when, kind="stable")
    imp, when, etype, comp = imp[order], when[order], etype[order], comp[order]
    users, items = user[imp].astype(np.int64), item[imp].astype(np.int64)

    n_orphans = rng.binomial(n, noise.orphan_purchase_rate)
    if n_orphans:
        users = np.concatenate([users, rng.integers(0, cfg.users, n_orphans)])
        items = np.concatenate([items, rng.integers(0, cfg.items, n_orphans)])
        when = np.concatenate([when, rng.integers(ts.min(), ts.max() + 1, n_orphans)])
        etype = np.concatenate([etype, np.full(n_orphans, type_code["purchase"], dtype=np.int8)])
        comp = np.concatenate([comp, np.full(n_orphans, no_component)])

    components = np.array((None, *schema.MICRO_COMPONENTS), dtype=object)
    events = pa.table(
        {
            "user_id": users,
            "item_id": items,
            "ts": _timestamps(when),
            "event_type": pa.array(np.array(schema.EVENT_TYPES, dtype=object)[etype], pa.string()),
            "component": pa.array(components[comp + 1], pa.string()),
        }
    )
    return events, noisy


def _with_event_ids(
    events: pa.Table, first: int, rng: np.random.Generator, rate: float
) -> pa.Table:
    """Assign event ids, then log a few events twice (same id, as a retried upload would)."""
    events = events.add_column(0, "event_id", _ids("ev", first, events.num_rows, width=11))
    dup = np.flatnonzero(rng.random(events.num_rows) < rate)
    if len(dup):
        # A retried upload lands right after the original.
        positions = np.sort(np.concatenate([np.arange(events.num_rows), dup]))
        events = events.take(pa.array(positions))
    return events.cast(schema.EVENTS)


def _feature_tables(
    cfg: WorldConfig, pop: Population, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    """Daily snapshots (00:00 UTC) of user and item features as known at that time."""
    n_users, n_items, n_days = cfg.users, cfg.items, cfg.days
    days = np.arange(n_days)
    snap_ts = cfg.start_us + days * DAY_US

    def noisy_rate(p: np.ndarray, rel: float) -> np.ndarray:
        return np.clip(p * rng.lognormal(0.0, rel, p.shape), 0.0, 1.0).round(5)

    user_ctr = noisy_rate(
        _sigmoid(CLICK_INTERCEPT + 0.5 + pop.user_bias[:, None] + pop.user_drift), 0.15
    )
    user_cvr = noisy_rate(
        _sigmoid(
            BUY_INTERCEPT
            + USER_CVR_FEATURE_LIFT
            + pop.user_buy_bias[:, None]
            + np.zeros((1, n_days))
        ),
        USER_CVR_FEATURE_NOISE,
    )
    spend = (pop.user_spend[:, None] * rng.lognormal(0.0, 0.05, (n_users, n_days))).round(2)
    activity = pop.user_static["activity"]
    active_days = np.clip(
        np.round(30 * activity / (activity + 1.0))[:, None]
        + rng.integers(-2, 3, (n_users, n_days)),
        1,
        30,
    )
    users = pa.table(
        {
            "user_id": np.repeat(np.arange(n_users, dtype=np.int64), n_days),
            "event_timestamp": _timestamps(np.tile(snap_ts, n_users)),
            "age_bucket": np.repeat(pop.user_static["age_bucket"], n_days).astype(np.int64),
            "gender": np.repeat(pop.user_static["gender"], n_days).astype(np.int64),
            "city_tier": np.repeat(pop.user_static["city_tier"], n_days).astype(np.int64),
            "user_ctr_7d": user_ctr.ravel(),
            "user_cvr_30d": user_cvr.ravel(),
            "user_avg_spend": spend.ravel(),
            "user_active_days_30d": active_days.ravel().astype(np.int64),
        },
        schema=schema.USERS,
    )

    item_ctr = noisy_rate(
        _sigmoid(CLICK_INTERCEPT + 0.5 + 0.3 * pop.item_quality[:, None] + np.zeros((1, n_days))),
        0.15,
    )
    item_cvr = noisy_rate(
        _sigmoid(BUY_INTERCEPT + 2.0 + 0.4 * pop.item_quality[:, None] + np.zeros((1, n_days))),
        0.25,
    )
    popularity = np.diff(pop.item_weight_cdf, prepend=0.0)
    sales = rng.poisson(popularity[:, None] * cfg.impressions * 0.002 + np.zeros((1, n_days)))
    items = pa.table(
        {
            "item_id": np.repeat(np.arange(n_items, dtype=np.int64), n_days),
            "event_timestamp": _timestamps(np.tile(snap_ts, n_items)),
            "category_id": np.repeat(pop.item_category, n_days),
            "brand_id": np.repeat(pop.item_brand, n_days).astype(np.int64),
            "price": pop.item_price.ravel(),
            "item_ctr_7d": item_ctr.ravel(),
            "item_cvr_30d": item_cvr.ravel(),
            "item_sales_30d": sales.ravel().astype(np.int64),
        },
        schema=schema.ITEMS,
    )
    return users, items


class _AtomicParquet:
    """A Parquet file written under a temporary name and renamed into place when complete."""

    def __init__(self, path: Path, table_schema: pa.Schema) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, table_schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table, row_group_size=CHUNK_IMPRESSIONS)

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)


def simulate(cfg: WorldConfig, out_dir: str | Path, progress: bool = False) -> SimulationSummary:
    """Generate a world and write its tables as Parquet into `out_dir`.

    Output is byte-for-byte deterministic for a given config.

    Args:
        cfg: World parameters.
        out_dir: Local folder; created if missing.
        progress: Show a progress bar on stderr.

    Returns:
        Counts of what was written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pop = population(cfg)

    n_chunks = -(-cfg.impressions // CHUNK_IMPRESSIONS)
    bounds = np.linspace(0, cfg.impressions, n_chunks + 1).astype(np.int64)
    t_bounds = cfg.start_us + np.linspace(0, cfg.days * DAY_US, n_chunks + 1).astype(np.int64)
    writers = {
        name: _AtomicParquet(out / f"{name}.parquet", schema.TABLES[name])
        for name in ("impressions", "events", "truth")
    }
    counts = dict.fromkeys(("events", "click", "d_micro", "d_macro", "buy", "noisy"), 0)
    with _progress_bar(progress, cfg.impressions) as advance:
        for chunk in range(n_chunks):
            lo, hi = int(bounds[chunk]), int(bounds[chunk + 1])
            part = _simulate_chunk(
                cfg, pop, chunk, hi - lo, lo, int(t_bounds[chunk]), int(t_bounds[chunk + 1])
            )
            dup_rng = np.random.default_rng([cfg.seed, 2, chunk])
            events = _with_event_ids(
                part.events, counts["events"], dup_rng, cfg.noise.duplicate_event_rate
            )
            counts["events"] += part.events.num_rows
            writers["impressions"].write(part.impressions)
            writers["events"].write(events)
            writers["truth"].write(part.truth)
            for name in ("click", "d_micro", "d_macro", "buy", "noisy"):
                counts[name] += int(pc.sum(part.truth[name]).as_py() or 0)
            advance(hi - lo)
    for writer in writers.values():
        writer.close()

    users, items = _feature_tables(cfg, pop, np.random.default_rng([cfg.seed, 3]))
    for name, table in (("users", users), ("items", items)):
        writer = _AtomicParquet(out / f"{name}.parquet", table.schema)
        writer.write(table)
        writer.close()

    events_written = pq.ParquetFile(out / "events.parquet").metadata.num_rows
    summary = SimulationSummary(
        out_dir=str(out),
        impressions=cfg.impressions,
        events=events_written,
        clicks=counts["click"],
        d_micro=counts["d_micro"],
        d_macro=counts["d_macro"],
        buys=counts["buy"],
        noisy_impressions=counts["noisy"],
    )
    world = {"config": asdict(cfg), "summary": asdict(summary) | {"rates": summary.rates()}}
    world["summary"].pop("out_dir")
    tmp = out / ".world.json.tmp"
    tmp.write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "world.json")
    log.info("simulated %d impressions, %d events into %s", cfg.impressions, events_written, out)
    return summary


class _progress_bar:  # noqa: N801 - used as a context manager like a function
    """A rich progress bar over impressions, or a no-op."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("simulating impressions"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        task = self.bar.add_task("simulate", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
