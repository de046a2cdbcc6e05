"""The simulated world: schema, graph consistency, realistic rates, determinism, signals."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from model.data import schema
from model.world.mechanism import NoiseConfig, WorldConfig
from model.world.simulator import simulate
from pipelines.cli import app

FILES = ("impressions", "events", "users", "items", "truth")


@pytest.fixture(scope="module")
def world_200k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w200k")
    simulate(WorldConfig(impressions=200_000, seed=11), out)
    return out


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No log damage, and many more user-item pairs than impressions (pairs rarely repeat)."""
    out = tmp_path_factory.mktemp("clean")
    noise = NoiseConfig(0.0, 0.0, 0.0, 0.0, 0.0)
    simulate(WorldConfig(impressions=100_000, seed=5, users=20_000, items=20_000, noise=noise), out)
    return out


def _read(world: Path, name: str) -> pd.DataFrame:
    return pq.read_table(world / f"{name}.parquet").to_pandas()


@pytest.mark.parametrize("name", FILES)
def test_tables_match_their_schema(world_200k: Path, name: str) -> None:
    got = pq.read_schema(world_200k / f"{name}.parquet")
    assert got.remove_metadata().equals(schema.TABLES[name])


def test_ids_and_vocabularies(world_200k: Path) -> None:
    imps = _read(world_200k, "impressions")
    events = _read(world_200k, "events")
    assert imps.impression_id.is_unique and len(imps) == 200_000
    assert imps.ts.is_monotonic_increasing
    assert set(imps.scene) <= set(schema.SCENES) and set(imps.device) <= set(schema.DEVICES)
    assert set(events.event_type) == set(schema.EVENT_TYPES)
    micro = events.event_type == "micro"
    assert events.loc[micro, "component"].isin(schema.MICRO_COMPONENTS).all()
    assert set(events.loc[micro, "component"]) >= set(schema.D_MICRO_COMPONENTS)
    assert events.loc[~micro, "component"].isna().all()
    truth = _read(world_200k, "truth")
    assert (truth.impression_id == imps.impression_id).all()


def test_truth_outcomes_follow_the_graph(world_200k: Path) -> None:
    truth = _read(world_200k, "truth")
    for label in ("d_micro", "d_macro", "buy"):
        assert (truth[label] <= truth.click).all(), f"{label} without click"


def test_rates_are_realistic(world_200k: Path) -> None:
    rates = json.loads((world_200k / "world.json").read_text())["summary"]["rates"]
    assert 0.02 <= rates["ctr"] <= 0.06
    assert 0.20 <= rates["d_micro_given_click"] <= 0.35
    assert 0.08 <= rates["d_macro_given_click"] <= 0.15
    assert 0.01 <= rates["buy_given_click"] <= 0.04


@pytest.mark.parametrize(
    ("label", "prob", "rows"),
    [
        ("click", "p_click", "all"),
        ("d_micro", "p_d_micro_given_click", "clicked"),
        ("d_macro", "p_d_macro_given_click", "clicked"),
        ("buy", "p_buy_given_click", "clicked"),
    ],
)
def test_truth_probabilities_are_those_the_outcomes_were_drawn_from(
    world_200k: Path, label: str, prob: str, rows: str
) -> None:
    """Each sampled outcome is a Bernoulli draw from its truth probability, in total and in shape.

    The sum of n independent Bernoulli(p_i) draws has mean sum(p_i) and standard error
    sqrt(sum(p_i (1 - p_i))): the sampled count must lie within 4 of them of the summed
    probabilities, over all rows and within each decile of the probability. A probability that
    is right on average but wrong in shape (say a constant with the right mean) fails in the
    outer deciles, where it is far off.
    """
    truth = _read(world_200k, "truth")
    if rows == "clicked":
        truth = truth[truth.click == 1]
    assert len(truth) > 5_000  # ~8k clicks: SE of the D-Macro count ~3% of it, ~10% per decile
    decile = pd.qcut(truth[prob], 10, labels=False, duplicates="raise")
    parts = [("all", truth)] + [(f"decile {d}", part) for d, part in truth.groupby(decile)]
    for name, part in parts:
        p = part[prob].to_numpy()
        se = np.sqrt(np.sum(p * (1 - p)))
        gap = part[label].sum() - p.sum()
        assert abs(gap) < 4 * se, (
            f"{label} {name}: {part[label].sum()} vs {p.sum():.1f} +- {se:.1f}"
        )


def test_buy_if_clicked_is_a_draw_from_p_buy_given_click_on_every_impression(
    world_200k: Path,
) -> None:
    truth = _read(world_200k, "truth")
    assert truth.buy_if_clicked.dtype == np.int8 and set(truth.buy_if_clicked) == {0, 1}
    # On clicked and unclicked rows alike, and at low and high p (a draw from the wrong
    # probability with the right overall mean fails here): the rate is the mean of p within
    # 4 standard errors of a sum of independent Bernoulli(p) draws.
    high = truth.p_buy_given_click > truth.p_buy_given_click.median()
    for clicked in (True, False):
        for part in (high, ~high):
            rows = truth[(truth.click == int(clicked)) & part]
            p = rows.p_buy_given_click.to_numpy()
            se = np.sqrt(np.sum(p * (1 - p))) / len(p)
            gap = rows.buy_if_clicked.mean() - p.mean()
            assert abs(gap) < 4 * se, (clicked, len(p), gap, se)


