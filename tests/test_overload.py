"""Overload on a real loopback socket: requests queue *before* they get a token.

The emulator runs on its own event loop in a thread (so it outlives the client's
loops); the clients build their own pools. Without admission, thousands of requests
queued in httpx's pool with a token attached, and the wait outlived 2-second tokens:
the server refused them (401), and their one replay queued and died the same way.

Each scenario runs on both HTTP backends of the async client and on the sync twin.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.from_thread
import httpx
import pytest

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
from pinkcloudsync_async.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    serve_emulator,
)

TIMEOUT = 60.0
BACKENDS = pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])


class Served:
    """An emulator served on loopback from its own thread and event loop."""

    def __init__(self, emulator: Emulator, url: str) -> None:
        self.emulator = emulator
        self.url = url

    @property
    def refusals(self) -> int:
        return self.emulator.stats.api_requests_by_status[401]


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    emulator = Emulator(token_lifetime=getattr(request, "param", 3600))
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(serve_emulator(emulator)) as url,
    ):
        yield Served(emulator, url)


def crowd(client: AsyncPinkCloudSyncClient, calls: int) -> list[int]:
    """`calls` concurrent GETs through one entered client, on a new asyncio loop."""

    async def run() -> list[int]:
        statuses: list[int] = []

        async def one() -> None:
            response = await client.get("sync/sessions")
            statuses.append(response.status_code)

        async with client:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as group:
                    for _ in range(calls):
                        group.start_soon(one)
        return statuses

    return asyncio.run(run())


def renewals_bound(lifetime: int, elapsed: float) -> int:
    # Refreshed half a lifetime early (the lead is capped at lifetime / 2): one token
    # per half lifetime, the first one, and one for a refresh in flight at the end.
    return 2 + int(elapsed / (lifetime / 2))


@BACKENDS
@pytest.mark.parametrize("served", [2], indirect=True)
def test_6000_coroutines_with_2_second_tokens_all_succeed(
    served: Served, http_backend: str
) -> None:
    client = AsyncPinkCloudSyncClient(
        DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=served.url, http_backend=http_backend
    )
    assert client.max_concurrency == 100  # the pool's max_connections
    started = time.monotonic()
    statuses = crowd(client, 6_000)
    elapsed = time.monotonic() - started
    assert statuses.count(200) == 6_000, sorted(set(statuses))
    assert served.refusals == 0
    token_requests = served.emulator.stats.token_requests
    assert 1 <= token_requests <= renewals_bound(2, elapsed), (token_requests, elapsed)


@BACKENDS
def test_3000_coroutines_with_a_long_token_make_one_token_request(
    served: Served, http_backend: str
) -> None:
    client = AsyncPinkCloudSyncClient(
        DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=served.url, http_backend=http_backend
    )
    statuses = crowd(client, 3_000)
    assert statuses == [200] * 3_000
    stats = served.emulator.stats
    assert stats.token_requests == 1
    assert stats.api_requests == 3_000
    assert served.refusals == 0


def threads(client: PinkCloudSyncClient, workers: int, calls_each: int) -> list[int]:
    """`workers` threads, each making `calls_each` GETs through one client."""
    start = threading.Barrier(workers)

    def work() -> list[int]:
        start.wait(TIMEOUT)  # every thread ready: they arrive together
        return [client.get("sync/sessions").status_code for _ in range(calls_each)]

    with client, ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work) for _ in range(workers)]
        return [status for future in futures for status in future.result(TIMEOUT)]


@pytest.mark.parametrize("served", [2], indirect=True)
def test_200_threads_with_a_pool_of_10_and_2_second_tokens_all_succeed(served: Served) -> None:
    client = PinkCloudSyncClient(
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        base_url=served.url,
        limits=httpx.Limits(max_connections=10),
    )
    assert client.max_concurrency == 10
    started = time.monotonic()
    statuses = threads(client, 200, 15)
    elapsed = time.monotonic() - started
    assert statuses.count(200) == 3_000, sorted(set(statuses))
    assert served.refusals == 0
    token_requests = served.emulator.stats.token_requests
    assert 1 <= token_requests <= renewals_bound(2, elapsed), (token_requests, elapsed)


def test_200_threads_with_a_long_token_make_one_token_request(served: Served) -> None:
    client = PinkCloudSyncClient(
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        base_url=served.url,
        limits=httpx.Limits(max_connections=10),
    )
    statuses = threads(client, 200, 5)
    assert statuses == [200] * 1_000
    stats = served.emulator.stats
    assert (stats.token_requests, stats.api_requests, served.refusals) == (1, 1_000, 0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 100),
        ({"limits": httpx.Limits(max_connections=7)}, 7),
        ({"limits": httpx.Limits(max_connections=None)}, None),
        ({"max_concurrency": 3}, 3),
        ({"max_concurrency": None}, None),
        ({"transport": httpx.MockTransport(lambda r: httpx.Response(200))}, None),
        (
            {"transport": httpx.MockTransport(lambda r: httpx.Response(200)), "max_concurrency": 5},
            5,
        ),
    ],
    ids=["default", "limits", "unbounded-pool", "explicit", "none", "own-transport", "both"],
)
@pytest.mark.parametrize("twin", [AsyncPinkCloudSyncClient, PinkCloudSyncClient])
def test_the_admission_limit_follows_the_pool(
    twin: type[Any], kwargs: dict[str, Any], expected: int | None
) -> None:
    if twin is PinkCloudSyncClient and "transport" in kwargs:
        kwargs = {**kwargs, "transport": httpx.MockTransport(lambda r: httpx.Response(200))}
    client = twin(DEFAULT_API_KEY, DEFAULT_API_SECRET, **kwargs)
    assert client.max_concurrency == expected
