"""`BodyLimitMiddleware` on a fake ASGI channel: what it reads of a refused body, what it sends."""

from __future__ import annotations

import asyncio
import json

import pytest

from components.serving.server import BodyLimitMiddleware

LIMIT = 1024
CHUNK = 256


async def _never_called(scope: dict, receive: object, send: object) -> None:
    raise AssertionError("the app must not see a refused body")


def _run(chunks: int, content_length: int | None, max_drain_bytes: int) -> tuple[int, list]:
    """Send a body of `chunks` chunks through the middleware; (chunks it read, messages sent)."""
    messages = [
        {"type": "http.request", "body": b"x" * CHUNK, "more_body": k < chunks - 1}
        for k in range(chunks)
    ]
    read = 0

    async def receive() -> dict:
        nonlocal read
        if read == len(messages):
            raise AssertionError("read past the end of the body")
        read += 1
        return messages[read - 1]

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    middleware = BodyLimitMiddleware(_never_called, LIMIT, max_drain_bytes=max_drain_bytes)
    asyncio.run(middleware({"type": "http", "headers": headers}, receive, send))
    return read, sent


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_refused_body_is_read_to_its_end_before_the_413(declared: bool) -> None:
    chunks = 40  # 10 KiB, ten times the limit
    size = chunks * CHUNK
    read, sent = _run(chunks, size if declared else None, max_drain_bytes=64 * LIMIT)
    assert read == chunks
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {
        "error": f"request body of {size} bytes exceeds max_body_bytes {LIMIT}; split the batch"
    }


def test_draining_stops_at_its_bound() -> None:
    # A 4 KiB drain bound: 16 chunks reach it, the 17th passes it; the other 383 stay unread.
    read, sent = _run(400, 400 * CHUNK, max_drain_bytes=4 * LIMIT)
    assert read == 4 * LIMIT // CHUNK + 1
    assert sent[0]["status"] == 413
