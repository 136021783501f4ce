"""The synchronous twin's guarantees (issue 5), with real threads.

The token lifecycle scenarios run against both twins through the `twin` fixture:
the sync client with one thread per call, the async client with one coroutine per
call, so one test states one guarantee for both. Gates are `threading.Event`s in
the handler; nothing synchronizes by sleeping. The last tests are the twins' own:
the sync client never touches an event loop, the async one never takes the lock.
"""

from __future__ import annotations

import asyncio
import gc
import re
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import twins
from fakes import API_KEY, API_SECRET, BASE_URL, FakeClock
from twins import (
    SESSIONS,
    TIMEOUT,
    Server,
    Twin,
    WaitSpy,
    fail,
    reply,
    retry_after,
    token_reply,
    wait_event,
)

from pinkcloudsync_async import (
    AccessToken,
    APIConnectionError,
    AsyncPinkCloudSyncClient,
    AuthenticationError,
    PermissionDeniedError,
    PinkCloudSyncClient,
    SessionList,
)

# The fixtures every test here shares (see twins.py).
twin = twins.twin
anyio_backend = twins.anyio_backend

BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
INVALID_CREDENTIALS = {"error": "invalid_credentials", "message": "Invalid API key or secret"}
TOKEN_EXPIRED = {"error": "invalid_token", "message": "Token expired"}


# ------------------------------------------------------- both twins, one test each


@pytest.mark.anyio
async def test_get_token_and_list_sessions(twin: Twin) -> None:
    server = Server()
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            token = await twin.do(client, "get_token")
            sessions = await twin.do(client, "list_sessions")
            again = await twin.do(client, "get_token")
    assert isinstance(token, AccessToken)
    assert token.access_token.get_secret_value() == server.issued[0]
    assert token.claims.sub == "user_123"
    assert again is token
    assert isinstance(sessions, SessionList)
    assert len(sessions.sessions) == len(SESSIONS["sessions"])
    assert len(server.token_requests) == 1
    assert server.api_bearers == [server.issued[0]]
    assert server.api_requests[0].url == httpx.URL(f"{BASE_URL}/sync/sessions")


@pytest.mark.anyio
async def test_list_sessions_raises_typed_errors_and_403_never_refreshes(twin: Twin) -> None:
    forbidden = {"error": "insufficient_permissions", "message": "needs sync:read"}
    server = Server(api=[reply(403, json=forbidden)])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            with pytest.raises(PermissionDeniedError) as caught:
                await twin.do(client, "list_sessions")
    assert caught.value.error == "insufficient_permissions"
    assert len(server.token_requests) == 1
    assert len(server.api_requests) == 1


@pytest.mark.anyio
async def test_cold_crowd_makes_exactly_one_token_request(twin: Twin) -> None:
    # 50 threads (sync) or 500 coroutines (async) on a cold client.
    server = Server()
    gates: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            spy = WaitSpy(client)
            server.before_token = lambda index: gates.append(spy.wait_for(twin.crowd - 1))
            outcomes = await twin.gather(twin.crowd, client, "request", "GET", "things")
    assert gates == [True], "the crowd never lined up behind the token request"
    assert len(server.token_requests) == 1
    assert [getattr(o, "status_code", o) for o in outcomes] == [200] * twin.crowd
    assert set(server.api_bearers) == {server.issued[0]}


@pytest.mark.anyio
async def test_failed_token_request_fans_out_to_every_waiter(twin: Twin) -> None:
    server = Server(token=[reply(401, json=INVALID_CREDENTIALS), token_reply()])
    gates: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            spy = WaitSpy(client)
            server.before_token = lambda index: gates.append(spy.wait_for(twin.crowd - 1))
            outcomes = await twin.gather(twin.crowd, client, "request", "GET", "things")
    assert gates == [True]
    assert len(server.token_requests) == 1  # nobody re-hits the endpoint in turn
    assert server.api_requests == []
    assert len(outcomes) == twin.crowd
    assert {type(o) for o in outcomes} == {AuthenticationError}
    assert {o.error for o in outcomes} == {"invalid_credentials"}
    assert {o.message for o in outcomes} == {"Invalid API key or secret"}
    assert {o.status_code for o in outcomes} == {401}


