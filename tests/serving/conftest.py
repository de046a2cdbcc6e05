"""Serving fixtures: a real model artifact, a real Feast repo, real KServe servers on loopback.

The artifact is an untrained HM^3 net saved with `model.artifact.save_artifact` over a feature
spec fitted on the small world's impressions (serving does not care how good the weights are;
the invariants it checks hold for any weights). Feature names and kinds come from the Feast
FeatureService, as in production. Servers run in subprocesses, because KServe's ModelServer
parses sys.argv at import, blocks, and installs signal handlers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest

from model.data import schema

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 90.0
MAX_BATCH = 128


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def feature_frame(world: Path, rows: int) -> pd.DataFrame:
    """Impressions with the latest earlier user/item snapshot (as-of join), test data only."""
    frame = pq.read_table(world / "impressions.parquet").to_pandas().iloc[:rows]
    frame = frame.sort_values("ts", kind="stable")
    for name, key in (("users", "user_id"), ("items", "item_id")):
        snaps = pq.read_table(world / f"{name}.parquet").to_pandas().sort_values("event_timestamp")
        frame = pd.merge_asof(
            frame, snaps, left_on="ts", right_on="event_timestamp", by=key, direction="backward"
        ).drop(columns="event_timestamp")
    from feature_repo.on_demand import price_to_user_spend

    ratio = price_to_user_spend(frame[["price", "user_avg_spend"]].to_dict("list"))
    return frame.assign(**ratio)


def save_tiny_artifact(world: Path, repo: Path, out: Path, kind: str = "hm3") -> Path:
    """An untrained model of `kind` with a spec fitted on 5k impressions, saved as an artifact.

    The feature kinds come from the applied Feast repo's `hm3_v1` service, as in training.
    """
    import torch

    from model.artifact import save_artifact
    from model.data import features
    from model.data.encoding import FeatureSpec
    from model.nn.nets import build_model

    torch.manual_seed(0)
    infos = features.resolve_features(features.open_store(repo), features.DEFAULT_SERVICE)
    kinds = dict(schema.KEY_FEATURES) | dict(schema.CONTEXT_FEATURES)
    kinds |= features.feature_kinds(infos)
    spec = FeatureSpec.fit(feature_frame(world, 5_000), kinds, hash_buckets=1_000)
    arch = {"kind": kind, "embedding_dim": 8, "hidden": [16], "dropout": 0.0}
    net = build_model(kind, spec, 8, (16,), 0.0)
    save_artifact(net, spec, arch, {"note": "untrained, for serving tests"}, out)
    return out


@pytest.fixture(scope="session")
def feast_repo(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Feast repo (SQLite online store) applied over the world's tables and materialized."""
    from model.data import features

    repo = features.write_repo_config(
        features.StoreConfig(repo_dir=str(tmp_path_factory.mktemp("feast")))
    )
    store = features.open_store(repo)
    features.apply(store, str(small_world / "users.parquet"), str(small_world / "items.parquet"))
    features.materialize(store)
    return repo


@pytest.fixture(scope="session")
def artifact(small_world: Path, feast_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_artifact(small_world, feast_repo, tmp_path_factory.mktemp("artifact") / "hm3")


class Server:
    """A `python -m components.serving.server` subprocess on a loopback port."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [
            sys.executable,
            "-m",
            "components.serving.server",
            *args,
            "--http_port",
            str(self.port),
            "--bind_host",
            "127.0.0.1",
            "--enable_grpc",
            "false",
            "--enable_latency_logging",
            "false",
            "--max_batch_size",
            str(MAX_BATCH),
        ]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def max_batch() -> int:
    """The --max_batch_size the test servers run with."""
    return MAX_BATCH


@pytest.fixture(scope="session")
def servers(
    artifact: Path, feast_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """A predictor (model only, no Feast) and a standalone Feast transformer forwarding to it.

    Both start at once (start-up is mostly imports) and are shared by the session's tests.
    """
    logs = tmp_path_factory.mktemp("server-logs")
    predictor = Server(["--model_dir", str(artifact)], logs / "predictor.log")
    transformer = Server(
        ["--feast_repo", str(feast_repo), "--predictor_host", f"127.0.0.1:{predictor.port}"],
        logs / "transformer.log",
    )
    started = [predictor, transformer]
    try:
        for server in started:
            server.wait_ready()
        yield {"predictor": predictor, "transformer": transformer}
    finally:
        for server in started:
            server.stop()
