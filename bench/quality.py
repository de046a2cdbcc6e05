"""Model quality on the simulator: naive CVR, ESMM, ESM^2 and HM^3 on the same time split.

The real path of the pipeline: simulate a world -> `model.data.labels.build_labels` (graph labels
from raw events) -> `model.data.features.retrieve_world` (Feast point-in-time features, service
hm3_v1) -> `model.data.training_table.join_training_table` -> `model.train.trainer.train` per kind
and seed -> scored on the test split by `model.evaluate.scoring.evaluate_predictions`, with the
oracle (the world's true probabilities) on the same rows and labels.

The oracle knows every latent trait of the world. Information ceilings (`model.world.ceiling`)
score,
on the same rows and labels, the exact p(buy | click) when some latents are unknown and are
integrated over their prior: the user's interest and purchase-intent vectors and b_buy_user
("oracle without user intent"), or also the item's vectors given its category ("without user or
item intent"); each also with b_buy_user inferred from the user_cvr_30d feature the models see.
They measure how much of the oracle's lead no model could reach without learning those latents.
Each is printed with the share of the naive-to-ceiling CVR AUC gap that HM^3 closes.

Usage (writes into .bench/quality/, reuses finished stages, runs and ceilings):
    nice -n 10 .venv/bin/python bench/quality.py --impressions 2000000 --seeds 3
    nice -n 10 .venv/bin/python bench/quality.py --micro-signal 0 --kinds esm2,hm3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("naive", "esmm", "esm2", "hm3")
# Chosen on the validation split of the micro_signal 1 world (seed 0), never on test: see
# docs/model.md "Choosing the training setting".
EPOCHS = 4
INTERACTION = "dot"
EMBEDDING_LR = 1e-4
EMBEDDING_L2 = 0.0
METRICS = (("cvr", "auc"), ("ctcvr", "auc"), ("ctr", "auc"), ("cvr", "gauc"), ("cvr", "logloss"))


def prepare(world_dir: Path, args: argparse.Namespace) -> Path:
    from model.data.features import retrieve_world
    from model.data.labels import build_labels
    from model.data.training_table import join_training_table
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate

    table = world_dir / "train.parquet"
    if table.exists():
        return table
    t0 = time.perf_counter()
    if not (world_dir / "world.json").exists():
        world = WorldConfig(
            impressions=args.impressions,
            seed=args.world_seed,
            micro_signal=args.micro_signal,
            users=args.users,
            items=args.items,
        )
        simulate(world, world_dir)
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


def setting_tag(train_config: dict) -> str:
    """Runs are cached per training setting: everything but kind and seed."""
    setting = {k: v for k, v in train_config.items() if k not in ("model_kind", "seed")}
    return hashlib.sha256(json.dumps(setting, sort_keys=True).encode()).hexdigest()[:10]


def run(world_dir: Path, table: Path, kind: str, seed: int, args: argparse.Namespace) -> dict:
    from model.artifact import load_model
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions
    from model.train.trainer import TrainConfig, train

    cfg = TrainConfig(
        model_kind=kind,
        embedding_dim=args.dim,
        interaction=args.interaction,
        hidden=tuple(args.hidden),
        dropout=args.dropout,
        lr=args.lr,
        embedding_lr=args.embedding_lr,
        embedding_l2=args.embedding_l2,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        seed=seed,
        device="cpu",
        threads=args.threads,
        progress=False,
    )
    tag = setting_tag(cfg.to_dict())
    result_file = world_dir / "runs" / tag / f"{kind}-{seed}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    out = world_dir / "models" / tag / f"{kind}-{seed}"
    started = time.perf_counter()
    res = train(table, out, cfg)
    seconds = time.perf_counter() - started
    frame, _ = load_eval_frame(
        str(table), EvalConfig(), truth_path=str(world_dir / "truth.parquet")
    )
    preds = load_model(out).predict(frame)
    # The paired gaps come from `paired_gaps` below, over seeds; no per-run intervals.
    scores = evaluate_predictions(frame, {kind: preds}, EvalConfig(bootstrap=0))
    record = {
        "kind": kind,
        "seed": seed,
        "train_config": cfg.to_dict(),
        "validation": res.validation,
        "seconds": seconds,
        "best_epoch": res.best_epoch,
        "metrics": {
            name: {
                t: {k: getattr(r, k) for k in ("auc", "gauc", "logloss", "ece")}
                for t, r in tasks.items()
            }
            for name, tasks in scores.items()
        },
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(record, indent=2))
    print(
        f"  {kind} seed {seed}: CVR AUC {record['metrics'][kind]['cvr']['auc']:.4f} "
        f"({seconds:.0f}s)",
        flush=True,
    )
    return record


def ceilings(world_dir: Path, table_path: Path, draws: int) -> dict:
    """Score the information ceilings on the test split; cached per settings and source code."""
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions
    from model.world import ceiling, world_files

    integration = ceiling.Integration(draws=draws)
    world_sources = ("ceiling.py", "world_files.py", "mechanism.py", "sampling.py")
    sources = [(ROOT / "model" / "world" / f).read_text() for f in world_sources]
    key = json.dumps(
        [repr(integration), [repr(k) for k in ceiling.CEILINGS], *sources], sort_keys=True
    )
    tag = hashlib.sha256(key.encode()).hexdigest()[:10]
    result_file = world_dir / "ceiling" / f"{tag}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    started = time.perf_counter()
    frame, _ = load_eval_frame(
        str(table_path), EvalConfig(), truth_path=str(world_dir / "truth.parquet")
    )
    probs, mismatch = world_files.ceiling_predictions(world_dir, frame, integration=integration)
    if mismatch > 1e-12:
        raise RuntimeError(
            f"the rebuilt world does not reproduce {world_dir}/truth.parquet (max |diff| "
            f"{mismatch:.3g}): simulator changed since the world was written?"
        )
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
        },
    }
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(record, indent=2))
    return record


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


def reference_gbdt(table_path: Path) -> dict:
    """CVR AUC of gradient-boosted trees on the observable features, clicked rows only.

    A learner of another family as a yardstick for "what these features give": sklearn's
    HistGradientBoostingClassifier on every non-id feature (ids excluded: a tree cannot use 50k
    user ids; categoricals with more than 255 levels, brand_id here, enter as integer codes),
    trained on the clicked rows of the train split (it is a naive CVR learner), early-stopped on a
    held-out 15% of them, scored by `evaluate_predictions` on the same test rows and labels.
    """
    import pyarrow.parquet as pq
    from sklearn.ensemble import HistGradientBoostingClassifier

    from model.data import schema
    from model.data.encoding import feature_kinds
    from model.data.split import split_by_time
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.scoring import EvalConfig, evaluate_predictions

    started = time.perf_counter()
    table = pq.read_table(table_path)
    kinds = {n: k for n, k in feature_kinds(table.schema).items() if k != schema.KIND_ID}
    train = split_by_time(table)["train"].to_pandas()
    train = train[train["click"] == 1]
    test, _ = load_eval_frame(str(table_path), EvalConfig())
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


def paired_gaps(
    world_dir: Path, table_path: Path, records: list[dict], order: list[str], resamples: int
) -> str:
    """CVR AUC gaps of consecutive kinds with a paired bootstrap over the clicked test rows.

    The seed spread mixes training randomness with the test rows' sampling noise. Scoring two
    models on the same bootstrap resample of rows (paired) and averaging over seeds gives a 95%
    interval for the gap itself: an interval above 0 says the ordering holds on this world beyond
    test-set noise, whatever the seed-spread criterion says.
    """
    from model.artifact import load_model
    from model.evaluate.evaluation import load_eval_frame
    from model.evaluate.metrics import auc
    from model.evaluate.scoring import EvalConfig

    frame, _ = load_eval_frame(str(table_path), EvalConfig())
    clicked = frame["click"].to_numpy() == 1
    y = frame["buy"].to_numpy()[clicked]
    seeds = sorted({r["seed"] for r in records})
    probs = {}
    for rec in records:
        if rec["kind"] in order:
            model_dir = world_dir / "models" / setting_tag(rec["train_config"])
            model = load_model(model_dir / f"{rec['kind']}-{rec['seed']}")
            probs[rec["kind"], rec["seed"]] = model.predict(frame)["cvr"][clicked]
    rng = np.random.default_rng(0)
    samples = [rng.integers(0, len(y), len(y)) for _ in range(resamples)]
    lines = [
        f"| gap (CVR AUC) | mean over {len(seeds)} seeds | paired bootstrap 95% interval "
        f"({resamples} resamples of {len(y):,} clicked test rows) | above 0 |",
        "|---|---|---|---|",
    ]
    for a, b in zip(order, order[1:], strict=False):

        def gap(rows: np.ndarray | slice, a: str = a, b: str = b) -> float:
            return float(
                np.mean(
                    [
                        auc(y[rows], probs[a, s][rows]) - auc(y[rows], probs[b, s][rows])
                        for s in seeds
                    ]
                )
            )

        point = gap(slice(None))
        low, high = np.percentile([gap(rows) for rows in samples], [2.5, 97.5])
        lines.append(
            f"| {a} - {b} | {point:+.4f} | [{low:+.4f}, {high:+.4f}] | "
            f"{'yes' if low > 0 else 'no'} |"
        )
    return "\n".join(lines)


def table(records: list[dict], kinds: list[str]) -> str:
    header = "| model | CVR AUC | CTCVR AUC | CTR AUC | CVR GAUC | CVR log loss |"
    lines = [header, "|" + "---|" * 6]
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impressions", type=int, default=2_000_000)
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--micro-signal", type=float, default=1.0)
    parser.add_argument(
        "--users", type=int, default=50_000, help="World users (simulator default)."
    )
    parser.add_argument(
        "--items", type=int, default=10_000, help="World items (simulator default)."
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument(
        "--patience", type=int, default=1, help="Early stopping on validation CVR AUC."
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=12)
    parser.add_argument("--interaction", default=INTERACTION, help="See TrainConfig.")
    parser.add_argument("--embedding-lr", type=float, default=EMBEDDING_LR)
    parser.add_argument("--embedding-l2", type=float, default=EMBEDDING_L2)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "quality")
    parser.add_argument(
        "--ceiling-draws",
        type=int,
        default=4096,
        help="Monte Carlo draws shared by all rows for the ceilings that hide item vectors "
        "(the others use exact quadrature); 0 skips the information ceilings.",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="Paired bootstrap resamples of the test rows for the gaps between kinds (0 skips).",
    )
    parser.add_argument(
        "--skip-reference",
        action="store_true",
        help="Skip the gradient-boosted-trees yardstick on the observable features (~15 s).",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    kinds = args.kinds.split(",")
    world_dir = args.out / f"world-{args.impressions}-s{args.world_seed}-micro{args.micro_signal:g}"
    if (args.users, args.items) != (50_000, 10_000):
        world_dir = world_dir.with_name(f"{world_dir.name}-u{args.users}-i{args.items}")
    tbl = prepare(world_dir, args)
    records = [
        run(world_dir, tbl, kind, seed, args) for seed in range(args.seeds) for kind in kinds
    ]
    text, per_kind = table(records, kinds)
    print(
        f"\n{args.impressions:,} impressions, micro_signal {args.micro_signal:g}, "
        f"{args.seeds} seeds (mean ± std over seeds), test split (last 15% by ts)\n"
    )
    print(text)
    cvr = {k: np.array(v[("cvr", "auc")]) for k, v in per_kind.items() if ("cvr", "auc") in v}
    if {"naive", "hm3", "oracle"} <= set(cvr):
        closed = (cvr["hm3"].mean() - cvr["naive"].mean()) / (
            cvr["oracle"].mean() - cvr["naive"].mean()
        )
        print(f"\nHM^3 closes {100 * closed:.1f}% of the naive-to-oracle CVR AUC gap")
    if args.ceiling_draws > 0:
        record = ceilings(world_dir, tbl, args.ceiling_draws)
        print(
            f"\nInformation ceiling (CVR AUC on the same {record['clicked_rows']:,} clicked test "
            "rows and labels; hidden latents integrated over their prior)\n"
        )
        print(ceiling_table(record, cvr))
        if {"naive", "hm3"} <= set(cvr):
            naive, hm3 = cvr["naive"].mean(), cvr["hm3"].mean()
            print()
            for name, metrics in record["metrics"].items():
                if name != "oracle":
                    share = 100 * (hm3 - naive) / (metrics["auc"] - naive)
                    print(f"HM^3 closes {share:.1f}% of the naive-to-<{name}> CVR AUC gap")
    if not args.skip_reference:
        ref = reference_gbdt(tbl)
        print(
            f"\nReference learner (sklearn HistGradientBoosting, {ref['features']} non-id "
            f"features, clicked train rows, {ref['iterations']} trees, {ref['seconds']:.0f}s): "
            f"CVR AUC {ref['auc']:.4f}, GAUC {ref['gauc']:.4f}, log loss {ref['logloss']:.4f}"
        )
    for kind in kinds:
        val = [
            r["validation"]["auc_cvr"] for r in records if r["kind"] == kind and "validation" in r
        ]
        epochs = [r["best_epoch"] for r in records if r["kind"] == kind]
        if val:
            print(
                f"{kind}: validation CVR AUC {np.mean(val):.4f} ± {np.std(val):.4f}, "
                f"best epochs {epochs}"
            )
    order = [k for k in ("hm3", "esm2", "esmm", "naive") if k in cvr]
    for a, b in zip(order, order[1:], strict=False):
        gap = cvr[a].mean() - cvr[b].mean()
        spread = max(np.ptp(cvr[a]), np.ptp(cvr[b]))
        print(
            f"{a} - {b}: CVR AUC gap {gap:+.4f}, largest seed spread (max - min) {spread:.4f}; "
            f"gap larger than spread: {'yes' if gap > spread else 'no'}"
        )
    # Same seed = same shuffles for every kind, which moves all kinds together (seed 2 is high
    # for all four), so per-seed differences are a sharper, secondary view of the same runs.
    by_seed = {
        (r["kind"], r["seed"]): r["metrics"][r["kind"]]["cvr"]["auc"]
        for r in records
        if "cvr" in r["metrics"][r["kind"]]
    }
    seeds = sorted({r["seed"] for r in records})
    for a, b in zip(order, order[1:], strict=False):
        diffs = [by_seed[(a, s)] - by_seed[(b, s)] for s in seeds]
        print(f"{a} - {b} per seed: " + ", ".join(f"{d:+.4f}" for d in diffs))
    if args.bootstrap > 0 and len(order) > 1:
        print()
        print(paired_gaps(world_dir, tbl, records, order, args.bootstrap))


if __name__ == "__main__":
    main()
