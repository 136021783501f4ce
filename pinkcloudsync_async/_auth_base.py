"""What both token flows of `PinkCloudSyncAuth` share: configuration, the token
request and its reading, and the per-request helpers (origin, header, budget)."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import httpx
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
from ._token_lifecycle import Flight, TokenLifecycle

__all__ = ["AuthBase", "copy_for_waiter", "is_replayable", "put_authorization"]

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


def copy_for_waiter(error: Exception) -> Exception:
    # Every waiter raises its own copy: one instance raised in thousands of tasks
    # would grow one traceback without bound and tie their frames together.
    try:
        twin = copy.copy(error)
    except Exception:  # an exotic exception that cannot be copied
        return error
    twin.__cause__ = error.__cause__
    return twin


class AuthBase:
    """State and helpers of `PinkCloudSyncAuth` that its async and sync flights share."""

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
