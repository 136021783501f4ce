"""An in-process PinkCloudSync API for `httpx.MockTransport`, counting token requests.

The handler answers synchronously unless a latency is set, so in the steady-state
scenario a request only yields to the event loop where its auth flow does: what is
measured is the CPU each auth layer adds per request.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable

import anyio
import httpx
import jwt

BASE_URL = "http://127.0.0.1/v1"  # loopback even though MockTransport never connects
TOKEN_URL = f"{BASE_URL}/auth/token"
SESSIONS_PATH = "sync/sessions"
API_KEY = "pk_test_bench"
API_SECRET = "sk_test_bench"
# Only signs the mock's tokens; clients never verify them.
_SIGNING_KEY = "benchmark-signing-key-not-a-secret-0123456789"

_JSON = {"content-type": "application/json"}
_SESSIONS_BODY = json.dumps({"sessions": [{"id": "s_1", "status": "idle"}]}).encode()
_DENIED_BODY = json.dumps(
    {"error": "invalid_credentials", "message": "Invalid API key or secret"}
).encode()


def make_jwt(lifetime: int, generation: int = 0) -> str:
    """A JWT like the API's, with `iat`/`exp` on the wall clock and a generation id."""
    now = int(time.time())
    claims = {
        "sub": "user_123",
        "permissions": ["sync:read", "sync:write"],
        "iat": now,
        "exp": now + lifetime,
        "gen": generation,
    }
    return jwt.encode(claims, _SIGNING_KEY, algorithm="HS256")


def token_generation(authorization: str) -> int:
    """The generation of the token in an `Authorization: Bearer <jwt>` header."""
    raw = authorization.partition(" ")[2]
    return int(jwt.decode(raw, options={"verify_signature": False})["gen"])


_generation_cache: dict[str, int] = {}


def cached_generation(authorization: str) -> int:
    """`token_generation`, decoded once per token: every flow pays the same lookup."""
    generation = _generation_cache.get(authorization)
    if generation is None:
        generation = _generation_cache[authorization] = token_generation(authorization)
    return generation


class MockAPI:
    """Answers `POST /auth/token` (JSON or form body) and `GET /sync/sessions`.

    Records every token request's start and end (`time.perf_counter`), and, when
    `track_tokens` is set, which token generation each API request carried (by its
    `x-bench-id` header).
    """

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        token_latency: float = 0.0,
        api_latency: float = 0.0,
        reject_credentials: bool = False,
        track_tokens: bool = False,
    ) -> None:
        self.token_lifetime = token_lifetime
        self.token_latency = token_latency
        self.api_latency = api_latency
        self.reject_credentials = reject_credentials
        self.track_tokens = track_tokens
        self.token_requests = 0  # received, answered or not
        self.token_log: list[tuple[float, float]] = []  # (start, end) of each answered one
        self.carried: dict[int, int] = {}
        self._generations = itertools.count(1)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        if request.method == "POST" and request.url.path.endswith("/auth/token"):
            return self._token(time.perf_counter())
        if self.track_tokens and "x-bench-id" in request.headers:
            bench_id = int(request.headers["x-bench-id"])
            self.carried[bench_id] = cached_generation(request.headers["authorization"])
        if self.api_latency:
            return self._slow_sessions()
        return httpx.Response(200, content=_SESSIONS_BODY, headers=_JSON)

    async def _slow_sessions(self) -> httpx.Response:
        await anyio.sleep(self.api_latency)
        return httpx.Response(200, content=_SESSIONS_BODY, headers=_JSON)

    async def _token(self, started: float) -> httpx.Response:
        self.token_requests += 1
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        self.token_log.append((started, time.perf_counter()))
        if self.reject_credentials:
            return httpx.Response(401, content=_DENIED_BODY, headers=_JSON)
        payload = {
            "access_token": make_jwt(self.token_lifetime, next(self._generations)),
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        return httpx.Response(200, content=json.dumps(payload).encode(), headers=_JSON)
