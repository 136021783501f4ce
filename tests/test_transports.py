"""What carries requests, on real loopback sockets, for both twins.

- Everything the async client built itself (its pool, its proxy mounts, from
  `proxy=` or from the environment) follows the event loop: a second
  `asyncio.run()`, or a trio run after an asyncio one, works through a proxy.
- A token endpoint slower than the request's timeout ends the same way on both
  twins: `RequestTimeoutError` (the sync twin used to say `APIConnectionError`).

The server is a plain threaded HTTP server, so it outlives every client's event
loop; as a proxy it sees requests in absolute form, which proves they came through it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import trio
from fakes import API_KEY, API_SECRET, token_body

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    PinkCloudSyncClient,
    RequestTimeoutError,
)

# Plain http to a non-loopback name: only a proxy can answer for it.
PROXIED_BASE = "http://api.pinkcloudsync.test/v1"
TIMEOUT = 10.0


class WireAPI(ThreadingHTTPServer):
    """The API on a loopback port, also answering requests a proxy would forward."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str]] = []
        self.token_delay = 0.0
        self.release = threading.Event()  # set at teardown: a delayed answer ends now

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: WireAPI
    # Keep-alive, as real servers do: a pooled connection outlives its event loop.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reads `seen`, not stderr

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(("POST", self.path))
        if self.path.endswith("/hang-up"):
            self.close_connection = True  # read the request, then drop it unanswered
            return
        if self.path.endswith("/auth/token"):
            if self.server.token_delay:
                self.server.release.wait(self.server.token_delay)  # a slow endpoint
            self._answer(200, token_body())
        else:
            self._answer(404, {"error": "not_found", "message": "no such path"})

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        if self.headers.get("Authorization", "").startswith("Bearer "):
            self._answer(200, {"sessions": []})
        else:
            self._answer(401, {"error": "invalid_token", "message": "no token"})


@pytest.fixture
def wire() -> Iterator[WireAPI]:
    server = WireAPI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def run_async(backend: str, call: Callable[[], Any]) -> Any:
    """Run `call()` (a coroutine function) on a brand-new event loop of `backend`."""

    async def bounded() -> Any:
        if backend == "trio":
            with trio.fail_after(TIMEOUT):
                return await call()
        async with asyncio.timeout(TIMEOUT):
            return await call()

    return asyncio.run(bounded()) if backend == "asyncio" else trio.run(bounded)


# ------------------------------------------------- proxies and a second event loop

PROXY_SETTINGS = pytest.mark.parametrize("how", ["proxy=", "HTTP_PROXY"])


