"""bench/quality.py without training: gaps, data efficiency, convergence warnings, the document."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from model.evaluate.metrics import bootstrap_auc
from model.world.mechanism import WorldConfig

ROOT = Path(__file__).resolve().parents[2]
# bench/ is a folder of scripts, not a package: load the script by path.
_spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
quality = importlib.util.module_from_spec(_spec)
sys.modules["bench_quality"] = quality
_spec.loader.exec_module(quality)

ALL_PAIRS = ["hm3-esm2", "hm3-esmm", "hm3-naive", "esm2-esmm", "esm2-naive", "esmm-naive"]


def fake_record(kind, seed, cvr, entire=None, best_epoch=3, epochs=12, fraction=1.0):
    metrics = {"cvr": {"auc": cvr, "gauc": 0.6, "logloss": 0.3, "ece": 0.01}}
    if entire is not None:
        metrics["cvr_entire"] = {"auc": entire, "gauc": None, "logloss": 0.2, "ece": 0.01}
    oracle = {"cvr": {"auc": 0.80, "gauc": 0.7, "logloss": 0.25, "ece": 0.0}}
    if entire is not None:
        oracle["cvr_entire"] = {"auc": 0.85, "gauc": None, "logloss": 0.2, "ece": 0.0}
    return {
        "kind": kind,
        "seed": seed,
        "train_config": {"epochs": epochs, "train_fraction": fraction, "model_kind": kind},
        "validation": {"auc_cvr": cvr - 0.01},
        "seconds": 1.0,
        "best_epoch": best_epoch,
        "rows": {"train": int(1000 * fraction), "validation": 200, "test": 200},
        "metrics": {kind: metrics, "oracle": oracle},
    }


def test_gap_pairs_cover_every_pair_in_canonical_order():
    pairs = quality.gap_pairs(["naive", "esmm", "esm2", "hm3"])
    assert [f"{a}-{b}" for a, b in pairs] == ALL_PAIRS
    assert quality.gap_pairs(["naive", "hm3"]) == [("hm3", "naive")]
    assert quality.gap_pairs(["esmm", "esm2", "naive"]) == [
        ("esm2", "esmm"),
        ("esm2", "naive"),
        ("esmm", "naive"),
    ]
    with pytest.raises(ValueError, match="mmoe"):
        quality.gap_pairs(["hm3", "mmoe"])


def test_paired_auc_draws_equal_the_metrics_bootstrap_exactly():
    rng = np.random.default_rng(3)
    y = (rng.random(3_000) < 0.1).astype(int)
    # Rounded scores: many ties, which both count as one half.
    scores = {k: np.round(rng.random(3_000) + 0.3 * y * i, 2) for i, k in enumerate("abc")}
    fast = quality.paired_auc_draws(y, scores, 25, seed=4)
    reference = bootstrap_auc(y, scores, 25, seed=4)
    for k in scores:
        np.testing.assert_allclose(fast[k], reference[k], rtol=0, atol=1e-13)
    assert fast["c"].mean() > fast["b"].mean() > fast["a"].mean()


def test_paired_gaps_of_a_known_difference_are_exact():
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.2).astype(int)
    scores = {}
    for seed in (0, 1, 2):
        noise = rng.random(2_000) * 1e-3
        scores["hm3", seed] = y + noise  # separates the classes: AUC 1
        scores["naive", seed] = np.full(2_000, 0.5)  # all tied: AUC 0.5
        scores["esmm", seed] = 1 - y + noise  # reversed: AUC 0
    gaps = quality.paired_gaps(y, scores, quality.gap_pairs(["hm3", "esmm", "naive"]), 200)
    assert list(gaps) == ["hm3-esmm", "hm3-naive", "esmm-naive"]
    # Every resample holds both classes, so every resample's gap is the same exact value.
    assert gaps["hm3-esmm"] == {
        "mean": 1.0, "lo": 1.0, "hi": 1.0, "per_seed": [1.0] * 3, "seeds": [0, 1, 2]
    }  # fmt: skip
    assert (gaps["hm3-naive"]["mean"], gaps["hm3-naive"]["lo"], gaps["hm3-naive"]["hi"]) == (
        0.5, 0.5, 0.5
    )  # fmt: skip
    assert (gaps["esmm-naive"]["mean"], gaps["esmm-naive"]["hi"]) == (-0.5, -0.5)


def test_paired_gap_mean_is_the_mean_over_shared_seeds_and_inside_its_interval():
    rng = np.random.default_rng(1)
    n = 4_000
    y = (rng.random(n) < 0.15).astype(int)
    signal = y + rng.normal(0, 1.5, n)
    scores = {}
    for seed in (0, 1, 2):
        scores["hm3", seed] = signal + rng.normal(0, 0.5, n)
        scores["esm2", seed] = signal + rng.normal(0, 1.0, n)
    del scores["esm2", 2]  # esm2 has seeds 0 and 1 only: the gap pairs those
    gaps = quality.paired_gaps(y, scores, [("hm3", "esm2")], 300, seed=5)
    gap = gaps["hm3-esm2"]
    expected = [
        roc_auc_score(y, scores["hm3", s]) - roc_auc_score(y, scores["esm2", s]) for s in (0, 1)
    ]
    assert gap["seeds"] == [0, 1]
    np.testing.assert_allclose(gap["per_seed"], expected, rtol=0, atol=1e-12)
    assert gap["mean"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert gap["mean"] > 0.01  # less noise: a clearly better model
    assert gap["lo"] < gap["mean"] < gap["hi"]
    assert 0 < gap["lo"] and gap["hi"] - gap["lo"] < 0.05
    # The interval is the percentiles of the per-resample mean over seeds of paired differences.
    draws = bootstrap_auc(y, {f"{k}{s}": scores[k, s] for k, s in scores}, 300, seed=5)
    per_resample = np.mean([draws[f"hm3{s}"] - draws[f"esm2{s}"] for s in (0, 1)], axis=0)
    lo, hi = np.percentile(per_resample, [2.5, 97.5])
    assert (gap["lo"], gap["hi"]) == pytest.approx((lo, hi), abs=1e-12)
    no_interval = quality.paired_gaps(y, scores, [("hm3", "esm2")], 0)["hm3-esm2"]
    assert (no_interval["lo"], no_interval["hi"]) == (None, None)
    assert no_interval["mean"] == gap["mean"]
    with pytest.raises(ValueError, match="no seed"):
        quality.paired_gaps(y, {("hm3", 0): signal, ("naive", 1): signal}, [("hm3", "naive")], 0)


@pytest.mark.parametrize(
    ("target", "k", "lower", "upper"),
    [
        (0.75, 2**1.25, None, None),  # a quarter of the way from 2x to 4x in log2
        (0.72, 2**0.5, None, None),  # half way from 1x to 2x
        (0.74, 2.0, None, None),  # exactly the 2x point
        (0.78, 4.0, None, None),  # exactly the 4x point
        (0.79, None, 4.0, None),  # never reached: more than 4x
        (0.70, None, None, 1.0),  # reached at 1x already
        (0.65, None, None, 1.0),
    ],
)
def test_data_multiple_interpolates_in_log2(target, k, lower, upper):
    result = quality.data_multiple(target, {1: 0.70, 2: 0.74, 4: 0.78})
    assert result["k_lower_bound"] == lower and result["k_upper_bound"] == upper
    if k is None:
        assert result["k"] is None
    else:
        assert result["k"] == pytest.approx(k, rel=1e-12)


def test_data_multiple_takes_the_first_crossing_of_a_non_monotone_curve():
    result = quality.data_multiple(0.75, {4: 0.74, 1: 0.70, 2: 0.76})
    assert result["k"] == pytest.approx(2 ** (5 / 6), rel=1e-12)


def test_data_efficiency_section_from_records():
    records = [
        *(fake_record("hm3", s, 0.75 + 0.002 * s, fraction=0.25) for s in (0, 1)),
        *(fake_record("esm2", s, v, fraction=0.25) for s, v in ((0, 0.70), (1, 0.70))),
        *(fake_record("esm2", s, v, fraction=0.5) for s, v in ((0, 0.73), (1, 0.75))),
        *(
            fake_record("esm2", s, v, fraction=1.0, best_epoch=12)
            for s, v in ((0, 0.78), (1, 0.78))
        ),
        fake_record("hm3", 0, 0.9, fraction=1.0),  # the full-data run: not a curve point
        fake_record("esmm", 0, 0.9, fraction=0.5),  # another kind: ignored
    ]
    section = quality.data_efficiency(records, 0.25, "esm2")
    assert section["curve"] == {
        "hm3": {"1": pytest.approx(0.751)},
        "esm2": {"1": 0.70, "2": pytest.approx(0.74), "4": 0.78},
    }
    assert section["curve_per_seed"]["esm2"]["2"] == [0.73, 0.75]
    assert section["curve_per_seed"]["hm3"]["1"] == [0.75, 0.752]
    assert section["best_epochs"]["esm2"]["4"] == [12, 12]
    assert section["train_rows"] == {"hm3": {"1": 250}, "esm2": {"1": 250, "2": 500, "4": 1000}}
    # 0.751 is 0.011 / 0.04 of the way from 2x (0.74) to 4x (0.78) in log2.
    assert section["k"] == pytest.approx(2 ** (1 + 0.011 / 0.04), rel=1e-9)
    assert (section["baseline"], section["k_lower_bound"], section["k_upper_bound"]) == (
        "esm2", None, None
    )  # fmt: skip
    assert quality.format_k(section) == f"{2 ** (1 + 0.011 / 0.04):.2f}"
    assert quality.format_k({"k": None, "k_lower_bound": 4.0, "k_upper_bound": None}) == ">4"
    assert quality.format_k({"k": None, "k_lower_bound": None, "k_upper_bound": 1.0}) == "<=1"
    with pytest.raises(ValueError, match="esmm run on train_fraction 0.25"):
        quality.data_efficiency(records, 0.25, "esmm")


def test_best_baseline_is_the_baseline_with_the_highest_mean():
    kinds = {
        "hm3": {"mean": 0.9},
        "esm2": {"mean": 0.71},
        "esmm": {"mean": 0.72},
        "naive": {"mean": 0.7},
    }
    assert quality.best_baseline(kinds) == "esmm"
    assert quality.best_baseline({"hm3": {"mean": 0.9}}) is None


def test_warning_when_the_best_epoch_is_the_epoch_budget():
    records = [
        fake_record("hm3", 0, 0.7, best_epoch=12, epochs=12),
        fake_record("hm3", 1, 0.7, best_epoch=11, epochs=12),
        fake_record("naive", 0, 0.7, best_epoch=2, epochs=2),
        fake_record("esm2", 2, 0.7, best_epoch=4, epochs=4, fraction=0.25),
    ]
    warnings = quality.convergence_warnings(records)
    assert len(warnings) == 3
    assert warnings[0].startswith("hm3 seed 0: best epoch 12 = the epoch budget 12")
    assert warnings[1].startswith("naive seed 0: best epoch 2 = the epoch budget 2")
    assert warnings[2].startswith("esm2 seed 2 (train_fraction 0.25): best epoch 4")
    assert quality.convergence_warnings(records[1:2]) == []


def test_unique_runs_drops_a_run_listed_twice():
    a, b = fake_record("hm3", 0, 0.7), fake_record("hm3", 1, 0.7)
    assert quality.unique_runs([a, b, a]) == [a, b]


def test_document_shape_from_run_records():
    records = [
        fake_record(kind, seed, cvr + 0.01 * seed, entire=cvr + 0.05, best_epoch=3 + seed)
        for kind, cvr in (("hm3", 0.76), ("naive", 0.70))
        for seed in (0, 1)
    ]
    gaps = {"hm3-naive": {"mean": 0.06, "lo": 0.05, "hi": 0.07}}
    world = {"config": {"impressions": 60_000, "macro_signal": 1.5}, "summary": {}}
    doc = quality.build_document(
        world, records, ["hm3", "naive"], gaps, None, None, warnings=["w"], settings={"seeds": 2}
    )
    doc = json.loads(json.dumps(doc))  # JSON all the way down
    assert list(doc) == [
        "world", "kinds", "oracle", "gaps", "gaps_entire", "data_efficiency", "warnings",
        "settings",
    ]  # fmt: skip
    assert doc["world"] == world
    hm3 = doc["kinds"]["hm3"]
    assert hm3["cvr_auc"] == [0.76, 0.77]
    assert hm3["mean"] == pytest.approx(0.765) and hm3["std"] == pytest.approx(0.005)
    assert hm3["best_epochs"] == [3, 4] and hm3["seeds"] == [0, 1]
    assert hm3["cvr_entire_auc"]["mean"] == pytest.approx(0.81)
    assert doc["kinds"]["naive"]["mean"] == pytest.approx(0.705)
    assert doc["oracle"]["cvr_auc"] == 0.80 and doc["oracle"]["cvr_entire_auc"] == 0.85
    # (0.765 - 0.705) / (0.80 - 0.705)
    assert doc["oracle"]["hm3_closes_naive_gap"] == pytest.approx(0.06 / 0.095)
    assert doc["gaps"] == gaps
    assert doc["gaps_entire"] is None and doc["data_efficiency"] is None
    # Runs scored before cvr_entire existed: the entry is null, the rest unchanged.
    old = [fake_record("hm3", 0, 0.76), fake_record("hm3", 1, 0.77)]
    doc = quality.build_document(world, old, ["hm3"], {}, None, None)
    assert doc["kinds"]["hm3"]["cvr_entire_auc"] is None
    assert doc["oracle"]["cvr_entire_auc"] is None
    assert doc["oracle"]["hm3_closes_naive_gap"] is None


def test_world_name_includes_both_signals_and_arguments_are_checked():
    args = quality.parse_args(
        ["--micro-signal", "0", "--macro-signal", "2", "--impressions", "5", "--users", "7"]
    )
    assert quality.world_name(args) == f"world-5-s0-micro0-macro2-u7-i{WorldConfig().items}"
    assert (args.epochs, args.patience, args.jobs, args.data_efficiency) == (12, 2, 2, False)
    assert args.kinds == ["naive", "esmm", "esm2", "hm3"]
    for bad in (
        ["--data-efficiency", "--de-fraction", "0.3"],  # 4 x 0.3 > the train split
        ["--data-efficiency", "--kinds", "esm2,naive"],  # no hm3
        ["--kinds", "hm3,mmoe"],
        ["--ceiling-draws", "64", "--split", "0.6", "0.1", "0.3"],
    ):
        with pytest.raises(SystemExit):
            quality.parse_args(bad)
    assert math.isclose(quality.parse_args(["--split", "0.6", "0.1", "0.3"]).split[2], 0.3)


def test_score_mismatches_name_runs_whose_predictions_disagree_with_their_record():
    records = [fake_record("hm3", 0, 0.7, entire=0.8), fake_record("naive", 0, 0.6)]
    aucs = {("hm3", 0): 0.8, ("naive", 0): 0.9}
    assert quality.score_mismatches(records, aucs, "cvr_entire") == []  # naive has no record
    aucs["hm3", 0] = 0.81
    (message,) = quality.score_mismatches(records, aucs, "cvr_entire")
    assert message.startswith("hm3 seed 0: cvr_entire AUC 0.810000")
    assert quality.score_mismatches(records, {("hm3", 0): 0.7, ("naive", 0): 0.6}, "cvr") == []


def test_feature_embedding_lr_flag_replaces_the_default_and_keeps_old_cache_tags():
    default = quality.train_config("hm3", 0, quality.parse_args([]))
    assert default["feature_embedding_lr"] == quality.FEATURE_EMBEDDING_LR
    given = quality.parse_args(["--feature-embedding-lr", "item_id=3e-4"])
    assert quality.train_config("hm3", 0, given)["feature_embedding_lr"] == {"item_id": 3e-4}
    cleared = quality.train_config("hm3", 0, quality.parse_args(["--feature-embedding-lr", "none"]))
    assert cleared["feature_embedding_lr"] == {}
    # Runs cached before the option existed had no such key: an empty mapping hashes like them.
    before = {k: v for k, v in cleared.items() if k != "feature_embedding_lr"}
    assert quality.setting_tag(cleared) == quality.setting_tag(before)
    assert quality.setting_tag(default) != quality.setting_tag(cleared)
    with pytest.raises(SystemExit):
        quality.parse_args(["--feature-embedding-lr", "item_id"])
