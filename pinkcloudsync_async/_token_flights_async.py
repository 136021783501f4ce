"""The async side of `PinkCloudSyncAuth`: getting a token on an event loop.

Every step between two awaits is atomic on an event loop, so the lifecycle needs
no lock here; the flight's anyio Event wakes every waiter at once.
"""

from __future__ import annotations

import contextlib

import anyio
import httpx
from anyio.lowlevel import current_token

from ._auth_base import AuthBase, copy_for_waiter
from ._exceptions import APIConnectionError, ConfigurationError, RequestTimeoutError
from ._models import AccessToken
from ._token_lifecycle import Action, Flight

__all__ = ["AsyncTokenFlights"]


class _AsyncWaker:
    """An async flight's event, and the event loop it belongs to."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.loop = current_token()
        self.event = anyio.Event()


def _async_event(flight: Flight[AccessToken]) -> anyio.Event:
    assert isinstance(flight.waker, _AsyncWaker)
    return flight.waker.event


class AsyncTokenFlights(AuthBase):
    """Lead, wait for, or run in the background the token requests of an event loop."""

    async def async_get_token(self, deadline: float | None = None) -> AccessToken:
        """The current valid token, fetched or refreshed as the lifecycle decides."""
        token = self._lifecycle.token
        if token is not None and self._clock() < token.refresh_at:
            return token
        return await self._async_acquire(deadline)

    async def _async_acquire(self, deadline: float | None) -> AccessToken:
        lifecycle = self._lifecycle
        while True:
            action, token, flight = lifecycle.claim(self._clock())
            if action is Action.USE:
                assert token is not None
                return token
            assert flight is not None
            if action is Action.WAIT:
                waker = flight.waker
                if not isinstance(waker, _AsyncWaker) or waker.loop != current_token():
                    # Started on an event loop that is gone (or by a thread): it
                    # will never report here. Start over.
                    lifecycle.abandon(flight)
                    continue
                await self._async_wait(flight, deadline)
                if flight.token is not None:
                    return flight.token
                if flight.error is not None:
                    raise copy_for_waiter(flight.error)
                continue  # abandoned by its cancelled caller: one of us takes over
            flight.waker = _AsyncWaker()
            if action is Action.USE_AND_REFRESH:
                assert token is not None
                if self.task_group is not None:
                    self._background_flight = flight
                    self.task_group.start_soon(self._async_background_refresh, flight)
                    return token
                # No task group to own it: this one caller carries the refresh.
                await self._async_fly(flight, deadline)
                return flight.token or token
            await self._async_fly(flight, deadline)
            assert flight.token is not None
            return flight.token

    async def _async_wait(self, flight: Flight[AccessToken], deadline: float | None) -> None:
        event = _async_event(flight)
        if deadline is None:
            await event.wait()
            return
        with anyio.move_on_after(deadline - self._clock()):
            await event.wait()
            return
        raise RequestTimeoutError("Timed out waiting for an access token.")

    def settle_background_refresh(self) -> None:
        """After the task group closed: a refresh task cancelled before its first step
        never ran its own cleanup, so abandon its flight here for it."""
        flight, self._background_flight = self._background_flight, None
        if flight is not None and not flight.done:
            self._lifecycle.abandon(flight)
            _async_event(flight).set()

    async def _async_background_refresh(self, flight: Flight[AccessToken]) -> None:
        with anyio.CancelScope() as scope:
            self._background_scope = scope
            # An error was already delivered to every waiter; raising it here would
            # cancel the task group, that is the user's `async with` block.
            with contextlib.suppress(Exception):
                await self._async_fly(flight, None)
        if self._background_scope is scope:
            self._background_scope = None

    def cancel_background_refresh(self) -> None:
        """Cancel a running background refresh (from any task of its event loop)."""
        if self._background_scope is not None:
            self._background_scope.cancel()

    async def _async_fly(self, flight: Flight[AccessToken], deadline: float | None) -> None:
        """Make the flight's token request and publish its outcome to every waiter.

        Raises the error of a failed mandatory flight; an advisory (early refresh)
        failure is logged and swallowed, the old token still serves.
        """
        lifecycle = self._lifecycle
        event = _async_event(flight)
        token: AccessToken | None = None
        try:
            with anyio.move_on_after(
                float("inf") if deadline is None else deadline - self._clock()
            ) as scope:
                token = await self._async_request_token(deadline)
        except Exception as exc:
            if lifecycle.fail(flight, exc, self._clock()):
                event.set()
                self._log_advisory_failure(exc)
                return
            event.set()
            raise
        except BaseException:
            # Cancelled (or interrupted) before an outcome: a waiter takes over.
            lifecycle.abandon(flight)
            event.set()
            raise
        if token is None or scope.cancelled_caught:
            # The leader's budget ran out. Its waiters share this outcome rather than
            # start the token request over one after another; an early refresh cut
            # short is an advisory failure like any other (old token, backoff).
            error = RequestTimeoutError("Timed out getting an access token.")
            if lifecycle.fail(flight, error, self._clock()):
                event.set()
                self._log_advisory_failure(error)
                return
            event.set()
            raise error
        lifecycle.succeed(flight, token)
        event.set()

    async def _async_request_token(self, deadline: float | None) -> AccessToken:
        request = self._token_request(deadline)
        if self._async_sender is None:
            raise ConfigurationError("This auth is bound to a sync client.")
        sent_at = self._clock()
        try:
            response = await self._async_sender(request)
        except httpx.TransportError as exc:
            if isinstance(exc, (APIConnectionError, RequestTimeoutError)):
                raise
            raise self._connection_error(exc, request) from exc
        return self._read_token(response, sent_at)
