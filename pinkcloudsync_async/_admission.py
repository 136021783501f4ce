"""Admission: at most N requests in flight, the rest wait in one FIFO queue.

Why it exists: the auth flow attaches the token *before* httpx's connection pool
makes a request wait for a connection. Under overload that wait can outlast the
token, and the request leaves with a dead one (and its replay queues again). A
request admitted here gets a connection at once, so it gets its token only when
it can use it. The limit defaults to the pool's `max_connections`.

Both queues take a free slot without waiting or yielding (anyio's CapacityLimiter
yields to the event loop on every acquire, even a free one: a loop round trip per
request), hand a released slot straight to the oldest waiter (FIFO, no barging),
cost O(1) per request however long the queue, and lose nothing to cancellation or a
timeout: a waiter that gave up is skipped, one that was handed a slot as it gave up
passes it on.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
from anyio.lowlevel import EventLoopToken, current_token

from ._constants import DEADLINE_EXTENSION
from ._exceptions import RequestTimeoutError

__all__ = [
    "AdmittedAsyncStream",
    "AdmittedSyncStream",
    "AsyncAdmission",
    "SyncAdmission",
    "admission_timeout",
    "admission_timeout_error",
    "fit_after_wait",
]


def admission_timeout(extensions: dict[str, Any]) -> float | None:
    """How long a request may wait for admission, in seconds (None: no limit).

    The wait replaces the one in httpx's pool, so the request's `pool` timeout
    bounds it, and so does what is left of its deadline.
    """
    timeout = extensions.get("timeout") or {}
    limit: float | None = timeout.get("pool")
    deadline = extensions.get(DEADLINE_EXTENSION)
    if deadline is not None:
        remaining: float = deadline.remaining()
        limit = remaining if limit is None else min(limit, remaining)
    return limit


def admission_timeout_error(limit: int, waited: float) -> RequestTimeoutError:
    """The error of a request that waited `waited` seconds and was not admitted."""
    return RequestTimeoutError(
        f"Timed out after {waited:.3g}s waiting for one of {limit} request slots "
        "(max_concurrency); the client is overloaded."
    )


def fit_after_wait(extensions: dict[str, Any]) -> None:
    """Give a request that waited in the queue only what is left of its deadline.

    Its first attempt would otherwise leave with every phase of its timeout whole.
    Raises RequestTimeoutError when nothing is left.
    """
    deadline = extensions.get(DEADLINE_EXTENSION)
    if deadline is not None:
        deadline.fit(extensions, "while it waited for admission")


class _AsyncWaiter:
    __slots__ = ("event", "gave_up", "generation", "granted")

    def __init__(self, generation: int) -> None:
        self.event = anyio.Event()
        self.generation = generation
        self.granted = False
        self.gave_up = False


class AsyncAdmission:
    """FIFO admission for coroutines of one event loop at a time; `limit` >= 1."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: collections.deque[_AsyncWaiter] = collections.deque()
        self._queued = 0  # waiters that have neither been granted nor given up
        self._loop: EventLoopToken | None = None
        # Bumped when a new event loop starts afresh: a slot taken on an older loop
        # (a streamed response left open there) is no longer counted, so its late
        # release must not free one of this loop's.
        self.generation = 0

    @property
    def waiting(self) -> int:
        """Requests queued now."""
        return self._queued

    def _follow_loop(self) -> None:
        # On every acquisition, the fast path's too: a request admitted on a new
        # loop before the first one that queues must be counted after the reset.
        loop = current_token()
        if loop != self._loop:
            if self._loop is not None:
                # Requests of a finished event loop can never release their slots
                # nor wake here: start this loop with an empty queue.
                self.in_use, self._waiters, self._queued = 0, collections.deque(), 0
                self.generation += 1
            self._loop = loop

    def try_acquire(self) -> bool:
        """Take a free slot if one is free and nobody queues: the per-request fast path.

        The slot belongs to `generation` as it is right after the call.
        """
        if self.in_use < self.limit and not self._waiters:
            self._follow_loop()  # a reset leaves every slot free
            self.in_use += 1
            return True
        return False

    async def acquire(self, patience: float | None) -> None:
        """Take a slot; wait at most `patience` seconds (None: no limit) for one.

        Raises RequestTimeoutError when the wait runs out; cancellation while
        queued leaves the queue and the count as they were. The slot belongs to
        `generation` as it is when this returns.
        """
        self._follow_loop()
        if self.in_use < self.limit and not self._waiters:
            self.in_use += 1
            return
        waiter = _AsyncWaiter(self.generation)
        self._waiters.append(waiter)
        self._queued += 1
        try:
            with anyio.move_on_after(math.inf if patience is None else patience):
                await waiter.event.wait()
        except BaseException:
            self._give_up(waiter)
            raise
        if not waiter.granted:
            self._give_up(waiter)
            raise admission_timeout_error(self.limit, patience or 0.0)

    def _give_up(self, waiter: _AsyncWaiter) -> None:
        if waiter.granted:
            self.release(waiter.generation)  # handed a slot as it gave up: pass it on
        elif waiter.generation == self.generation:  # (else a reset dropped it already)
            waiter.gave_up = True  # skipped by the next release
            self._queued -= 1

    def release(self, generation: int | None = None) -> None:
        """Give a slot back: to the oldest waiter still waiting, else to the pool.

        `generation`: the one the slot was taken in (None: the current one); a slot
        of an event loop that came before the last reset is not counted any more.
        """
        if generation is not None and generation != self.generation:
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.gave_up:
                waiter.granted = True
                self._queued -= 1
                waiter.event.set()
                return
        self.in_use -= 1


