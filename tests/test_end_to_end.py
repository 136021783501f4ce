"""The client against the emulator on a real loopback socket (uvicorn, a free port).

uvicorn needs asyncio, so these run on asyncio only; every test has a deadline.
Every test runs once per HTTP backend of the async client (`http_backend`, set
through `PINKCLOUDSYNC_HTTP_BACKEND` so no call site changes); the sync twin
always uses httpx.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import httpx
import pytest

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    BadRequestError,
    PermissionDeniedError,
    PinkCloudSyncClient,
    RateLimitError,
    raise_for_api_error,
)
from pinkcloudsync_async.testing import Emulator, EmulatorKey, serve_emulator

pytestmark = pytest.mark.anyio
ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])

DEADLINE = 20.0


class Clocks:
    """One hand-moved time for both sides: the emulator's wall clock, the client's
    monotonic one. Moving it ages tokens without waiting.

    Not a `fakes.FakeClock`: over a real socket time really passes, so each side
    keeps its own real clock and the test shifts both by the same offset."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def http_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("PINKCLOUDSYNC_HTTP_BACKEND", request.param)
    return str(request.param)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Emulator, str]]:
    # Each test bounds its own body with anyio.fail_after; the server stops itself.
    emulator = Emulator()
    async with serve_emulator(emulator) as url:
        yield emulator, url


def client_for(url: str, **kwargs: object) -> AsyncPinkCloudSyncClient:
    return AsyncPinkCloudSyncClient("pk_test_emulator", "sk_test_emulator", base_url=url, **kwargs)


