"""The fleet's decisions, pure: key names, freshness, lock timing, the circuit breaker.

No I/O and no event loop here. Times are seconds (durations) or milliseconds where
Redis speaks milliseconds (`PX`, `PTTL`); `now` is a monotonic second passed in.

Freshness is decided on Redis's clock: a writer gives the token's entry a TTL that
ends where the token becomes due for refresh (less a little jitter, so a fleet does
not crowd the lock at one instant), and a reader trusts the entry's remaining TTL
(`PTTL`), never its own wall clock: hosts with skewed clocks agree.
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "RELEASE_SCRIPT",
    "WRITE_SCRIPT",
    "Breaker",
    "BreakerState",
    "FleetKeys",
    "entry_ttl_ms",
    "failure_ttl_ms",
    "fleet_keys",
    "is_fresh",
    "lock_ttl",
    "poll_delay",
]

DEFAULT_KEY_PREFIX = "pinkcloudsync"

# An entry with less than this left is treated as gone: a reader would get a token
# already due and come straight back, so it goes to the lock instead.
MIN_FRESH_MS = 100
# The writer shortens the entry's TTL by up to this share of it (at most JITTER_MAX_S).
JITTER_FRACTION = 0.05
JITTER_MAX_S = 2.0
# Waiters poll the entry this often (jittered), never past the lock's remaining TTL.
POLL_BASE_S = 0.025
POLL_MAX_S = 0.25
# A lock TTL when the client has no finite timeout to derive one from.
FALLBACK_LOCK_TTL_S = 60.0
MIN_LOCK_TTL_S = 1.0
# A shared failure never hides the token endpoint for longer than this.
MAX_FAILURE_TTL_S = 60.0

# Compare-and-delete: only the value's owner removes it (Redis 7.0 has no native
# command for it). KEYS[1] the key, ARGV[1] the value it must still hold.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# A fenced write: only the holder of the lock stores. KEYS[1] the lock, KEYS[2] the
# entry, KEYS[3] (optional) an entry it replaces (a token clears a shared failure);
# ARGV[1] the fence, ARGV[2] the value, ARGV[3] its TTL in milliseconds.
WRITE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  if #KEYS > 2 then redis.call('DEL', KEYS[3]) end
  return 1
end
return 0
"""


@dataclass(frozen=True)
class FleetKeys:
    """The Redis keys of one (base URL, API key): its token, its lock, its failure.

    They share a Redis Cluster hash tag (`{...}`), so the token and its lock live in
    one slot and a script may touch both.
    """

    token: str
    lock: str
    failure: str


def fleet_keys(prefix: str, base_url: str, api_key: str) -> FleetKeys:
    """The keys for a client: `prefix` plus a hash of the base URL and the API key.

    The secret never enters a key; the API key only through SHA-256, so a key
    listing tells which clients share a token, not who they are.
    """
    digest = hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()[:32]
    tag = f"{prefix}:{{{digest}}}"
    return FleetKeys(token=f"{tag}:token", lock=f"{tag}:lock", failure=f"{tag}:failure")


def entry_ttl_ms(seconds_to_refresh: float, jitter: float) -> int | None:
    """The TTL to store a token's entry with, or None when it is not worth storing.

    `seconds_to_refresh` is how long until the token becomes due (its lifetime less
    the refresh lead, measured from now); `jitter` is a random number in [0, 1).
    """
    shave = min(JITTER_MAX_S, seconds_to_refresh * JITTER_FRACTION) * jitter
    ttl = math.floor((seconds_to_refresh - shave) * 1000)
    return ttl if ttl >= MIN_FRESH_MS else None


def is_fresh(remaining_ms: int) -> bool:
    """Is an entry with `PTTL` `remaining_ms` still fresh? (-2: missing; -1: no TTL,
    which no writer of ours sets, so it is not trusted.)"""
    return remaining_ms >= MIN_FRESH_MS


def lock_ttl(timeout: Mapping[str, Any], attempts: int, backoff_max: float) -> float:
    """How long (seconds) the fleet lock is held at most: the token request's
    timeout times its attempts, plus the retry delays between them.

    `timeout` is httpx's per-phase dict; its longest finite phase is what one attempt
    may take. With no finite phase, `FALLBACK_LOCK_TTL_S`.
    """
    phases = [value for value in timeout.values() if value is not None and math.isfinite(value)]
    if not phases:
        return FALLBACK_LOCK_TTL_S
    attempts = max(1, attempts)
    return max(MIN_LOCK_TTL_S, float(max(phases)) * attempts + backoff_max * (attempts - 1))


def poll_delay(lock_remaining_ms: int, waited: float, jitter: float) -> float:
    """How long a waiter sleeps before it looks again (seconds).

    Grows with the time already `waited` (from `POLL_BASE_S` to `POLL_MAX_S`),
    jittered by `jitter` in [0, 1) so waiters do not poll in step, and never past
    the lock's remaining TTL (a lock already gone: look again at once).
    """
    if lock_remaining_ms <= 0:
        return 0.0
    delay = min(POLL_MAX_S, POLL_BASE_S + waited / 4)
    delay *= 0.5 + jitter
    return min(delay, lock_remaining_ms / 1000)


def failure_ttl_ms(retry_after: float | None, window: float) -> int:
    """How long a failed token request is shared: the server's `Retry-After` when it
    gave one, else `window`; capped at `MAX_FAILURE_TTL_S`, at least 1 ms."""
    seconds = window if retry_after is None else retry_after
    return max(1, math.floor(min(seconds, MAX_FAILURE_TTL_S) * 1000))


class BreakerState(enum.Enum):
    CLOSED = "closed"  # Redis answers: use it
    OPEN = "open"  # Redis failed: skip it until the cooldown ends
    HALF_OPEN = "half_open"  # the cooldown ended: one probe may try it


@dataclass
class Breaker:
    """A circuit breaker over Redis: after a failure, skip it for `cooldown` seconds,
    then let one probe through per cooldown until one succeeds.

    `failure` and `success` return True exactly when an outage starts or ends, so
    the shell logs one line for each.
    """

    cooldown: float
    state: BreakerState = BreakerState.CLOSED
    retry_at: float = field(default=float("-inf"))

    def allow(self, now: float) -> bool:
        """May a call go to Redis now? Past the cooldown, one probe goes (per cooldown)."""
        if self.state is BreakerState.CLOSED:
            return True
        if now < self.retry_at:
            return False
        # This caller is the probe; others skip Redis until its outcome or the next
        # cooldown (a probe cancelled before it reports cannot wedge the breaker).
        self.state = BreakerState.HALF_OPEN
        self.retry_at = now + self.cooldown
        return True

    def failure(self, now: float) -> bool:
        """A call to Redis failed. True when this starts an outage."""
        started = self.state is BreakerState.CLOSED
        self.state = BreakerState.OPEN
        self.retry_at = now + self.cooldown
        return started

    def success(self) -> bool:
        """A call to Redis succeeded. True when this ends an outage."""
        ended = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self.retry_at = float("-inf")
        return ended
