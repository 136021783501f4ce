"""The fleet's single flight as a sans-I/O generator, shared by the async and sync twins.

`FleetFlight.run()` yields steps (read the entry, take the lock, fetch, write,
release, sleep) and is sent each step's result; the async and the sync source
drive it with their own I/O. A Redis step whose store is down (failing, slow, or
its circuit breaker open) is answered `DOWN`, and the flight falls back to a plain
token request: the local single flight still holds, only the fleet's is skipped.

    refused token?  -> compare-and-delete it (only if the store still holds it)
    read            -> a fresh entry: use it; a shared failure: raise it
    lock (SET NX PX with a random fence)
      taken         -> re-read; fetch; write fenced (token, or failure); release
      held by other -> poll with jitter, bounded by the lock's TTL; re-read
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .._constants import LOGGER_NAME
from .._deadline import Deadline
from .._exceptions import RequestTimeoutError
from .._models import AccessToken
from ._cipher import PlaintextCodec, TokenCipher, UnreadableEntry
from ._entry import SHARED_ERRORS, decode_failure, decode_token, encode_failure, encode_token
from ._fleet import FleetKeys, entry_ttl_ms, failure_ttl_ms, is_fresh, poll_delay

__all__ = [
    "DOWN",
    "DeleteIf",
    "Fetch",
    "FleetFlight",
    "Read",
    "Release",
    "Sleep",
    "Snapshot",
    "Step",
    "TryLock",
    "Write",
]

logger = logging.getLogger(LOGGER_NAME)


class _Down:
    """The answer to a Redis step when the store is unavailable."""

    def __repr__(self) -> str:
        return "DOWN"


DOWN = _Down()


@dataclass(frozen=True)
class Snapshot:
    """One read of the fleet's keys; `*_ms` are `PTTL`s (-2 missing, -1 no TTL)."""

    token: bytes | None
    token_ms: int
    failure: bytes | None
    failure_ms: int
    lock_ms: int


@dataclass(frozen=True)
class Read:
    keys: FleetKeys


@dataclass(frozen=True)
class TryLock:
    key: str
    fence: str
    ttl_ms: int


@dataclass(frozen=True)
class Write:
    """Store `value` at `key` for `ttl_ms` if `lock` still holds `fence`; delete `clear`."""

    lock: str
    fence: str
    key: str
    value: bytes
    ttl_ms: int
    clear: str | None = None


@dataclass(frozen=True)
class Release:
    """Delete `key` if it still holds `value` (the lock's fence, or a refused token)."""

    key: str
    value: bytes | str


DeleteIf = Release


