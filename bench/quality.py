"""Model quality on the simulator: naive CVR, ESMM, ESM^2 and HM^3 on the same time split.

The real path of the pipeline: simulate a world -> `model.data.labels.build_labels` (graph labels
from raw events) -> `model.data.features.retrieve_world` (Feast point-in-time features, service
hm3_v1) -> `model.data.training_table.join_training_table` -> `model.train.trainer.train` per kind
and seed -> scored on the test split by `model.evaluate.scoring.evaluate_predictions`, with the
oracle (the world's true probabilities) on the same rows and labels.

Every model is compared at its own convergence: up to `--epochs` (12) passes, early stopping on
validation CVR AUC after `--patience` (2) epochs without a better one, the best epoch's weights
restored. A run whose best epoch is the last one of the budget may not have converged: it is
named in a WARNING and in the JSON's "warnings".

Runs go to `--jobs` worker processes (1 torch thread each) and are cached per training setting:
`<out>/<world>/runs/<setting tag>/<kind>-<seed>.json` (metrics, best epoch, rows) with the test
split's CVR predictions next to it (`.cvr.npy`), so a rerun only trains what is missing.

Gaps between kinds. For every pair of the kinds run, named "a-b" in the order hm3, esm2, esmm,
naive: the mean over seeds of AUC_a - AUC_b, and a paired bootstrap 95% interval: each resample of
the test rows scores every model on the same rows, the gap of a resample is the mean over seeds of
the paired differences, and the interval is its 2.5 and 97.5 percentiles. An interval above 0
says the ordering holds on this world beyond test-set noise. `gaps` use CVR AUC on the clicked
test rows (label `buy`); `gaps_entire` use CVR AUC on every test impression against the world's
counterfactual `buy_if_clicked` (the CVR model's target in the entire space, which no logged
label shows), when the world's truth.parquet has that column.

Data efficiency (`--data-efficiency`): HM^3 trains on a share f of the train split
(`--de-fraction`, `TrainConfig.train_fraction`: the same random rows for every seed and kind) and
the best baseline at full data (highest mean clicked CVR AUC among esm2, esmm, naive run) on f,
2f and 4f. k is the data multiple at which the baseline's mean CVR AUC reaches HM^3's at 1x,
interpolated linearly in log2(multiple); beyond 4x only a lower bound is known ("k" null,
"k_lower_bound" 4), at 1x already an upper bound ("k" null, "k_upper_bound" 1).

The information ceilings (on by default, `--skip-ceilings` turns them off) score the exact
p(buy | click) when some latents are unknown and integrated over their prior
(`model.world.ceiling`). The label information table (`model.world.label_information`) says,
without a model, how much of each recurring part of purchase intent (item, demographic x category
cells) each model family's labels reveal beyond the features, and the ceiling that allows: about
the most HM^3's D-Micro labels can add over ESM^2. `--reference` adds gradient-boosted trees on
the observable features.

Output: the tables below on stdout and, with `--json FILE`, one document:
    {"world": <world.json>, "kinds": {kind: {cvr_auc: [per seed], mean, std, best_epochs,
     cvr_entire_auc: {mean, std, per_seed} | null, ...}}, "oracle": {cvr_auc, ...},
     "gaps": {"hm3-esm2": {mean, lo, hi, per_seed}, ...}, "gaps_entire": {...} | null,
     "data_efficiency": {k, k_lower_bound, k_upper_bound, curve, ...} | null, "warnings": [...],
     "settings": {...}, "ceilings": ... | null, "reference_gbdt": ... | null}

Usage (writes into .bench/quality/, reuses finished stages and runs):
    nice -n 10 .venv/bin/python bench/quality.py --impressions 2000000 --seeds 3 --json q.json
    nice -n 10 .venv/bin/python bench/quality.py --world-seed 1 --micro-signal 0 \\
        --macro-signal 1.5 --kinds hm3,esm2 --jobs 2 --json q.json
    nice -n 10 .venv/bin/python bench/quality.py --split 0.6 0.1 0.3 --data-efficiency \\
        --de-fraction 0.25 --bootstrap 1000 --bootstrap-entire 200 --json q.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("naive", "esmm", "esm2", "hm3")
BASELINES = ("esm2", "esmm", "naive")
# Chosen on the validation split of the micro_signal 1 world (seed 0), never on test: see
# docs/model.md "Choosing the training setting". The epoch budget is a ceiling, not a choice:
# early stopping picks each run's epoch.
EPOCHS = 12
# The quality world: the simulator's defaults at 3M impressions, split so that the test part has
# ~1,200 purchases (gaps of ~0.005 resolvable) and validation ~450 (early stopping that can
# judge), leaving 1.35M impressions to train on (docs/model.md "Sizing the bench").
IMPRESSIONS = 3_000_000
SPLIT = (0.45, 0.15, 0.40)
PATIENCE = 2
INTERACTION = "dot"
EMBEDDING_LR = 1e-4
# Items, brands and categories recur in the log far more often than a user does, so their rows
# learn at 10x the table's rate before they memorize (chosen on the validation split of the
# quality world, docs/model.md "Choosing the training setting").
FEATURE_EMBEDDING_LR = {"item_id": 1e-3, "brand_id": 1e-3, "category_id": 1e-3}
EMBEDDING_L2 = 0.0
# Data multiples of the baseline in the data-efficiency curve (HM^3 trains at 1).
MULTIPLES = (1, 2, 4)
METRICS = (
    ("cvr", "auc"),
    ("cvr_entire", "auc"),
    ("ctcvr", "auc"),
    ("ctr", "auc"),
    ("cvr", "gauc"),
    ("cvr", "logloss"),
)
ENTIRE = "cvr_entire"  # scored by model.evaluate.scoring on all test rows vs buy_if_clicked
ENTIRE_LABEL = "buy_if_clicked"
# Name prefix of the ceilings whose recurring intent is read from labels (label_information_table).
LABEL_READOUT = "oracle without the user's own intent, the rest read from"
INTENT_READ = ("item_intent", "age_category", "gender_category")


def simulate_world(world_dir: Path, args: argparse.Namespace) -> None:
    """Simulate the world the args describe into `world_dir`, unless it is there already."""
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate

    if (world_dir / "world.json").exists():
        return
    world = WorldConfig(
        impressions=args.impressions,
        seed=args.world_seed,
        micro_signal=args.micro_signal,
        macro_signal=args.macro_signal,
        users=args.users,
        items=args.items,
    )
    simulate(world, world_dir)


def prepare(world_dir: Path, args: argparse.Namespace) -> Path:
    from model.data.features import retrieve_world
    from model.data.labels import build_labels
    from model.data.training_table import join_training_table

    table = world_dir / "train.parquet"
    if table.exists():
        return table
    t0 = time.perf_counter()
    simulate_world(world_dir, args)
    t1 = time.perf_counter()
    build_labels(
        world_dir / "impressions.parquet", world_dir / "events.parquet", world_dir / "labels"
    )
    t2 = time.perf_counter()
    retrieve_world(str(world_dir), str(world_dir / "features"), offline_store="duckdb")
    t3 = time.perf_counter()
    join_training_table(
        world_dir / "labels" / "labels.parquet", world_dir / "features" / "features.parquet", table
    )
    print(
        f"prepared {world_dir.name}: simulate {t1 - t0:.0f}s, labels {t2 - t1:.0f}s, "
        f"features {t3 - t2:.0f}s, join {time.perf_counter() - t3:.0f}s",
        flush=True,
    )
    return table


def world_name(args: argparse.Namespace) -> str:
    """The world's folder name: every world parameter the bench sets."""
    return (
        f"world-{args.impressions}-s{args.world_seed}-micro{args.micro_signal:g}"
        f"-macro{args.macro_signal:g}-u{args.users}-i{args.items}"
    )


