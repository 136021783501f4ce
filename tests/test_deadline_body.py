"""The time budget is total, body included, over real loopback sockets (issue 12).

Item 4: with `timeout=0.5`, a server that sends its headers at once and then one
byte every 0.05 s (each read well within the read timeout) must not stretch the
call to the 2 s its body takes: the call ends at its deadline with
`RequestTimeoutError`, on both twins, for the API and for the token endpoint.
Item 3's last input: a token endpoint that never answers, with the library's
default timeout, is a `RequestTimeoutError` (an `httpx.TimeoutException`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import twins
from fakes import API_KEY, API_SECRET, Exchange, LoopbackServer, token_body
from twins import Twin

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    PinkCloudSyncClient,
    RequestTimeoutError,
    _client_base,
)

twin = twins.twin
anyio_backend = twins.anyio_backend
pytestmark = pytest.mark.anyio

BODY = json.dumps({"sessions": [{"id": "s" * 20}]}).encode()  # 40 bytes: 2 s at 20 bytes/s
BYTE_EVERY = 0.05
BUDGET = 0.5
# The async twin cuts a read at the deadline; the sync one notices after the read
# that passes it (each read is bounded by the time left when the attempt began).
SLACK = 0.4


def trickle(exchange: Exchange, body: bytes) -> None:
    exchange.send(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    for i in range(len(body)):
        exchange.send(body[i : i + 1])
        if exchange.release.wait(BYTE_EVERY):  # the server's pace: the fault under test
            return


def server_for(*, token: Callable[[Exchange], None], api: Callable[[Exchange], None]) -> Any:
    def respond(exchange: Exchange) -> None:
        (token if exchange.path.endswith("/auth/token") else api)(exchange)

    return LoopbackServer(respond)


def token_at_once(exchange: Exchange) -> None:
    exchange.answer(200, json.dumps(token_body()).encode())


def real_client(twin: Twin, base_url: str, **kwargs: Any) -> Any:
    cls = AsyncPinkCloudSyncClient if twin.is_async else PinkCloudSyncClient
    return cls(API_KEY, API_SECRET, base_url=base_url, **kwargs)


async def timed(twin: Twin, client: Any, name: str, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    outcome = await twin.outcome(client, name, *args)
    return outcome, time.monotonic() - started


async def close(twin: Twin, client: Any) -> None:
    if twin.is_async:
        await client.aclose()
    else:
        client.close()


@pytest.mark.parametrize(
    ("name", "args"), [("list_sessions", ()), ("get", ("sync/sessions",))], ids=["typed", "raw"]
)
async def test_a_trickling_body_cannot_stretch_the_budget(
    twin: Twin, name: str, args: tuple[str, ...]
) -> None:
    with server_for(token=token_at_once, api=lambda e: trickle(e, BODY)) as server:
        client = real_client(twin, server.base_url, timeout=BUDGET)
        try:
            outcome, elapsed = await timed(twin, client, name, *args)
        finally:
            await close(twin, client)
    assert isinstance(outcome, RequestTimeoutError), repr(outcome)
    assert BUDGET <= elapsed < BUDGET + SLACK


async def test_a_trickling_token_response_cannot_stretch_the_budget(twin: Twin) -> None:
    body = json.dumps(token_body()).encode()[:30] + b" " * 10  # the first 4 s of it

    with server_for(token=lambda e: trickle(e, body), api=token_at_once) as server:
        client = real_client(twin, server.base_url, timeout=BUDGET)
        try:
            outcome, elapsed = await timed(twin, client, "get_token")
        finally:
            await close(twin, client)
    assert isinstance(outcome, RequestTimeoutError), repr(outcome)
    assert elapsed < BUDGET + SLACK


async def test_a_body_within_the_budget_is_read_whole(twin: Twin) -> None:
    quick = json.dumps({"sessions": []}).encode()  # 16 bytes: 0.8 s; the budget is 2 s
    with server_for(token=token_at_once, api=lambda e: trickle(e, quick)) as server:
        client = real_client(twin, server.base_url, timeout=2.0)
        try:
            sessions = await twin.do(client, "list_sessions")
        finally:
            await close(twin, client)
    assert sessions.sessions == []


@pytest.mark.parametrize("max_retries", [0, 1])
async def test_a_hanging_token_endpoint_with_the_default_timeout_times_out(
    twin: Twin, max_retries: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library's default timeout, shrunk from 30 s to 0.3 s: the same code path.
    monkeypatch.setattr(_client_base, "DEFAULT_TIMEOUT", httpx.Timeout(0.3, connect=5.0))

    with server_for(token=lambda e: e.release.wait(10), api=token_at_once) as server:
        client = real_client(
            twin, server.base_url, max_retries=max_retries, retry_backoff_base=0.01
        )
        try:
            outcome = await twin.outcome(client, "get_token")
        finally:
            await close(twin, client)
    assert isinstance(outcome, RequestTimeoutError), repr(outcome)
    assert isinstance(outcome, httpx.TimeoutException)
    assert len(server.exchanges) == 1 + max_retries


def trickle_headers(exchange: Exchange) -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: " + b"p" * 40
    for i in range(len(head)):
        exchange.send(head[i : i + 1])
        if exchange.release.wait(BYTE_EVERY):
            return


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_trickling_headers_cannot_stretch_the_budget_of_the_async_client() -> None:
    # The sync twin cannot cut a blocking read short: there each read is bounded by
    # the read timeout (see the README's time budget), not the whole header section.
    with server_for(token=token_at_once, api=trickle_headers) as server:
        async with AsyncPinkCloudSyncClient(
            API_KEY, API_SECRET, base_url=server.base_url, timeout=BUDGET
        ) as client:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                await client.list_sessions()
            elapsed = time.monotonic() - started
    assert BUDGET <= elapsed < BUDGET + SLACK
