"""The test fakes, in one place: the test keys, token payloads and a fake clock.

Test modules import these (`from fakes import ...`); conftest.py keeps only fixtures,
since a conftest is pytest's to load and not a module to import from.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio.lowlevel
import jwt

# ------------------------------------------------------------------------- keys

# Only the key the *tests* sign with; clients never verify (they hold no key).
TEST_SIGNING_KEY = "test-signing-key-that-is-long-enough-for-hs256"
API_KEY = "pk_test_unit"
API_SECRET = "sk_test_unit_SECRET_never_printed"


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