def _proxied_kwargs(how: str, wire: WireAPI, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    if how == "HTTP_PROXY":
        monkeypatch.setenv("HTTP_PROXY", wire.url)
        return {}
    return {"proxy": wire.url}


def _through_the_proxy(wire: WireAPI, calls: int) -> list[tuple[str, str]]:
    return [("POST", f"{PROXIED_BASE}/auth/token")] + [
        ("GET", f"{PROXIED_BASE}/sync/sessions")
    ] * calls


class TestProxyAcrossEventLoops:
    # The first loop's pooled proxy socket can only be left to the garbage collector
    # (its loop is gone); collected here, its ResourceWarning is expected.
    @pytest.mark.filterwarnings("ignore::ResourceWarning")
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    @PROXY_SETTINGS
    @pytest.mark.parametrize(
        ("http_backend", "loops"),
        [
            ("httpx", ("asyncio", "asyncio", "asyncio")),
            ("httpx", ("asyncio", "trio", "asyncio")),
            ("httpx", ("trio", "trio")),
            ("aiohttp", ("asyncio", "asyncio", "asyncio")),
        ],
        ids=[
            "httpx-asyncio-asyncio-asyncio",
            "httpx-asyncio-trio-asyncio",
            "httpx-trio-trio",
            "aiohttp-asyncio-asyncio-asyncio",
        ],
    )
    def test_the_async_twin_keeps_working_through_a_proxy(
        self,
        wire: WireAPI,
        monkeypatch: pytest.MonkeyPatch,
        how: str,
        http_backend: str,
        loops: tuple[str, ...],
    ) -> None:
        client = AsyncPinkCloudSyncClient(
            API_KEY,
            API_SECRET,
            base_url=PROXIED_BASE,
            allow_insecure_http=True,
            http_backend=http_backend,
            **_proxied_kwargs(how, wire, monkeypatch),
        )

        async def list_sessions() -> int:
            return len((await client.list_sessions()).sessions)

        for backend in loops:
            assert run_async(backend, list_sessions) == 0
        run_async(loops[-1], client.aclose)
        assert client.is_closed
        assert wire.seen == _through_the_proxy(wire, len(loops))  # one token, every call
        gc.collect()

    @PROXY_SETTINGS
    def test_the_sync_twin_keeps_working_through_a_proxy(
        self, wire: WireAPI, monkeypatch: pytest.MonkeyPatch, how: str
    ) -> None:
        with PinkCloudSyncClient(
            API_KEY,
            API_SECRET,
            base_url=PROXIED_BASE,
            allow_insecure_http=True,
            timeout=TIMEOUT,
            **_proxied_kwargs(how, wire, monkeypatch),
        ) as client:
            for _ in range(3):
                assert client.list_sessions().sessions == []
            # Threads are to the sync twin what event loops are to the async one.
            worker = threading.Thread(target=client.list_sessions)
            worker.start()
            worker.join(TIMEOUT)
        assert wire.seen == _through_the_proxy(wire, 4)

    def test_no_proxy_sends_the_api_direct(
        self, wire: WireAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        client = AsyncPinkCloudSyncClient(API_KEY, API_SECRET, base_url=f"{wire.url}/v1")

        async def twice() -> None:
            await client.list_sessions()
            await client.aclose()

        run_async("asyncio", twice)
        assert wire.seen == [("POST", "/v1/auth/token"), ("GET", "/v1/sync/sessions")]


# --------------------------------------- a token endpoint slower than the timeout

TWINS = ["async-asyncio", "async-trio", "async-aiohttp", "sync"]
CALLS = ["get_token", "list_sessions", "raw"]


def _call(twin: str, call: str, wire: WireAPI) -> object:
    """Make one call on a fresh client of `twin` with `timeout=0.5`; its outcome."""
    kwargs: dict[str, Any] = {"base_url": f"{wire.url}/v1", "timeout": 0.5}
    if twin == "sync":
        with PinkCloudSyncClient(API_KEY, API_SECRET, **kwargs) as sync_client:
            try:
                if call == "raw":
                    return sync_client.get("sync/sessions")
                return getattr(sync_client, call)()
            except Exception as exc:
                return exc

    if twin == "async-aiohttp":
        kwargs["http_backend"] = "aiohttp"

    async def run() -> object:
        async with AsyncPinkCloudSyncClient(API_KEY, API_SECRET, **kwargs) as client:
            try:
                if call == "raw":
                    return await client.get("sync/sessions")
                return await getattr(client, call)()
            except Exception as exc:
                return exc

    return run_async("trio" if twin == "async-trio" else "asyncio", run)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("twin", TWINS)
def test_a_token_endpoint_slower_than_the_timeout_is_a_request_timeout(
    wire: WireAPI, twin: str, call: str
) -> None:
    wire.token_delay = TIMEOUT
    started = time.monotonic()
    outcome = _call(twin, call, wire)
    elapsed = time.monotonic() - started
    assert isinstance(outcome, RequestTimeoutError), repr(outcome)
    assert elapsed < 0.5 + 1.0  # the timeout is the whole call's deadline
    assert API_SECRET not in str(outcome)
    # Retries stop at the deadline: nothing is sent that could not finish in time.
    assert wire.seen == [("POST", "/v1/auth/token")]


# ------------------------------------------------ what each backend puts on the wire


class _HeaderRecorder(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), body))
        data = json.dumps(self.server.token if self.path.endswith("/auth/token") else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _record


def test_both_backends_send_the_same_request() -> None:
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), _HeaderRecorder)
    recorder.seen = []  # type: ignore[attr-defined]
    # One token for both backends: a JWT made in another second (its `iat`) would
    # make their Authorization headers differ.
    recorder.token = token_body()  # type: ignore[attr-defined]
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    host, port = recorder.server_address[:2]
    seen_by: dict[str, list[Any]] = {}
    try:
        for backend in ("httpx", "aiohttp"):
            recorder.seen = []  # type: ignore[attr-defined]
            client = AsyncPinkCloudSyncClient(
                API_KEY, API_SECRET, base_url=f"http://{host!s}:{port}/v1", http_backend=backend
            )

            async def calls(client: AsyncPinkCloudSyncClient = client) -> None:
                async with client:
                    await client.get("sync/sessions", params={"q": "a b"})
                    await client.post("sync/sessions", content=b"raw bytes")
                    await client.put("sync/sessions", json={"name": "x"}, headers={"X-A": "1"})

            run_async("asyncio", calls)
            seen_by[backend] = recorder.seen  # type: ignore[attr-defined]
    finally:
        recorder.shutdown()
        recorder.server_close()
        thread.join(TIMEOUT)

    def comparable(seen: list[Any]) -> list[Any]:
        # Header names' case and order are the backends' own; values and bodies are not.
        return [
            (method, path, {k.lower(): v for k, v in headers.items()}, body)
            for method, path, headers, body in seen
        ]

    assert comparable(seen_by["aiohttp"]) == comparable(seen_by["httpx"])
    assert len(seen_by["httpx"]) == 4  # the token request and three calls


# ------------------------------------- a connection dropped after the request left


@pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])
def test_a_post_whose_connection_drops_unanswered_is_not_sent_again(
    wire: WireAPI, http_backend: str
) -> None:
    # The server read the POST and hung up: it may have acted on it, so a request
    # that is not idempotent must not be repeated. aiohttp reports the hang-up as a
    # ServerDisconnectedError, which httpx-aiohttp maps to ConnectTimeout ("nothing
    # left us"), and it was retried as if it had never been sent.
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=f"{wire.url}/v1", http_backend=http_backend
    )

    async def post() -> None:
        async with client:
            await client.post("sync/hang-up", json={"name": "x"})

    with pytest.raises(httpx.RemoteProtocolError):
        run_async("asyncio", post)
    assert wire.seen == [("POST", "/v1/auth/token"), ("POST", "/v1/sync/hang-up")]
