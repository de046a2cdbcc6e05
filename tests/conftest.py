"""Fixtures shared by every test area: small simulated worlds, generated once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from model.world.mechanism import WorldConfig
from model.world.simulator import simulate


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 60k-impression world (seed 7): enough clicks for every graph node, fast to build."""
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(impressions=60_000, seed=7, users=3_000, items=800, days=7), out)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def gcs_bucket() -> Iterator[str]:
    """A real GCS JSON-API emulator on loopback; yields a gs:// URI of an empty test bucket.

    `STORAGE_EMULATOR_HOST` is set for the whole session so that every google-cloud-storage
    client (ours, Feast's registry) talks to the emulator.
    """
    import os

    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="hm3-test")
    server.start()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        yield "gs://hm3-test"
    finally:
        server.stop()
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One real SparkSession in local mode for the whole test session (a JVM starts once).

    Code under test that asks for a session (labels' Spark engine, Feast's Spark store) gets
    this one: both reuse the active session.
    """
    import shutil

    if shutil.which("java") is None:
        pytest.fail("java is not installed: run `make tools` (apt-get install a JRE 17)")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("hm3-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
