"""`AsyncTokenFlights`: the async token side, getting a token on an event loop.

The lifecycle decides (fresh, due or expired; who fetches, who waits); a
`TokenSource` performs the token request; this shell only waits and publishes.
Every step between two awaits is atomic on an event loop, so the lifecycle needs
no lock here; a flight's done event (an anyio Event) wakes every waiter at once.

Entered with `async with`, it owns a task group in which early refreshes run in the
background; otherwise the one caller that noticed a due token carries the refresh.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from types import TracebackType

import anyio
import anyio.abc
from anyio.lowlevel import current_token
from pydantic import SecretStr

from ._deadline import Deadline
from ._exceptions import RequestTimeoutError
from ._fork import reset_after_fork
from ._logging import redact_dependency_logs
from ._models import AccessToken
from ._token_lifecycle import Action, Flight, TokenLifecycle, copy_for_waiter
from ._token_source import TokenFetcher, log_advisory_failure
from .telemetry._observer import Observer

__all__ = ["AsyncTokenFlights"]


class _DoneEvent:
    """An async flight's done event, and the event loop it belongs to."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.loop = current_token()
        self.event = anyio.Event()


def _done_event(flight: Flight[AccessToken]) -> anyio.Event:
    assert isinstance(flight.waker, _DoneEvent)
    return flight.waker.event


