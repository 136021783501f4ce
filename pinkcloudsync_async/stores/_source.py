"""`FleetTokenSource`: a token source that asks the fleet's store before the API.

It has the `TokenSource` interface (`afetch` / `fetch`), so the token flights call
it inside their local single flight: C coroutines or threads of a process make at
most one round of store traffic per refresh. It drives a `FleetFlight` with the
store's I/O, and fetches through the real token source when the flight says so.
The per-request path never reaches it: only a due, expired or refused token does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

import anyio
from pydantic import SecretStr

from .._deadline import Deadline
from .._models import AccessToken
from .._token_source import TokenSource
from ._fleet import FleetKeys
from ._flight import Fetch, FleetFlight, Sleep, Step

__all__ = ["FleetTokenSource", "StepRunner"]


class StepRunner(Protocol):
    """What runs a flight's Redis steps (`RedisTokenStore`): `DOWN` when unavailable."""

    codec: Any

    def execute(self, step: Step) -> Any: ...

    async def aexecute(self, step: Step) -> Any: ...


class FleetTokenSource:
    """Shares one client's tokens with the fleet through `store`.

    `source` is the client's own token source; `keys` the fleet's keys for its base
    URL and API key; `lock_ttl` and `failure_window` are seconds; `clock` is the
    client's monotonic clock.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        store: StepRunner,
        keys: FleetKeys,
        lock_ttl: float,
        failure_window: float,
        clock: Callable[[], float],
    ) -> None:
        self.inner = source
        self.store = store
        self.keys = keys
        self.lock_ttl = lock_ttl
        self.failure_window = failure_window
        self._clock = clock
        # The token last handed out and its stored value: a 401 for that token
        # deletes exactly that value fleet-wide, never a newer one.
        self._last: tuple[AccessToken, bytes] | None = None
        self._refused: bytes | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, store={self.store!r})"

    @property
    def refresh_margin(self) -> float:
        return self.inner.refresh_margin

    def sent_secrets(self) -> tuple[SecretStr, ...]:
        """The wrapped source's API secrets sent so far (for redaction; never stored)."""
        return self.inner.sent_secrets()

    def refused(self, token: AccessToken) -> None:
        """The API refused `token` (401): the next flight first deletes it from the
        store, if the store still holds it."""
        last = self._last
        if last is not None and last[0] is token:
            self._refused, self._last = last[1], None

    def _flight(self, deadline: Deadline | None) -> FleetFlight:
        refused, self._refused = self._refused, None
        return FleetFlight(
            keys=self.keys,
            codec=self.store.codec,
            clock=self._clock,
            wall_clock=time.time,
            rng=random.random,
            lock_ttl=self.lock_ttl,
            failure_window=self.failure_window,
            deadline=deadline,
            refused=refused,
        )

    def _done(self, flight: FleetFlight, token: AccessToken) -> AccessToken:
        self._last = None if flight.blob is None else (token, flight.blob)
        return token

    async def afetch(
        self, deadline: Deadline | None, *, held: AccessToken | None = None
    ) -> AccessToken:
        """A token from the fleet's store, or from a token request the fleet shares."""
        flight = self._flight(deadline)
        steps = flight.run()
        try:
            result: Any = None
            error: Exception | None = None
            while True:
                step, token = _advance(steps, result, error)
                if step is None:
                    assert token is not None
                    return self._done(flight, token)
                result, error = None, None
                if isinstance(step, Fetch):
                    try:
                        result = await self.inner.afetch(deadline, held=held)
                    except Exception as exc:
                        error = exc
                elif isinstance(step, Sleep):
                    await anyio.sleep(step.seconds)
                else:
                    result = await self.store.aexecute(step)
        except BaseException:
            if flight.holds_lock:
                # Cancelled while leading: give the lock back now rather than make
                # the fleet wait out its TTL (bounded; a lost release expires).
                with anyio.CancelScope(shield=True):
                    await self.store.aexecute(flight.release_step())
            raise
        finally:
            steps.close()

    def fetch(self, deadline: Deadline | None, *, held: AccessToken | None = None) -> AccessToken:
        """The sync twin of `afetch`, for threads."""
        flight = self._flight(deadline)
        steps = flight.run()
        try:
            result: Any = None
            error: Exception | None = None
            while True:
                step, token = _advance(steps, result, error)
                if step is None:
                    assert token is not None
                    return self._done(flight, token)
                result, error = None, None
                if isinstance(step, Fetch):
                    try:
                        result = self.inner.fetch(deadline, held=held)
                    except Exception as exc:
                        error = exc
                elif isinstance(step, Sleep):
                    time.sleep(step.seconds)
                else:
                    result = self.store.execute(step)
        except BaseException:
            if flight.holds_lock:
                self.store.execute(flight.release_step())
            raise
        finally:
            steps.close()


def _advance(
    steps: Generator[Step, Any, AccessToken], result: Any, error: Exception | None
) -> tuple[Step | None, AccessToken | None]:
    """Send the last step's result (or throw its error) into the flight: its next
    step, or None and the token it returned. Its own errors propagate."""
    try:
        step = steps.send(result) if error is None else steps.throw(error)
    except StopIteration as stop:
        return None, stop.value
    return step, None
