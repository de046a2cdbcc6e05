"""Serving latency on loopback next to the model's in-process forward time, in one run.

Rows of the table, for batch 1 and batch 100:
- `in-process predict` (the floor): `TrainedModel.predict_records`, the predictor's own path
  (encode + forward);
- `server, features in request`: `hm3 serve --model` (KServe predictor), instances carry every
  feature, so no Feast lookup;
- `server + Feast lookup`: `hm3 serve --model --feast-repo` (transformer and predictor in one
  process), instances carry ids and context only; features come from the SQLite online store.

One client, sequential keep-alive requests (latency, not saturation). The model is an HM^3 net
with the trainer's default architecture (weights untrained: speed does not depend on them),
feature spec fitted on Feast's point-in-time features of a 60k-impression world.

Usage: .venv/bin/python bench/serve.py [--requests 300] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_P99_MS = 20.0
TARGET_OVERHEAD = 3.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_inputs(work: Path) -> tuple[Path, Path, list[dict], list[dict]]:
    """World, Feast repo, artifact; returns (artifact, repo, id rows, full-feature rows)."""
    import pyarrow.parquet as pq
    import torch

    from model.artifact import save_artifact
    from model.data import features, schema
    from model.data.encoding import FeatureSpec
    from model.nn.nets import build_model
    from model.train.trainer import TrainConfig
    from model.world.mechanism import WorldConfig
    from model.world.simulator import simulate

    world = work / "world"
    if not (world / "world.json").exists():
        simulate(WorldConfig(impressions=60_000, seed=7, users=3_000, items=800, days=7), world)
    repo = features.write_repo_config(features.StoreConfig(repo_dir=str(work / "feast")))
    store = features.open_store(repo)
    features.apply(store, str(world / "users.parquet"), str(world / "items.parquet"))
    features.materialize(store)
    imps = pq.read_table(world / "impressions.parquet").to_pandas().iloc[-5_000:]
    entities = imps.rename(columns={"ts": features.TIMESTAMP_COLUMN})
    frame, infos, _ = features.historical_features(store, entities)
    kinds = (
        dict(schema.KEY_FEATURES) | dict(schema.CONTEXT_FEATURES) | features.feature_kinds(infos)
    )
    cfg = TrainConfig()
    spec = FeatureSpec.fit(frame, kinds, hash_buckets=cfg.hash_buckets)
    torch.manual_seed(0)
    net = build_model(
        "hm3", spec, cfg.embedding_dim, tuple(cfg.hidden), cfg.dropout, interaction=cfg.interaction
    )
    arch = {
        "embedding_dim": cfg.embedding_dim,
        "hidden": list(cfg.hidden),
        "dropout": cfg.dropout,
        "interaction": cfg.interaction,
    }
    artifact = work / "artifact"
    save_artifact(net, spec, arch, {"note": "bench: untrained weights"}, artifact)
    context = list(schema.CONTEXT_FEATURES)
    id_rows = [
        {k: _plain(r[k]) for k in ["user_id", "item_id", *context]}
        for r in frame.iloc[:200].to_dict("records")
    ]
    full_rows = [{k: _plain(r[k]) for k in kinds} for r in frame.iloc[:200].to_dict("records")]
    return artifact, repo, id_rows, full_rows


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


class Server:
    """`python -m components.serving.server` on a loopback port."""

    def __init__(self, args: list[str], log: Path) -> None:
        import httpx

        self.url = f"http://127.0.0.1:{_free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "components.serving.server", *args, "--http_port", port,
             "--bind_host", "127.0.0.1", "--enable_grpc", "false",
             "--enable_latency_logging", "false"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {log}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready; see {log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def time_calls(call, n: int, warmup: int = 20) -> np.ndarray:
    for _ in range(warmup):
        call()
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        call()
        out[i] = time.perf_counter() - t
    return out * 1000.0


def http_call(url: str, rows: list[dict]):
    import httpx

    client = httpx.Client(base_url=url, timeout=30)
    body = {"instances": rows}

    def call() -> None:
        r = client.post("/v1/models/hm3:predict", json=body)
        if r.status_code != 200:
            raise RuntimeError(r.text)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="Timed requests per row.")
    parser.add_argument("--workdir", type=Path, default=None, help="Reuse a work folder.")
    opts = parser.parse_args()
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="hm3-bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    artifact, repo, id_rows, full_rows = build_inputs(work)

    import torch

    from model.artifact import load_model

    # Same thread count as the server (`--torch_threads 1`), so the floor is comparable.
    torch.set_num_threads(1)
    model = load_model(artifact)
    results: dict[tuple[str, int], np.ndarray] = {}
    for batch in (1, 100):
        results[("in-process predict", batch)] = time_calls(
            lambda rows=full_rows[:batch]: model.predict_records(rows), opts.requests
        )

    predictor = Server(["--model_dir", str(artifact)], work / "predictor.log")
    combined = Server(
        ["--model_dir", str(artifact), "--feast_repo", str(repo)], work / "combined.log"
    )
    try:
        for batch in (1, 100):
            results[("server, features in request", batch)] = time_calls(
                http_call(predictor.url, full_rows[:batch]), opts.requests
            )
            results[("server + Feast lookup", batch)] = time_calls(
                http_call(combined.url, id_rows[:batch]), opts.requests
            )
    finally:
        predictor.stop()
        combined.stop()

    print(
        f"\nhm3 serve on loopback: {opts.requests} sequential requests per row, one client; "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"{os.cpu_count()} CPUs (shared)"
    )
    print(f"{'path':<30} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'rows/s':>9}")
    for (path, batch), ms in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        rps = 1000.0 / ms.mean()
        print(
            f"{path:<30} {batch:>5} {np.percentile(ms, 50):>8.2f} {np.percentile(ms, 99):>8.2f} "
            f"{rps:>8.1f} {rps * batch:>9.0f}"
        )
    p99_feast = np.percentile(results[("server + Feast lookup", 1)], 99)
    floor = np.percentile(results[("in-process predict", 100)], 50)
    added = np.percentile(results[("server, features in request", 100)], 50) - floor
    print(
        f"\nbatch-1 p99 with Feast lookup: {p99_feast:.2f} ms (target < {TARGET_P99_MS} ms: "
        f"{'met' if p99_feast < TARGET_P99_MS else 'NOT met'})"
    )
    print(
        f"server adds {added:.2f} ms at batch 100 (p50) = {added / floor:.2f}x the in-process "
        f"forward {floor:.2f} ms (target < {TARGET_OVERHEAD}x: "
        f"{'met' if added < TARGET_OVERHEAD * floor else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
