"""`Emulator`: the PinkCloudSync API as a plain ASGI application, with its failures.

Plain ASGI on purpose: the app needs no framework, so using it in-process through
`httpx.ASGITransport` adds no dependency; only serving it on a socket needs uvicorn.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import anyio
import httpx

from .._async_client import AsyncPinkCloudSyncClient
from .._sync_client import PinkCloudSyncClient
from ._asgi import Receive, Reply, Scope, Send, error_reply, header, read_body, reason, send_reply
from ._control import CONTROL_PREFIX, control_reply
from ._request_json import BadJSON, parse_json
from ._state import (
    EmulatorKey,
    EmulatorStats,
    FailureQueue,
    KeyRing,
    RateLimiter,
    TokenIssuer,
    default_key,
)
from ._sync_transport import SyncASGITransport

__all__ = ["IN_PROCESS_BASE_URL", "Emulator"]

logger = logging.getLogger("pinkcloudsync_async.testing")

IN_PROCESS_BASE_URL = "http://emulator.test/v1"
_TOKEN_PATH = "/v1/auth/token"  # noqa: S105 (a path, not a password)
_SESSIONS_PATH = "/v1/sync/sessions"
_INVALID_CREDENTIALS = "Invalid API key or secret"


class Emulator:
    """The PinkCloudSync API in-process: an ASGI app with configurable failures.

    Use it through `client()` / `sync_client()` (no network), or serve it on
    loopback with `serve_emulator`. Each instance has its own keys, signing key,
    sessions and counters; it is safe under concurrent requests, from any thread.
    """

    def __init__(
        self,
        keys: Iterable[EmulatorKey] | None = None,
        *,
        token_lifetime: int = 3600,
        token_latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        clock_skew: float = 0.0,
    ) -> None:
        if isinstance(token_lifetime, bool) or not isinstance(token_lifetime, int):
            raise TypeError("token_lifetime must be an int number of seconds")
        if token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0")
        if not math.isfinite(token_latency) or token_latency < 0:
            raise ValueError("token_latency must be a finite number of seconds >= 0")
        if not math.isfinite(clock_skew):
            raise ValueError("clock_skew must be a finite number of seconds")
        self._keys = KeyRing([default_key()] if keys is None else keys)
        self.token_lifetime = token_lifetime
        self.token_latency = token_latency
        # A server whose clock is off by `clock_skew` seconds: its Date header, the
        # tokens' iat/exp and its own expiry checks all read the skewed clock.
        self.clock_skew = float(clock_skew)
        self._clock = clock if not clock_skew else (lambda: clock() + clock_skew)
        self._lock = threading.Lock()
        self._issuer = TokenIssuer(self._clock)
        self._token_failures = FailureQueue()
        self._api_failures = FailureQueue()
        self._rate_limit: RateLimiter | None = None
        self._sessions: dict[str, dict[str, Any]] = {}
        self.stats = EmulatorStats()

    def __repr__(self) -> str:
        keys = ", ".join(self._keys.by_api_key)
        return f"Emulator(keys=[{keys}], token_lifetime={self.token_lifetime})"

    # ---------------------------------------------------------------- control

    @property
    def keys(self) -> tuple[EmulatorKey, ...]:
        """The key pairs accepted, the first being the clients' default."""
        return tuple(self._keys.by_api_key.values())

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """A copy of the sync sessions stored, oldest first."""
        with self._lock:
            return [dict(session) for session in self._sessions.values()]

    def add_session(self, **fields: Any) -> dict[str, Any]:
        """Store a sync session as if it had been created; returns it with its `id`."""
        with self._lock:
            return dict(self._create_session(fields, created_by=None))

    def fail_token_requests(
        self, count: int, status: int = 503, retry_after: float | None = None
    ) -> None:
        """The next `count` token requests are answered `status` (429: with Retry-After,
        1 s unless given)."""
        with self._lock:
            self._token_failures.add(count, status, retry_after)

    def fail_api_requests(
        self, count: int, status: int = 503, retry_after: float | None = None
    ) -> None:
        """The next `count` API (non-token) requests are answered `status`."""
        with self._lock:
            self._api_failures.add(count, status, retry_after)

    def set_rate_limit(
        self, limit: int | None, *, window: float = 1.0, retry_after: float | None = None
    ) -> None:
        """Allow at most `limit` API requests per `window` seconds; the rest get 429.

        `Retry-After` is the time left in the window (whole seconds, at least 1)
        unless `retry_after` fixes it. `limit=None` removes the limit. Token
        requests are not limited (use `fail_token_requests` for those).
        """
        with self._lock:
            self._rate_limit = None if limit is None else RateLimiter(limit, window, retry_after)

    def revoke_all_tokens(self) -> None:
        """Every token issued so far becomes invalid: using one answers 401."""
        with self._lock:
            self._issuer.revoke_all()
            self.stats.revocations += 1

    def add_key(self, key: EmulatorKey) -> None:
        """Accept `key` from now on (a new key pair, for a rotation); ValueError if
        its api_key is accepted already (remove that one first)."""
        with self._lock:
            self._keys.add(key)

    def remove_key(self, api_key: str) -> EmulatorKey:
        """Stop accepting `api_key` at the token endpoint; returns the key removed.

        Tokens already issued for it stay valid until they expire or are revoked
        (`revoke_tokens`), as with a real API. KeyError if it is not accepted.
        """
        with self._lock:
            return self._keys.remove(api_key)

    def revoke_tokens(self, api_key: str) -> int:
        """Every token issued so far for `api_key` becomes invalid (401); the other
        keys' tokens stay valid. Returns how many tokens were revoked."""
        with self._lock:
            count = self._issuer.revoke_key(api_key)
            self.stats.revocations += 1
            return count

    def client(
        self, *, key: EmulatorKey | str | None = None, **kwargs: Any
    ) -> AsyncPinkCloudSyncClient:
        """An `AsyncPinkCloudSyncClient` wired to this emulator in-process (no network).

        It uses `key` (an `EmulatorKey` or an accepted api_key; default: the first
        key); any other argument is passed to the client and wins over these defaults.
        """
        options = self._client_options(key)
        options["transport"] = httpx.ASGITransport(app=self)
        options.update(kwargs)
        return AsyncPinkCloudSyncClient(**options)

    def sync_client(
        self, *, key: EmulatorKey | str | None = None, **kwargs: Any
    ) -> PinkCloudSyncClient:
        """A `PinkCloudSyncClient` wired to this emulator in-process (no network)."""
        options = self._client_options(key)
        options["transport"] = SyncASGITransport(self)
        options.update(kwargs)
        return PinkCloudSyncClient(**options)

    def _client_options(self, key: EmulatorKey | str | None) -> dict[str, Any]:
        if key is None:
            chosen = self._keys.first
        elif isinstance(key, EmulatorKey):
            chosen = key
        elif key in self._keys.by_api_key:
            chosen = self._keys.by_api_key[key]
        else:
            raise ValueError(f"no key {key!r} in this emulator")
        return {
            "api_key": chosen.api_key,
            "api_secret": chosen.api_secret,
            "base_url": IN_PROCESS_BASE_URL,
            "allow_insecure_http": True,
        }

    # ------------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (`http` and `lifespan` scopes)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here; the server closes the connection
        try:
            reply = await self._handle(scope, receive)
        except Exception:
            # A bug in the emulator must still look like an API answer, not a traceback.
            logger.exception("The emulator failed on %s %s", scope["method"], scope["path"])
            reply = error_reply(500, "The emulator failed; see its log")
        # The Date header reads the emulator's own (possibly skewed) clock; the
        # server adds none of its own (see serve_emulator).
        reply.headers.append(("date", formatdate(self._clock(), usegmt=True)))
        await send_reply(send, reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, scope: Scope, receive: Receive) -> Reply:
        path = scope["path"].rstrip("/") or "/"
        method = scope["method"].upper()
        if path.startswith(CONTROL_PREFIX):
            return await control_reply(self, method, path, lambda: _json_object(scope, receive))
        if path == _TOKEN_PATH:
            reply = await self._token_endpoint(scope, method, receive)
            with self._lock:
                self.stats.token_requests_by_status[reply.status] += 1
            return reply
        reply = await self._api_endpoint(scope, path, method, receive)
        with self._lock:
            self.stats.api_requests_by_status[reply.status] += 1
        return reply

    async def _token_endpoint(self, scope: Scope, method: str, receive: Receive) -> Reply:
        with self._lock:
            self.stats.token_requests += 1
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        if method != "POST":
            return error_reply(405, f"{method} is not allowed here", headers=[("allow", "POST")])
        with self._lock:
            failure = self._token_failures.take()
        if failure is not None:
            return _injected(failure.status, failure.retry_after)
        body, problem = await _json_object(scope, receive)
        if problem is not None:
            return problem
        api_key, api_secret = body.get("api_key"), body.get("api_secret")
        missing = [
            name
            for name, value in (("api_key", api_key), ("api_secret", api_secret))
            if not isinstance(value, str) or not value
        ]
        if missing:
            return error_reply(400, f"Missing or invalid field(s): {', '.join(missing)}")
        assert isinstance(api_key, str)
        assert isinstance(api_secret, str)
        key = self._keys.check(api_key, api_secret)
        if key is None:
            return error_reply(401, _INVALID_CREDENTIALS, error="invalid_credentials")
        with self._lock:
            lifetime = self.token_lifetime
            token = self._issuer.issue(key, lifetime)
            self.stats.tokens_issued += 1
        return Reply(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": lifetime},
            [("cache-control", "no-store")],
        )

    async def _api_endpoint(self, scope: Scope, path: str, method: str, receive: Receive) -> Reply:
        with self._lock:
            failure = self._api_failures.take()
            wait = None if self._rate_limit is None else self._rate_limit.check(self._clock())
        if failure is not None:
            return _injected(failure.status, failure.retry_after)
        if wait is not None:
            return _injected(429, wait, "Rate limit exceeded; retry later")
        if path != _SESSIONS_PATH:
            return error_reply(404, f"No such resource: {path}")
        if method not in {"GET", "POST"}:
            return error_reply(
                405, f"{method} is not allowed here", headers=[("allow", "GET, POST")]
            )
        claims, refusal = self._authenticate(scope)
        if refusal is not None:
            return refusal
        assert claims is not None
        needed = "sync:read" if method == "GET" else "sync:write"
        permissions = claims.get("permissions")
        if not isinstance(permissions, list) or not (
            needed in permissions or "admin" in permissions
        ):
            return error_reply(403, f"API key does not have '{needed}' permission")
        if method == "GET":
            with self._lock:
                sessions = [dict(session) for session in self._sessions.values()]
            return Reply(200, {"sessions": sessions})
        body, problem = await _json_object(scope, receive)
        if problem is not None:
            return problem
        with self._lock:
            session = dict(self._create_session(body, created_by=claims.get("sub")))
        return Reply(201, session)

    def _authenticate(self, scope: Scope) -> tuple[dict[str, Any] | None, Reply | None]:
        authorization = header(scope, b"authorization")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, _unauthorized("Missing bearer token")
        with self._lock:
            claims, why = self._issuer.verify(token.strip())
        if claims is None:
            return None, _unauthorized(why)
        return claims, None

    def _create_session(self, fields: dict[str, Any], *, created_by: Any) -> dict[str, Any]:
        # Called with the lock held.
        session_id = "sess_" + secrets.token_hex(8)
        session = {"id": session_id}
        session.update((k, v) for k, v in fields.items() if k != "id")
        session["created_at"] = datetime.fromtimestamp(self._clock(), UTC).isoformat()
        if created_by is not None:
            session["created_by"] = created_by
        self._sessions[session_id] = session
        return session