@pytest.mark.anyio
async def test_early_refresh_by_one_caller_while_the_others_go_on(twin: Twin) -> None:
    server = Server()
    refresh_started = threading.Event()
    release = threading.Event()

    def gate(index: int) -> None:
        if index == 1:  # the refresh: held until the others have gone on
            refresh_started.set()
            release.wait(TIMEOUT)

    server.before_token = gate
    carried: list[Any] = []
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            await twin.request(client, "GET", "things")  # token 1 at t=1000
            old = server.issued[0]
            twin.clock.advance(3400)  # 200 s left: due (margin 300 s), not expired
            async with anyio.create_task_group() as group:

                async def carry() -> None:
                    carried.append(await twin.outcome(client, "request", "GET", "things"))

                group.start_soon(carry)
                assert await wait_event(refresh_started)
                others = await twin.gather(20, client, "request", "GET", "things")
                assert carried == [], "the refresh is held: its carrier cannot be done"
                release.set()
            after = await twin.request(client, "GET", "things")
    assert [getattr(o, "status_code", o) for o in others] == [200] * 20
    assert {server.bearer_of(o.request) for o in others} == {old}
    assert len(server.token_requests) == 2  # exactly one refresh
    assert [getattr(o, "status_code", o) for o in carried] == [200]
    assert server.bearer_of(after.request) == server.issued[1] != old


@pytest.mark.anyio
async def test_401_refreshes_once_per_stale_token_and_replays_once(twin: Twin) -> None:
    # A crowd shares token 1, which the API has revoked. The first half get their
    # 401s at once and all wait on the one refresh, held until every stale request
    # has arrived. The second half get theirs only once token 2 is in use: they
    # must not drop token 2.
    crowd = 50
    all_stale_arrived = threading.Event()
    token_2_in_use = threading.Event()
    gates: list[bool] = []

    def api(request: httpx.Request) -> httpx.Response:
        if server.bearer_of(request) == server.issued[0]:
            return httpx.Response(401, json=TOKEN_EXPIRED)
        token_2_in_use.set()
        return httpx.Response(200, json=SESSIONS)

    server = Server(api=[api])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            spy = WaitSpy(client)

            def token_gate(index: int) -> None:
                if index == 0:  # everyone gets the same (soon stale) token
                    gates.append(spy.wait_for(crowd - 1))
                else:
                    gates.append(all_stale_arrived.wait(TIMEOUT))

            def api_gate(index: int) -> None:
                if index == crowd - 1:
                    all_stale_arrived.set()
                if crowd // 2 <= index < crowd:
                    gates.append(token_2_in_use.wait(TIMEOUT))

            server.before_token = token_gate
            server.before_api = api_gate
            outcomes = await twin.gather(crowd, client, "request", "GET", "things")
    assert gates == [True] * (2 + crowd // 2)
    assert len(server.token_requests) == 2  # one refresh for one stale token
    assert [getattr(o, "status_code", o) for o in outcomes] == [200] * crowd
    assert len(server.api_requests) == 2 * crowd  # each caller replayed exactly once
    assert server.api_bearers[:crowd] == [server.issued[0]] * crowd
    assert server.api_bearers[crowd:] == [server.issued[1]] * crowd


@pytest.mark.anyio
async def test_a_second_401_is_returned_to_the_caller(twin: Twin) -> None:
    server = Server(api=[reply(401, json=TOKEN_EXPIRED)])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 401
    assert len(server.token_requests) == 2
    assert len(server.api_requests) == 2
    assert server.api_bearers == server.issued


# ------------------------------------------- the sync client touches no event loop

_EVENT_LOOP_CODE = re.compile(r"(^|[/\\.])_?(asyncio|anyio|trio|sniffio)([/\\.]|$)")


def _event_loop_spy(touched: list[str]) -> Callable[[FrameType, str, Any], None]:
    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            where = frame.f_code.co_filename
        elif event == "c_call":
            where = getattr(arg, "__module__", None) or ""
        else:
            return
        if _EVENT_LOOP_CODE.search(where):
            touched.append(f"{where}:{frame.f_code.co_name}")

    return profile


def _sync_scenario(clock: FakeClock) -> dict[str, Any]:
    """Every path of the sync client: retries, 401, early refresh, threads, errors."""

    def api(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/stale") and server.bearer_of(request) == server.issued[0]:
            return httpx.Response(401, json=TOKEN_EXPIRED)
        if path.endswith("/flaky") and flaky.pop(0):
            return httpx.Response(503, headers={"Retry-After": "0"})
        return httpx.Response(200, json=SESSIONS)

    flaky = [True, False]
    server = Server(token=[retry_after(503, "0"), token_reply()], api=[api])
    seen: dict[str, Any] = {}
    # The default sleep (time.sleep) and a fake clock for expiry.
    with PinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=BASE_URL, transport=httpx.MockTransport(server), _clock=clock
    ) as client:
        seen["token"] = client.get_token()  # cold, with a retried token request
        seen["sessions"] = client.list_sessions()
        seen["flaky"] = client.get("flaky").status_code  # a retried call
        seen["stale"] = client.get("stale").status_code  # 401: refresh and replay
        clock.advance(3400)
        seen["due"] = client.get("things").status_code  # carries the early refresh
    # A crowd of threads on a cold client: one flies, the others wait on it.
    with PinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=BASE_URL, transport=httpx.MockTransport(server), _clock=clock
    ) as cold:
        barrier = threading.Barrier(5)
        codes: list[int] = []

        def one() -> None:
            barrier.wait(TIMEOUT)
            codes.append(cold.get("things").status_code)

        threads = [threading.Thread(target=one) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in threads)
        seen["crowd"] = codes
    seen["tokens"] = len(server.token_requests)
    broken = Server(token=[fail(httpx.ConnectError)])
    with PinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=BASE_URL, transport=httpx.MockTransport(broken)
    ) as client:
        try:
            client.get_token()
        except APIConnectionError as exc:
            seen["error"] = exc
    return seen


