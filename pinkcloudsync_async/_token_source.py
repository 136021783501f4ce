"""`TokenSource`: the one thing that performs `POST /auth/token`, async or sync.

It builds the token request with the client's own `build_request` (so the client's
headers and timeout apply) and sends it through the client's send layer *below*
admission, with retries (never through the auth, never following a redirect with
the secret in the body). Its failures become typed errors in one place for both
twins: a timeout is a `RequestTimeoutError`, any other transport failure an
`APIConnectionError`, an error status the `APIError` for it, a bad payload an
`InvalidResponseError`; none of their messages holds the secret or a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
from pydantic import SecretStr

from ._constants import ATTEMPTS_EXTENSION, IDEMPOTENT_EXTENSION, LOGGER_NAME
from ._deadline import Deadline
from ._exceptions import APIConnectionError, PinkCloudSyncError, RequestTimeoutError
from ._models import AccessToken
from ._token_exchange import token_from_response

__all__ = [
    "AsyncSender",
    "RequestFactory",
    "SyncSender",
    "TokenFetcher",
    "TokenSource",
    "log_advisory_failure",
    "token_request_error",
]

logger = logging.getLogger(LOGGER_NAME)

AsyncSender = Callable[[httpx.Request], Awaitable[httpx.Response]]
SyncSender = Callable[[httpx.Request], httpx.Response]
RequestFactory = Callable[..., httpx.Request]


def token_request_error(
    exc: httpx.TransportError, request: httpx.Request, deadline: Deadline | None
) -> PinkCloudSyncError:
    """The typed error for a token request that got no response, for both twins.

    The request's deadline spent, or an answer too slow (read, write, pool
    timeouts): `RequestTimeoutError`. The host not reached (connect errors and
    timeouts, anything else): `APIConnectionError`. The message names the URL and
    the attempts made (`ATTEMPTS_EXTENSION`, set by the retry layer), never the body.
    """
    if isinstance(exc, PinkCloudSyncError):
        return exc  # already typed below us
    attempts = request.extensions.get(ATTEMPTS_EXTENSION, 1)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    token_url = request.url.copy_with(query=None)
    spent = deadline is not None and deadline.remaining() <= 0
    if spent or (
        isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)
    ):
        return RequestTimeoutError(
            f"The token request to {token_url} timed out{tries}: {type(exc).__name__}",
            request=request,
        )
    return APIConnectionError(
        f"The token request to {token_url} failed{tries}: {type(exc).__name__}",
        request=request,
    )


def log_advisory_failure(error: Exception, wait: float) -> None:
    """One WARNING for a failed early refresh: the held token serves on; next try in
    `wait` seconds. The error's message is already free of secrets."""
    logger.warning(
        "Early token refresh failed (%s: %s); the current token is still valid and "
        "stays in use; next try in %.1fs",
        type(error).__name__,
        error,
        max(0.0, wait),
    )


class TokenFetcher(Protocol):
    """What the token flights call for a new token: a `TokenSource`, or a token
    store's source wrapping one (see `pinkcloudsync_async.stores`)."""

    async def afetch(
        self, deadline: Deadline | None, *, held: AccessToken | None = None
    ) -> AccessToken: ...

    def fetch(
        self, deadline: Deadline | None, *, held: AccessToken | None = None
    ) -> AccessToken: ...

    def refused(self, token: AccessToken) -> None: ...


class TokenSource:
    """Performs token requests for one API key through one client.

    `build_request` is the client's; `send` (sync) or `asend` (async) is the client's
    send layer for token requests. `refresh_margin` (seconds) shapes when the tokens
    it returns become due; `clock` is monotonic seconds.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: SecretStr,
        token_url: httpx.URL,
        refresh_margin: float,
        clock: Callable[[], float],
        build_request: RequestFactory,
        send: SyncSender | None = None,
        asend: AsyncSender | None = None,
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self.token_url = token_url
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._build_request = build_request
        self._send = send
        self._asend = asend

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(api_key={self._api_key!r}, token_url={str(self.token_url)!r})"

    async def afetch(
        self, deadline: Deadline | None, *, held: AccessToken | None = None
    ) -> AccessToken:
        """A new token, from an event loop. `held` is the token in use, kept out of errors."""
        assert self._asend is not None, "a TokenSource for a sync client"
        request = self._request(deadline)
        sent_at = self._clock()
        try:
            response = await self._asend(request)
        except httpx.TransportError as exc:
            raise token_request_error(exc, request, deadline) from exc
        return self._read(response, sent_at, held)

    def fetch(self, deadline: Deadline | None, *, held: AccessToken | None = None) -> AccessToken:
        """A new token, from a thread. `held` is the token in use, kept out of errors."""
        assert self._send is not None, "a TokenSource for an async client"
        request = self._request(deadline)
        sent_at = self._clock()
        try:
            response = self._send(request)
        except httpx.TransportError as exc:
            raise token_request_error(exc, request, deadline) from exc
        return self._read(response, sent_at, held)

    def refused(self, token: AccessToken) -> None:
        """The API refused `token` (401). Nothing to forget here: the flights drop it."""

    def _request(self, deadline: Deadline | None) -> httpx.Request:
        request = self._build_request(
            "POST",
            self.token_url,
            json={"api_key": self._api_key, "api_secret": self._api_secret.get_secret_value()},
            extensions={IDEMPOTENT_EXTENSION: True},
        )
        request.headers.pop("Authorization", None)
        if deadline is not None:
            # The token request may not outlive the request that needs it.
            deadline.attach(request.extensions)
            request.extensions["timeout"] = deadline.clamp(request.extensions.get("timeout"))
        return request

    def _read(
        self, response: httpx.Response, sent_at: float, held: AccessToken | None
    ) -> AccessToken:
        secrets: tuple[str, ...] = (self._api_secret.get_secret_value(),)
        if held is not None:
            secrets += (held.access_token.get_secret_value(),)
        token = token_from_response(
            response, sent_at=sent_at, refresh_margin=self.refresh_margin, secrets=secrets
        )
        logger.debug(
            "Got an access token for %s: lifetime %.0fs, took %.3fs",
            token.claims.sub or "an unknown subject",
            token.lifetime,
            self._clock() - sent_at,
        )
        return token
