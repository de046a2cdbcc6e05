"""The Arrow pool choice for allocation-heavy steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from model.arrow_memory import POOL_ENV, keeping_freed_pages, prefer_jemalloc

ROOT = Path(__file__).resolve().parents[2]


def test_inside_the_pool_keeps_pages_and_is_restored_after(monkeypatch) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)
    before = pa.default_memory_pool().backend_name
    with keeping_freed_pages():
        inside = pa.default_memory_pool().backend_name
        array = pa.array(range(1000))  # allocated by the pool in force
    assert inside in ("jemalloc", "system")
    assert pa.default_memory_pool().backend_name == before
    assert array.sum().as_py() == sum(range(1000))  # freed later by its own pool


def test_a_pool_chosen_by_the_user_is_left_alone(monkeypatch) -> None:
    monkeypatch.setenv(POOL_ENV, "mimalloc")
    before = pa.default_memory_pool().backend_name
    with keeping_freed_pages():
        assert pa.default_memory_pool().backend_name == before


def test_it_decorates_functions(monkeypatch) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)

    @keeping_freed_pages()
    def pool_name() -> str:
        return pa.default_memory_pool().backend_name

    assert pool_name() in ("jemalloc", "system")


def test_a_process_that_prefers_jemalloc_early_gets_it_everywhere(monkeypatch) -> None:
    """Arrow's C++ default pool (its readers and joins use it) follows the variable set
    before the first allocation; a user's own choice wins."""
    monkeypatch.delenv(POOL_ENV, raising=False)
    code = (
        "from model.arrow_memory import prefer_jemalloc; prefer_jemalloc(); import io;"
        "import pyarrow as pa, pyarrow.parquet as pq;"
        "pq.write_table(pa.table({'x': [1]}), io.BytesIO());"
        "print(pa.default_memory_pool().backend_name)"
    )

    def pool(env: dict[str, str]) -> str:
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    env = {k: v for k, v in os.environ.items() if k != POOL_ENV}
    assert pool(env) == "jemalloc"
    assert pool({**env, POOL_ENV: "system"}) == "system"
    prefer_jemalloc()
    assert os.environ[POOL_ENV] == "jemalloc"