def feature_rates(given: list[tuple[str, float]] | None) -> dict[str, float]:
    """--feature-embedding-lr as a TrainConfig mapping: the default unless given; `none` clears."""
    if given is None:
        return dict(FEATURE_EMBEDDING_LR)
    return {name: rate for name, rate in given if name != "none"}


def _feature_rate(text: str) -> tuple[str, float]:
    """`FEATURE=LR` (or `none`) -> (feature, lr), for --feature-embedding-lr."""
    if text == "none":
        return "none", 0.0
    name, sep, rate = text.partition("=")
    try:
        if not (sep and name):
            raise ValueError
        return name, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected FEATURE=LR, e.g. item_id=1e-3; got {text!r}"
        ) from None


def setting_tag(train_config: dict) -> str:
    """Runs are cached per training setting: everything but kind and seed.

    An empty `feature_embedding_lr` is left out, so runs cached before that option existed keep
    their tag (they trained without it).
    """
    setting = {
        k: v
        for k, v in train_config.items()
        if k not in ("model_kind", "seed") and not (k == "feature_embedding_lr" and not v)
    }
    return hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:10]


def train_config(
    kind: str, seed: int, args: argparse.Namespace, train_fraction: float = 1.0
) -> dict:
    """The validated `TrainConfig` of one run, as its JSON dict (what is cached and recorded)."""
    from model.train.trainer import TrainConfig

    return TrainConfig(
        model_kind=kind,
        embedding_dim=args.dim,
        interaction=args.interaction,
        hidden=tuple(args.hidden),
        dropout=args.dropout,
        lr=args.lr,
        embedding_lr=args.embedding_lr,
        feature_embedding_lr=feature_rates(args.feature_embedding_lr),
        embedding_l2=args.embedding_l2,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        split=tuple(args.split),
        train_fraction=train_fraction,
        seed=seed,
        device="cpu",
        threads=args.threads,
        progress=False,
    ).to_dict()


def run_paths(world_dir: Path, config: dict) -> tuple[Path, Path, Path]:
    """(record json, test CVR predictions .npy, model folder) of a run."""
    tag = setting_tag(config)
    name = f"{config['model_kind']}-{config['seed']}"
    runs = world_dir / "runs" / tag
    return runs / f"{name}.json", runs / f"{name}.cvr.npy", world_dir / "models" / tag / name


def cached_run(world_dir: Path, config: dict) -> dict | None:
    """The finished run of this setting, kind and seed, or None."""
    record_file, _, _ = run_paths(world_dir, config)
    return json.loads(record_file.read_text()) if record_file.exists() else None


def run(world_dir: Path, table: Path, config: dict) -> dict:
    """Train one model, score it on the test split and cache the record (a worker's job)."""
    from model.artifact import load_model
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions
    from model.train.trainer import TrainConfig, train

    logging.basicConfig(level=logging.WARNING)
    cfg = TrainConfig.from_dict(config)
    record_file, predictions_file, out = run_paths(world_dir, config)
    started = time.perf_counter()
    res = train(table, out, cfg)
    seconds = time.perf_counter() - started
    frame, _ = load_eval_frame(
        str(table),
        EvalConfig(),
        truth_path=str(world_dir / "truth.parquet"),
        fractions=cfg.split,
    )
    preds = load_model(out).predict(frame)
    # The gaps between kinds come from `paired_gaps` over seeds; no per-run intervals.
    scores = evaluate_predictions(frame, {cfg.model_kind: preds}, EvalConfig(bootstrap=0))
    record = {
        "kind": cfg.model_kind,
        "seed": cfg.seed,
        "train_config": config,
        "validation": res.validation,
        "seconds": seconds,
        "best_epoch": res.best_epoch,
        "epochs_run": len(res.history),
        "rows": json.loads((out / "config.json").read_text())["rows"],
        "metrics": {
            name: {
                t: {k: getattr(r, k) for k in ("auc", "gauc", "logloss", "ece")}
                for t, r in tasks.items()
            }
            for name, tasks in scores.items()
        },
    }
    record_file.parent.mkdir(parents=True, exist_ok=True)
    np.save(predictions_file, preds["cvr"])
    record_file.write_text(json.dumps(record, indent=2))
    return record


def run_all(
    world_dir: Path, table: Path, configs: Sequence[dict], pool: ProcessPoolExecutor
) -> list[dict]:
    """Cached records, then the missing runs on the pool; prints a line per run as it ends."""
    records: dict[int, dict] = {}
    for i, config in enumerate(configs):
        cached = cached_run(world_dir, config)
        if cached is not None:
            records[i] = cached
            print(run_line(cached, cached=True), flush=True)
    missing = [i for i in range(len(configs)) if i not in records]
    futures = {pool.submit(run, world_dir, table, configs[i]): i for i in missing}
    for future in as_completed(futures):
        records[futures[future]] = future.result()
        print(run_line(records[futures[future]]), flush=True)
    return [records[i] for i in range(len(configs))]


