"""Whether to retry, and after how long: pure functions of data and a clock.

Nothing here does I/O, imports httpx or touches an event loop; the clients' `send`
loops ask `plan_retry` and do what it says.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from ._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
)

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRYABLE_STATUSES",
    "Failure",
    "RetryDecision",
    "RetryPolicy",
    "next_delay",
    "parse_retry_after",
    "plan_retry",
    "should_retry",
]

# RFC 9110 9.2.2: the safe methods (GET, HEAD, OPTIONS, TRACE), PUT and DELETE.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# 429 is retried for every method: the server refused without processing anything.
# The 5xx are retried only where repeating the request is safe.
_ALWAYS_RETRYABLE = frozenset({429})
_IDEMPOTENT_RETRYABLE = frozenset({500, 502, 503, 504})
RETRYABLE_STATUSES = _ALWAYS_RETRYABLE | _IDEMPOTENT_RETRYABLE
# RFC 9110 delta-seconds are digits; a sign and a decimal fraction are tolerated
# (negative values are then ignored), exponents and other number forms are not.
_DELTA_SECONDS = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


class Failure(enum.Enum):
    """A request that got no response, by whether the server may have seen it."""

    NOT_SENT = "not_sent"  # connect error or connect/pool timeout: nothing left us
    NO_RESPONSE = "no_response"  # read/write error or timeout: it may have been processed


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries. `max_retries=0` disables retries."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base: float = DEFAULT_RETRY_BACKOFF_BASE
    backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise TypeError("max_retries must be an int")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        for name in ("backoff_base", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0")


@dataclass(frozen=True)
class RetryDecision:
    """What to do after an attempt: retry after `delay` seconds, or stop."""

    retry: bool
    delay: float = 0.0
    reason: str = ""


def should_retry(
    method: str,
    *,
    status_code: int | None = None,
    failure: Failure | None = None,
    idempotent: bool = False,
    replayable: bool = True,
) -> bool:
    """Is this outcome worth another attempt, retries left or not?

    `idempotent` marks a request that is safe to repeat whatever its method (it
    carries an `Idempotency-Key`, or it is the token request). A request whose body
    cannot be sent again is never retried.
    """
    if not replayable:
        return False
    safe = idempotent or method.upper() in IDEMPOTENT_METHODS
    if failure is Failure.NOT_SENT:
        return True
    if failure is Failure.NO_RESPONSE:
        return safe
    if status_code in _ALWAYS_RETRYABLE:
        return True
    return safe and status_code in _IDEMPOTENT_RETRYABLE


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value, or None when absent or garbage.

    Accepts delta-seconds (`"120"`, also `"1.5"`) and an HTTP-date; a date in the
    past means 0. Negative, NaN, infinite and unparsable values are ignored. `now`
    is wall-clock epoch seconds (default: the current time) for the date form.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return abs(seconds)  # "-0" means 0
    if text[0] in "+-" or text[0].isdigit():
        return None  # a malformed number, not a date
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # The asctime form carries no zone; every HTTP-date is GMT (RFC 9110 5.6.7).
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def next_delay(
    retries_done: int,
    *,
    retry_after: float | None,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """How long to wait before retry number `retries_done + 1`, or None to give up.

    The server's `Retry-After` wins when given; one longer than
    `policy.max_retry_after` means give up now rather than sleep. Otherwise
    exponential backoff with full jitter, capped at `policy.backoff_max`, so that
    many clients failing together do not come back in lockstep.
    """
    if retry_after is not None:
        return None if retry_after > policy.max_retry_after else retry_after
    # The exponent is capped: 2.0**1024 overflows, and the cap is reached long before.
    ceiling = min(policy.backoff_max, policy.backoff_base * (2.0 ** min(retries_done, 64)))
    return rand() * ceiling


def plan_retry(
    method: str,
    *,
    retries_done: int,
    policy: RetryPolicy,
    now: float,
    deadline: float | None,
    status_code: int | None = None,
    failure: Failure | None = None,
    retry_after: float | None = None,
    idempotent: bool = False,
    replayable: bool = True,
    rand: Callable[[], float] = random.random,
) -> RetryDecision:
    """Everything the send loop needs to know after one attempt, in one decision."""
    if not should_retry(
        method,
        status_code=status_code,
        failure=failure,
        idempotent=idempotent,
        replayable=replayable,
    ):
        return RetryDecision(retry=False, reason="not retryable")
    if retries_done >= policy.max_retries:
        return RetryDecision(retry=False, reason="retries exhausted")
    delay = next_delay(retries_done, retry_after=retry_after, policy=policy, rand=rand)
    if delay is None:
        return RetryDecision(retry=False, reason="Retry-After exceeds max_retry_after")
    if deadline is not None and now + delay >= deadline:
        return RetryDecision(retry=False, reason="the request's timeout would pass")
    what = f"status {status_code}" if failure is None else failure.value
    return RetryDecision(retry=True, delay=delay, reason=what)
