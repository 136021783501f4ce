"""The bookkeeping of one request's attempts, shared by the twins' retry layers.

It turns httpx outcomes into the inputs of `plan_retry` and keeps each attempt
within the request's `Deadline`; the clients' retry layers only send, sleep and close.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx

from ._constants import (
    ATTEMPTS_EXTENSION,
    DEADLINE_EXTENSION,
    IDEMPOTENT_EXTENSION,
    LOGGER_NAME,
    MAX_RETRIES_EXTENSION,
)
from ._deadline import Deadline
from ._exceptions import PinkCloudSyncError
from ._retry_policy import (
    RETRYABLE_STATUSES,
    Failure,
    RetryDecision,
    RetryPolicy,
    parse_retry_after,
    plan_retry,
)
from .telemetry._observer import Observer

__all__ = ["RetryLoop", "classify_failure", "is_retry_candidate"]

logger = logging.getLogger(LOGGER_NAME)

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NO_RESPONSE = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


def classify_failure(exc: Exception) -> Failure | None:
    """Whether a transport error may be retried at all, and under which rule."""
    if isinstance(exc, PinkCloudSyncError):
        return None  # our own (token acquisition) errors already had their retries
    if isinstance(exc, httpx.RemoteProtocolError) and isinstance(exc.__context__, httpx.InvalidURL):
        # httpx's answer to a redirect whose Location is no URL: the same answer
        # will come again, so it is never retried (a lost connection is).
        return None
    if isinstance(exc, _NOT_SENT):
        return Failure.NOT_SENT
    if isinstance(exc, _NO_RESPONSE):
        return Failure.NO_RESPONSE
    return None


def is_retry_candidate(response: httpx.Response) -> bool:
    """The one check the per-request fast path makes before any bookkeeping."""
    return response.status_code in RETRYABLE_STATUSES


class RetryLoop:
    """One request's attempts after the first one failed: asks `plan_retry` each time."""

    __slots__ = ("clock", "deadline", "observer", "policy", "replayable", "request", "retries")

    def __init__(
        self,
        request: httpx.Request,
        policy: RetryPolicy,
        clock: Callable[[], float],
        *,
        replayable: bool,
        observer: Observer | None = None,
    ) -> None:
        self.request = request
        self.observer = observer  # counts retries by reason
        self.replayable = replayable
        self.clock = clock
        self.retries = 0
        extensions = request.extensions
        override = extensions.get(MAX_RETRIES_EXTENSION)
        if override is not None and override != policy.max_retries:
            policy = RetryPolicy(
                max_retries=override,
                backoff_base=policy.backoff_base,
                backoff_max=policy.backoff_max,
                max_retry_after=policy.max_retry_after,
            )
        self.policy = policy
        # Attached before the first attempt by the client's send, or by the token
        # source for a token request; none means no limit but each phase's own.
        self.deadline: Deadline | None = extensions.get(DEADLINE_EXTENSION)

    def _stop(self) -> None:
        if self.retries:
            logger.debug(
                "Giving up on %s %s after %d attempts",
                self.request.method,
                self.request.url.copy_with(query=None),
                self.retries + 1,
            )

    def after_response(self, response: httpx.Response) -> float | None:
        """Seconds to wait before the next attempt, or None: return this response."""
        status = response.status_code
        if status not in RETRYABLE_STATUSES:
            response.extensions[ATTEMPTS_EXTENSION] = self.retries + 1
            return None
        decision = self._plan(
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
        if not decision.retry:
            response.extensions[ATTEMPTS_EXTENSION] = self.retries + 1
            self._stop()
            return None
        self._log(decision.reason, decision.delay)
        if self.observer is not None:
            self.observer.retry(str(status))
        return decision.delay

    def after_error(self, exc: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None: re-raise `exc`."""
        failure = classify_failure(exc)
        decision = None if failure is None else self._plan(failure=failure)
        if decision is None or not decision.retry:
            if self.retries and not isinstance(exc, PinkCloudSyncError):
                # The count travels with the request (the token source reads it);
                # a note tells whoever reads the traceback.
                self.request.extensions[ATTEMPTS_EXTENSION] = self.retries + 1
                exc.add_note(f"pinkcloudsync: gave up after {self.retries + 1} attempts")
            self._stop()
            return None
        self._log(f"{type(exc).__name__} ({decision.reason})", decision.delay)
        if self.observer is not None:
            self.observer.retry(type(exc).__name__)
        return decision.delay

    def next_attempt(self) -> None:
        """Count the retry; no attempt may outlive the request's deadline."""
        self.retries += 1
        if self.deadline is not None:
            extensions = self.request.extensions
            extensions["timeout"] = self.deadline.clamp(extensions.get("timeout"))

    def _plan(
        self,
        *,
        status_code: int | None = None,
        failure: Failure | None = None,
        retry_after: float | None = None,
    ) -> RetryDecision:
        return plan_retry(
            self.request.method,
            retries_done=self.retries,
            policy=self.policy,
            now=self.clock(),
            deadline=None if self.deadline is None else self.deadline.at,
            status_code=status_code,
            failure=failure,
            retry_after=retry_after,
            idempotent=self._idempotent(),
            replayable=self.replayable,
        )

    def _idempotent(self) -> bool:
        request = self.request
        return bool(request.extensions.get(IDEMPOTENT_EXTENSION)) or (
            "idempotency-key" in request.headers
        )

    def _log(self, reason: str, delay: float) -> None:
        logger.debug(
            "Retrying %s %s in %.2fs (%s; retry %d of %d)",
            self.request.method,
            self.request.url.copy_with(query=None),
            delay,
            reason,
            self.retries + 1,
            self.policy.max_retries,
        )
