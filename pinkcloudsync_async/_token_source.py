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
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
from pydantic import SecretStr

from ._constants import ATTEMPTS_EXTENSION, IDEMPOTENT_EXTENSION, LOGGER_NAME
from ._credentials import CredentialProvider, Credentials
from ._deadline import Deadline
from ._exceptions import AuthenticationError, PinkCloudSyncError, request_failure_error
from ._models import AccessToken
from ._redaction import Redactor, hide_in_reason_phrase
from ._token_exchange import token_from_response
from .telemetry import TokenEvent
from .telemetry._observer import Observer

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

# The API's code for a refused key or secret (as opposed to a refused token).
INVALID_CREDENTIALS = "invalid_credentials"

AsyncSender = Callable[[httpx.Request], Awaitable[httpx.Response]]
SyncSender = Callable[[httpx.Request], httpx.Response]
RequestFactory = Callable[..., httpx.Request]


def token_request_error(
    exc: httpx.RequestError, request: httpx.Request, deadline: Deadline | None
) -> PinkCloudSyncError:
    """The typed error for a token request that got no usable response, both twins.

    The request's deadline spent, or an answer too slow (read, write, pool
    timeouts): `RequestTimeoutError`. A body that cannot be decoded:
    `InvalidResponseError`. The host not reached (connect errors and timeouts,
    anything else): `APIConnectionError`. The message names the URL and the
    attempts made (`ATTEMPTS_EXTENSION`, set by the retry layer), never the body;
    the error's request is a copy without the body (it holds the API secret).
    """
    return request_failure_error(
        exc,
        what=f"The token request to {request.url.copy_with(query=None)}",
        request=request,
        spent=deadline is not None and deadline.remaining() <= 0,
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

    def sent_secrets(self) -> tuple[SecretStr, ...]: ...


class TokenSource:
    """Performs token requests through one client, with credentials read for each.

    `credentials` is asked for the key and secret at every token request (a
    rotated file or vault secret takes effect at the next one). When the endpoint
    answers 401 `invalid_credentials` and the credentials read again differ from
    those just sent, the request is made once more at once with the new ones (a
    rotation costs no failed call). `build_request` is the client's; `send` (sync)
    or `asend` (async) is the client's send layer for token requests.
    `refresh_margin` (seconds) shapes when the tokens it returns become due;
    `clock` is monotonic seconds, `wall_clock` epoch seconds; `observer` is told
    each response and each refusal, and calls the credentials-rejected hook.
    """

    def __init__(
        self,
        *,
        credentials: CredentialProvider,
        token_url: httpx.URL,
        refresh_margin: float,
        clock: Callable[[], float],
        build_request: RequestFactory,
        send: SyncSender | None = None,
        asend: AsyncSender | None = None,
        observer: Observer | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.token_url = token_url
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._wall_clock = wall_clock
        self._build_request = build_request
        self._send = send
        self._asend = asend
        self._observer = observer or Observer(for_async=asend is not None)
        # The secrets sent so far (the last two: a rotation's old and new), kept
        # wrapped, so that log records can be redacted of them.
        self._sent: tuple[SecretStr, ...] = ()

    def sent_secrets(self) -> tuple[SecretStr, ...]:
        """The API secrets this source has sent (wrapped: never shown)."""
        return self._sent

    def refused(self, token: AccessToken) -> None:
        """The API refused `token` (401). Nothing to forget here: the flights drop it."""

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(credentials={self.credentials!r}, token_url={str(self.token_url)!r})"

    async def afetch(
        self, deadline: Deadline | None, *, held: AccessToken | None = None
    ) -> AccessToken:
        """A new token, from an event loop. `held` is the token in use, kept out of errors."""
        assert self._asend is not None, "a TokenSource for a sync client"
        credentials = await self.credentials.aread()
        try:
            return await self._aexchange(credentials, deadline, held)
        except AuthenticationError as exc:
            if exc.error != INVALID_CREDENTIALS:
                raise
            # Credentials that cannot change are not read again.
            renewed = await self.credentials.aread() if self.credentials.changes else credentials
            retrying = not renewed.same_as(credentials)
            await self._observer.anotify([self._rejected(credentials, retrying=retrying)])
            if not retrying:
                raise self._refused(exc, credentials) from None
        try:
            return await self._aexchange(renewed, deadline, held)
        except AuthenticationError as exc:
            raise self._refused(exc, renewed) from None

    def fetch(self, deadline: Deadline | None, *, held: AccessToken | None = None) -> AccessToken:
        """A new token, from a thread. `held` is the token in use, kept out of errors."""
        assert self._send is not None, "a TokenSource for an async client"
        credentials = self.credentials.read()
        try:
            return self._exchange(credentials, deadline, held)
        except AuthenticationError as exc:
            if exc.error != INVALID_CREDENTIALS:
                raise
            # Credentials that cannot change are not read again.
            renewed = self.credentials.read() if self.credentials.changes else credentials
            retrying = not renewed.same_as(credentials)
            self._observer.notify([self._rejected(credentials, retrying=retrying)])
            if not retrying:
                raise self._refused(exc, credentials) from None
        try:
            return self._exchange(renewed, deadline, held)
        except AuthenticationError as exc:
            raise self._refused(exc, renewed) from None

    async def _aexchange(
        self, credentials: Credentials, deadline: Deadline | None, held: AccessToken | None
    ) -> AccessToken:
        assert self._asend is not None
        request = self._request(credentials, deadline)
        sent_at, sent_at_wall = self._clock(), self._wall_clock()
        try:
            response = await self._asend(request)
        except httpx.RequestError as exc:
            # Raised below, outside the handler: the httpx error (its request holds
            # the API secret in its body) is not chained to ours.
            error = token_request_error(exc, request, deadline)
        else:
            return self._read(response, credentials, sent_at, sent_at_wall, held)
        raise error

    def _exchange(
        self, credentials: Credentials, deadline: Deadline | None, held: AccessToken | None
    ) -> AccessToken:
        assert self._send is not None
        request = self._request(credentials, deadline)
        sent_at, sent_at_wall = self._clock(), self._wall_clock()
        try:
            response = self._send(request)
        except httpx.RequestError as exc:
            # Raised below, outside the handler: the httpx error (its request holds
            # the API secret in its body) is not chained to ours.
            error = token_request_error(exc, request, deadline)
        else:
            return self._read(response, credentials, sent_at, sent_at_wall, held)
        raise error

    def _rejected(self, credentials: Credentials, *, retrying: bool) -> TokenEvent:
        if retrying:
            logger.info(
                "The token endpoint refused the credentials of %s; they changed since "
                "(a rotation): trying once more with the new ones",
                credentials.api_key,
            )
        return self._observer.credentials_rejected(
            credentials.api_key, self.credentials.description, retrying=retrying
        )

    def _refused(self, error: AuthenticationError, credentials: Credentials) -> AuthenticationError:
        if error.error == INVALID_CREDENTIALS:
            # Where the refused credentials came from is the first thing to check.
            error.add_note(
                f"pinkcloudsync: the API key {credentials.api_key} was refused; "
                f"{self.credentials.description}"
            )
        return error

    def _request(self, credentials: Credentials, deadline: Deadline | None) -> httpx.Request:
        if credentials.api_secret not in self._sent:
            self._sent = (*self._sent[-1:], credentials.api_secret)
        request = self._build_request(
            "POST",
            self.token_url,
            json={
                "api_key": credentials.api_key,
                "api_secret": credentials.api_secret.get_secret_value(),
            },
            extensions={IDEMPOTENT_EXTENSION: True},
        )
        request.headers.pop("Authorization", None)
        if deadline is not None:
            # The token request may not outlive the request that needs it.
            deadline.attach(request.extensions)
            request.extensions["timeout"] = deadline.clamp(request.extensions.get("timeout"))
        return request

    def _read(
        self,
        response: httpx.Response,
        credentials: Credentials,
        sent_at: float,
        sent_at_wall: float,
        held: AccessToken | None,
    ) -> AccessToken:
        self._observer.response(
            response.status_code, response.extensions.get(ATTEMPTS_EXTENSION, 1)
        )
        secrets = Redactor(credentials.api_secret, None if held is None else held.access_token)
        hide_in_reason_phrase(response, secrets)  # before any frame of ours can fail
        token = token_from_response(
            response,
            sent_at=sent_at,
            refresh_margin=self.refresh_margin,
            secrets=secrets,
            sent_at_wall=sent_at_wall,
        )
        logger.debug(
            "Got an access token for %s: lifetime %.0fs, took %.3fs",
            token.claims.sub or "an unknown subject",
            token.lifetime,
            self._clock() - sent_at,
        )
        return token
