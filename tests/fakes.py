"""The test fakes, in one place: keys, token payloads, a client, a clock, bad payloads.

Test modules import these (`from fakes import ...`); conftest.py keeps only fixtures,
since a conftest is pytest's to load and not a module to import from.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import anyio.lowlevel
import httpx
import jwt

from pinkcloudsync_async import AsyncPinkCloudSyncClient

# ------------------------------------------------------------------- keys, urls

# Only the key the *tests* sign with; clients never verify (they hold no key).
TEST_SIGNING_KEY = "test-signing-key-that-is-long-enough-for-hs256"
API_KEY = "pk_test_unit"
API_SECRET = "sk_test_unit_SECRET_never_printed"

BASE_URL = "https://api.pinkcloudsync.example/v1"
TOKEN_URL = f"{BASE_URL}/auth/token"


# --------------------------------------------------------------- token payloads


def make_jwt(
    *,
    sub: str = "user_123",
    permissions: tuple[str, ...] = ("sync:read", "sync:write"),
    lifetime: int = 3600,
    iat: int | None = None,
    **extra: Any,
) -> str:
    """A signed JWT as the API would issue it."""
    issued = int(time.time()) if iat is None else iat
    claims = {"sub": sub, "permissions": list(permissions), "iat": issued, "exp": issued + lifetime}
    claims.update(extra)
    return jwt.encode(claims, TEST_SIGNING_KEY, algorithm="HS256")


def token_body(token: str | None = None, *, expires_in: int = 3600) -> dict[str, Any]:
    """A valid `POST /auth/token` response body."""
    return {
        "access_token": token if token is not None else make_jwt(lifetime=expires_in),
        "token_type": "Bearer",
        "expires_in": expires_in,
    }


# ---------------------------------------------------------------------- clients


def make_client(handler: Callable[[httpx.Request], Any], **kwargs: Any) -> AsyncPinkCloudSyncClient:
    """An async client on the test keys whose transport is `handler` (no network)."""
    kwargs.setdefault("base_url", BASE_URL)
    return AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, transport=httpx.MockTransport(handler), **kwargs
    )


# ----------------------------------------------------------- emulator process

TIMEOUT = 30.0  # bound of every wait on a subprocess


class EmulatorProcess:
    """`python -m pinkcloudsync_async emulator --port 0 ...`, its output read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "pinkcloudsync_async", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.stdout_lines = [self._next_line()]
        assert "listening on" in self.stdout_lines[0], self.stdout_lines
        while not self.stdout_lines[-1].startswith("export PINKCLOUDSYNC_API_KEY"):
            self.stdout_lines.append(self._next_line())
        self.stdout_lines.append(self._next_line())  # the secret's line
        self.url = self.stdout_lines[0].split(" on ")[1].split()[0]
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self) -> str:
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError("the emulator printed nothing in time") from None
        if line is None:
            self.proc.wait(timeout=TIMEOUT)
            assert self.proc.stderr is not None
            raise AssertionError(f"the emulator exited: {self.proc.stderr.read()}")
        return line

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send `signum`; the exit status (the process is gone afterwards)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            status = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self._reader.join(TIMEOUT)
            assert self.proc.stderr is not None
            self.stderr = self.proc.stderr.read()
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        while not self._lines.empty():
            line = self._lines.get()
            if line is not None:
                self.stdout_lines.append(line)
        return status

    @property
    def output(self) -> str:
        return "\n".join(self.stdout_lines) + "\n" + self.stderr


# ------------------------------------------------------------------------ clock

T0 = 1000.0  # where a fake monotonic clock starts
WALL_T0 = 1_700_000_000.0  # a wall-clock second (2023-11-14), for a fake wall clock


