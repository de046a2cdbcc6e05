"""Sampling a simulated world: impressions, outcomes, raw event logs and feature snapshots.

Pure: a world's mechanism (`model/world/mechanism.py`) and a random generator in, Arrow tables out;
`model/world/simulator.py` chunks a world, writes the tables and counts what it wrote.

The truth table holds p_click and the three click-conditional probabilities marginalized over
the intermediate nodes (e.g. p_buy_given_click sums over m and M); these are the oracle scores.

The daily user and item feature snapshots are what a feature job computes from traffic counts
(see `feature_tables`): noisy views of the users' and items' own latents; no latent appears.

Logs are damaged on purpose, as real logs are: duplicated events, clicks that were never logged
(so their purchases have no click), purchases long after the attribution window, device clocks
reset to 1970, and purchases of items never shown in the feed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.data import schema
from model.world.mechanism import (
    CLICK_INTENT_LOADING,
    DAY_US,
    SECOND_US,
    TARGET_RATES,
    Population,
    WorldConfig,
    draw_impressions,
    impression_probabilities,
    logit,
    sigmoid,
)

HISTORY_DAYS = 30  # days of traffic before the world that the first snapshots summarize


def _ids(prefix: str, start: int, n: int, width: int = 10) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("datetime64[us]"), type=schema.TIMESTAMP)


@dataclass
class ChunkSample:
    """One chunk of a world: its impressions, their truth and their raw events."""

    impressions: pa.Table
    truth: pa.Table
    events: pa.Table


def sample_chunk(
    cfg: WorldConfig, pop: Population, chunk: int, n: int, first_index: int, t0: int, t1: int
) -> ChunkSample:
    """Impressions with ts in [t0, t1), their outcomes and their raw event logs."""
    rng = np.random.default_rng([cfg.seed, 1, chunk])
    ts = np.sort(rng.integers(t0, t1, n))
    day = np.minimum((ts - cfg.start_us) // DAY_US, cfg.days - 1)
    draws = draw_impressions(cfg, pop, rng, n, day=day)
    user, item, position = draws.user, draws.item, draws.position
    p_click, graph = impression_probabilities(cfg, pop, draws)
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
    # Its own stream, so the counterfactual never shifts the world's other draws.
    counterfactual = np.random.default_rng([cfg.seed, 4, chunk])
    buy_if_clicked = counterfactual.random(n) < p_buy_given_click

    events, noisy = _event_logs(cfg, rng, ts, user, item, click, d_micro, d_macro, buy)
    impression_ids = _ids("imp", first_index, n)
    impressions = pa.table(
        {
            "impression_id": impression_ids,
            "user_id": pa.array(user.astype(np.int64)),
            "item_id": pa.array(item.astype(np.int64)),
            "ts": _timestamps(ts),
            "position": pa.array(position),
            "scene": pa.array(np.array(schema.SCENES, dtype=object)[draws.scene], pa.string()),
            "device": pa.array(np.array(schema.DEVICES, dtype=object)[draws.device], pa.string()),
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
            "buy_if_clicked": buy_if_clicked.astype(np.int8),
            "noisy": noisy,
        },
        schema=schema.TRUTH,
    )
    return ChunkSample(impressions=impressions, truth=truth, events=events)


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

    Returns the events (event_id filled later by `with_event_ids`) and the per-impression
    `noisy` flag.
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


def with_event_ids(events: pa.Table, first: int, rng: np.random.Generator, rate: float) -> pa.Table:
    """Assign event ids, then log a few events twice (same id, as a retried upload would)."""
    events = events.add_column(0, "event_id", _ids("ev", first, events.num_rows, width=11))
    dup = np.flatnonzero(rng.random(events.num_rows) < rate)
    if len(dup):
        # A retried upload lands right after the original.
        positions = np.sort(np.concatenate([np.arange(events.num_rows), dup]))
        events = events.take(pa.array(positions))
    return events.cast(schema.EVENTS)


def _window_sums(daily: np.ndarray, window: int, n_days: int) -> np.ndarray:
    """Sums over the `window` days before each snapshot day; daily starts HISTORY_DAYS early."""
    cum = np.concatenate([np.zeros((len(daily), 1), daily.dtype), np.cumsum(daily, axis=1)], 1)
    ends = HISTORY_DAYS + np.arange(n_days)
    return cum[:, ends] - cum[:, ends - window]


def _history(
    rng: np.random.Generator, daily_impressions: np.ndarray, p_click: np.ndarray, p_buy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily impression, click and purchase counts per entity over the history and the world.

    Args:
        rng: Random stream.
        daily_impressions: Expected impressions per day, per entity.
        p_click: The entity's click rate per history day, (entities, days).
        p_buy: Its purchase rate per click, broadcastable to p_click.
    """
    shape = p_click.shape
    impressions = rng.poisson(np.broadcast_to(daily_impressions[:, None], shape))
    clicks = rng.binomial(impressions, p_click)
    buys = rng.binomial(clicks, np.broadcast_to(p_buy, shape))
    return impressions, clicks, buys