@ASYNCIO
async def test_serves_on_a_free_loopback_port_and_stops(anyio_backend: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with serve_emulator(Emulator(), port=0) as url:
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/v1")
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            assert port > 0
            async with client_for(url) as client:
                assert (await client.list_sessions()).sessions == []
        with pytest.raises(OSError):  # noqa: PT011 - the errno varies by platform
            await anyio.connect_tcp("127.0.0.1", port)


@ASYNCIO
async def test_the_block_s_own_error_propagates_unwrapped(anyio_backend: str) -> None:
    with anyio.fail_after(DEADLINE), pytest.raises(LookupError, match="mine"):
        async with serve_emulator(Emulator()):
            raise LookupError("mine")


@ASYNCIO
async def test_a_token_is_issued_and_refreshed_before_it_expires(anyio_backend: str) -> None:
    clocks = Clocks()
    emulator = Emulator(token_lifetime=2, clock=clocks.wall)
    with anyio.fail_after(DEADLINE):
        async with (
            serve_emulator(emulator) as url,
            client_for(url, refresh_margin=0.5, _clock=clocks.monotonic) as client,
        ):
            first = await client.get_token()
            assert first.lifetime == 2.0
            await client.list_sessions()
            clocks.offset += 1.6  # due: the next call uses it and refreshes in the background
            await client.list_sessions()
            clocks.offset += 1.0  # the first token has expired on the server's clock
            await client.list_sessions()  # so this one must carry the refreshed token
            second = await client.get_token()
    assert second.access_token != first.access_token
    assert emulator.stats.token_requests == 2
    assert emulator.stats.api_requests_by_status == {200: 3}  # no 401: refreshed in time


@ASYNCIO
async def test_refresh_across_a_real_short_lifetime(anyio_backend: str) -> None:
    emulator = Emulator(token_lifetime=2)
    with anyio.fail_after(DEADLINE):
        async with (
            serve_emulator(emulator) as url,
            client_for(url, refresh_margin=1.0) as client,
        ):
            first = await client.get_token()
            # Keep working until the early refresh (due after 1 s) has replaced it.
            while client.auth.token is first:
                await client.list_sessions()
                await anyio.sleep(0.02)
            second = client.auth.token
            await client.list_sessions()
    assert second is not None
    assert second.obtained_at < first.expires_at  # renewed before the old one expired
    assert emulator.stats.token_requests == 2
    assert emulator.stats.tokens_issued == 2
    assert 401 not in emulator.stats.api_requests_by_status


@ASYNCIO
async def test_a_revoked_token_is_replaced_after_one_401(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with client_for(url) as client:
            await client.list_sessions()
            emulator.revoke_all_tokens()
            assert (await client.list_sessions()).sessions == []
        assert emulator.stats.api_requests_by_status == {200: 2, 401: 1}
        assert emulator.stats.token_requests == 2


@ASYNCIO
async def test_many_callers_recover_from_a_revocation_with_one_token_request(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with client_for(url) as client:
            await client.list_sessions()
            emulator.revoke_all_tokens()
            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(client.list_sessions)
        assert emulator.stats.token_requests == 2
        assert emulator.stats.api_requests_by_status[200] == 51


@ASYNCIO
async def test_a_missing_permission_is_a_typed_403(anyio_backend: str) -> None:
    reader = EmulatorKey("pk_test_reader", "sk_test_reader", permissions=("sync:read",))
    writer = EmulatorKey("pk_test_writer", "sk_test_writer", permissions=("sync:write",))
    with anyio.fail_after(DEADLINE):
        async with serve_emulator(Emulator(keys=[reader, writer])) as url:
            async with AsyncPinkCloudSyncClient(
                reader.api_key, reader.api_secret, base_url=url
            ) as c:
                response = await c.post("sync/sessions", json={"name": "x"})
                with pytest.raises(PermissionDeniedError) as denied:
                    raise_for_api_error(response)
            async with AsyncPinkCloudSyncClient(
                writer.api_key, writer.api_secret, base_url=url
            ) as c:
                with pytest.raises(PermissionDeniedError, match="'sync:read'"):
                    await c.list_sessions()
    assert denied.value.status_code == 403
    assert denied.value.error == "insufficient_permissions"
    assert denied.value.message == "API key does not have 'sync:write' permission"


@ASYNCIO
async def test_a_429_is_waited_out_as_retry_after_says(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with client_for(url) as client:
            await client.list_sessions()
            emulator.fail_api_requests(1, status=429, retry_after=0.2)
            started = time.monotonic()
            await client.list_sessions()
            waited = time.monotonic() - started
        assert waited >= 0.2
        assert emulator.stats.api_requests_by_status == {200: 2, 429: 1}


@ASYNCIO
async def test_a_rate_limit_that_outlasts_the_retries_is_a_typed_429(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with client_for(url, max_retries=0) as client:
            await client.list_sessions()
            emulator.set_rate_limit(0, window=60.0)
            with pytest.raises(RateLimitError) as limited:
                await client.list_sessions()
        assert limited.value.retry_after == 60.0


@ASYNCIO
async def test_token_request_failures_are_retried(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        emulator.fail_token_requests(1, status=503)
        emulator.fail_token_requests(1, status=429, retry_after=0.05)
        async with client_for(url, retry_backoff_base=0.01) as client:
            await client.list_sessions()
        assert emulator.stats.token_requests_by_status == {503: 1, 429: 1, 200: 1}


@ASYNCIO
async def test_bad_bodies_are_answered_400(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with httpx.AsyncClient(base_url=url + "/") as http:
            for content in (b"{not json", b"[]", b'{"api_key": "pk_test_emulator"}'):
                response = await http.post("auth/token", content=content)
                assert response.status_code == 400
                assert response.json()["error"] == "invalid_request"
        async with client_for(url) as client:
            response = await client.post("sync/sessions", content=b"{truncated")
            with pytest.raises(BadRequestError, match="JSON"):
                raise_for_api_error(response)
        assert 500 not in emulator.stats.api_requests_by_status


@ASYNCIO
async def test_the_sync_client_from_a_worker_thread(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served
    with anyio.fail_after(DEADLINE):

        def work() -> int:
            with PinkCloudSyncClient(
                "pk_test_emulator", "sk_test_emulator", base_url=url
            ) as client:
                client.post("sync/sessions", json={"name": "from a thread"})
                return len(client.list_sessions().sessions)

        # The sync client blocks: it must not run on the loop that serves the emulator.
        assert await anyio.to_thread.run_sync(work) == 1
        assert emulator.stats.token_requests == 1


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_serving_on_trio_is_refused_clearly(anyio_backend: str) -> None:
    with pytest.raises(RuntimeError, match="asyncio"):
        async with serve_emulator(Emulator()):
            pass  # pragma: no cover


@ASYNCIO
async def test_a_401_frees_its_connection_for_the_token_request(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    # One pooled connection: the refused request must give it back before the
    # token request can be sent, or both wait for each other until the timeout.
    emulator, url = served
    with anyio.fail_after(DEADLINE):
        async with client_for(url, limits=httpx.Limits(max_connections=1), timeout=5.0) as client:
            await client.list_sessions()
            emulator.revoke_all_tokens()
            await client.list_sessions()
    assert emulator.stats.token_requests == 2


@ASYNCIO
async def test_a_401_frees_its_connection_for_the_sync_token_request(
    anyio_backend: str, served: tuple[Emulator, str]
) -> None:
    emulator, url = served

    def work() -> None:
        with PinkCloudSyncClient(
            "pk_test_emulator",
            "sk_test_emulator",
            base_url=url,
            limits=httpx.Limits(max_connections=1),
            timeout=5.0,
        ) as client:
            client.list_sessions()
            emulator.revoke_all_tokens()
            client.list_sessions()

    with anyio.fail_after(DEADLINE):
        await anyio.to_thread.run_sync(work)
    assert emulator.stats.token_requests == 2
