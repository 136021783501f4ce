"""Real services for the tests: a `redis-server` on a free loopback port.

A missing `redis-server` skips the tests that need it, with the reason; CI sets
`PINKCLOUDSYNC_REQUIRE_SERVICES=1`, which turns that skip into a failure.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from pinkcloudsync_async.stores import RedisTokenStore, TokenStore
from pinkcloudsync_async.testing._fleet import RedisServer

__all__ = ["RedisServer", "closing", "missing_service", "new_key", "redis_store", "start_redis"]

REQUIRE_ENV = "PINKCLOUDSYNC_REQUIRE_SERVICES"


def missing_service(reason: str) -> None:
    """Skip, or fail where services are required (CI)."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


def start_redis() -> RedisServer:
    """A started `redis-server`, or a skip (a failure in CI) when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_service(
            "redis-server is not on PATH (apt-get install -y --no-install-recommends redis-server)"
        )
        raise AssertionError("unreachable")
    server = RedisServer(binary)
    server.start()
    return server


# ------------------------------------------------- a token store on that server


def new_key() -> str:
    """A fresh encryption key, as the README says to make one."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


KEY = new_key()


def redis_store(server: RedisServer, **kwargs: Any) -> RedisTokenStore:
    """A `RedisTokenStore` on `server`, encrypted with `KEY` unless told otherwise."""
    kwargs.setdefault("encryption_key", KEY)
    return RedisTokenStore.from_url(server.url, **kwargs)


@asynccontextmanager
async def closing(store: TokenStore) -> AsyncIterator[TokenStore]:
    """`store`, closed on exit."""
    try:
        yield store
    finally:
        await store.aclose()