def test_sync_client_never_touches_an_event_loop() -> None:
    touched: list[str] = []
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with pytest.raises(RuntimeError):
                asyncio.get_running_loop()  # a plain thread: there is no loop here
            spy = _event_loop_spy(touched)
            # Finalizers of other tests' event loops must not run (and count) here.
            gc.collect()
            gc.disable()
            threading.setprofile(spy)  # the crowd's threads too
            sys.setprofile(spy)
            try:
                outcome.update(_sync_scenario(FakeClock()))
            finally:
                sys.setprofile(None)
                threading.setprofile(None)  # type: ignore[arg-type]
                gc.enable()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert errors == []
    assert touched == []
    assert isinstance(outcome["token"], AccessToken)
    assert isinstance(outcome["sessions"], SessionList)
    assert [outcome[k] for k in ("flaky", "stale", "due")] == [200, 200, 200]
    assert outcome["crowd"] == [200] * 5
    assert outcome["tokens"] == 5  # 503 + token, refresh after 401, early refresh, crowd
    assert "3 attempts" in str(outcome["error"])


def test_the_event_loop_spy_sees_an_event_loop() -> None:
    # Control for the test above: the spy does catch event-loop code.
    touched: list[str] = []
    sys.setprofile(_event_loop_spy(touched))
    try:
        anyio.run(anyio.sleep, 0)
    finally:
        sys.setprofile(None)
    assert touched


# --------------------------------------- the async client never takes the lock


class SpyLock:
    """A `threading.Lock` that counts acquisitions."""

    def __init__(self) -> None:
        self.acquisitions = 0
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.acquisitions += 1
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class _AsyncOnly(httpx.AsyncBaseTransport):
    # No sync `handle_request` at all: a blocking HTTP call could not even be made.
    def __init__(self, server: Server) -> None:
        self._server = server

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await anyio.lowlevel.checkpoint()
        return self._server(request)


@BACKENDS
@pytest.mark.anyio
@pytest.mark.parametrize("entered", [False, True], ids=["plain", "async-with"])
async def test_async_client_never_takes_the_thread_lock(entered: bool) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stale") and server.bearer_of(request) == server.issued[0]:
            return httpx.Response(401, json=TOKEN_EXPIRED)
        return httpx.Response(200, json=SESSIONS)

    server = Server(token=[reply(503), token_reply()], api=[api])
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await anyio.lowlevel.checkpoint()

    client = AsyncPinkCloudSyncClient(
        API_KEY,
        API_SECRET,
        base_url=BASE_URL,
        transport=_AsyncOnly(server),
        _clock=clock,
        _sleep=sleep,
    )
    spy = SpyLock()
    client.auth.tokens._lock = spy  # type: ignore[assignment]
    with anyio.fail_after(TIMEOUT):
        if entered:
            await client.__aenter__()
        try:
            async with anyio.create_task_group() as group:  # a cold crowd, token retried
                for _ in range(50):
                    group.start_soon(client.get, "things")
            await client.list_sessions()
            await client.get_token()
            assert (await client.get("stale")).status_code == 200  # 401, refresh, replay
            clock.advance(3400)
            await client.get("things")  # early refresh (carried, or in the background)
            for _ in range(10):
                await anyio.lowlevel.checkpoint()
        finally:
            if entered:
                await client.__aexit__(None, None, None)
            else:
                await client.aclose()
    assert len(server.token_requests) == 4
    assert spy.acquisitions == 0


def test_the_lock_spy_sees_the_sync_flow() -> None:
    # Control for the test above: the spy does count the sync flow's acquisitions.
    server = Server()
    with PinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=BASE_URL, transport=httpx.MockTransport(server)
    ) as client:
        spy = SpyLock()
        client.auth.tokens._lock = spy  # type: ignore[assignment]
        client.get("things")
    assert spy.acquisitions > 0