def _unauthorized(message: str) -> Reply:
    # RFC 6750: a 401 for a bearer token names the scheme it expects.
    return error_reply(
        401,
        message,
        error="invalid_token",
        headers=[("www-authenticate", 'Bearer error="invalid_token"')],
    )


def _injected(status: int, retry_after: float | None, message: str | None = None) -> Reply:
    headers = []
    if retry_after is not None:
        seconds = int(retry_after) if float(retry_after).is_integer() else retry_after
        headers.append(("retry-after", str(seconds)))
    return error_reply(
        status, message or f"{reason(status)} (injected by the emulator)", headers=headers
    )


async def _json_object(scope: Scope, receive: Receive) -> tuple[dict[str, Any], Reply | None]:
    """The request body as a JSON object, or the 400/413/415 reply it deserves."""
    try:
        raw = await read_body(receive)
    except OverflowError:
        return {}, error_reply(413, "Request body is too large")
    if raw is None:
        raw = b""
    if not _declared_json(header(scope, b"content-type")):
        # The message does not repeat the header: its value is the client's, anything.
        return {}, error_reply(415, "Content-Type must be application/json")
    try:
        data = parse_json(raw)
    except BadJSON as refusal:
        return {}, error_reply(400, str(refusal))
    if not isinstance(data, dict):
        return {}, error_reply(400, f"Request body must be a JSON object, not {_json_kind(data)}")
    return data, None


def _declared_json(content_type: str | None) -> bool:
    # A body sent without a Content-Type is read as JSON, as it always was; a declared
    # type must be application/json or a structured +json type, whatever its parameters.
    if content_type is None:
        return True
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
