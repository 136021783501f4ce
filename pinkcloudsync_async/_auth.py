"""`PinkCloudSyncAuth`: the httpx.Auth flow over the token lifecycle, async and sync.

The decisions (fresh, due or expired; who fetches, who waits) are made by
`TokenLifecycle`; this module only does what it says. Three rules keep it correct
under concurrency and cancellation:

- Nothing is held across a `yield`: httpx may `aclose()` a flow at any yield when
  its caller is cancelled, and a lock held there would stay held.
- A token request is a *flight* that any number of callers share. Its outcome,
  token or error, is delivered to every waiter; if its own caller is cancelled the
  flight is abandoned and one waiter takes over.
- The async flow never blocks the event loop (no thread lock, no sync I/O); the
  sync flow takes a thread lock only around the lifecycle's quick, non-blocking steps.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator

import anyio
import anyio.abc
import httpx
from anyio.lowlevel import current_token
from pydantic import SecretStr

from ._constants import (
    DEADLINE_EXTENSION,
    DEFAULT_REFRESH_MARGIN,
    IDEMPOTENT_EXTENSION,
    LOGGER_NAME,
    TOKEN_PATH,
)
from ._exceptions import APIConnectionError, ConfigurationError, RequestTimeoutError
from ._models import AccessToken
from ._timeouts import apply_budget, deadline_for, trimmed
from ._token_exchange import token_from_response
from ._token_lifecycle import Action, Flight, TokenLifecycle

__all__ = ["PinkCloudSyncAuth", "is_replayable", "put_authorization"]

logger = logging.getLogger(LOGGER_NAME)

AsyncSender = Callable[[httpx.Request], Awaitable[httpx.Response]]
SyncSender = Callable[[httpx.Request], httpx.Response]
RequestFactory = Callable[..., httpx.Request]


def is_replayable(request: httpx.Request) -> bool:
    """Can this request's body be sent again? Ask before the first send: a transport
    that buffers a generator body (MockTransport does) swaps in a ByteStream."""
    return isinstance(request.stream, httpx.ByteStream)


def put_authorization(headers: httpx.Headers, value: bytes) -> None:
    """`headers["Authorization"] = value`, at a third of the cost.

    httpx's own `__setitem__` encodes and scans every header on each call: 0.7 us,
    the largest item of our per-request cost. httpx 0.28 (frozen, and pinned)
    keeps `(raw key, lowercased key, raw value)` tuples in `Headers._list`; when
    that layout is there and no Authorization header is yet, we append to it.
    Anything else (a replay replacing our header, another layout) goes the public way.
    """
    items = getattr(headers, "_list", None)
    if type(items) is list:
        for item in items:
            if item[1] == b"authorization":
                break
        else:
            items.append((b"Authorization", b"authorization", value))
            return
    headers["Authorization"] = value.decode()


def _clone(error: Exception) -> Exception:
    # Every waiter raises its own copy: one instance raised in thousands of tasks
    # would grow one traceback without bound and tie their frames together.
    try:
        twin = copy.copy(error)
    except Exception:  # an exotic exception that cannot be copied
        return error
    twin.__cause__ = error.__cause__
    return twin


class _AsyncWaker:
    """An async flight's event, and the event loop it belongs to."""

    __slots__ = ("event", "loop")

    def __init__(self) -> None:
        self.loop = current_token()
        self.event = anyio.Event()


def _async_event(flight: Flight[AccessToken]) -> anyio.Event:
    assert isinstance(flight.waker, _AsyncWaker)
    return flight.waker.event