def run_line(record: dict, cached: bool = False) -> str:
    """One output line per finished run."""
    config = record["train_config"]
    fraction = config.get("train_fraction", 1.0)
    share = f" on {fraction:g} of train" if fraction < 1 else ""
    return (
        f"  {record['kind']} seed {record['seed']}{share}: CVR AUC "
        f"{record['metrics'][record['kind']]['cvr']['auc']:.4f}, best epoch "
        f"{record['best_epoch']}/{config['epochs']} "
        f"({record['seconds']:.0f}s{', cached' if cached else ''})"
    )


def cvr_predictions(world_dir: Path, frame: pd.DataFrame, record: dict) -> np.ndarray:
    """A run's CVR predictions on every row of the test frame (cached next to its record)."""
    _, predictions_file, model_dir = run_paths(world_dir, record["train_config"])
    if predictions_file.exists():
        cvr = np.load(predictions_file)
    else:  # a record from before the predictions were cached
        from model.artifact import load_model

        cvr = load_model(model_dir).predict(frame)["cvr"]
        np.save(predictions_file, cvr)
    if cvr.shape != (len(frame),):
        raise ValueError(
            f"{predictions_file}: {cvr.shape[0]} predictions for {len(frame)} test rows; "
            "delete the run folder and rerun"
        )
    return cvr


# --- gaps between kinds -----------------------------------------------------------------------


