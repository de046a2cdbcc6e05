"""Training speed: our ESMM and HM^3 against the same models in torch-rechub, same data and dims.

Four models, each against its own peer: ours-esmm vs torch-rechub's `ESMM` (rechub-esmm), ours-hm3
vs rechub-hm3, the same six-tower HM^3 written from torch-rechub's building blocks (its
`SparseFeature`/`EmbeddingLayer`, six of its `MLP` towers, sigmoid heads composed in probability
space; `bench/rechub_hm3.py`), since the library has no HM^3. Two tables from one run, every model
in its own process (so peak RSS is its own):

1. **Model step.** All four train on the same encoded rows of a simulated world (10 sparse
   features: user_id, item_id, position, scene, device and the five categorical user/item
   features; torch-rechub's ESMM takes sparse features only, so dense ones are left out for
   everyone), with the same embedding dim, tower sizes, batch size, Adam (lr 1e-3) and losses
   (ESMM: ctr on click, ctcvr on buy; HM^3: also ct_micro on d_micro, ct_macro on d_macro) in the
   same hand-written loop: this isolates forward + backward + optimizer step. Ours uses its
   trainer's optimizers (`make_optimizers`: LazyAdam on the sparse embedding table, fused Adam on
   the rest); the peers use one Adam over all their parameters, as its MTLTrainer does. Their
   towers add BatchNorm after each hidden layer (its MLP has no switch for it).
   The table also gives each model's tower GEMM FLOPs per sample (6 x in x out per dense layer,
   read from the model's own layers; `bench/flops.py`), the FLOP/s that its step achieves with
   them, and that as a share of this machine's GEMM peak: the best `torch.mm` rate on the
   towers' own training GEMMs (forward, input and weight gradient of every layer shape), measured
   with the same threads in the same process right after the timed steps, so that a shared
   machine's other load weighs on both alike (fp32; on a GPU with --bf16, ours is held against
   the bf16 peak).
2. **End to end.** Each model trains one epoch through its library's own path on the same
   training rows (the time split's train part of one table: the same 10 sparse columns, labels,
   ts): torch-rechub via `DataGenerator(x, y).generate_dataloader(...)` (per-row `TorchDataset`
   + default collate, shuffled), then `MTLTrainer(...).train_one_epoch(train_loader)` for its
   ESMM and, for rechub-hm3 (MTLTrainer would average the four losses), the plain Adam loop a
   user of the library writes over that loader; ours via `model.train.trainer.train` (tensors
   encoded once, batches are index gathers), its `samples_per_s` from the epoch's history. Same
   embedding dim, towers, batch size, Adam lr 1e-3 with no weight decay, no dropout, the same
   thread count; only the training epoch is timed (not validation, not artifact export). Peak RSS
   here includes loading and encoding the table.

Every model runs --repeats times, interleaved (peer, ours, ...), so a slow phase of a shared
machine hits all. Other load only ever slows a run down, so each model's best run is the headline
(timeit's rule), beside the median and range of all its runs; the ratio to the peer is best over
best, and the per-round ratios give its spread.

Usage:
    nice -n 5 .venv/bin/python bench/train.py --steps 60 [--rows 300000] [--batch-size 2048] \\
        [--threads 2] [--repeats 3] [--compile]
    # on a GPU machine (the issue's H200 figure: HM^3 at batch 4096, bf16):
    .venv/bin/python bench/train.py --device cuda --bf16 --batch-size 4096 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from model.data.encoding import FeatureSpec

ROOT = Path(__file__).resolve().parents[1]
SPARSE = (
    "user_id", "item_id", "position", "scene", "device",
    "age_bucket", "gender", "city_tier", "category_id", "brand_id",
)  # fmt: skip
MODELS = ("rechub-esmm", "ours-esmm", "rechub-hm3", "ours-hm3")
# Each of our models against the same model built with torch-rechub.
PEER = {
    "rechub-esmm": "rechub-esmm",
    "ours-esmm": "rechub-esmm",
    "rechub-hm3": "rechub-hm3",
    "ours-hm3": "rechub-hm3",
}
# Targets of issue 18: (table, model) -> least ratio to its peer.
TARGETS = {
    ("step", "ours-esmm"): 3.0,
    ("step", "ours-hm3"): 1.5,
    ("e2e", "ours-esmm"): 3.0,
    ("e2e", "ours-hm3"): 2.0,
}
PEAK_SHARE_TARGET = ("ours-hm3", 0.6)  # of the GEMM peak, model step
SPLIT = (0.8, 0.1, 0.1)  # end-to-end: train on the first 80% by ts


def build_data(rows: int, path: Path, table_path: Path) -> None:
    """A world's impressions with truth labels and as-of user/item features, two ways.

    Encoded (`path`, for the model-step loop) and as a training table (`table_path`: the 10 sparse
    columns, labels, ts and the feature-kinds metadata, for the trainers).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from model.data import schema
    from model.data.encoding import FeatureSpec
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate

    world = path.parent / "world"
    if not (world / "world.json").exists():
        simulate(WorldConfig(impressions=rows, seed=1), world)
    imps = pq.read_table(world / "impressions.parquet").to_pandas()
    truth = pq.read_table(world / "truth.parquet").to_pandas()
    frame = imps.merge(truth[["impression_id", *schema.LABEL_COLUMNS]], on="impression_id")
    for name, key in (("users", "user_id"), ("items", "item_id")):
        snaps = pq.read_table(world / f"{name}.parquet").to_pandas().sort_values("event_timestamp")
        frame = pd.merge_asof(
            frame.sort_values("ts"), snaps, left_on="ts", right_on="event_timestamp", by=key
        ).drop(columns="event_timestamp")
    kinds = {
        n: schema.KIND_ID if n in schema.KEY_FEATURES else schema.KIND_CATEGORICAL for n in SPARSE
    }
    if not table_path.exists():
        columns = ["ts", *SPARSE, *schema.LABEL_COLUMNS]
        table = pa.Table.from_pandas(frame[columns], preserve_index=False)
        own = {n: k for n, k in kinds.items() if n not in schema.KEY_FEATURES}
        own = {n: k for n, k in own.items() if n not in schema.CONTEXT_FEATURES}
        table = table.replace_schema_metadata({schema.FEATURE_KINDS_KEY: json.dumps(own)})
        pq.write_table(table, table_path)
    if path.exists():
        return
    spec = FeatureSpec.fit(frame, kinds, hash_buckets=100_000)
    cat, _ = spec.encode(frame)
    labels = np.stack([frame[c].to_numpy(np.float32) for c in schema.LABEL_COLUMNS], axis=1)
    np.savez(path, cat=cat, labels=labels, sizes=np.array([f.size for f in spec.categorical]))


