"""Serving fixtures: a trained model artifact, a real Feast repo, real KServe servers on loopback.

The artifact is an HM^3 model trained for two epochs by `model.train.trainer.train` on the small
world's first impressions, so its five outputs differ from one another and a served field that
carries the wrong task's number shows. Feature names and kinds come from the Feast
FeatureService, as in production. Servers run in subprocesses, because KServe's ModelServer
parses sys.argv at import, blocks, and installs signal handlers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from online_features import online_truth as _online_truth

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


def train_tiny_artifact(
    world: Path, repo: Path, out: Path, kind: str = "hm3", rows: int = 12_000
) -> Path:
    """A model of `kind` trained for two epochs on the world's first `rows` impressions.

    The training table is the world's labels joined with as-of features; the feature kinds come
    from the applied Feast repo's `hm3_v1` service, as in training.
    """
    from model.data import features
    from model.train.trainer import TrainConfig, train

    infos = features.resolve_features(features.open_store(repo), features.DEFAULT_SERVICE)
    kinds = dict(schema.KEY_FEATURES) | dict(schema.CONTEXT_FEATURES)
    kinds |= features.feature_kinds(infos)
    truth = pq.read_table(world / "truth.parquet", columns=["impression_id", *schema.LABEL_COLUMNS])
    table = feature_frame(world, rows).merge(truth.to_pandas(), on="impression_id")
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({schema.FEATURE_KINDS_KEY: json.dumps(kinds).encode()})
    data = out.parent / f"{out.name}-training.parquet"
    pq.write_table(arrow, data)
    config = TrainConfig(
        model_kind=kind,
        embedding_dim=8,
        hidden=(16,),
        dropout=0.0,
        batch_size=512,
        epochs=2,
        patience=5,
        hash_buckets=1_000,
        lr=3e-3,
        device="cpu",
        progress=False,
        threads=1,
    )
    train(data, out, config)
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
def world_features(small_world: Path) -> pd.DataFrame:
    """The world's first 3,000 impressions with their as-of features."""
    return feature_frame(small_world, 3_000)


@pytest.fixture(scope="session")
def artifact(small_world: Path, feast_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained HM^3 artifact whose features are the Feast service's."""
    return train_tiny_artifact(small_world, feast_repo, tmp_path_factory.mktemp("artifact") / "hm3")


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


@contextmanager
def running(specs: dict[str, list[str]], logs: Path) -> Iterator[dict[str, Server]]:
    """Start servers with these arguments at once (start-up is mostly imports), stop them after."""
    started = {name: Server(args, logs / f"{name}.log") for name, args in specs.items()}
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


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


@pytest.fixture(scope="session")
def exported_servers(
    artifact: Path, feast_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    """The artifact's torch.export program, served by a predictor and by a transformer.

    The transformer holds the predictor in its own process (`hm3 serve --feast-repo ...
    --model-dir ...`, the local layout) instead of forwarding over HTTP.
    """
    exported = ["--model_dir", str(artifact), "--exported_program", "true"]
    specs = {"predictor": exported, "transformer": [*exported, "--feast_repo", str(feast_repo)]}
    with running(specs, tmp_path_factory.mktemp("exported-server-logs")) as started:
        yield started


@pytest.fixture(scope="session")
def online_truth(
    small_world: Path, feast_repo: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Every entity's latest snapshot and each feature's default (see `online_features`)."""
    return _online_truth(small_world, feast_repo)