class AsyncTokenFlights:
    """Lead, wait for, or run in the background the token requests of an event loop.

    `source` performs token requests (a `TokenSource`, or a token store's); `clock`
    is monotonic seconds. Deadlines are `Deadline`s (None: no limit); a spent one
    raises `RequestTimeoutError`. `observer` records each token request, each
    caller's wait and each 401 replay, and calls the hooks once a flight's outcome
    is published.
    """

    def __init__(
        self,
        source: TokenFetcher,
        *,
        clock: Callable[[], float],
        lifecycle: TokenLifecycle[AccessToken] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.source = source
        self.observer = observer or Observer(for_async=True)
        self.lifecycle: TokenLifecycle[AccessToken] = lifecycle or TokenLifecycle()
        self._clock = clock
        self._task_group: anyio.abc.TaskGroup | None = None
        self._entered_by: int | None = None
        self._background_flight: Flight[AccessToken] | None = None
        self._background_scope: anyio.CancelScope | None = None
        reset_after_fork(self)
        redact_dependency_logs(self)

    def secrets(self) -> tuple[SecretStr, ...]:
        """The API secret and the token held now: what no log record may show."""
        token = self.lifecycle.token
        held = () if token is None else (token.access_token,)
        return (*self.source.sent_secrets(), *held)

    def after_fork_in_child(self) -> None:
        """In a forked child: no flight in progress (the coroutine flying it runs on
        the parent's loop, not here), so the first caller starts one. A held token
        stays."""
        flight = self.lifecycle.flight
        if flight is not None:
            self.lifecycle.abandon(flight)
        self._background_flight = None

    @property
    def token(self) -> AccessToken | None:
        """The token held now, if any (it may be due or expired)."""
        return self.lifecycle.token

    def fresh(self) -> AccessToken | None:
        """The held token if it is fresh (no refresh due), else None: the fast path."""
        return self.lifecycle.fresh(self._clock())

    def invalidate(self, token: AccessToken) -> None:
        """The API refused `token` (401): drop it unless a newer one replaced it.

        The auth calls this once per replayed request, so it counts the replays."""
        self.observer.replay()
        self.lifecycle.invalidate(token)
        self.source.refused(token)  # a token store forgets it fleet-wide

    async def get(self, deadline: Deadline | None = None) -> AccessToken:
        """A valid token: the held one, or the outcome of the (shared) token request."""
        return self.fresh() or await self.acquire(deadline)

    async def acquire(self, deadline: Deadline | None) -> AccessToken:
        """Do what the lifecycle says: use, lead a flight, or wait for one."""
        lifecycle = self.lifecycle
        while True:
            action, token, flight = lifecycle.claim(self._clock())
            if action is Action.USE:
                assert token is not None
                return token
            assert flight is not None
            if action is Action.WAIT:
                waker = flight.waker
                if not isinstance(waker, _DoneEvent) or waker.loop != current_token():
                    # Started on an event loop that is gone (or by a thread): it
                    # will never report here. Start over.
                    lifecycle.abandon(flight)
                    continue
                with self._waiting():
                    await self._wait(flight, deadline)
                if flight.token is not None:
                    return flight.token
                if flight.error is not None:
                    raise copy_for_waiter(flight.error)
                continue  # abandoned by its cancelled caller: one of us takes over
            flight.waker = _DoneEvent()
            if action is Action.USE_AND_REFRESH:
                assert token is not None
                if self._task_group is not None:
                    self._background_flight = flight
                    self._task_group.start_soon(self._background_refresh, flight)
                    return token
                # No task group to own it: this one caller carries the refresh.
                with self._waiting():
                    await self._fly(flight, deadline)
                return flight.token or token
            with self._waiting():
                await self._fly(flight, deadline)
            assert flight.token is not None
            return flight.token

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observer.waited(time.perf_counter() - started)

    async def _wait(self, flight: Flight[AccessToken], deadline: Deadline | None) -> None:
        event = _done_event(flight)
        if deadline is None:
            await event.wait()
            return
        with anyio.move_on_after(deadline.remaining()):
            await event.wait()
            return
        raise RequestTimeoutError("Timed out waiting for an access token.")

    async def _fly(self, flight: Flight[AccessToken], deadline: Deadline | None) -> None:
        """`_publish`, observed: a span around it; the hooks once every waiter has
        the outcome (a slow hook delays no waiter)."""
        held = self.lifecycle.token
        record = self.observer.start(flight)
        try:
            await self._publish(flight, deadline)
        except Exception:
            self.observer.end(record, flight, held)
            await self.observer.anotify(record.events)
            raise
        except BaseException:
            self.observer.end(record, flight, held)
            raise
        self.observer.end(record, flight, held)
        await self.observer.anotify(record.events)

    async def _publish(self, flight: Flight[AccessToken], deadline: Deadline | None) -> None:
        """Make the flight's token request and publish its outcome to every waiter.

        Raises the error of a failed mandatory flight; an advisory (early refresh)
        failure is logged and swallowed, the old token still serves.
        """
        lifecycle = self.lifecycle
        event = _done_event(flight)
        token: AccessToken | None = None
        try:
            with anyio.move_on_after(
                float("inf") if deadline is None else deadline.remaining()
            ) as scope:
                token = await self.source.afetch(deadline, held=lifecycle.token)
        except Exception as exc:
            advisory = lifecycle.fail(flight, exc, self._clock())
            event.set()
            if advisory:
                log_advisory_failure(exc, lifecycle.refresh_not_before - self._clock())
                return
            raise
        except BaseException:
            # Cancelled (or interrupted) before an outcome: a waiter takes over.
            lifecycle.abandon(flight)
            event.set()
            raise
        if token is None or scope.cancelled_caught:
            # The leader's deadline passed. Its waiters share this outcome rather than
            # start the token request over one after another; an early refresh cut
            # short is an advisory failure like any other (old token, backoff).
            error = RequestTimeoutError("Timed out getting an access token.")
            advisory = lifecycle.fail(flight, error, self._clock())
            event.set()
            if advisory:
                log_advisory_failure(error, lifecycle.refresh_not_before - self._clock())
                return
            raise error
        lifecycle.succeed(flight, token)
        event.set()

    # ------------------------------------------------------- background refresh

    async def __aenter__(self) -> AsyncTokenFlights:
        """Own a task group: from now on early refreshes run in the background."""
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._entered_by = anyio.get_current_task().id
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        """Stop the background refresh; the held token stays."""
        task_group, self._task_group = self._task_group, None
        try:
            if task_group is None:
                return
            if anyio.get_current_task().id == self._entered_by:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)
            elif self._background_scope is not None:
                # Only the task that entered a task group may exit it, and
                # cancelling the group's scope would cancel that task. pytest-asyncio
                # runs a fixture's teardown in a new task: there the running refresh
                # is cancelled, not awaited.
                self._background_scope.cancel()
        finally:
            self._settle_background_refresh()

    async def _background_refresh(self, flight: Flight[AccessToken]) -> None:
        with anyio.CancelScope() as scope:
            self._background_scope = scope
            # An error was already delivered to every waiter; raising it here would
            # cancel the task group, that is the user's `async with` block.
            with contextlib.suppress(Exception):
                await self._fly(flight, None)
        if self._background_scope is scope:
            self._background_scope = None

    def _settle_background_refresh(self) -> None:
        # A refresh task cancelled before its first step never ran its own cleanup
        # (asyncio skips the body), so abandon its flight here for it.
        flight, self._background_flight = self._background_flight, None
        if flight is not None and not flight.done:
            self.lifecycle.abandon(flight)
            _done_event(flight).set()
