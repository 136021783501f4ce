"""A request's deadline: how much of its time is left, and each phase clamped to it.

A timeout the user sets (on the client or on the request) is a deadline for the
whole request: its retries, its wait for a token, its 401 replay. Its length is the
largest phase of that timeout, so `timeout=5` means 5 s in all while httpx still
applies each phase's own. The library's default timeout bounds phases only (so a
default client still honours a `Retry-After` up to the cap): it makes no deadline.

One `Deadline` travels with a request in its extensions (`DEADLINE_EXTENSION`),
attached by the client's outermost `send` and read by every layer below it; a token
request made for that request carries the same object.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import anyio
import httpx

from ._constants import DEADLINE_EXTENSION
from ._exceptions import RequestTimeoutError

__all__ = ["Deadline", "attach_deadline", "clamped", "cutoff", "deadline_of"]

_PHASES = ("connect", "read", "write", "pool")
# How long after its deadline an async attempt is cancelled outright: the precise
# bounds inside it (a token wait or token request, a body read) report first, with
# their own outcome (shared with the waiters of a token request); this catches the
# rest, such as response headers trickling in one byte at a time.
CUTOFF_GRACE = 0.05


def _finite(value: Any) -> float | None:
    """`value` in seconds if it is a finite number a float can hold, else None
    (no bound: None, infinity, NaN, or an int such as 10**400)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) else None


def clamped(timeout: Mapping[str, Any] | None, remaining: float) -> dict[str, Any]:
    """`timeout` (httpx's per-phase dict) with no phase longer than `remaining` seconds."""
    remaining = max(remaining, 0.0)
    current = timeout or {}
    return {
        phase: remaining if current.get(phase) is None else min(current[phase], remaining)
        for phase in _PHASES
    }


class Deadline:
    """When a request must be done, in seconds on `clock` (monotonic).

    `restore` is the timeout extension the request came with, put back by `release`
    so that a request can be sent again as it was.
    """

    __slots__ = ("at", "clock", "restore")

    def __init__(self, at: float, clock: Callable[[], float], *, restore: Any = None) -> None:
        self.at = at
        self.clock = clock
        self.restore = restore

    @classmethod
    def for_timeout(
        cls,
        timeout: Mapping[str, Any] | None,
        *,
        clock: Callable[[], float],
        default: Mapping[str, Any] | None = None,
    ) -> Deadline | None:
        """The deadline a request sent now with this per-phase `timeout` gets, or None
        (no timeout, every phase unbounded, or the library's `default`)."""
        if not timeout or timeout == default:
            return None
        values = [seconds for v in timeout.values() if (seconds := _finite(v)) is not None]
        if not values:
            return None
        return cls(clock() + max(values), clock, restore=timeout)

    def remaining(self) -> float:
        """Seconds left; zero or negative once spent."""
        return self.at - self.clock()

    def clamp(self, timeout: Mapping[str, Any] | None) -> dict[str, Any]:
        """`timeout` with every phase cut to what is left (never below zero)."""
        return clamped(timeout, self.remaining())

    def fit(self, extensions: dict[str, Any], what: str) -> None:
        """Give the next send of a request only what is left of its time.

        Raises RequestTimeoutError (`what` says what was going on) when nothing is.
        """
        remaining = self.remaining()
        if remaining <= 0:
            raise RequestTimeoutError(f"The request's timeout ran out {what}.")
        extensions["timeout"] = clamped(extensions.get("timeout"), remaining)

    async def aread_body(self, response: httpx.Response) -> None:
        """Read `response`'s body within what is left: each read is cut at the
        deadline (RequestTimeoutError); the response is closed on any failure."""
        response.stream = _AsyncBodyWithin(response.stream, self)  # type: ignore[arg-type]
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise

    def read_body(self, response: httpx.Response) -> None:
        """Read `response`'s body, checking what is left after every chunk. A
        blocking read cannot be cut: each is bounded by the read timeout, which
        the attempt got clamped to what was left when it started."""
        response.stream = _SyncBodyWithin(response.stream, self)  # type: ignore[arg-type]
        try:
            response.read()
        except BaseException:
            response.close()
            raise

    def attach(self, extensions: dict[str, Any]) -> None:
        """Make this the deadline of the request whose extensions these are."""
        extensions[DEADLINE_EXTENSION] = self

    def release(self, extensions: dict[str, Any]) -> None:
        """Hand the request back as it came: no deadline, its own timeout."""
        extensions.pop(DEADLINE_EXTENSION, None)
        if self.restore is None:
            extensions.pop("timeout", None)
        else:
            extensions["timeout"] = self.restore


def _body_timed_out() -> RequestTimeoutError:
    return RequestTimeoutError("The request's timeout ran out while reading the response body.")


class _AsyncBodyWithin(httpx.AsyncByteStream):
    """A response body whose reads stop at a deadline: a server trickling one byte
    a second, each within the read timeout, cannot stretch the call past it."""

    def __init__(self, inner: httpx.AsyncByteStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            # Never yield inside the cancel scope: the consumer's code would run in it.
            with anyio.move_on_after(self._deadline.remaining()) as scope:
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                raise _body_timed_out()
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _SyncBodyWithin(httpx.SyncByteStream):
    """The sync twin of `_AsyncBodyWithin`: checks the deadline after each read."""

    def __init__(self, inner: httpx.SyncByteStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            if self._deadline.remaining() <= 0:
                raise _body_timed_out()
            yield chunk

    def close(self) -> None:
        self._inner.close()


@contextlib.contextmanager
def cutoff(deadline: Deadline | None) -> Iterator[None]:
    """On an event loop: cancel what runs inside once `deadline` (plus
    `CUTOFF_GRACE`) has passed, and raise RequestTimeoutError. No deadline: no-op.

    Each phase's timeout bounds one read, not a response that trickles in; this
    bounds the whole attempt. A thread cannot be cancelled: the sync client relies
    on the clamped phases and on `read_body`.
    """
    if deadline is None:
        yield
        return
    with anyio.move_on_after(deadline.remaining() + CUTOFF_GRACE) as scope:
        yield
    if scope.cancelled_caught:
        raise RequestTimeoutError("The request's timeout ran out before its response came.")


def deadline_of(extensions: Mapping[str, Any]) -> Deadline | None:
    """The deadline attached to a request, if it has one."""
    deadline: Deadline | None = extensions.get(DEADLINE_EXTENSION)
    return deadline


def attach_deadline(
    request_extensions: dict[str, Any],
    clock: Callable[[], float],
    default: Mapping[str, Any] | None,
) -> Deadline | None:
    """Attach the deadline a request's own timeout gives it (see `Deadline.for_timeout`);
    the caller `release`s it when the request is done."""
    deadline = Deadline.for_timeout(request_extensions.get("timeout"), clock=clock, default=default)
    if deadline is not None:
        deadline.attach(request_extensions)
    return deadline