def test_feature_tables_change_over_time(world_200k: Path) -> None:
    users, items = _read(world_200k, "users"), _read(world_200k, "items")
    cfg = WorldConfig(impressions=200_000, seed=11)
    assert len(users) == cfg.users * cfg.days and len(items) == cfg.items * cfg.days
    assert users.groupby("user_id").user_ctr_7d.nunique().gt(1).mean() > 0.9
    assert items.groupby("item_id").price.nunique().gt(1).mean() > 0.3  # promotions
    assert users.event_timestamp.dt.hour.eq(0).all()


def test_clean_event_logs_follow_the_graph_in_time(clean_world: Path) -> None:
    events = _read(clean_world, "events")
    imps = _read(clean_world, "impressions")
    assert events.event_id.is_unique
    pair_counts = imps.groupby(["user_id", "item_id"]).size()
    single = pair_counts[pair_counts == 1].index
    events = events.set_index(["user_id", "item_id"]).loc[lambda d: d.index.isin(single)]
    first = events.groupby(level=[0, 1]).ts.min()
    click = events[events.event_type == "click"].groupby(level=[0, 1]).ts.min()
    # Every user-item pair with events starts with its click, after the impression.
    assert first.index.isin(click.index).all()
    assert (first == click.reindex(first.index)).all()
    shown = imps.set_index(["user_id", "item_id"]).loc[single, "ts"]
    assert (click > shown.reindex(click.index)).all()

    def last(kind: str) -> pd.Series:
        mask = events.event_type.isin(kind.split(","))
        return events[mask].groupby(level=[0, 1]).ts.agg(["min", "max"])

    micro, macro, buy = last("micro"), last("cart,favorite"), last("purchase")
    both = micro.index.intersection(macro.index)
    assert (micro.loc[both, "max"] < macro.loc[both, "min"]).all()
    both = macro.index.intersection(buy.index)
    assert (macro.loc[both, "max"] < buy.loc[both, "min"]).all()


def test_noise_is_present_and_flagged(world_200k: Path) -> None:
    events = _read(world_200k, "events")
    truth = _read(world_200k, "truth")
    assert events.event_id.duplicated().sum() > 0
    assert (events.ts < pd.Timestamp("2000-01-01", tz="UTC")).sum() > 0
    assert 0 < truth.noisy.sum() < 0.01 * len(truth)
    assert truth.loc[truth.noisy, "click"].all()  # damage only touches clicked impressions


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    def digest(out: Path, seed: int) -> dict[str, str]:
        simulate(WorldConfig(impressions=30_000, seed=seed, users=2_000, items=500), out)
        names = [f"{n}.parquet" for n in FILES] + ["world.json"]
        return {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in names}

    first, again, other = (
        digest(tmp_path / "a", 3),
        digest(tmp_path / "b", 3),
        digest(tmp_path / "c", 4),
    )
    assert first == again
    assert all(first[n] != other[n] for n in first if n != "world.json") and first != other


def _residual_z(truth: pd.DataFrame, outcome: str, prob: str) -> float:
    """z-score of mean(outcome - true conditional prob) among clicked impressions with D-Micro."""
    rows = truth[(truth.click == 1) & (truth.d_micro == 1)]
    residual = rows[outcome] - rows[prob]
    return float(residual.mean() / (residual.std() / np.sqrt(len(residual))))


def test_micro_signal_zero_removes_the_dependence(tmp_path: Path) -> None:
    """With micro-signal 0, D-Micro tells nothing about macro or purchase beyond the truth.

    The truth's click-conditional probabilities marginalize over D-Micro. If D-Micro carried no
    information, outcomes of clicked impressions with D-Micro would match them on average
    (residual z near 0); with a signal they exceed them clearly.
    """
    base = WorldConfig(impressions=300_000, seed=21, users=20_000, items=4_000)
    results = {}
    for signal in (0.0, 1.0):
        out = tmp_path / f"signal{signal}"
        simulate(replace(base, micro_signal=signal), out)
        truth = _read(out, "truth")
        results[signal] = (
            _residual_z(truth, "d_macro", "p_d_macro_given_click"),
            _residual_z(truth, "buy", "p_buy_given_click"),
        )
    macro_z0, buy_z0 = results[0.0]
    macro_z1, buy_z1 = results[1.0]
    assert abs(macro_z0) < 3.5 and abs(buy_z0) < 3.5
    assert macro_z1 > 6 and buy_z1 > 2.5


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("impressions", 0, "impressions must be a positive integer"),
        ("micro_signal", -1.0, "micro_signal must be in"),
        ("start", "01/10/2026", "start must be a date"),
    ],
)
def test_config_errors_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorldConfig(**{field: value})


def test_cli_simulate(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(app, ["simulate", "--help"]).output
    assert "--micro-signal" in help_text and "truth.parquet" in help_text
    result = runner.invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--impressions",
            "20000",
            "--seed",
            "1",
            "--users",
            "1000",
            "--items",
            "300",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["rates"]["ctr"] > 0
    assert {p.name for p in tmp_path.iterdir()} >= {f"{n}.parquet" for n in FILES} | {"world.json"}
    bad = runner.invoke(app, ["simulate", "--out", str(tmp_path), "--impressions", "0"])
    assert bad.exit_code == 2 and "impressions must be a positive integer" in bad.output