class PinkCloudSyncAuth(httpx.Auth):
    """Attaches a shared, automatically refreshed bearer token to API requests.

    Built by the clients, which bind it to their own `send` so that token requests
    use the client's transport, timeouts and retry policy. Requests to any origin
    other than the base URL's get no token and trigger no token request.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        api_key: str,
        api_secret: str | SecretStr,
        *,
        base_url: str | httpx.URL,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key
        self._api_secret = (
            api_secret if isinstance(api_secret, SecretStr) else SecretStr(api_secret)
        )
        base = httpx.URL(base_url)
        self._base_url = base
        self._token_url = base.join(TOKEN_PATH)
        self._origin = (base.scheme, base.host, base.port)
        reference = getattr(base, "_uri_reference", None)
        self._raw_origin = (
            (reference.scheme, reference.host, reference.port) if reference else self._origin
        )
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._lifecycle: TokenLifecycle[AccessToken] = TokenLifecycle()
        self._thread_lock = threading.Lock()
        self._async_sender: AsyncSender | None = None
        self._sync_sender: SyncSender | None = None
        self._request_factory: RequestFactory | None = None
        # Set by AsyncPinkCloudSyncClient.__aenter__: early refreshes run there.
        self.task_group: anyio.abc.TaskGroup | None = None
        self._background_flight: Flight[AccessToken] | None = None
        self._background_scope: anyio.CancelScope | None = None
        self._header_cache: tuple[AccessToken | None, bytes] = (None, b"")
        # The library's default timeout bounds each phase, not a request's total.
        self.unbudgeted_timeout: dict[str, float | None] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_key={self._api_key!r}, base_url={str(self._base_url)!r})"

    def bind(
        self,
        request_factory: RequestFactory,
        *,
        async_sender: AsyncSender | None = None,
        sync_sender: SyncSender | None = None,
    ) -> None:
        """Route token requests through a client: its settings, transport and retries."""
        self._request_factory = request_factory
        self._async_sender = async_sender
        self._sync_sender = sync_sender

    @property
    def token(self) -> AccessToken | None:
        """The token held now, if any (it may be due or expired)."""
        return self._lifecycle.token

    def _header_for(self, token: AccessToken) -> bytes:
        # Encoded once per token, not per request (a pydantic private attribute
        # would cost more to read than the encoding it saves). One tuple, read and
        # replaced whole, so threads never pair a token with another's header.
        cached_token, header = self._header_cache
        if cached_token is not token:
            header = token.authorization.get_secret_value().encode()
            self._header_cache = (token, header)
        return header

    def _deadline(self, request: httpx.Request, started: float) -> float | None:
        # Fixed by the retry loop once a request is retried; on a first attempt the
        # flow starts as the request does, so its budget runs from the flow's start.
        extensions = request.extensions
        if DEADLINE_EXTENSION in extensions:
            deadline: float | None = extensions[DEADLINE_EXTENSION]
            return deadline
        return deadline_for(started, extensions.get("timeout"), self.unbudgeted_timeout)

    def _fit(self, request: httpx.Request, deadline: float | None) -> None:
        """After waiting for a token: the request may only use what is left of its budget."""
        if deadline is None:
            return
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise RequestTimeoutError("The request's timeout ran out while it got a token.")
        apply_budget(request.extensions, deadline, remaining)

    def _is_for_api(self, request: httpx.Request) -> bool:
        url = request.url
        # URL.scheme/.host/.port read these very fields (host after an IDNA check
        # that both sides share); reading them directly is 3x cheaper per request.
        reference = getattr(url, "_uri_reference", None)
        if reference is not None:
            origin = (reference.scheme, reference.host, reference.port)
            return origin == self._raw_origin
        return (url.scheme, url.host, url.port) == self._origin

    def _secrets(self) -> tuple[str, ...]:
        token = self._lifecycle.token
        held = token.access_token.get_secret_value() if token is not None else ""
        return (self._api_secret.get_secret_value(), held)

    def _token_request(self, deadline: float | None) -> httpx.Request:
        if self._request_factory is None:
            raise ConfigurationError(
                "PinkCloudSyncAuth is used through AsyncPinkCloudSyncClient or "
                "PinkCloudSyncClient, which bind it to their transport."
            )
        # Built by the client, so its headers (User-Agent...) and timeout apply.
        request = self._request_factory(
            "POST",
            self._token_url,
            json={"api_key": self._api_key, "api_secret": self._api_secret.get_secret_value()},
            extensions={IDEMPOTENT_EXTENSION: True},
        )
        request.headers.pop("Authorization", None)
        if deadline is not None:
            # The token request may not outlive the request that needs it.
            request.extensions["timeout"] = trimmed(
                request.extensions.get("timeout"), deadline - self._clock()
            )
        return request

    def _read_token(self, response: httpx.Response, sent_at: float) -> AccessToken:
        token = token_from_response(
            response,
            sent_at=sent_at,
            refresh_margin=self._refresh_margin,
            secrets=self._secrets(),
        )
        logger.debug(
            "Got an access token for %s: lifetime %.0fs, took %.3fs",
            token.claims.sub or "an unknown subject",
            token.lifetime,
            self._clock() - sent_at,
        )
        return token

    def _connection_error(
        self, exc: httpx.TransportError, request: httpx.Request
    ) -> APIConnectionError:
        attempts = getattr(exc, "_pinkcloudsync_attempts", 1)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return APIConnectionError(
            f"The token request to {self._token_url} failed{tries}: {type(exc).__name__}",
            request=request,
        )

    def _log_advisory_failure(self, error: Exception) -> None:
        wait = max(0.0, self._lifecycle.refresh_not_before - self._clock())
        logger.warning(
            "Early token refresh failed (%s: %s); the current token is still valid and "
            "stays in use; next try in %.1fs",
            type(error).__name__,
            error,
            wait,
        )

    # ------------------------------------------------------------------ async

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._is_for_api(request):
            yield request
            return
        token = self._lifecycle.token
        started = self._clock()
        if token is None or started >= token.refresh_at:
            deadline = self._deadline(request, started)
            token = await self._async_acquire(deadline)
            self._fit(request, deadline)
        replayable = is_replayable(request)
        put_authorization(request.headers, self._header_for(token))
        response = yield request
        if response.status_code == 401 and replayable:
            # Refused: drop the token unless a newer one already replaced it, then
            # replay once. A second 401 goes back to the caller.
            # Read the refusal first: until then it holds its pool connection, and
            # the token request may need that very connection (a full pool deadlocks).
            await response.aread()
            self._lifecycle.invalidate(token)
            deadline = self._deadline(request, started)
            token = await self._async_acquire(deadline)
            self._fit(request, deadline)
            put_authorization(request.headers, self._header_for(token))
            yield request

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
                    raise _clone(flight.error)
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

    # ------------------------------------------------------------------- sync

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        if not self._is_for_api(request):
            yield request
            return
        token = self._lifecycle.token
        started = self._clock()
        if token is None or started >= token.refresh_at:
            deadline = self._deadline(request, started)
            token = self._sync_acquire(deadline)
            self._fit(request, deadline)
        replayable = is_replayable(request)
        put_authorization(request.headers, self._header_for(token))
        response = yield request
        if response.status_code == 401 and replayable:
            response.read()  # frees its pool connection for the token request
            with self._thread_lock:
                self._lifecycle.invalidate(token)
            deadline = self._deadline(request, started)
            token = self._sync_acquire(deadline)
            self._fit(request, deadline)
            put_authorization(request.headers, self._header_for(token))
            yield request

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
                    raise _clone(flight.error)
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
