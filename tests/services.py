"""Real services for the tests: a `redis-server` on a free loopback port.

A missing `redis-server` skips the tests that need it, with the reason; CI sets
`PINKCLOUDSYNC_REQUIRE_SERVICES=1`, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

from pinkcloudsync_async.testing._fleet import RedisServer

__all__ = ["RedisServer", "missing_service", "start_redis"]

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
