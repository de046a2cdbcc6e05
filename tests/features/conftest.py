"""Fixtures of the Feast tests: a hand-made timeline repo, a real redis-server, store kinds."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from feature_helpers import TIMELINE_ITEMS, TIMELINE_USERS, items_table, users_table


@pytest.fixture()
def timeline(tmp_path: Path) -> Path:
    """A folder with users.parquet and items.parquet of the hand-made timeline."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(users_table(TIMELINE_USERS), data / "users.parquet")
    pq.write_table(items_table(TIMELINE_ITEMS), data / "items.parquet")
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real redis-server on a free loopback port, without persistence; yields host:port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `make tools` (apt-get install redis-server)"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    yield address
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["sqlite", "redis"])
def online_store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(online store type, redis address) for each supported online store."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_server")
    return "sqlite", "127.0.0.1:6379"
