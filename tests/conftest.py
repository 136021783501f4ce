"""Shared fixtures: the backends to run on, real services. The fakes the tests share
live in fakes.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from services import RedisServer, start_redis


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Tests marked `@pytest.mark.anyio` run once on asyncio and once on trio."""
    return str(request.param)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A `redis-server` of its own on a free loopback port, stopped after the test."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()
