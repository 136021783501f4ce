"""Choosing the HTTP backend: argument > PINKCLOUDSYNC_HTTP_BACKEND > "httpx", and
every option aiohttp cannot honour refused with a ConfigurationError naming the fix."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import anyio
import httpx
import pytest
from fakes import API_KEY, API_SECRET

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    ConfigurationError,
    PinkCloudSyncClient,
)
from pinkcloudsync_async._transports import LoopBoundTransport
from pinkcloudsync_async.testing import Emulator

ENV = "PINKCLOUDSYNC_HTTP_BACKEND"


@pytest.fixture(autouse=True)
def no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        (None, None, "httpx"),
        (None, "aiohttp", "aiohttp"),
        (None, " AIOHTTP ", "aiohttp"),
        (None, "", "httpx"),
        ("httpx", "aiohttp", "httpx"),
        ("aiohttp", "httpx", "aiohttp"),
    ],
)
def test_argument_then_environment_then_httpx(
    monkeypatch: pytest.MonkeyPatch, argument: str | None, env: str | None, expected: str
) -> None:
    if env is not None:
        monkeypatch.setenv(ENV, env)
    client = AsyncPinkCloudSyncClient(API_KEY, API_SECRET, http_backend=argument)
    assert client.http_backend == expected


@pytest.mark.parametrize("where", ["argument", "environment"])
@pytest.mark.parametrize("value", ["requests", "h2", "Aiohttp2"])
def test_an_unknown_backend_names_the_choices(
    monkeypatch: pytest.MonkeyPatch, where: str, value: str
) -> None:
    kwargs: dict[str, Any] = {}
    if where == "argument":
        kwargs["http_backend"] = value
    else:
        monkeypatch.setenv(ENV, value)
    with pytest.raises(ConfigurationError, match="'httpx', 'aiohttp'") as caught:
        AsyncPinkCloudSyncClient(API_KEY, API_SECRET, **kwargs)
    assert (ENV in str(caught.value)) is (where == "environment")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"http2": True}, "HTTP/1.1 only"),
        ({"transport": httpx.MockTransport(lambda r: httpx.Response(200))}, "transport="),
        ({"proxy": "socks5://127.0.0.1:1080"}, "HTTP proxies only"),
    ],
    ids=["http2", "transport", "socks-proxy"],
)
def test_what_aiohttp_cannot_honour_is_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        AsyncPinkCloudSyncClient(API_KEY, API_SECRET, http_backend="aiohttp", **kwargs)


def test_your_own_transport_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The variable picks the backend of a transport the client builds; with yours
    # (the emulator's in-process client, a MockTransport in a test) it does not
    # apply, as an argument wins over the environment. It used to refuse them all.
    monkeypatch.setenv(ENV, "aiohttp")
    emulator = Emulator()

    async def calls() -> list[int]:
        async with emulator.client() as client:
            return [len((await client.list_sessions()).sessions)]

    assert anyio.run(calls) == [0]
    mocked = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(lambda r: httpx.Response(200))
    )
    assert mocked.http_backend == "httpx"


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx_aiohttp", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pinkcloudsync-async\[aiohttp\]"):
        AsyncPinkCloudSyncClient(API_KEY, API_SECRET, http_backend="aiohttp")


def test_the_sync_twin_has_httpx_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="AsyncPinkCloudSyncClient"):
        PinkCloudSyncClient(API_KEY, API_SECRET, http_backend="aiohttp")
    monkeypatch.setenv(ENV, "aiohttp")  # meant for the async workers sharing the env
    assert PinkCloudSyncClient(API_KEY, API_SECRET).http_backend == "httpx"
    # Spelt as the async client accepts it; it used to be refused as not "httpx".
    assert PinkCloudSyncClient(API_KEY, API_SECRET, http_backend=" HTTPX ").http_backend == "httpx"
    with pytest.raises(ConfigurationError, match="'httpx', 'aiohttp'"):
        PinkCloudSyncClient(API_KEY, API_SECRET, http_backend="requests")


@pytest.mark.parametrize("call", ["get", "get_token"])
def test_on_trio_aiohttp_is_refused_naming_the_fix(call: str) -> None:
    client = AsyncPinkCloudSyncClient(API_KEY, API_SECRET, http_backend="aiohttp")

    async def use() -> None:
        with anyio.fail_after(10):
            if call == "get":
                await client.get("sync/sessions")
            else:
                await client.get_token()

    with pytest.raises(ConfigurationError, match=r'asyncio only.*http_backend="httpx"'):
        anyio.run(use, backend="trio")


@pytest.mark.parametrize(
    ("limits", "expected"),
    [(None, 100), (httpx.Limits(max_connections=7), 7), (httpx.Limits(max_connections=None), 0)],
    ids=["default", "seven", "unbounded"],
)
def test_the_pool_size_reaches_aiohttp(limits: httpx.Limits | None, expected: int) -> None:
    kwargs = {} if limits is None else {"limits": limits}
    client = AsyncPinkCloudSyncClient(API_KEY, API_SECRET, http_backend="aiohttp", **kwargs)
    transport = client._transport
    assert isinstance(transport, LoopBoundTransport)

    async def connector_limit() -> int:
        inner = transport._follow()
        session = inner.inner.get_client()  # type: ignore[attr-defined]
        try:
            return int(session.connector.limit)
        finally:
            await session.close()

    assert asyncio.run(connector_limit()) == expected
    assert client.max_concurrency == (expected or None)