class _SyncWaiter:
    __slots__ = ("gave_up", "granted", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()  # released by whoever hands this waiter a slot
        self.granted = False
        self.gave_up = False


class SyncAdmission:
    """FIFO admission for threads; `limit` >= 1."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiters: collections.deque[_SyncWaiter] = collections.deque()
        self._queued = 0  # waiters that have neither been granted nor given up
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """Threads queued now."""
        return self._queued

    def acquire(self, patience: float | None) -> bool:
        """Take a slot; wait at most `patience` seconds (None: no limit) for one.

        Returns True when it had to wait. Raises RequestTimeoutError when the wait
        runs out; an exception raised in the wait (KeyboardInterrupt) leaves the
        queue and the count as they were.
        """
        with self._lock:
            if self.in_use < self.limit and not self._waiters:
                self.in_use += 1
                return False
            waiter = _SyncWaiter()
            self._waiters.append(waiter)
            self._queued += 1
        try:
            if waiter.lock.acquire(timeout=-1 if patience is None else max(patience, 0.0)):
                return True
        except BaseException:  # KeyboardInterrupt: the signal reached this thread
            if not self._give_up(waiter):
                self.release()  # handed a slot as it left: pass it on
            raise
        if not self._give_up(waiter):
            return True  # granted in the instant the wait ran out: the slot is ours
        raise admission_timeout_error(self.limit, patience or 0.0)

    def _give_up(self, waiter: _SyncWaiter) -> bool:
        """Leave the queue unless already granted; False when granted."""
        with self._lock:
            if waiter.granted:
                return False
            waiter.gave_up = True  # skipped by the next release
            self._queued -= 1
            return True

    def release(self) -> None:
        """Give a slot back: to the oldest waiter still waiting, else to the pool."""
        with self._lock:
            waiters = self._waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.gave_up:
                    waiter.granted = True
                    self._queued -= 1
                    waiter.lock.release()
                    return
            self.in_use -= 1


class _Once:
    """Calls `release` the first time it is called, never again."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def __call__(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class AdmittedAsyncStream(httpx.AsyncByteStream):
    """A streamed response's body that holds its admission slot until it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = _Once(release)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class AdmittedSyncStream(httpx.SyncByteStream):
    """A streamed response's body that holds its admission slot until it is closed."""

    def __init__(self, stream: httpx.SyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = _Once(release)

    def __iter__(self) -> Iterator[bytes]:
        yield from self._stream

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._release()