@dataclass(frozen=True)
class Fetch:
    """Make the token request (through the real token source)."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Read | TryLock | Write | Release | Fetch | Sleep
Codec = TokenCipher | PlaintextCodec


class FleetFlight:
    """One process's part in one fleet-wide token request.

    `clock` is monotonic seconds, `wall_clock` epoch seconds, `rng` a uniform [0, 1)
    source for jitter; `lock_ttl` and `failure_window` are seconds. After `run()`,
    `blob` is the stored value of the token it returned (None if not stored), for a
    later compare-and-delete; `holds_lock` says whether a cancelled driver must
    release the lock (`release_step()`).
    """

    def __init__(
        self,
        *,
        keys: FleetKeys,
        codec: Codec,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        rng: Callable[[], float],
        lock_ttl: float,
        failure_window: float,
        deadline: Deadline | None,
        refused: bytes | None = None,
    ) -> None:
        self.keys = keys
        self.codec = codec
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng
        self.lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self.failure_window = failure_window
        self.deadline = deadline
        self.refused = refused
        self.fence = secrets.token_hex(16)
        self.holds_lock = False
        self.blob: bytes | None = None
        self._warned = False

    def release_step(self) -> Release:
        """The step that gives the lock back."""
        return Release(self.keys.lock, self.fence)

    def run(self) -> Generator[Step, Any, AccessToken]:
        """The flight; returns the token (raises the token request's typed error)."""
        keys = self.keys
        if self.refused is not None and (yield DeleteIf(keys.token, self.refused)) is DOWN:
            return (yield from self._direct())
        snapshot = yield Read(keys)
        started = self.clock()
        while True:
            if snapshot is DOWN:
                return (yield from self._direct())
            found = self._use(snapshot)
            if found is not None:
                return found
            if snapshot.lock_ms == -2:  # no lock: try to become the leader
                taken = yield TryLock(keys.lock, self.fence, self.lock_ttl_ms)
                if taken is DOWN:
                    return (yield from self._direct())
                if taken:
                    self.holds_lock = True
                    return (yield from self._lead())
            waited = self.clock() - started
            if waited * 1000 > self.lock_ttl_ms + 1000:
                # A lock that outlives its own TTL was not set by us (no TTL): do
                # not wait on it for ever.
                return (yield from self._direct())
            lock_ms = snapshot.lock_ms if snapshot.lock_ms > 0 else self.lock_ttl_ms
            delay = poll_delay(lock_ms, waited, self.rng())
            if self.deadline is not None:
                remaining = self.deadline.remaining()
                if remaining <= 0:
                    raise RequestTimeoutError("Timed out waiting for the fleet's token request.")
                delay = min(delay, remaining)
            yield Sleep(delay)
            snapshot = yield Read(keys)

    def _direct(self) -> Generator[Step, Any, AccessToken]:
        token: AccessToken = yield Fetch()
        return token

    def _lead(self) -> Generator[Step, Any, AccessToken]:
        keys = self.keys
        try:
            # Re-check: the previous holder may have stored (a token, or a failure
            # that is raised as it is, not shared again) just before we took it.
            snapshot = yield Read(keys)
            found = None if snapshot is DOWN else self._use(snapshot)
        except Exception:
            yield from self._release()
            raise
        if found is not None:
            yield from self._release()
            return found
        try:
            token: AccessToken = yield Fetch()
        except SHARED_ERRORS as error:
            if self._shared(error):
                ttl_ms = failure_ttl_ms(getattr(error, "retry_after", None), self.failure_window)
                value = self.codec.seal(keys.failure, encode_failure(error))
                yield Write(keys.lock, self.fence, keys.failure, value, ttl_ms)
            yield from self._release()
            raise
        except Exception:
            yield from self._release()
            raise
        now = self.clock()
        entry_ms = entry_ttl_ms(token.refresh_at - now, self.rng())
        if entry_ms is not None:
            plain = encode_token(
                token, now=now, wall_now=self.wall_clock(), entry_ttl=entry_ms / 1000
            )
            value = self.codec.seal(keys.token, plain)
            written = yield Write(keys.lock, self.fence, keys.token, value, entry_ms, keys.failure)
            if written is True:
                self.blob = value
        yield from self._release()
        return token

    def _shared(self, error: Exception) -> bool:
        """Is this failure the token endpoint's, for the whole fleet to share? Not a
        timeout that is this request's own deadline running out: other processes'
        requests may have more time."""
        if isinstance(error, RequestTimeoutError):
            return self.deadline is None or self.deadline.remaining() > 0
        return True

    def _release(self) -> Generator[Step, Any, None]:
        yield self.release_step()
        self.holds_lock = False

    def _use(self, snapshot: Snapshot) -> AccessToken | None:
        """The stored token if fresh; raises a shared failure; None for a miss."""
        keys = self.keys
        if snapshot.token is not None and is_fresh(snapshot.token_ms):
            try:
                plain = self.codec.open(keys.token, snapshot.token)
                token = decode_token(plain, remaining_ms=snapshot.token_ms, now=self.clock())
            except UnreadableEntry as unreadable:
                self._warn("token", unreadable)
            else:
                self.blob = snapshot.token
                return token
        if snapshot.failure is not None and snapshot.failure_ms > 0:
            try:
                plain = self.codec.open(keys.failure, snapshot.failure)
                error = decode_failure(plain, remaining_ms=snapshot.failure_ms)
            except UnreadableEntry as unreadable:
                self._warn("failure", unreadable)
            else:
                raise error
        return None

    def _warn(self, what: str, unreadable: UnreadableEntry) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "Ignored the fleet's stored %s entry (%s): treated as a miss",
                what,
                unreadable.reason,
            )
