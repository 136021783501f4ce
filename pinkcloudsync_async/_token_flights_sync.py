"""The sync side of `PinkCloudSyncAuth`: getting a token from threads.

The lifecycle's quick steps run under a thread lock; waiting and I/O never do.
Nothing here touches an event loop.
"""

from __future__ import annotations

import threading

import httpx

from ._auth_base import AuthBase, copy_for_waiter
from ._exceptions import APIConnectionError, ConfigurationError, RequestTimeoutError
from ._models import AccessToken
from ._token_lifecycle import Action, Flight

__all__ = ["SyncTokenFlights"]


class SyncTokenFlights(AuthBase):
    """Lead or wait for the token requests of a thread pool."""

    def sync_get_token(self, deadline: float | None = None) -> AccessToken:
        """The current valid token, fetched or refreshed as the lifecycle decides."""
        token = self._lifecycle.token
        if token is not None and self._clock() < token.refresh_at:
            return token
        return self._sync_acquire(deadline)

    def _sync_acquire(self, deadline: float | None) -> AccessToken:
        lifecycle = self._lifecycle
        while True:
            with self._thread_lock:
                action, token, flight = lifecycle.claim(self._clock())
                if flight is not None and action is not Action.WAIT:
                    flight.waker = threading.Event()
            if action is Action.USE:
                assert token is not None
                return token
            assert flight is not None
            if action is Action.WAIT:
                waker = flight.waker
                if not isinstance(waker, threading.Event):
                    raise ConfigurationError(
                        "One PinkCloudSyncAuth is being used by both an async and a sync "
                        "client at once; give each client its own."
                    )
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                if not waker.wait(timeout):
                    raise RequestTimeoutError("Timed out waiting for an access token.")
                if flight.token is not None:
                    return flight.token
                if flight.error is not None:
                    raise copy_for_waiter(flight.error)
                continue
            if action is Action.USE_AND_REFRESH:
                assert token is not None
                self._sync_fly(flight, deadline)  # this thread carries it; others go on
                return flight.token or token
            self._sync_fly(flight, deadline)
            assert flight.token is not None
            return flight.token

    def _sync_fly(self, flight: Flight[AccessToken], deadline: float | None) -> None:
        lifecycle = self._lifecycle
        event = flight.waker
        assert isinstance(event, threading.Event)
        try:
            token = self._sync_request_token(deadline)
        except Exception as exc:
            with self._thread_lock:
                advisory = lifecycle.fail(flight, exc, self._clock())
            event.set()
            if advisory:
                self._log_advisory_failure(exc)
                return
            raise
        except BaseException:
            with self._thread_lock:
                lifecycle.abandon(flight)
            event.set()
            raise
        with self._thread_lock:
            lifecycle.succeed(flight, token)
        event.set()

    def _sync_request_token(self, deadline: float | None) -> AccessToken:
        request = self._token_request(deadline)
        if self._sync_sender is None:
            raise ConfigurationError("This auth is bound to an async client.")
        sent_at = self._clock()
        try:
            response = self._sync_sender(request)
        except httpx.TransportError as exc:
            if isinstance(exc, (APIConnectionError, RequestTimeoutError)):
                raise
            raise self._connection_error(exc, request) from exc
        return self._read_token(response, sent_at)
