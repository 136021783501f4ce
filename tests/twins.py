"""Both clients behind one interface, for the scenarios that hold for each twin.

A test written against `Twin` runs once per twin: `async-asyncio`, `async-trio` (the
async client driven by coroutines) and `sync` (the sync client driven by real
threads, from an asyncio test). The test bodies are `async`; for the sync twin every
client call runs in its own worker thread, so N concurrent calls are N threads.

A scripted `Server` plays the API. Its handler is a plain function called from
threads (for the async twin it is hopped to a worker thread, so a handler may block
on a `threading.Event` gate without blocking the event loop). Sleeps are injected:
they record the delay and advance a `FakeClock` by it, so nothing really sleeps.

Use in a test module:

    twin = twins.twin
    anyio_backend = twins.anyio_backend  # a twin test runs on its twin's backend
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from fakes import API_KEY, API_SECRET, BASE_URL, TOKEN_URL, FakeClock, make_jwt

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
from pinkcloudsync_async._token_lifecycle import Action
from pinkcloudsync_async.testing import IN_PROCESS_BASE_URL, SyncASGITransport

TOKEN_PATH = httpx.URL(TOKEN_URL).path
# Bound of every test body (anyio.fail_after) and of every wait on a thread or gate.
TIMEOUT = 10.0

Client = AsyncPinkCloudSyncClient | PinkCloudSyncClient
Reply = Callable[[httpx.Request], httpx.Response]
Outcome = Any  # a call's return value, or the exception it raised

_token_serial = itertools.count(1)


# --------------------------------------------------------------------- replies


def reply(
    status: int = 200,
    *,
    json: Any = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> Reply:
    """A reply answering every request with a fresh response of this shape."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=json, headers=headers, content=content)

    return answer


def retry_after(status: int, value: str) -> Reply:
    """An error status carrying a `Retry-After` header."""
    return reply(status, headers={"Retry-After": value})