def run_one(name: str, args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from flops import flops_per_sample, gemm_shapes, measure_peak  # bench/flops.py

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    data = np.load(args.data)
    cat = torch.from_numpy(data["cat"]).to(device)
    labels = torch.from_numpy(data["labels"]).to(device)
    sizes = data["sizes"].tolist()
    click, buy = labels[:, 0], labels[:, 3]
    hidden = tuple(args.hidden)

    def autocast() -> contextlib.AbstractContextManager:
        """bf16 autocast for our models on a GPU, as `model.train.trainer.train` does with
        bf16=True."""
        if args.bf16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    if name == "rechub-esmm":
        from torch_rechub.basic.features import SparseFeature
        from torch_rechub.models.multi_task import ESMM

        feats = [
            SparseFeature(n, s, embed_dim=args.dim) for n, s in zip(SPARSE, sizes, strict=True)
        ]
        params = {"dims": list(hidden), "dropout": 0.0, "activation": "relu"}
        net = ESMM(feats[:1] + feats[5:8], feats[1:2] + feats[2:5] + feats[8:], params, params)
        order = [0, 5, 6, 7, 1, 2, 3, 4, 8, 9]  # user features, then item features (its concat)

        def step_loss(idx: torch.Tensor) -> torch.Tensor:
            x = {SPARSE[j]: cat[idx, j] for j in order}
            out = net(x)  # columns: cvr, ctr, ctcvr (probabilities)
            return F.binary_cross_entropy(out[:, 1], click[idx]) + F.binary_cross_entropy(
                out[:, 2], buy[idx]
            )
    elif name == "rechub-hm3":
        import rechub_hm3  # bench/rechub_hm3.py, beside this script

        from model.data import schema

        net = rechub_hm3.build(sizes, SPARSE, args.dim, hidden)
        targets = labels[:, [schema.LABEL_COLUMNS.index(n) for n in rechub_hm3.LABELS]]

        def step_loss(idx: torch.Tensor) -> torch.Tensor:
            x = {n: cat[idx, j] for j, n in enumerate(SPARSE)}
            return rechub_hm3.loss(net(x), targets[idx])  # probabilities, its nn.BCELoss
    else:
        from model.data.encoding import FeatureInfo, FeatureSpec
        from model.nn.losses import multitask_loss
        from model.nn.nets import build_model

        spec = FeatureSpec(
            tuple(FeatureInfo(n, "categorical", size=s) for n, s in zip(SPARSE, sizes, strict=True))
        )
        kind = name.split("-")[1]
        net = build_model(kind, spec, args.dim, hidden, 0.0, sparse_embeddings=True)
        empty = torch.zeros(args.batch_size, 0, device=device)
        label_names = ("click", "d_micro", "d_macro", "buy")

        def step_loss(idx: torch.Tensor) -> torch.Tensor:
            lab = {n: labels[idx, i] for i, n in enumerate(label_names)}
            with autocast():
                outputs = net(cat[idx], empty[: len(idx)])
            loss, _ = multitask_loss(outputs, lab, net.losses)
            return loss

    net.to(device)  # before the optimizers see the parameters
    if args.compile:
        _compile(name, net, device)
    if name.startswith("rechub-"):
        optimizers = [torch.optim.Adam(net.parameters(), lr=1e-3)]  # as its MTLTrainer does
    else:
        from model.train.trainer import TrainConfig, make_optimizers

        optimizers = make_optimizers(TrainConfig(optimizer="adam", lr=1e-3), net)
    net.train()
    perm = torch.randperm(len(cat), generator=torch.Generator().manual_seed(0)).to(device)
    batches = [
        perm[i : i + args.batch_size]
        for i in range(0, len(perm) - args.batch_size + 1, args.batch_size)
    ]
    warm = 5
    losses = []
    for i, idx in enumerate(batches[: warm + args.steps]):
        if i == warm:
            _sync(device)
            started = time.perf_counter()
        loss = step_loss(idx)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        losses.append(loss.detach())  # no per-step host sync on a GPU
    _sync(device)
    seconds = time.perf_counter() - started
    timed = min(args.steps, len(batches) - warm)
    samples_per_s = timed * args.batch_size / seconds
    shapes = gemm_shapes(net)
    # The GEMM peak right here, right after the timed steps, so that the machine's other load
    # (this CPU is shared) is as alike as it gets for the step and its yardstick.
    bf16 = args.bf16 and device.type == "cuda" and name.startswith("ours-")
    peak = measure_peak(
        sorted(shapes), args.batch_size, device, torch.bfloat16 if bf16 else torch.float32
    )
    achieved = flops_per_sample(shapes) * samples_per_s
    return {
        "model": name,
        "samples_per_s": samples_per_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": _peak_gpu_mb(device),
        "params": sum(p.numel() for p in net.parameters()),
        "final_loss": float(torch.stack(losses[-10:]).mean()),
        "gemm_shapes": [[*shape, count] for shape, count in shapes.items()],
        "flops_per_sample": flops_per_sample(shapes),
        "achieved_flops": achieved,
        "peak_dtype": "bf16" if bf16 else "fp32",
        "peak_flops": peak["peak"],
        "peak_share": achieved / peak["peak"],
        "gemm_flops": {k: v for k, v in peak.items() if k != "peak"},
    }


def run_e2e(name: str, args: argparse.Namespace) -> dict:
    """One epoch through the library's own training path; only the epoch is timed."""
    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    hidden = tuple(args.hidden)
    if name.startswith("rechub-"):
        import numpy as np
        import pyarrow.parquet as pq
        from torch_rechub.utils.data import DataGenerator

        from model.data.encoding import FeatureSpec, feature_kinds
        from model.data.split import split_by_time

        # The very rows and encoding our trainer uses: same time split, same fitted spec.
        table = pq.read_table(args.table)
        kinds = feature_kinds(table.schema)
        parts = split_by_time(table, SPLIT)
        spec = FeatureSpec.fit(parts["train"].select(list(kinds)).to_pandas(), kinds, 100_000)
        # Label columns of each peer's output columns: its ESMM returns cvr, ctr, ctcvr.
        if name == "rechub-esmm":
            targets: tuple[str, ...] = ("buy", "click", "buy")
        else:
            import rechub_hm3  # bench/rechub_hm3.py, beside this script

            targets = rechub_hm3.LABELS

        def arrays(part: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
            frame = parts[part].to_pandas()
            cat, _ = spec.encode(frame)
            x = {f.name: cat[:, j] for j, f in enumerate(spec.categorical)}
            return x, np.stack([frame[c].to_numpy(np.float32) for c in targets], axis=1)

        (x_train, y_train), (x_val, y_val) = arrays("train"), arrays("validation")
        train_loader, _, _ = DataGenerator(x_train, y_train).generate_dataloader(
            x_val=x_val, y_val=y_val, x_test=x_val, y_test=y_val, batch_size=args.batch_size
        )
        if name == "rechub-esmm":
            seconds = _rechub_esmm_epoch(spec, train_loader, args)
        else:
            seconds = _rechub_hm3_epoch(spec, train_loader, args)
        rows = len(y_train)
        samples_per_s = rows / seconds
    else:
        from model.train.trainer import TrainConfig, train

        kind = name.split("-")[1]
        cfg = TrainConfig(
            model_kind=kind,
            embedding_dim=args.dim,
            interaction="none",  # the peer's architecture: concatenated embeddings only
            hidden=hidden,
            dropout=0.0,
            lr=1e-3,
            batch_size=args.batch_size,
            epochs=1,
            split=SPLIT,
            device=args.device,
            bf16=args.bf16,
            threads=args.threads,
            progress=False,
            compile_towers=args.compile,
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = train(args.table, tmp, cfg)
        epoch = result.history[0]
        samples_per_s, seconds = epoch["samples_per_s"], epoch["seconds"]
        rows = round(samples_per_s * seconds)
    return {
        "model": name,
        "samples_per_s": samples_per_s,
        "seconds": seconds,
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": _peak_gpu_mb(torch.device(args.device)),
    }


def _rechub_esmm_epoch(spec: FeatureSpec, loader: DataLoader, args: argparse.Namespace) -> float:
    """Seconds of one epoch of torch-rechub's ESMM through its `MTLTrainer.train_one_epoch`."""
    import tempfile

    from torch_rechub.basic.features import SparseFeature
    from torch_rechub.models.multi_task import ESMM
    from torch_rechub.trainers import MTLTrainer

    feats = {f.name: SparseFeature(f.name, f.size, embed_dim=args.dim) for f in spec.categorical}
    user = [feats[n] for n in ("user_id", "age_bucket", "gender", "city_tier")]
    item = [feats[n] for n in SPARSE if feats[n] not in user]
    params = {"dims": list(args.hidden), "dropout": 0.0, "activation": "relu"}
    net = ESMM(user, item, params, params)
    if args.compile:
        net.compile()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MTLTrainer(
            net,
            task_types=["classification"] * 3,
            optimizer_params={"lr": 1e-3, "weight_decay": 0.0},
            n_epoch=1,
            device=args.device,
            model_path=tmp,
        )
        started = time.perf_counter()
        trainer.train_one_epoch(loader)
        return time.perf_counter() - started


def _rechub_hm3_epoch(spec: FeatureSpec, loader: DataLoader, args: argparse.Namespace) -> float:
    """Seconds of one epoch of rechub-hm3: the plain Adam loop over torch-rechub's DataLoader.

    Written as its `MTLTrainer.train_one_epoch` is, less what HM^3 must not have (the average of
    the task losses: ours sums them) or does not need (the zero regularization term, the
    per-task `.item()` bookkeeping, the progress bar), so the peer is not slowed by any of it.
    """
    import rechub_hm3  # bench/rechub_hm3.py, beside this script
    import torch

    device = torch.device(args.device)
    cats = spec.categorical
    net = rechub_hm3.build([f.size for f in cats], [f.name for f in cats], args.dim, args.hidden)
    net.to(device)
    if args.compile:
        net.compile()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=0.0)
    net.train()
    started = time.perf_counter()
    for x_dict, ys in loader:
        x_dict = {k: v.to(device) for k, v in x_dict.items()}
        loss = rechub_hm3.loss(net(x_dict), ys.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=300_000, help="Impressions of the simulated world (300000)."
    )
    parser.add_argument("--batch-size", type=int, default=2048, help="Rows per step (2048).")
    parser.add_argument(
        "--dim", type=int, default=16, help="Embedding dim of every feature, all models (16)."
    )
    parser.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[256, 128, 64],
        help="Hidden sizes of every tower, all models (256 128 64); each tower ends in 1 logit.",
    )
    parser.add_argument("--steps", type=int, default=100, help="Timed steps after 5 warm-up steps.")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads for every model (this CPU has 2)."
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="Runs per model and table, interleaved (the best run is reported, with the median "
        "and range of all).",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda[:N]. On a GPU run e.g. --device cuda --bf16 --batch-size 4096.",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast for our models on a GPU (the peer stays fp32: its trainer has no "
        "autocast and its probability-space BCE is not autocast-safe). Ignored on CPU.",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile every model where it can be: ours its towers "
        "(TrainConfig.compile_towers; TorchInductor cannot trace the sparse embedding table), "
        "the peers whole. The end-to-end epoch includes the compilation.",
    )
    parser.add_argument("--skip-e2e", action="store_true", help="Only the model-step table.")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=ROOT / ".bench" / "train",
        help="Where the simulated world and the encoded data are built once and reused "
        "(default: .bench/train in the repository).",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="Also write both tables' rows to this JSON file."
    )
    parser.add_argument("--one", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--e2e", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        result = run_e2e(args.one, args) if args.e2e else run_one(args.one, args)
        print(json.dumps(result))
        return
    data = args.work_dir / f"data-{args.rows}.npz"
    table = data.with_name(f"table-{args.rows}.parquet")
    data.parent.mkdir(parents=True, exist_ok=True)
    if not (data.exists() and table.exists()):
        build_data(args.rows, data, table)
    bf16 = args.bf16 and args.device != "cpu"

    def child(*extra: str) -> dict:
        """Run this script in a fresh process with the run's settings; its last line, parsed."""
        cmd = [sys.executable, __file__, "--data", str(data), "--table", str(table), *extra]
        for flag in ("rows", "batch_size", "dim", "steps", "threads", "device"):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        cmd += ["--bf16"] if args.bf16 else []
        cmd += ["--compile"] if args.compile else []
        cmd += ["--hidden", *map(str, args.hidden)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def measure(e2e: bool) -> tuple[list[dict], dict[str, list[dict]]]:
        """Every model `--repeats` times, interleaved, so slow phases of the machine hit all."""
        runs: dict[str, list[dict]] = {name: [] for name in MODELS}
        for _ in range(args.repeats):
            for name in MODELS:
                runs[name].append(child("--one", name, *(["--e2e"] if e2e else [])))
        return _summarize(runs), runs

    precision = " (bf16 autocast for ours)" if bf16 else ""
    precision += ", torch.compile for all" if args.compile else ""
    setting = (
        f"batch {args.batch_size}, embedding {args.dim}, towers {'-'.join(map(str, args.hidden))}, "
        f"Adam lr 1e-3, {args.threads} thread(s), device {args.device}{precision}, "
        f"best of {args.repeats} interleaved runs per model (other load on a shared machine "
        "only slows a run down)"
    )
    gpu = {"peak GPU (MB)": lambda r: f"{r['peak_gpu_mb']:,.0f}"} if args.device != "cpu" else {}
    results, step_runs = measure(e2e=False)
    print(f"\nModel step: {args.rows:,} rows, {args.steps} timed steps, {setting}\n")
    _print_table(
        results,
        {
            "parameters": lambda r: f"{r['params']:,}",
            "loss (last 10 steps)": lambda r: f"{r['final_loss']:.4f}",
            "tower MFLOP/sample": lambda r: f"{r['flops_per_sample'] / 1e6:.2f}",
            "tower GFLOP/s (best run)": lambda r: f"{r['achieved_flops'] / 1e9:.0f}",
            "% of GEMM peak": lambda r: f"{r['peak_share']:.0%} ({r['peak_dtype']})",
            **gpu,
        },
    )
    print(f"\n{_peak_line(step_runs)}")
    print(f"\nTargets (model step): {_targets(results, 'step')}")
    report = {"model_step": results, "model_step_runs": step_runs}
    if not args.skip_e2e:
        e2e, _ = measure(e2e=True)
        print(
            f"\nEnd to end, one epoch through each library's own training path: "
            f"{e2e[0]['rows']:,} training rows (first {SPLIT[0]:.0%} by ts), {setting}\n"
        )
        paths = {
            "rechub-esmm": "DataGenerator -> DataLoader, MTLTrainer.train_one_epoch",
            "ours-esmm": "model.train.trainer.train",
            "rechub-hm3": "DataGenerator -> DataLoader, plain Adam loop",
            "ours-hm3": "model.train.trainer.train",
        }
        _print_table(
            e2e,
            {
                "training path": lambda r: paths[r["model"]],
                "epoch (s)": lambda r: f"{r['seconds']:.1f}",
                **gpu,
            },
        )
        print(f"\nTargets (end to end): {_targets(e2e, 'e2e')}")
        report["end_to_end"] = e2e
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _compile(name: str, net: torch.nn.Module, device: torch.device) -> None:
    """--compile in the model-step table: ours as its trainer compiles, the peers whole."""
    if name.startswith("ours-"):
        from model.train.trainer import compile_towers

        if not compile_towers(net, device):
            raise SystemExit("--compile: TorchInductor needs a C++ compiler on this machine")
    else:
        net.compile()


def _peak_line(runs: dict[str, list[dict]]) -> str:
    """The GEMM peak: the highest measurement after any model-step run, and their spread."""
    import numpy as np

    lines = []
    every = [r for reps in runs.values() for r in reps]
    for dtype in sorted({r["peak_dtype"] for r in every}):
        mine = [r for r in every if r["peak_dtype"] == dtype]
        values = [r["peak_flops"] for r in mine]
        best = max(mine, key=lambda r: r["peak_flops"])["gemm_flops"]
        lines.append(
            f"{dtype} GEMM peak (best torch.mm rate on the towers' training GEMMs, same threads, "
            f"measured in each model-step process right after its timed steps): "
            f"{max(values) / 1e9:,.0f} GFLOP/s ({max(best, key=best.get)}); median of the "
            f"{len(values)} runs {np.median(values) / 1e9:,.0f} [{min(values) / 1e9:,.0f}-"
            f"{max(values) / 1e9:,.0f}]"
        )
    return "\n".join(lines)


def _sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it (no-op on CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gpu_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch in this process, None on CPU."""
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _summarize(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per model: its best run (the headline), the median and range of all its runs.

    On a shared machine other work only ever slows a run down, so the fastest of a model's
    interleaved runs is the best estimate of its own speed (timeit's rule); the median and the
    range show how much the load moved it. The ratio to the peer is best over best; the per-round
    ratios are kept for their range. A model step's share of the GEMM peak is its best achieved
    FLOP/s over the highest peak measured in any of the table's runs (the machine's, at those
    shapes and that precision).
    """
    import numpy as np

    peaks: dict[str, float] = {}
    for r in (r for reps in runs.values() for r in reps if "peak_flops" in r):
        peaks[r["peak_dtype"]] = max(peaks.get(r["peak_dtype"], 0.0), r["peak_flops"])
    rows = []
    for name, reps in runs.items():
        speeds = [r["samples_per_s"] for r in reps]
        peer = [r["samples_per_s"] for r in runs[PEER[name]]]
        rounds = [s / p for s, p in zip(speeds, peer, strict=True)]
        best = max(reps, key=lambda r: r["samples_per_s"])
        row = {
            **best,
            "samples_per_s": best["samples_per_s"],
            "median_samples_per_s": float(np.median(speeds)),
            "speed_range": (min(speeds), max(speeds)),
            "peer": PEER[name],
            "ratio": max(speeds) / max(peer),
            "round_ratio_range": (min(rounds), max(rounds)),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in reps),
            "peak_gpu_mb": max((r["peak_gpu_mb"] or 0.0) for r in reps),
            "seconds": best.get("seconds", 0.0),
            "runs": len(reps),
        }
        if "peak_flops" in best:
            row["peak_flops"] = peaks[best["peak_dtype"]]
            row["peak_share"] = best["achieved_flops"] / row["peak_flops"]
        rows.append(row)
    return rows


def _print_table(results: list[dict], extra: dict) -> None:
    """Markdown table: best speed, median [range], ratio to the peer, peak RSS, `extra` columns."""
    print(
        "| model | samples/s (best run) | median [range] | vs same model in torch-rechub (best "
        "/ best) [per-round range] | peak RSS (MB) | " + " | ".join(extra) + " |"
    )
    print("|---" * (5 + len(extra)) + "|")
    for r in results:
        low, high = r["speed_range"]
        rlow, rhigh = r["round_ratio_range"]
        versus = f"{r['ratio']:.2f}x vs {r['peer']} [{rlow:.2f}-{rhigh:.2f}]"
        cells = [
            r["model"],
            f"{r['samples_per_s']:,.0f}",
            f"{r['median_samples_per_s']:,.0f} [{low:,.0f}-{high:,.0f}]",
            "1.00x (the peer)" if r["peer"] == r["model"] else versus,
            f"{r['peak_rss_mb']:,.0f}",
            *(fmt(r) for fmt in extra.values()),
        ]
        print("| " + " | ".join(cells) + " |")


def _targets(results: list[dict], table: str) -> str:
    """'met' / 'not met' for each of `TARGETS` in `table` (best run over the peer's best run),
    and for the model step the share of the GEMM peak of `PEAK_SHARE_TARGET`."""
    by_name = {r["model"]: r for r in results}
    verdicts = []
    for (where, name), factor in TARGETS.items():
        if where != table:
            continue
        ratio = by_name[name]["ratio"]
        verdict = "met" if ratio >= factor else "not met"
        verdicts.append(f"{name} >= {factor:g}x {PEER[name]}: {verdict} ({ratio:.2f}x)")
    if table == "step":
        name, share = PEAK_SHARE_TARGET
        got = by_name[name]["peak_share"]
        verdict = "met" if got >= share else "not met"
        verdicts.append(f"{name} >= {share:.0%} of GEMM peak: {verdict} ({got:.0%})")
    return ", ".join(verdicts)


if __name__ == "__main__":
    main()
