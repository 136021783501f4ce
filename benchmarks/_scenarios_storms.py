"""Scenarios 3, 4 and 5: thousands of requests arriving together at a token boundary.

- cold: a client that has never had a token;
- expiry: a client whose token has just expired;
- failure: the same two with the token endpoint answering 401 invalid_credentials.

The token endpoint takes `token_latency` seconds, so every request really arrives
while the token request is in flight. Each storm counts the token requests the mock
received, and times the first and the last response (or error) from the storm's start.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from . import _flows
from ._mock import SESSIONS_PATH, MockAPI

STORM_FLOWS = (_flows.OURS, _flows.AUTHLIB, _flows.NAIVE)
LIFETIME = 3600


class _Clock:
    """A monotonic clock that can be jumped forward (ours takes `_clock=`)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def _caller(flow: str, client: httpx.AsyncClient, cold: bool) -> Callable[[], Awaitable[Any]]:
    if flow == _flows.AUTHLIB and cold:
        # Authlib has no lazy fetch: get() on a client without a token raises
        # MissingTokenError, so each caller must make sure a token is there first.
        async def authlib_cold() -> httpx.Response:
            if not client.token:  # type: ignore[attr-defined]
                await client.fetch_token()  # type: ignore[attr-defined]
            return await client.get(SESSIONS_PATH)

        return authlib_cold

    async def plain() -> httpx.Response:
        return await client.get(SESSIONS_PATH)

    return plain


def _age(flow: str, client: httpx.AsyncClient, clock: _Clock) -> None:
    """Make the client's token expire now, by its own notion of time."""
    if flow == _flows.OURS:
        clock.offset += LIFETIME + 1.0
    elif flow == _flows.AUTHLIB:
        client.token["expires_at"] = int(time.time()) - 1  # type: ignore[attr-defined]
    elif flow == _flows.NAIVE:
        assert isinstance(client.auth, _flows.LockEveryRequestAuth)
        client.auth.expire_now = True


async def _storm(
    flow: str, *, size: int, token_latency: float, expired: bool, reject: bool, cap: float
) -> dict[str, Any]:
    api = MockAPI(token_lifetime=LIFETIME, token_latency=token_latency)
    clock = _Clock()
    extra: dict[str, Any] = {"_clock": clock} if flow == _flows.OURS else {}
    client = _flows.build(flow, api.transport(), **extra)
    outcomes: Counter[str] = Counter()
    ends: list[float] = []
    try:
        async with client:
            if expired:
                await _flows.warm(flow, client)
                _age(flow, client, clock)
            api.reject_credentials = reject
            before = api.token_requests
            call = _caller(flow, client, cold=not expired)

            async def one() -> None:
                try:
                    response = await call()
                except Exception as exc:
                    outcomes[type(exc).__name__] += 1
                else:
                    outcomes[str(response.status_code)] += 1
                ends.append(time.perf_counter())

            started = time.perf_counter()
            # Bounded: a flow that queues its callers through a failing endpoint one
            # by one is stopped after `cap` seconds and reported as cut off.
            with anyio.move_on_after(cap) as scope:
                async with anyio.create_task_group() as tg:
                    for _ in range(size):
                        tg.start_soon(one)
            token_requests = api.token_requests - before
    finally:
        await _flows.close(client)
    return {
        "flow": flow,
        "requests": size,
        "token_requests": token_requests,
        "token_latency_s": token_latency,
        "first_response_s": min(ends) - started if ends else None,
        "last_response_s": max(ends) - started if ends else None,
        "outcomes": dict(outcomes),
        "cut_off_after_s": cap if scope.cancelled_caught else None,
        "unfinished": size - len(ends),
    }


def storm(
    flow: str, *, size: int, token_latency: float, expired: bool, reject: bool, cap: float
) -> dict[str, Any]:
    """One storm against one flow, in its own event loop."""
    return anyio.run(
        lambda: _storm(
            flow,
            size=size,
            token_latency=token_latency,
            expired=expired,
            reject=reject,
            cap=cap,
        )
    )


STORMS: dict[str, dict[str, bool]] = {
    "cold": {"expired": False, "reject": False},
    "expiry": {"expired": True, "reject": False},
    "failure (cold)": {"expired": False, "reject": True},
    "failure (expired)": {"expired": True, "reject": True},
}
EXPECTED_OUTCOME = {False: "200", True: "AuthenticationError"}


def check_ours(result: dict[str, Any], reject: bool) -> list[str]:
    """What CI must fail on: more than one token request, or a wrong outcome."""
    problems = []
    if result["token_requests"] != 1:
        problems.append(f"made {result['token_requests']} token requests (must be 1)")
    expected = EXPECTED_OUTCOME[reject]
    if result["outcomes"] != {expected: result["requests"]}:
        problems.append(f"outcomes {result['outcomes']} (expected all {expected})")
    return problems