def fail(exc_type: type[httpx.TransportError]) -> Reply:
    """A reply that raises a transport error, as a dead network does."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"simulated {exc_type.__name__}", request=request)

    return answer


def new_access_token(lifetime: int = 3600) -> str:
    """A JWT unlike any other, so tests can tell which token a request carried."""
    return make_jwt(lifetime=lifetime, jti=f"token-{next(_token_serial)}")


def token_reply(token: str | None = None, *, expires_in: int = 3600) -> Reply:
    """A 200 token response; a new distinct token for each request unless given."""

    def answer(request: httpx.Request) -> httpx.Response:
        raw = token if token is not None else new_access_token(expires_in)
        return httpx.Response(
            200, json={"access_token": raw, "token_type": "Bearer", "expires_in": expires_in}
        )

    return answer


SESSIONS = {"sessions": [{"id": "s1", "status": "active"}, {"id": "s2", "extra": 1}]}


# ---------------------------------------------------------------------- server


class Server:
    """The API as a script: answer N of an endpoint is `script[min(N, len - 1)]`.

    Thread-safe; records every request. `before_token` / `before_api` hooks run
    with the 0-based index of the request before it is answered (gates go there).
    """

    def __init__(
        self,
        *,
        token: Sequence[Reply] = (),
        api: Sequence[Reply] = (),
    ) -> None:
        self.token_script: list[Reply] = list(token) or [token_reply()]
        self.api_script: list[Reply] = list(api) or [reply(200, json=SESSIONS)]
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        # The token each API request carried when it arrived (a replay reuses, and
        # re-authorizes, the same request object).
        self.api_bearers: list[str | None] = []
        self.issued: list[str] = []  # access tokens handed out, in order
        self.before_token: Callable[[int], None] | None = None
        self.before_api: Callable[[int], None] | None = None
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        is_token = request.url.path == TOKEN_PATH
        with self._lock:
            log = self.token_requests if is_token else self.api_requests
            index = len(log)
            log.append(request)
            if not is_token:
                self.api_bearers.append(self.bearer_of(request))
        hook = self.before_token if is_token else self.before_api
        if hook is not None:
            hook(index)
        script = self.token_script if is_token else self.api_script
        response = script[min(index, len(script) - 1)](request)
        if is_token and response.status_code == 200:
            try:
                issued = response.json()["access_token"]
            except (ValueError, RecursionError, LookupError, TypeError):
                return response  # a hostile body: nothing was issued
            with self._lock:
                self.issued.append(issued)
        return response

    def bearer_of(self, request: httpx.Request) -> str | None:
        """The access token a request carried, or None."""
        value = request.headers.get("Authorization")
        return value.removeprefix("Bearer ") if value else None


class WaitSpy:
    """Counts callers the token lifecycle told to wait for the flight in progress.

    Lets a gated token request hold on until every other caller is waiting on it,
    without sleeping: the crowd is provably inside the single flight.
    """

    def __init__(self, client: Client) -> None:
        lifecycle = client.auth.tokens.lifecycle
        original = lifecycle.claim
        self.waits = 0
        self._cond = threading.Condition()

        def claim(now: float) -> Any:
            outcome = original(now)
            if outcome[0] is Action.WAIT:
                with self._cond:
                    self.waits += 1
                    self._cond.notify_all()
            return outcome

        lifecycle.claim = claim  # type: ignore[method-assign]

    def wait_for(self, count: int, timeout: float = TIMEOUT / 2) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.waits >= count, timeout)


class HoldFirstTokenRequest:
    """ASGI middleware: the first token request waits until `count` other callers
    wait on its flight, so the crowd is provably inside one single flight (an
    in-process emulator answers without ever yielding otherwise)."""

    def __init__(self, app: Any, twin: Twin, count: int) -> None:
        self.app, self.twin, self.count = app, twin, count
        self.spy: WaitSpy | None = None
        self.held = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/auth/token") and not self.held:
            self.held = True
            assert self.spy is not None
            if self.twin.is_async:
                await anyio.to_thread.run_sync(self.spy.wait_for, self.count)
            else:  # the sync transport runs the app in the leading thread
                self.spy.wait_for(self.count)
        await self.app(scope, receive, send)


# ------------------------------------------------------------------ transports


class _NetworkLike(httpx.BaseTransport):
    """Sends a body as a network transport does: iterates it and keeps nothing."""

    def __init__(self, handler: Reply) -> None:
        self._handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in request.stream:  # type: ignore[union-attr]
            pass
        return self._handler(request)


class _AsyncNetworkLike(httpx.AsyncBaseTransport):
    """The async twin of `_NetworkLike`."""

    def __init__(self, handler: Reply) -> None:
        self._handler = handler

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async for _ in request.stream:  # type: ignore[union-attr]
            pass
        return await anyio.to_thread.run_sync(self._handler, request, abandon_on_cancel=True)


def _threaded(handler: Reply) -> Callable[[httpx.Request], Any]:
    # The handler may block on a threading gate: run it off the event loop, with
    # room for a crowd of held handlers (anyio's default pool has 40 threads).
    limiter: list[anyio.CapacityLimiter] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        if not limiter:
            limiter.append(anyio.CapacityLimiter(100))
        return await anyio.to_thread.run_sync(
            handler, request, abandon_on_cancel=True, limiter=limiter[0]
        )

    return handle


# ------------------------------------------------------------------------ twin


@asynccontextmanager
async def _closing(client: Client) -> AsyncIterator[Any]:
    try:
        yield client
    finally:
        if isinstance(client, AsyncPinkCloudSyncClient):
            await client.aclose()
        else:
            client.close()


class Twin:
    """One of the two clients, with an injected clock and a sleep that records."""

    def __init__(self, kind: str, backend: str) -> None:
        self.kind = kind
        self.backend = backend
        self.clock = FakeClock()
        self.sleeps = self.clock.sleeps  # every delay the client slept, in order
        # How many concurrent callers a crowd test uses: coroutines are cheap.
        self.crowd = 500 if kind == "async" else 50
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"Twin({self.kind}, {self.backend})"

    @property
    def is_async(self) -> bool:
        return self.kind == "async"

    def make_client(self, server: Reply, *, network_like: bool = False, **kwargs: Any) -> Client:
        """A client of this twin whose transport is `server` (no network); on the test
        keys unless `api_key` / `api_secret` say otherwise."""
        kwargs.setdefault("_clock", self.clock)
        key, secret = kwargs.pop("api_key", API_KEY), kwargs.pop("api_secret", API_SECRET)
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport
        if self.is_async:
            kwargs.setdefault("_sleep", self.clock.async_sleep)
            if network_like:
                transport = _AsyncNetworkLike(server)
            else:
                transport = httpx.MockTransport(_threaded(server))
            return AsyncPinkCloudSyncClient(
                key, secret, base_url=BASE_URL, transport=transport, **kwargs
            )
        kwargs.setdefault("_sleep", self.clock.sleep)
        transport = _NetworkLike(server) if network_like else httpx.MockTransport(server)
        return PinkCloudSyncClient(key, secret, base_url=BASE_URL, transport=transport, **kwargs)

    @asynccontextmanager
    async def emulated(self, app: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """A client of this twin talking to an ASGI `app` (an `Emulator`, or one
        wrapped in middleware) in-process; configured by `kwargs` and the
        environment (no key or secret is given here); closed on exit."""
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport
        cls: type[Client]
        if self.is_async:
            transport, cls = httpx.ASGITransport(app=app), AsyncPinkCloudSyncClient
        else:
            transport, cls = SyncASGITransport(app), PinkCloudSyncClient
        kwargs.setdefault("base_url", IN_PROCESS_BASE_URL)
        async with _closing(cls(allow_insecure_http=True, transport=transport, **kwargs)) as client:
            yield client

    @asynccontextmanager
    async def client(
        self, server: Reply, *, network_like: bool = False, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """`make_client`, closed on exit."""
        async with _closing(
            self.make_client(server, network_like=network_like, **kwargs)
        ) as client:
            yield client

    async def do(self, client: Client, name: str, *args: Any, **kwargs: Any) -> Any:
        """`client.<name>(*args, **kwargs)`: awaited, or run in a thread of its own."""
        method = getattr(client, name)
        if self.is_async:
            return await method(*args, **kwargs)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.crowd + 10)
        return await anyio.to_thread.run_sync(
            functools.partial(method, *args, **kwargs),
            abandon_on_cancel=True,
            limiter=self._limiter,
        )

    async def request(self, client: Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A raw `client.request(...)`."""
        response: httpx.Response = await self.do(client, "request", method, url, **kwargs)
        return response

    async def outcome(self, client: Client, name: str, *args: Any, **kwargs: Any) -> Outcome:
        """What `do` returns, or the exception it raised."""
        try:
            return await self.do(client, name, *args, **kwargs)
        except Exception as exc:
            return exc

    async def gather(
        self, count: int, client: Client, name: str, *args: Any, **kwargs: Any
    ) -> list[Outcome]:
        """`count` concurrent calls (coroutines or threads); their outcomes."""
        outcomes: list[Outcome] = []

        async def one() -> None:
            outcomes.append(await self.outcome(client, name, *args, **kwargs))

        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
        return outcomes

    def stream_body(self, chunks: Iterable[bytes]) -> Any:
        """A generator request body (async for the async twin): sent once, not replayable."""
        parts = list(chunks)
        if self.is_async:

            async def agen() -> AsyncIterator[bytes]:
                for part in parts:
                    yield part

            return agen()

        def gen() -> Iterator[bytes]:
            yield from parts

        return gen()


_TWINS = [
    pytest.param(("async", "asyncio"), id="async-asyncio"),
    pytest.param(("async", "trio"), id="async-trio"),
    pytest.param(("sync", "asyncio"), id="sync"),
]


@pytest.fixture(params=_TWINS)
def twin(request: pytest.FixtureRequest) -> Twin:
    """Each client twin in turn (the async one on asyncio and on trio)."""
    kind, backend = request.param
    return Twin(kind, backend)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """A twin test runs on its twin's backend; other tests parametrize `anyio_backend`."""
    if "twin" not in request.fixturenames:
        raise RuntimeError("parametrize anyio_backend for tests that use no twin")
    twin_: Twin = request.getfixturevalue("twin")
    return twin_.backend


async def wait_event(event: threading.Event, limit: float = TIMEOUT) -> bool:
    """Wait for a threading gate from async code without blocking the event loop."""
    return await anyio.to_thread.run_sync(event.wait, limit, abandon_on_cancel=True)