def _rate(
    events: np.ndarray, trials: np.ndarray, prior_trials: float, prior_rate: float
) -> np.ndarray:
    """A shrunk rate estimate: (events + prior_trials prior_rate) / (trials + prior_trials)."""
    return ((events + prior_trials * prior_rate) / (trials + prior_trials)).round(5)


def feature_tables(
    cfg: WorldConfig, pop: Population, rng: np.random.Generator
) -> tuple[pa.Table, pa.Table]:
    """Daily snapshots (00:00 UTC) of user and item features as a feature pipeline computes them.

    The rate features are counts, as a real feature job has them: impressions, clicks and
    purchases of HISTORY_DAYS days before the world and of the world's own days, at each entity's
    main effects (the band rate shifted by the user's or item's own latents), then shrunk towards
    the band rate. Head items' rates are precise, tail items' and light users' are mostly prior:
    the features are noisy, partial views of the latents (docs/world.md).
    """
    n_users, n_items, n_days = cfg.users, cfg.items, cfg.days
    days = np.arange(n_days)
    snap_ts = cfg.start_us + days * DAY_US
    per_day = cfg.impressions / cfg.days
    ctr0, cvr0 = logit(TARGET_RATES["ctr"]), logit(TARGET_RATES["buy"])
    history_day = np.clip(np.arange(-HISTORY_DAYS, n_days), 0, n_days - 1)

    user_share = np.diff(pop.user_weight_cdf, prepend=0.0)
    user_click = sigmoid(ctr0 + pop.user_bias[:, None] + pop.user_drift[:, history_day])
    user_buy = sigmoid(cvr0 + pop.user_intent)[:, None]
    imps, clicks, buys = _history(rng, per_day * user_share, user_click, user_buy)
    user_ctr = _rate(
        _window_sums(clicks, 7, n_days), _window_sums(imps, 7, n_days), 100, TARGET_RATES["ctr"]
    )
    user_cvr = _rate(
        _window_sums(buys, 30, n_days), _window_sums(clicks, 30, n_days), 40, TARGET_RATES["buy"]
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

    item_share = np.diff(pop.item_weight_cdf, prepend=0.0)
    item_click = sigmoid(ctr0 + pop.item_attractiveness + CLICK_INTENT_LOADING * pop.item_intent)[
        :, None
    ] * np.ones((1, len(history_day)))
    item_buy = sigmoid(cvr0 + pop.item_intent)[:, None]
    imps, clicks, buys = _history(rng, per_day * item_share, item_click, item_buy)
    item_ctr = _rate(
        _window_sums(clicks, 7, n_days), _window_sums(imps, 7, n_days), 100, TARGET_RATES["ctr"]
    )
    buys_30d = _window_sums(buys, 30, n_days)
    item_cvr = _rate(buys_30d, _window_sums(clicks, 30, n_days), 40, TARGET_RATES["buy"])
    items = pa.table(
        {
            "item_id": np.repeat(np.arange(n_items, dtype=np.int64), n_days),
            "event_timestamp": _timestamps(np.tile(snap_ts, n_items)),
            "category_id": np.repeat(pop.item_category, n_days),
            "brand_id": np.repeat(pop.item_brand, n_days).astype(np.int64),
            "price": pop.item_price.ravel(),
            "item_ctr_7d": item_ctr.ravel(),
            "item_cvr_30d": item_cvr.ravel(),
            "item_sales_30d": buys_30d.ravel().astype(np.int64),
        },
        schema=schema.ITEMS,
    )
    return users, items
