"""The Arrow pool switch around allocation-heavy steps."""

from __future__ import annotations

import pyarrow as pa

from model.arrow_memory import POOL_ENV, keeping_freed_pages


def test_the_pool_keeps_pages_inside_and_is_restored_after(monkeypatch) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)
    before = pa.default_memory_pool().backend_name
    with keeping_freed_pages():
        inside = pa.default_memory_pool().backend_name
        buffer = pa.array(range(1000))  # allocated by the pool in force
    assert inside in ("jemalloc", "system")
    assert inside != "mimalloc"
    assert pa.default_memory_pool().backend_name == before
    assert buffer.sum().as_py() == sum(range(1000))  # freed later by its own pool


def test_a_pool_chosen_by_the_user_is_left_alone(monkeypatch) -> None:
    monkeypatch.setenv(POOL_ENV, "mimalloc")
    before = pa.default_memory_pool()
    with keeping_freed_pages():
        assert pa.default_memory_pool().backend_name == before.backend_name


def test_it_decorates_functions(monkeypatch) -> None:
    monkeypatch.delenv(POOL_ENV, raising=False)

    @keeping_freed_pages()
    def pool_name() -> str:
        return pa.default_memory_pool().backend_name

    assert pool_name() in ("jemalloc", "system")