class FakeClock:
    """A clock that moves only when a test, or a sleep it was handed to, moves it.

    Serves as the clients' monotonic `_clock` (start at `T0`) and as the emulator's
    wall clock (start at `WALL_T0`). A test moves it with `advance`, or sets `now`
    outright. `sleep` / `async_sleep` are fakes for the clients' `_sleep`: they
    record the delay in `sleeps` and advance the clock by it, so nothing really
    sleeps. Thread-safe, since the sync client reads it from worker threads.
    """

    def __init__(self, now: float = T0) -> None:
        self._now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    @property
    def now(self) -> float:
        with self._lock:
            return self._now

    @now.setter
    def now(self, value: float) -> None:
        with self._lock:
            self._now = value

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """A sync `_sleep`: records the delay and advances the clock by it."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += seconds

    async def async_sleep(self, seconds: float) -> None:
        """An async `_sleep`: as `sleep`, then a checkpoint, as a real sleep has one."""
        self.sleep(seconds)
        await anyio.lowlevel.checkpoint()


# ------------------------------------------------------------- invalid payloads
#
# Every way a token response can be unusable, built around the access token it
# carries, so that each test module can look for its own token in whatever the
# client says afterwards (errors, reprs, logs) and find it nowhere.


def invalid_token_payloads(token: str) -> dict[str, tuple[dict[str, Any], str]]:
    """JSON objects that are no valid token payload: name -> (payload, field at fault).

    Each row spoils one field of a valid payload, so the field its error must name
    is the one it changed. The last rows put the token where it does not belong,
    so an error that echoed a field's value would leak it.
    """
    valid = token_body(token)

    def wrong(field: str, value: Any) -> tuple[dict[str, Any], str]:
        return {**valid, field: value}, field

    def missing(field: str) -> tuple[dict[str, Any], str]:
        return {name: value for name, value in valid.items() if name != field}, field

    return {
        "missing-access-token": missing("access_token"),
        "missing-token-type": missing("token_type"),
        "missing-expires-in": missing("expires_in"),
        "expires-in-string": wrong("expires_in", "3600"),
        "expires-in-true": wrong("expires_in", True),
        "expires-in-zero": wrong("expires_in", 0),
        "expires-in-negative": wrong("expires_in", -1),
        "expires-in-float": wrong("expires_in", 3.5),
        "expires-in-null": wrong("expires_in", None),
        "token-type-mac": wrong("token_type", "MAC"),
        # Bearer is accepted in any case; another type is refused in any case.
        "token-type-mac-lowercase": wrong("token_type", "mac"),
        "token-type-empty": wrong("token_type", ""),
        "token-type-number": wrong("token_type", 1),
        "access-token-empty": wrong("access_token", ""),
        "access-token-blank": wrong("access_token", "  "),
        "access-token-number": wrong("access_token", 42),
        "access-token-null": wrong("access_token", None),
        # The token where it does not belong.
        "access-token-misnamed": ({"token": token, **missing("access_token")[0]}, "access_token"),
        "token-type-is-the-token": wrong("token_type", token),
        "expires-in-is-the-token": wrong("expires_in", token),
        "everything-wrong": ({**valid, "token_type": None, "expires_in": [token]}, "token_type"),
    }


def not_json_bodies(token: str) -> dict[str, tuple[bytes, str]]:
    """Token response bodies that are not JSON at all: name -> (body, content type)."""
    return {
        "html": (f"<html><body>502 Bad Gateway {token}</body></html>".encode(), "text/html"),
        "empty": (b"", "application/json"),
        "blank": (b"   ", "application/json"),
        "truncated": (f'{{"access_token": "{token}", "token_ty'.encode(), "application/json"),
        "garbage": (b"\xff\xfe\x00garbage", "application/octet-stream"),
    }


def not_object_bodies(token: str) -> dict[str, Any]:
    """Token response bodies that are JSON but not an object: name -> the JSON value."""
    return {
        "list": [token_body(token)],
        "string": token,
        "number": 3600,
        "true": True,
        "null": None,
    }


def not_a_payload_bodies(token: str) -> dict[str, tuple[bytes, str]]:
    """Bodies that are not JSON, or JSON but not an object: name -> (body, content type)."""
    return {
        **not_json_bodies(token),
        **{f"json-{name}": _as_json(value) for name, value in not_object_bodies(token).items()},
    }


def invalid_token_bodies(token: str) -> dict[str, tuple[bytes, str]]:
    """Every row above as a raw body: name -> (body, content type)."""
    return {
        **{name: _as_json(payload) for name, (payload, _) in invalid_token_payloads(token).items()},
        **not_a_payload_bodies(token),
    }


def _as_json(value: Any) -> tuple[bytes, str]:
    return json.dumps(value).encode(), "application/json"


# ------------------------------------------------------------ a loopback server


class Exchange:
    """One request a `LoopbackServer` received, and the socket file to answer on.

    `release` is set when the server closes: a handler that holds on or paces its
    answer stops then."""

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        out: Any,
        release: threading.Event,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.out = out
        self.release = release

    def send(self, data: bytes) -> None:
        self.out.write(data)
        self.out.flush()

    def answer(self, status: int, body: bytes, *, headers: dict[str, str] | None = None) -> None:
        """A whole response at once, closing the connection after it."""
        lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


class LoopbackServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 and a free port, for real sockets.

    Every request is handed to `respond(exchange)` in its own thread; a handler
    that holds on (a hanging endpoint) waits for `release`, which `close()` sets,
    so no thread outlives the test. Use as a context manager.
    """

    def __init__(self, respond: Callable[[Exchange], None]) -> None:
        import socketserver

        self.respond = respond
        self.release = threading.Event()
        self.exchanges: list[Exchange] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode("latin-1").strip()
                if not line:
                    return
                method, path, _ = line.split(" ", 2)
                headers: dict[str, str] = {}
                while (header := self.rfile.readline().decode("latin-1").strip()) != "":
                    name, _, value = header.partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = self.rfile.read(int(headers.get("content-length", "0")))
                exchange = Exchange(method, path, headers, body, self.wfile, outer.release)
                outer.exchanges.append(exchange)
                # The client may give up on us: that is what some tests wait for.
                with contextlib.suppress(OSError):
                    outer.respond(exchange)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


# ------------------------------------------------------------ forms of a secret


def secret_forms(secret: str) -> set[str]:
    """Every way a server may write `secret` back that a reader would recognise:
    raw, JSON-escaped (once, twice, ASCII or not), as a Python str or bytes repr
    (httpcore logs header values that way), percent-encoded."""
    once = {json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {
        secret,
        *once,
        *(json.dumps(text)[1:-1] for text in once),
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
    }


def assert_nowhere(texts: Iterable[str | bytes], *secrets: str) -> None:
    """No form (`secret_forms`) of any of `secrets` in any of `texts` (str or bytes)."""
    for text in texts:
        for secret in secrets:
            for form in secret_forms(secret):
                needle: str | bytes = form.encode() if isinstance(text, bytes) else form
                assert needle not in text, f"{form[:60]!r} leaked into {text[:300]!r}"


# httpx itself, on trio, leaves the async generators of a body whose decoding failed
# to the garbage collector (trio warns; asyncio does not): raw httpx.AsyncClient
# does the same on a bad gzip body. Tests that feed such bodies on trio use this.
HTTPX_TRIO_DECODING_WARNINGS = [
    "ignore:Async generator 'httpx.*garbage collected:ResourceWarning",
    "ignore:Exception ignored in. <async_generator object .*(aiter|__aiter__):"
    "pytest.PytestUnraisableExceptionWarning",
]
