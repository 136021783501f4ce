"""`SyncTokenFlights`: the sync token side, getting a token from threads.

The lifecycle's quick steps run under a thread lock; waiting and I/O never do. A
flight's done event is a `threading.Event`. Nothing here touches an event loop.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from pydantic import SecretStr

from ._deadline import Deadline
from ._exceptions import RequestTimeoutError
from ._fork import reset_after_fork
from ._logging import redact_dependency_logs
from ._models import AccessToken
from ._token_lifecycle import Action, Flight, TokenLifecycle, copy_for_waiter
from ._token_source import TokenFetcher, log_advisory_failure
from .telemetry._observer import Observer

__all__ = ["SyncTokenFlights"]


class SyncTokenFlights:
    """Lead or wait for the token requests of a thread pool.

    `source` performs token requests (a `TokenSource`, or a token store's); `clock`
    is monotonic seconds. Deadlines are `Deadline`s (None: no limit); a spent one
    raises `RequestTimeoutError`. An early refresh is carried by the one thread that
    noticed it. `observer` records each token request, each thread's wait and each
    401 replay, and calls the hooks once a flight's outcome is published.
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
        self.observer = observer or Observer(for_async=False)
        self.lifecycle: TokenLifecycle[AccessToken] = lifecycle or TokenLifecycle()
        self._clock = clock
        self._lock = threading.Lock()
        reset_after_fork(self)
        redact_dependency_logs(self)

    def secrets(self) -> tuple[SecretStr, ...]:
        """The API secret and the token held now: what no log record may show."""
        token = self.lifecycle.token
        held = () if token is None else (token.access_token,)
        return (*self.source.sent_secrets(), *held)

    def after_fork_in_child(self) -> None:
        """In a forked child: a fresh lock (a parent thread may have held this one)
        and no flight (the thread that flew it is not here). A held token stays."""
        self._lock = threading.Lock()
        flight = self.lifecycle.flight
        if flight is not None:
            self.lifecycle.abandon(flight)

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
        with self._lock:
            self.lifecycle.invalidate(token)
        self.source.refused(token)  # a token store forgets it fleet-wide
        self.source.refused(token)  # a token store forgets it fleet-wide

    def get(self, deadline: Deadline | None = None) -> AccessToken:
        """A valid token: the held one, or the outcome of the (shared) token request."""
        return self.fresh() or self.acquire(deadline)

    def acquire(self, deadline: Deadline | None) -> AccessToken:
        """Do what the lifecycle says: use, lead a flight, or wait for one."""
        lifecycle = self.lifecycle
        while True:
            with self._lock:
                action, token, flight = lifecycle.claim(self._clock())
                if flight is not None and action is not Action.WAIT:
                    flight.waker = threading.Event()
            if action is Action.USE:
                assert token is not None
                return token
            assert flight is not None
            if action is Action.WAIT:
                done = flight.waker
                assert isinstance(done, threading.Event)
                timeout = None if deadline is None else max(0.0, deadline.remaining())
                with self._waiting():
                    arrived = done.wait(timeout)
                if not arrived:
                    raise RequestTimeoutError("Timed out waiting for an access token.")
                if flight.token is not None:
                    return flight.token
                if flight.error is not None:
                    raise copy_for_waiter(flight.error)
                continue
            if action is Action.USE_AND_REFRESH:
                assert token is not None
                with self._waiting():
                    self._fly(flight, deadline)  # this thread carries it; others go on
                return flight.token or token
            with self._waiting():
                self._fly(flight, deadline)
            assert flight.token is not None
            return flight.token

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.observer.waited(time.perf_counter() - started)

    def _fly(self, flight: Flight[AccessToken], deadline: Deadline | None) -> None:
        # Observed: a span around it; the hooks once every waiter has the outcome.
        held = self.lifecycle.token
        record = self.observer.start(flight)
        try:
            self._publish(flight, deadline)
        except Exception:
            self.observer.end(record, flight, held)
            self.observer.notify(record.events)
            raise
        except BaseException:
            self.observer.end(record, flight, held)
            raise
        self.observer.end(record, flight, held)
        self.observer.notify(record.events)

    def _publish(self, flight: Flight[AccessToken], deadline: Deadline | None) -> None:
        lifecycle = self.lifecycle
        done = flight.waker
        assert isinstance(done, threading.Event)
        try:
            token = self.source.fetch(deadline, held=lifecycle.token)
        except Exception as exc:
            with self._lock:
                advisory = lifecycle.fail(flight, exc, self._clock())
            done.set()
            if advisory:
                log_advisory_failure(exc, lifecycle.refresh_not_before - self._clock())
                return
            raise
        except BaseException:
            with self._lock:
                lifecycle.abandon(flight)
            done.set()
            raise
        with self._lock:
            lifecycle.succeed(flight, token)
        done.set()
