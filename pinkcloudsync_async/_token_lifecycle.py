"""Is the token fresh, due or expired, and who fetches while who waits: pure decisions.

This module imports neither httpx nor an event loop. Times are seconds on a
monotonic clock, passed in by the caller, so tests drive it with a fake clock and
the async and sync shells in `_auth.py` share every decision.

A token's life, with `lead = min(refresh_margin, lifetime / 2)`:

    obtained_at            refresh_at = expires_at - lead      expires_at
    |------- FRESH --------|------------- DUE ------------------|--- EXPIRED ...

- FRESH: use it.
- DUE: use it, and exactly one caller starts an early refresh (an *advisory*
  flight: if it fails the old token keeps serving and the next try backs off).
- EXPIRED or missing: callers must wait; exactly one of them makes the token
  request (a *mandatory* flight) and every waiter gets its outcome, token or error.
"""

from __future__ import annotations

import copy
import enum
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ._constants import REFRESH_FAILURE_BACKOFF_BASE, REFRESH_FAILURE_BACKOFF_MAX

__all__ = [
    "Action",
    "Flight",
    "TimedToken",
    "TokenLifecycle",
    "TokenStatus",
    "copy_for_waiter",
    "effective_lifetime",
    "refresh_lead",
    "token_status",
]


class TimedToken(Protocol):
    """What the lifecycle needs to know of a token."""

    @property
    def expires_at(self) -> float: ...

    @property
    def refresh_at(self) -> float: ...


TokenT = TypeVar("TokenT", bound=TimedToken)


class TokenStatus(enum.Enum):
    MISSING = "missing"
    FRESH = "fresh"
    DUE = "due"
    EXPIRED = "expired"


class Action(enum.Enum):
    """What one caller that needs a token should do now."""

    USE = "use"  # send with the token
    USE_AND_REFRESH = "use_and_refresh"  # send with it; this caller starts the early refresh
    FETCH = "fetch"  # no usable token: this caller requests one, others wait for it
    WAIT = "wait"  # no usable token, a request is in flight: wait for its outcome


def effective_lifetime(expires_in: float, *, iat: int | None, exp: int | None) -> float:
    """The lifetime to plan with: `expires_in`, shortened (never lengthened) by claims.

    The claims are read on the server's own clock, `exp - iat`, so a client whose
    wall clock is hours off still plans right. `exp` without `iat` cannot be read
    without the local wall clock, so it is ignored; a non-positive `exp - iat` is
    nonsense and ignored too, rather than refreshing on every call.
    """
    lifetime = float(expires_in)
    if iat is not None and exp is not None:
        server_lifetime = float(exp - iat)
        if 0 < server_lifetime < lifetime:
            lifetime = server_lifetime
    return lifetime


def refresh_lead(lifetime: float, refresh_margin: float) -> float:
    """How long before expiry a token becomes due.

    Capped at half the lifetime so a token shorter than twice the margin is not
    refreshed on every call.
    """
    return min(refresh_margin, lifetime / 2.0)


def token_status(token: TimedToken | None, now: float) -> TokenStatus:
    """FRESH, DUE, EXPIRED or MISSING at monotonic time `now`."""
    if token is None:
        return TokenStatus.MISSING
    if now >= token.expires_at:
        return TokenStatus.EXPIRED
    if now >= token.refresh_at:
        return TokenStatus.DUE
    return TokenStatus.FRESH


@dataclass(eq=False)
class Flight(Generic[TokenT]):
    """One token request and its outcome, shared by every caller waiting on it.

    `waker` is the shell's own event (anyio or threading), set when `done`.
    """

    mandatory: bool
    waker: object = None
    done: bool = False
    token: TokenT | None = None
    error: Exception | None = None
    abandoned: bool = False  # its caller was cancelled: a waiter must take over
    waiters: int = 0  # callers told to WAIT on it (for telemetry)


@dataclass(eq=False)
class TokenLifecycle(Generic[TokenT]):
    """The state of one auth's token; every method is a quick, non-blocking step.

    Callers on an event loop need no lock around these methods (nothing here
    awaits); threads take the shell's lock around each call.
    """

    backoff_base: float = REFRESH_FAILURE_BACKOFF_BASE
    backoff_max: float = REFRESH_FAILURE_BACKOFF_MAX
    token: TokenT | None = None
    flight: Flight[TokenT] | None = None
    failed_refreshes: int = 0
    refresh_not_before: float = field(default=float("-inf"))

    def fresh(self, now: float) -> TokenT | None:
        """The token if it is fresh at `now` (no refresh due), else None: the fast path."""
        token = self.token
        if token is not None and now < token.refresh_at:
            return token
        return None

    def claim(self, now: float) -> tuple[Action, TokenT | None, Flight[TokenT] | None]:
        """Decide for one caller; starting a flight is part of the decision.

        Returns the action, the token to use (USE, USE_AND_REFRESH) and the flight
        to lead (FETCH, USE_AND_REFRESH) or wait on (WAIT).
        """
        token = self.token
        if token is not None and now < token.expires_at:
            if now < token.refresh_at or self.flight is not None or now < self.refresh_not_before:
                return Action.USE, token, None
            return Action.USE_AND_REFRESH, token, self._begin(mandatory=False)
        if self.flight is not None:
            self.flight.waiters += 1
            return Action.WAIT, None, self.flight
        return Action.FETCH, None, self._begin(mandatory=True)

    def _begin(self, *, mandatory: bool) -> Flight[TokenT]:
        flight: Flight[TokenT] = Flight(mandatory=mandatory)
        self.flight = flight
        return flight

    def succeed(self, flight: Flight[TokenT], token: TokenT) -> None:
        """The flight got a token: it becomes current for everyone."""
        flight.token = token
        flight.done = True
        self.token = token
        self.failed_refreshes = 0
        self.refresh_not_before = float("-inf")
        if self.flight is flight:
            self.flight = None

    def fail(self, flight: Flight[TokenT], error: Exception, now: float) -> bool:
        """The flight failed; its waiters get `error`.

        Returns True when the failure is advisory: the current token still serves
        (an early refresh failed), so the next refresh waits a backoff.
        """
        flight.error = error
        flight.done = True
        if self.flight is flight:
            self.flight = None
        token = self.token
        if token is not None and now < token.expires_at:
            self.failed_refreshes += 1
            exponent = min(self.failed_refreshes - 1, 64)  # 2.0**1024 would overflow
            backoff = min(self.backoff_max, self.backoff_base * 2.0**exponent)
            self.refresh_not_before = now + backoff
            return True
        return False

    def abandon(self, flight: Flight[TokenT]) -> None:
        """The flight's caller was cancelled before an outcome: waiters start over."""
        flight.abandoned = True
        flight.done = True
        if self.flight is flight:
            self.flight = None

    def invalidate(self, token: TokenT) -> None:
        """The API refused `token` (401): drop it if it is still the current one.

        Many requests refused for the same token drop it once; those that come
        after a newer token arrived keep the newer one.
        """
        if self.token is token:
            self.token = None


def copy_for_waiter(error: Exception) -> Exception:
    """A waiter's own copy of a flight's error (same class, same fields).

    One instance raised in thousands of tasks would grow one traceback without
    bound and tie their frames together.
    """
    try:
        twin = copy.copy(error)
    except Exception:  # an exotic exception that cannot be copied
        return error
    twin.__cause__ = error.__cause__
    return twin