def gap_pairs(kinds: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair (a, b) of the kinds, a before b in the order hm3, esm2, esmm, naive."""
    from model.evaluate.scoring import KIND_ORDER

    unknown = sorted(set(kinds) - set(KIND_ORDER))
    if unknown:
        raise ValueError(f"unknown kinds {unknown}; known: {list(KIND_ORDER)}")
    ordered = [k for k in KIND_ORDER if k in kinds]
    return [(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]


def paired_auc_draws(
    labels: np.ndarray, scores: Mapping[object, np.ndarray], resamples: int, seed: int = 0
) -> dict[object, np.ndarray]:
    """AUC of every score on the same bootstrap resamples of the rows: paired draws.

    The same draws as `model.evaluate.metrics.bootstrap_auc` (the same generator calls, the same
    values exactly), faster on many rows: each score's negatives are sorted and every positive
    located among them once; a resample then costs one gather and one cumulative sum of the
    resampled counts of the negatives per score. Measured for 12 scores on the shared 2-core
    machine under load: ~0.3 s per resample on 1M rows (bootstrap_auc: ~2.7 s), ~6 ms on 40k.

    Args:
        labels: 0/1 labels of shape (n,).
        scores: Key -> scores of shape (n,).
        resamples: Number of resamples (n rows drawn with replacement).
        seed: Seed of the resampling.

    Returns:
        Key -> AUC per resample, shape (resamples,); NaN where a resample holds one class.
    """
    from model.evaluate.metrics import check_labels

    y = check_labels(labels).astype(bool)
    n = y.size
    positives = np.flatnonzero(y)
    negatives = np.flatnonzero(~y)
    located = {}
    for key, raw in scores.items():
        s = np.asarray(raw, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"scores {key!r} have shape {s.shape}, expected ({n},)")
        neg_order = negatives[np.argsort(s[negatives], kind="stable")]
        neg_scores = s[neg_order]
        pos_scores = s[positives]
        # Negatives strictly below and at or below each positive, as prefix lengths.
        below = np.searchsorted(neg_scores, pos_scores, side="left")
        at_or_below = np.searchsorted(neg_scores, pos_scores, side="right")
        located[key] = (neg_order, below, at_or_below)
    rng = np.random.default_rng(seed)
    out = {key: np.full(resamples, np.nan) for key in scores}
    prefix = np.zeros(negatives.size + 1, dtype=np.int64)
    for r in range(resamples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.int32)
        pos_counts = counts[positives].astype(np.int64)
        n_pos = int(pos_counts.sum())
        for key, (neg_order, below, at_or_below) in located.items():
            np.cumsum(counts[neg_order], out=prefix[1:])
            n_neg = int(prefix[-1])
            if n_pos and n_neg:
                # Twice the weighted Mann-Whitney U: 2 per negative below, 1 per tie.
                u2 = int(np.dot(pos_counts, prefix[below] + prefix[at_or_below]))
                out[key][r] = u2 / (2.0 * n_pos * n_neg)
    return out


def paired_gaps(
    labels: np.ndarray,
    scores: Mapping[tuple[str, int], np.ndarray],
    pairs: Sequence[tuple[str, str]],
    resamples: int,
    seed: int = 0,
) -> dict[str, dict]:
    """AUC gap of each pair of kinds: mean over seeds, paired bootstrap 95% interval.

    Args:
        labels: 0/1 labels of the scored rows, shape (n,).
        scores: (kind, seed) -> scores of the same rows.
        pairs: (a, b) kinds; the gap is AUC_a - AUC_b over the seeds both have.
        resamples: Bootstrap resamples of the rows; 0 = no interval (lo, hi None).
        seed: Seed of the resampling.

    Returns:
        "a-b" -> {"mean": mean over seeds of the AUC difference, "lo", "hi": 2.5 and 97.5
        percentiles over resamples of the mean over seeds of the paired differences on the
        resampled rows, "per_seed": the differences per seed, "seeds": the seeds}.

    Raises:
        ValueError: When a pair has no seed in common.
    """
    from model.evaluate.metrics import auc

    seeds_of = {}
    for a, b in pairs:
        common = sorted({s for k, s in scores if k == a} & {s for k, s in scores if k == b})
        if not common:
            raise ValueError(f"no seed has scores of both {a!r} and {b!r}")
        seeds_of[a, b] = common
    used = sorted({(k, s) for (a, b), seeds in seeds_of.items() for k in (a, b) for s in seeds})
    point = {key: auc(labels, scores[key]) for key in used}
    draws = paired_auc_draws(labels, {key: scores[key] for key in used}, resamples, seed)
    out = {}
    for (a, b), seeds in seeds_of.items():
        per_seed = [point[a, s] - point[b, s] for s in seeds]
        lo = hi = None
        if resamples > 0:
            gap_draws = np.mean([draws[a, s] - draws[b, s] for s in seeds], axis=0)
            lo, hi = (float(v) for v in np.nanpercentile(gap_draws, [2.5, 97.5]))
        out[f"{a}-{b}"] = {
            "mean": float(np.mean(per_seed)),
            "lo": lo,
            "hi": hi,
            "per_seed": per_seed,
            "seeds": seeds,
        }
    return out


# --- data efficiency ---------------------------------------------------------------------------


def data_multiple(target: float, curve: Mapping[float, float]) -> dict[str, float | None]:
    """The data multiple at which a learning curve first reaches `target`.

    Linear interpolation of the curve's value in log2(multiple) between the two points that
    bracket `target` (the first crossing when the curve is not monotone).

    Args:
        target: The value to reach (HM^3's mean CVR AUC at 1x).
        curve: Multiple -> value (the baseline's mean CVR AUC at 1x, 2x, 4x).

    Returns:
        {"k": the multiple, or None when only a bound is known; "k_lower_bound": the largest
        multiple when the curve never reaches `target`; "k_upper_bound": the smallest multiple
        when the curve is already at or above `target` there}.
    """
    points = sorted(curve.items())
    if not points:
        raise ValueError("the curve has no points")
    first_multiple, first_value = points[0]
    if first_value >= target:
        return {"k": None, "k_lower_bound": None, "k_upper_bound": float(first_multiple)}
    for (m_lo, v_lo), (m_hi, v_hi) in zip(points, points[1:], strict=False):
        if v_hi >= target:  # and v_lo < target: the first crossing
            share = (target - v_lo) / (v_hi - v_lo)
            log_k = math.log2(m_lo) + share * (math.log2(m_hi) - math.log2(m_lo))
            return {"k": 2.0**log_k, "k_lower_bound": None, "k_upper_bound": None}
    return {"k": None, "k_lower_bound": float(points[-1][0]), "k_upper_bound": None}


def best_baseline(kinds: Mapping[str, dict]) -> str | None:
    """The baseline kind with the highest mean clicked CVR AUC among those run (or None)."""
    run = [k for k in BASELINES if k in kinds]
    return max(run, key=lambda k: kinds[k]["mean"]) if run else None


def data_efficiency(records: Sequence[dict], fraction: float, baseline: str) -> dict:
    """The data-efficiency section from HM^3's runs at `fraction` and the baseline's at m x it.

    Args:
        records: Run records; HM^3's at train_fraction `fraction` and the baseline's at
            `m * fraction` for m in MULTIPLES are used, the others ignored.
        fraction: HM^3's share of the train split (the 1x point).
        baseline: The baseline kind.

    Returns:
        {"fraction", "baseline", "k", "k_lower_bound", "k_upper_bound", "curve": {kind:
        {multiple: mean CVR AUC}}, "curve_per_seed", "best_epochs", "train_rows"}.

    Raises:
        ValueError: When a point of the curve has no run.
    """
    wanted = {("hm3", 1): fraction} | {(baseline, m): m * fraction for m in MULTIPLES}
    per_seed: dict[str, dict[str, list]] = {}
    epochs: dict[str, dict[str, list]] = {}
    rows: dict[str, dict[str, int]] = {}
    for (kind, multiple), share in wanted.items():
        runs = sorted(
            (
                r
                for r in records
                if r["kind"] == kind
                and math.isclose(r["train_config"].get("train_fraction", 1.0), share)
            ),
            key=lambda r: r["seed"],
        )
        if not runs:
            raise ValueError(f"no {kind} run on train_fraction {share:g} ({multiple}x)")
        key = str(multiple)
        per_seed.setdefault(kind, {})[key] = [r["metrics"][kind]["cvr"]["auc"] for r in runs]
        epochs.setdefault(kind, {})[key] = [r["best_epoch"] for r in runs]
        if "rows" in runs[0]:
            rows.setdefault(kind, {})[key] = runs[0]["rows"]["train"]
    curve = {k: {m: float(np.mean(v)) for m, v in c.items()} for k, c in per_seed.items()}
    baseline_curve = {float(m): v for m, v in curve[baseline].items()}
    return {
        "fraction": fraction,
        "baseline": baseline,
        **data_multiple(curve["hm3"]["1"], baseline_curve),
        "curve": curve,
        "curve_per_seed": per_seed,
        "best_epochs": epochs,
        "train_rows": rows,
    }


def format_k(section: Mapping) -> str:
    """k as text: "2.31", ">4" or "<=1"."""
    if section["k"] is not None:
        return f"{section['k']:.2f}"
    if section["k_lower_bound"] is not None:
        return f">{section['k_lower_bound']:g}"
    return f"<={section['k_upper_bound']:g}"


# --- the document -----------------------------------------------------------------------------


def unique_runs(records: Sequence[dict]) -> list[dict]:
    """The records without repeats of a run (same setting, kind and seed), in order."""
    seen, out = set(), []
    for r in records:
        key = (setting_tag(r["train_config"]), r["kind"], r["seed"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def convergence_warnings(records: Sequence[dict]) -> list[str]:
    """A warning per run whose best epoch is the last of its epoch budget."""
    out = []
    for r in records:
        budget = r["train_config"]["epochs"]
        if r["best_epoch"] >= budget:
            fraction = r["train_config"].get("train_fraction", 1.0)
            share = f" (train_fraction {fraction:g})" if fraction < 1 else ""
            out.append(
                f"{r['kind']} seed {r['seed']}{share}: best epoch {r['best_epoch']} = the epoch "
                f"budget {budget}: it may not have converged; raise --epochs"
            )
    return out


def kind_summary(records: Sequence[dict], kind: str) -> dict:
    """Per-kind entry of the document: clicked CVR AUC per seed, mean, std, best epochs, ..."""
    runs = sorted((r for r in records if r["kind"] == kind), key=lambda r: r["seed"])
    if not runs:
        raise ValueError(f"no runs of {kind!r}")
    cvr = [r["metrics"][kind]["cvr"]["auc"] for r in runs]
    entire = [r["metrics"][kind].get(ENTIRE, {}).get("auc") for r in runs]
    return {
        "seeds": [r["seed"] for r in runs],
        "cvr_auc": cvr,
        "mean": float(np.mean(cvr)),
        "std": float(np.std(cvr)),  # over seeds, ddof 0
        "best_epochs": [r["best_epoch"] for r in runs],
        "validation_cvr_auc": [r["validation"].get("auc_cvr") for r in runs],
        "cvr_entire_auc": None
        if any(v is None for v in entire)
        else {"mean": float(np.mean(entire)), "std": float(np.std(entire)), "per_seed": entire},
    }


def oracle_summary(records: Sequence[dict], kinds: Mapping[str, dict]) -> dict | None:
    """The oracle's CVR AUCs (the same rows for every run) and the share of the gap HM^3 closes."""
    scored = [r["metrics"]["oracle"] for r in records if "oracle" in r["metrics"]]
    if not scored:
        return None
    cvr = float(scored[0]["cvr"]["auc"])
    entire = scored[0].get(ENTIRE, {}).get("auc")
    closes = None
    if {"hm3", "naive"} <= set(kinds) and cvr != kinds["naive"]["mean"]:
        closes = (kinds["hm3"]["mean"] - kinds["naive"]["mean"]) / (cvr - kinds["naive"]["mean"])
    return {"cvr_auc": cvr, "cvr_entire_auc": entire, "hm3_closes_naive_gap": closes}


def build_document(
    world: dict,
    records: Sequence[dict],
    kinds: Sequence[str],
    gaps: dict,
    gaps_entire: dict | None,
    data_efficiency: dict | None,
    **extra: object,
) -> dict:
    """The JSON document of a bench run, from the full-data run records and computed sections.

    Args:
        world: The world's world.json.
        records: Run records at train_fraction 1 (the data-efficiency runs are summarized in
            `data_efficiency`).
        kinds: The kinds run, in the order to list them.
        gaps: `paired_gaps` on the clicked test rows.
        gaps_entire: `paired_gaps` on all test rows against buy_if_clicked, or None.
        data_efficiency: `data_efficiency(...)`, or None when not run.
        **extra: More top-level entries (settings, warnings, ceilings, reference_gbdt).
    """
    summaries = {k: kind_summary(records, k) for k in kinds}
    return {
        "world": world,
        "kinds": summaries,
        "oracle": oracle_summary(records, summaries),
        "gaps": gaps,
        "gaps_entire": gaps_entire,
        "data_efficiency": data_efficiency,
        **extra,
    }


# --- text output --------------------------------------------------------------------------------


def table(records: list[dict], kinds: list[str]) -> tuple[str, dict]:
    header = "| model | CVR AUC | CVR AUC entire | CTCVR AUC | CTR AUC | CVR GAUC | CVR log loss |"
    lines = [header, "|" + "---|" * (len(METRICS) + 1)]
    per_kind: dict[str, dict[tuple[str, str], list[float]]] = {}
    for rec in records:
        for name, tasks in rec["metrics"].items():
            if name != rec["kind"] and name != "oracle":
                continue
            key = "oracle" if name == "oracle" else name
            bucket = per_kind.setdefault(key, {})
            for task, metric in METRICS:
                value = tasks.get(task, {}).get(metric)
                if value is not None:
                    bucket.setdefault((task, metric), []).append(value)
    for name in [*kinds, "oracle"]:
        if name not in per_kind:
            continue
        cells = []
        for key in METRICS:
            values = per_kind[name].get(key, [])
            cells.append(f"{np.mean(values):.4f} ± {np.std(values):.4f}" if values else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines), per_kind


def gap_table(gaps: Mapping[str, dict], what: str, resamples: int, rows: int) -> str:
    """Markdown table of `paired_gaps` output."""
    seeds = max((len(g["seeds"]) for g in gaps.values()), default=0)
    lines = [
        f"| gap ({what}) | mean over {seeds} seeds | per seed | paired bootstrap 95% interval "
        f"({resamples} resamples of {rows:,} rows) | above 0 |",
        "|---|---|---|---|---|",
    ]
    for name, g in gaps.items():
        per_seed = ", ".join(f"{d:+.4f}" for d in g["per_seed"])
        if g["lo"] is None:
            interval, above = "-", "-"
        else:
            interval = f"[{g['lo']:+.4f}, {g['hi']:+.4f}]"
            above = "yes" if g["lo"] > 0 else "no"
        lines.append(f"| {name} | {g['mean']:+.4f} | {per_seed} | {interval} | {above} |")
    return "\n".join(lines)


def efficiency_text(section: Mapping) -> str:
    """The data-efficiency curve and k, as text."""
    baseline = section["baseline"]
    rows = section.get("train_rows", {})
    lines = [
        f"Data efficiency: HM^3 on {section['fraction']:g} of the train split vs {baseline} "
        "(best baseline at full data) on 1x, 2x, 4x that (mean CVR AUC over seeds)",
        "",
        "| model | multiple | train rows | CVR AUC | per seed | best epochs |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("hm3", baseline):
        for multiple, mean in section["curve"][kind].items():
            per_seed = ", ".join(f"{v:.4f}" for v in section["curve_per_seed"][kind][multiple])
            n = rows.get(kind, {}).get(multiple)
            lines.append(
                f"| {kind} | {multiple}x | {f'{n:,}' if n else '-'} | {mean:.4f} | {per_seed} | "
                f"{section['best_epochs'][kind][multiple]} |"
            )
    if section["k"] is not None:
        meaning = (
            f"{baseline} needs {section['k']:.2f}x the impressions HM^3 sees to match its CVR "
            "AUC (linear in log2 of the multiple between the bracketing points)"
        )
    elif section["k_lower_bound"] is not None:
        meaning = f"{baseline} stays below HM^3 even on {section['k_lower_bound']:g}x the data"
    else:
        meaning = f"{baseline} matches HM^3 on the same data already"
    lines.append(f"\nk = {format_k(section)}: {meaning}")
    return "\n".join(lines)


# --- yardsticks ---------------------------------------------------------------------------------


def check_truth(world_dir: Path, mismatch: float) -> None:
    """Ceilings rebuild the world from world.json; refuse them when it is not the one written.

    Raises:
        RuntimeError: When the rebuilt truth differs from truth.parquet.
    """
    if mismatch > 1e-12:
        raise RuntimeError(
            f"the rebuilt world does not reproduce {world_dir}/truth.parquet (max |diff| "
            f"{mismatch:.3g}): simulator changed since the world was written?"
        )


def ceilings(world_dir: Path, table_path: Path, split: tuple[float, float, float]) -> dict:
    """Score the information ceilings on the test split; cached per split and source code."""
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions
    from model.world import ceiling, world_files

    integration = ceiling.Integration()
    world_sources = (
        "ceiling.py",
        "label_information.py",
        "world_files.py",
        "mechanism.py",
        "sampling.py",
    )
    sources = [(ROOT / "model" / "world" / f).read_text() for f in world_sources]
    key = json.dumps(
        [repr(integration), list(split), [repr(k) for k in ceiling.CEILINGS], *sources],
        sort_keys=True,
    )
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    result_file = world_dir / "ceiling" / f"{tag}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    started = time.perf_counter()
    frame, _ = load_eval_frame(
        str(table_path), EvalConfig(), truth_path=str(world_dir / "truth.parquet"), fractions=split
    )
    probs, mismatch = world_files.ceiling_predictions(world_dir, frame, integration=integration)
    check_truth(world_dir, mismatch)
    train, _ = load_eval_frame(str(table_path), EvalConfig(split="train"), fractions=split)
    information = world_files.label_information(world_dir, train, frame, integration)
    del train
    readout = {name: f"{LABEL_READOUT} {name}" for name in information}
    probs |= {readout[name]: v["cvr"] for name, v in information.items()}
    scores = evaluate_predictions(
        frame, {name: {"cvr": p} for name, p in probs.items()}, EvalConfig(bootstrap=0)
    )
    record = {
        "integration": repr(integration),
        "clicked_rows": int(frame["click"].sum()),
        "truth_mismatch": mismatch,
        "seconds": time.perf_counter() - started,
        "metrics": {
            name: {k: getattr(scores[name]["cvr"], k) for k in ("auc", "gauc", "logloss", "ece")}
            for name in ("oracle", *probs)
            if name not in readout.values()
        },
        "label_information": {
            name: {"r2": v["r2"], "cvr_auc": scores[readout[name]]["cvr"].auc}
            for name, v in information.items()
        },
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(record, indent=2))
    return record


def label_information_table(record: dict) -> str:
    """Intent read from each family's labels: R^2 per recurring part, the CVR ceiling it allows."""
    lines = [
        "| labels read (read out by trees, cross-fitted) | R^2: item intent | age x category "
        "| gender x category | CVR AUC ceiling |",
        "|---|---|---|---|---|",
    ]
    for name, v in record["label_information"].items():
        r2 = " | ".join(f"{v['r2'][part]:.3f}" for part in INTENT_READ)
        lines.append(f"| {name} | {r2} | {v['cvr_auc']:.4f} |")
    return "\n".join(lines)


def ceiling_table(record: dict, cvr: dict[str, np.ndarray]) -> str:
    """The oracle and the ceilings, then naive and HM^3 (CVR AUC mean over seeds) for reference."""
    lines = ["| knowledge | CVR AUC | CVR GAUC | CVR log loss |", "|---|---|---|---|"]
    for name, metrics in record["metrics"].items():
        label = "oracle (all latents known)" if name == "oracle" else name
        cells = " | ".join(f"{metrics[k]:.4f}" for k in ("auc", "gauc", "logloss"))
        lines.append(f"| {label} | {cells} |")
    for name in ("hm3", "naive"):
        if name in cvr:
            lines.append(f"| {name} (model, mean over seeds) | {cvr[name].mean():.4f} | - | - |")
    return "\n".join(lines)


def reference_gbdt(table_path: Path, fractions: Sequence[float] | None = None) -> dict:
    """CVR AUC of gradient-boosted trees on the observable features, clicked rows only.

    A learner of another family as a yardstick for "what these features give": sklearn's
    HistGradientBoostingClassifier on every non-id feature (ids excluded: a tree cannot use 50k
    user ids; categoricals with more than 255 levels, brand_id here, enter as integer codes),
    trained on the clicked rows of the train split (it is a naive CVR learner), early-stopped on a
    held-out 15% of them, scored by `evaluate_predictions` on the same test rows and labels.
    `fractions` is the time split (default: the trainer's).
    """
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier

    from model.data import schema
    from model.data.encoding import feature_kinds
    from model.data.split import DEFAULT_SPLIT, split_by_time
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions

    fractions = DEFAULT_SPLIT if fractions is None else tuple(fractions)
    started = time.perf_counter()
    table = pq.read_table(table_path)
    kinds = {n: k for n, k in feature_kinds(table.schema).items() if k != schema.KIND_ID}
    train = split_by_time(table, fractions)["train"].to_pandas()
    train = train[train["click"] == 1]
    test, _ = load_eval_frame(str(table_path), EvalConfig(), fractions=fractions)
    levels = {
        n: train[n].astype("category").cat.categories
        for n, k in kinds.items()
        if k == schema.KIND_CATEGORICAL
    }

    def features(frame):
        x = frame[list(kinds)].copy()
        for name, cats in levels.items():
            x[name] = pd.Categorical(frame[name], categories=cats).codes  # unseen -> -1
        return x.astype(float)

    as_categorical = [n for n, cats in levels.items() if len(cats) <= 255]
    model = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=400,
        max_leaf_nodes=15,
        min_samples_leaf=100,
        l2_regularization=1.0,
        categorical_features=as_categorical,
        early_stopping=True,
        validation_fraction=0.15,
        random_state=0,
    )
    model.fit(features(train), train["buy"].to_numpy())
    probs = model.predict_proba(features(test))[:, 1]  # code -1 (unseen) counts as missing
    result = evaluate_predictions(test, {"gbdt": {"cvr": probs}})["gbdt"]["cvr"]
    return {
        "auc": result.auc,
        "gauc": result.gauc,
        "logloss": result.logloss,
        "iterations": int(model.n_iter_),
        "features": len(kinds),
        "seconds": time.perf_counter() - started,
    }


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from model.world.mechanism import WorldConfig

    world = WorldConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impressions", type=int, default=IMPRESSIONS)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument(
        "--micro-signal", type=float, default=world.micro_signal, help="(simulator default)"
    )
    parser.add_argument(
        "--macro-signal", type=float, default=world.macro_signal, help="(simulator default)"
    )
    parser.add_argument("--users", type=int, default=world.users, help="(simulator default)")
    parser.add_argument("--items", type=int, default=world.items, help="(simulator default)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--epochs", type=int, default=EPOCHS, help="Epoch budget; early stopping picks the epoch."
    )
    parser.add_argument(
        "--patience", type=int, default=PATIENCE, help="Early stopping on validation CVR AUC."
    )
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=list(SPLIT),
        metavar=("TRAIN", "VALIDATION", "TEST"),
        help="Time-split shares (TrainConfig.split); the test share sets the scored rows.",
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=12)
    parser.add_argument("--interaction", default=INTERACTION, help="See TrainConfig.")
    parser.add_argument("--embedding-lr", type=float, default=EMBEDDING_LR)
    parser.add_argument(
        "--feature-embedding-lr",
        type=_feature_rate,
        action="append",
        default=None,
        metavar="FEATURE=LR",
        help="Learning rate of one feature's embedding rows (TrainConfig.feature_embedding_lr), "
        "e.g. item_id=1e-3; repeat for several features. Given, it replaces the default "
        f"{FEATURE_EMBEDDING_LR}; `none` alone trains every row at --embedding-lr.",
    )
    parser.add_argument("--embedding-l2", type=float, default=EMBEDDING_L2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1, help="Torch threads per run.")
    parser.add_argument("--jobs", type=int, default=2, help="Runs trained in parallel.")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "quality")
    parser.add_argument("--json", type=Path, default=None, help="Write the results document.")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="Paired bootstrap resamples of the clicked test rows for the gaps (0: no interval).",
    )
    parser.add_argument(
        "--bootstrap-entire",
        type=int,
        default=200,
        help="Resamples of all test rows for the entire-space gaps (~0.3 s each for 12 runs on "
        "1M rows; 0: no interval).",
    )
    parser.add_argument(
        "--data-efficiency",
        action="store_true",
        help="Train HM^3 on --de-fraction of the train split and the best baseline on 1x, 2x, "
        "4x that; report the multiple k at which the baseline matches HM^3.",
    )
    parser.add_argument("--de-fraction", type=float, default=0.25)
    parser.add_argument(
        "--skip-ceilings",
        action="store_true",
        help="Skip the information ceilings (model/world/ceiling.py: the oracle with parts of "
        "intent hidden; exact quadrature, seconds).",
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="Add the gradient-boosted-trees yardstick on the observable features (~15 s).",
    )
    args = parser.parse_args(argv)
    args.kinds = args.kinds.split(",")
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown:
        parser.error(f"--kinds: unknown {unknown}; known: {list(KINDS)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    for name in ("bootstrap", "bootstrap_entire"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.data_efficiency:
        if "hm3" not in args.kinds or not set(BASELINES) & set(args.kinds):
            parser.error("--data-efficiency needs hm3 and at least one baseline in --kinds")
        if not 0 < args.de_fraction * MULTIPLES[-1] <= 1:
            parser.error(
                f"--de-fraction must be in (0, {1 / MULTIPLES[-1]:g}] so that the baseline's "
                f"{MULTIPLES[-1]}x fits in the train split, got {args.de_fraction:g}"
            )
    return args


def entire_labels(world_dir: Path, frame: pd.DataFrame) -> np.ndarray | None:
    """buy_if_clicked of every test row from the world's truth.parquet, or None if it lacks it."""
    import pyarrow.parquet as pq

    truth_path = world_dir / "truth.parquet"
    if ENTIRE_LABEL not in pq.read_schema(truth_path).names:
        return None
    truth = pq.read_table(truth_path, columns=["impression_id", ENTIRE_LABEL]).to_pandas()
    joined = frame[["impression_id"]].merge(truth, on="impression_id", how="left")
    if joined[ENTIRE_LABEL].isna().any():
        raise ValueError(f"{truth_path}: {ENTIRE_LABEL} missing for some test impressions")
    return joined[ENTIRE_LABEL].to_numpy().astype(np.int64)


def score_mismatches(
    records: Sequence[dict], aucs: Mapping[tuple[str, int], float], task: str
) -> list[str]:
    """Runs whose recorded `task` AUC differs from the AUC of their cached test predictions."""
    out = []
    for r in records:
        recorded = r["metrics"][r["kind"]].get(task, {}).get("auc")
        mine = aucs.get((r["kind"], r["seed"]))
        if recorded is not None and mine is not None and abs(recorded - mine) > 1e-9:
            out.append(
                f"{r['kind']} seed {r['seed']}: {task} AUC {mine:.6f} of the cached predictions "
                f"differs from the run's recorded {recorded:.6f}"
            )
    return out


def train_runs(
    world_dir: Path, table: Path, args: argparse.Namespace
) -> tuple[list[dict], list[dict], str | None]:
    """Every run the arguments ask for, on `--jobs` workers.

    Returns:
        (full-data records in (seed, kind) order, data-efficiency records, the baseline of the
        data-efficiency curve or None).
    """
    main_configs = [train_config(k, s, args) for s in range(args.seeds) for k in args.kinds]
    de_hm3 = [train_config("hm3", s, args, args.de_fraction) for s in range(args.seeds)]
    baseline = None
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        print(f"runs ({args.jobs} in parallel, {args.threads} thread(s) each):", flush=True)
        configs = main_configs + (de_hm3 if args.data_efficiency else [])
        records = run_all(world_dir, table, configs, pool)
        main_records, de_records = records[: len(main_configs)], records[len(main_configs) :]
        if args.data_efficiency:
            baseline = best_baseline({k: kind_summary(main_records, k) for k in args.kinds})
            print(
                f"data efficiency: {baseline} on {list(MULTIPLES)} x {args.de_fraction:g} of the "
                "train split",
                flush=True,
            )
            multiples = [
                train_config(baseline, s, args, m * args.de_fraction)
                for m in MULTIPLES
                for s in range(args.seeds)
            ]
            de_records += run_all(world_dir, table, multiples, pool)
    return main_records, de_records, baseline


def score_gaps(
    world_dir: Path, table: Path, records: Sequence[dict], args: argparse.Namespace
) -> dict:
    """The gaps on the clicked test rows and, when the world has buy_if_clicked, on all of them.

    Returns:
        {"gaps", "gaps_entire" (None without the label), "test_rows", "clicked_test_rows",
        "gaps_seconds", "gaps_entire_seconds", "mismatches" (runs whose recorded cvr_entire AUC
        differs from the one of the gaps)}.

    Raises:
        RuntimeError: When a run's cached predictions do not give its recorded CVR AUC.
    """
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.metrics import auc
    from model.evaluate.scoring import EvalConfig

    frame, _ = load_eval_frame(str(table), EvalConfig(), fractions=tuple(args.split))
    clicked = frame["click"].to_numpy() == 1
    predictions = {(r["kind"], r["seed"]): cvr_predictions(world_dir, frame, r) for r in records}
    pairs = gap_pairs(args.kinds)
    y = frame["buy"].to_numpy()[clicked]
    clicked_scores = {key: p[clicked] for key, p in predictions.items()}
    stale = score_mismatches(records, {k: auc(y, p) for k, p in clicked_scores.items()}, "cvr")
    if stale:
        raise RuntimeError("; ".join(stale) + ": stale cache or another test split?")
    started = time.perf_counter()
    out = {
        "gaps": paired_gaps(y, clicked_scores, pairs, args.bootstrap),
        "gaps_entire": None,
        "test_rows": len(frame),
        "clicked_test_rows": int(clicked.sum()),
        "gaps_seconds": time.perf_counter() - started,
        "gaps_entire_seconds": None,
        "mismatches": [],
    }
    y_entire = entire_labels(world_dir, frame)
    if y_entire is not None:
        # The gaps' own cvr_entire AUCs against the scorer's: the same definition, or a warning.
        entire_aucs = {key: auc(y_entire, p) for key, p in predictions.items()}
        out["mismatches"] = score_mismatches(records, entire_aucs, ENTIRE)
        started = time.perf_counter()
        out["gaps_entire"] = paired_gaps(y_entire, predictions, pairs, args.bootstrap_entire)
        out["gaps_entire_seconds"] = time.perf_counter() - started
    return out


def print_report(document: dict, records: list[dict], args: argparse.Namespace) -> None:
    """The human-readable report of a document (`records`: the full-data runs, for the table)."""
    settings = document["settings"]
    text, per_kind = table(records, args.kinds)
    print(
        f"\n{args.impressions:,} impressions, micro_signal {args.micro_signal:g}, macro_signal "
        f"{args.macro_signal:g}, {args.seeds} seeds (mean ± std over seeds), test split (last "
        f"{args.split[2]:g} by ts: {settings['test_rows']:,} impressions, "
        f"{settings['clicked_test_rows']:,} clicked)\n"
    )
    print(text)
    print()
    for kind, s in document["kinds"].items():
        per_seed = ", ".join(f"{v:.4f}" for v in s["cvr_auc"])
        print(f"{kind}: CVR AUC per seed (seeds {s['seeds']}) {per_seed}")
    oracle = document["oracle"]
    if oracle is not None:
        print(f"oracle: CVR AUC {oracle['cvr_auc']:.4f}")
        if oracle["hm3_closes_naive_gap"] is not None:
            print(
                f"HM^3 closes {100 * oracle['hm3_closes_naive_gap']:.1f}% of the naive-to-oracle "
                "CVR AUC gap"
            )
    if document["gaps"]:
        print()
        rows = settings["clicked_test_rows"]
        print(gap_table(document["gaps"], "CVR AUC, clicked", args.bootstrap, rows))
        print(f"({settings['gaps_seconds']:.0f}s)")
        if document["gaps_entire"] is not None:
            print()
            what = f"CVR AUC entire, vs {ENTIRE_LABEL}"
            rows = settings["test_rows"]
            print(gap_table(document["gaps_entire"], what, args.bootstrap_entire, rows))
            print(f"({settings['gaps_entire_seconds']:.0f}s)")
        else:
            print(f"\nno entire-space gaps: the world's truth.parquet has no {ENTIRE_LABEL}")
    if document["data_efficiency"] is not None:
        print()
        print(efficiency_text(document["data_efficiency"]))
    ceiling_record = document["ceilings"]
    if ceiling_record is not None:
        cvr = {k: np.array(v[("cvr", "auc")]) for k, v in per_kind.items() if ("cvr", "auc") in v}
        print(
            f"\nInformation ceiling (CVR AUC on the same {ceiling_record['clicked_rows']:,} "
            "clicked test rows and labels; hidden latents integrated over their prior)\n"
        )
        print(ceiling_table(ceiling_record, cvr))
        if {"naive", "hm3"} <= set(cvr):
            naive, hm3 = cvr["naive"].mean(), cvr["hm3"].mean()
            print()
            for name, metrics in ceiling_record["metrics"].items():
                if name != "oracle":
                    share = 100 * (hm3 - naive) / (metrics["auc"] - naive)
                    print(f"HM^3 closes {share:.1f}% of the naive-to-<{name}> CVR AUC gap")
        if "label_information" in ceiling_record:
            print(
                f"\nWhat the labels can teach about the recurring parts of purchase intent (no "
                f"model; the ceiling is <{LABEL_READOUT} ...>)\n"
            )
            print(label_information_table(ceiling_record))
    reference = document["reference_gbdt"]
    if reference is not None:
        cells = ", ".join(
            f"{label} {'n/a' if reference[k] is None else f'{reference[k]:.4f}'}"
            for label, k in (("CVR AUC", "auc"), ("GAUC", "gauc"), ("log loss", "logloss"))
        )
        print(
            f"\nReference learner (sklearn HistGradientBoosting, {reference['features']} non-id "
            f"features, clicked train rows, {reference['iterations']} trees, "
            f"{reference['seconds']:.0f}s): {cells}"
        )
    print()
    for kind, s in document["kinds"].items():
        print(f"best epochs {kind}: {s['best_epochs']} (budget {args.epochs})")
    for warning in document["warnings"]:
        print(f"WARNING: {warning}")


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    world_dir = args.out / world_name(args)
    tbl = prepare(world_dir, args)
    main_records, de_records, baseline = train_runs(world_dir, tbl, args)
    scored = score_gaps(world_dir, tbl, main_records, args)
    de_section = None
    if baseline is not None:
        de_section = data_efficiency(de_records, args.de_fraction, baseline)
    setting = main_records[0]["train_config"]
    document = build_document(
        json.loads((world_dir / "world.json").read_text()),
        main_records,
        args.kinds,
        scored.pop("gaps"),
        scored.pop("gaps_entire"),
        de_section,
        warnings=[
            *convergence_warnings(unique_runs(main_records + de_records)),
            *scored.pop("mismatches"),
        ],
        settings={
            "world_dir": str(world_dir),
            "seeds": args.seeds,
            "train_config": {k: v for k, v in setting.items() if k not in ("model_kind", "seed")},
            "setting_tag": setting_tag(setting),
            "bootstrap": args.bootstrap,
            "bootstrap_entire": args.bootstrap_entire,
            **scored,
        },
        ceilings=None if args.skip_ceilings else ceilings(world_dir, tbl, tuple(args.split)),
        reference_gbdt=reference_gbdt(tbl, args.split) if args.reference else None,
    )
    if args.json is not None:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    print_report(document, main_records, args)
    if args.json is not None:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
