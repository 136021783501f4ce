"""`PinkCloudSyncAuth`: the httpx.Auth flow, and only what httpx's `Auth` is for.

It checks the request's origin, attaches the bearer header, and replays once after
a 401. Getting the token is its collaborator's job, passed in at construction: an
`AsyncTokenSide` for `async_auth_flow`, a `SyncTokenSide` for `sync_auth_flow`
(the token flights over the lifecycle and a token source). A token store, a
credential provider or event hooks plug in there, without touching this flow.

Nothing is held across a `yield`: httpx may `aclose()` a flow at any yield when its
caller is cancelled, and a lock held there would stay held.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Generator
from typing import Protocol, cast

import httpx

from ._constants import DEADLINE_EXTENSION
from ._deadline import Deadline
from ._exceptions import ConfigurationError
from ._models import AccessToken

__all__ = [
    "AsyncTokenSide",
    "PinkCloudSyncAuth",
    "SyncTokenSide",
    "is_replayable",
    "with_url_credentials",
]


def is_replayable(request: httpx.Request) -> bool:
    """Can this request's body be sent again? Ask before the first send: a transport
    that buffers a generator body (MockTransport does) swaps in a ByteStream."""
    return isinstance(request.stream, httpx.ByteStream)


def with_url_credentials(request: httpx.Request) -> httpx.Request:
    """A request to another origin, as httpx sends it when it has no auth: the
    URL's credentials (`https://user:pass@host/`), if any, as Basic auth."""
    url = request.url
    if url.username or url.password:
        # BasicAuth's flow sets the header on the request and yields it.
        return next(httpx.BasicAuth(url.username, url.password).sync_auth_flow(request))
    return request


class AsyncTokenSide(Protocol):
    """What the async flow needs from the token side (see `AsyncTokenFlights`)."""

    @property
    def token(self) -> AccessToken | None: ...

    def fresh(self) -> AccessToken | None: ...

    async def acquire(self, deadline: Deadline | None) -> AccessToken: ...

    def invalidate(self, token: AccessToken) -> None: ...


class SyncTokenSide(Protocol):
    """What the sync flow needs from the token side (see `SyncTokenFlights`)."""

    @property
    def token(self) -> AccessToken | None: ...

    def fresh(self) -> AccessToken | None: ...

    def acquire(self, deadline: Deadline | None) -> AccessToken: ...

    def invalidate(self, token: AccessToken) -> None: ...


class PinkCloudSyncAuth(httpx.Auth):
    """Attaches a shared, automatically refreshed bearer token to API requests.

    `base_url` fixes the API's origin (scheme, host, port): requests to any other
    origin get no token and trigger no token request. `tokens` is the async or the
    sync token side; the clients build and pass it. A request's `Deadline` (in its
    extensions) bounds its wait for a token: past it, `RequestTimeoutError`.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self, tokens: AsyncTokenSide | SyncTokenSide, *, base_url: str | httpx.URL
    ) -> None:
        self.tokens = tokens
        # Which flow may run is fixed here, once, not tested per request.
        self._async: AsyncTokenSide | None = None
        self._sync: SyncTokenSide | None = None
        if inspect.iscoroutinefunction(tokens.acquire):
            self._async = cast(AsyncTokenSide, tokens)
        else:
            self._sync = cast(SyncTokenSide, tokens)
        base = httpx.URL(base_url)
        self.origin = (base.scheme, base.host, base.port)
        # One (token, header) pair, read and replaced whole, so threads never pair
        # a token with another's header; encoded once per token, not per request.
        self._header: tuple[AccessToken | None, str] = (None, "")

    def __repr__(self) -> str:
        scheme, host, port = self.origin
        where = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
        return f"{type(self).__name__}(origin={where!r})"

    @property
    def token(self) -> AccessToken | None:
        """The token held now, if any (it may be due or expired)."""
        return self.tokens.token

    def is_for_api(self, request: httpx.Request) -> bool:
        """Does this request go to the API's own origin?"""
        url = request.url
        return (url.scheme, url.host, url.port) == self.origin

    def _authorize(self, request: httpx.Request, token: AccessToken) -> None:
        held, header = self._header
        if held is not token:
            header = token.authorization.get_secret_value()
            self._header = (token, header)
        request.headers["Authorization"] = header

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self.is_for_api(request):
            yield with_url_credentials(request)
            return
        tokens = self._async
        if tokens is None:
            raise ConfigurationError("This PinkCloudSyncAuth serves a sync client.")
        token = tokens.fresh()
        if token is None:
            deadline: Deadline | None = request.extensions.get(DEADLINE_EXTENSION)
            token = await tokens.acquire(deadline)
            if deadline is not None:
                deadline.fit(request.extensions, "while it got a token")
        replayable = is_replayable(request)
        self._authorize(request, token)
        response = yield request
        if response.status_code == 401 and replayable and self.is_for_api(response.request):
            # Refused by the API itself (a 401 from another origin we were redirected
            # to says nothing about our token): drop the token unless a newer one
            # already replaced it, then replay once. A second 401 goes back to the
            # caller. Read the refusal first: until then it holds its pool
            # connection, and the token request may need that very connection (a
            # full pool deadlocks).
            await response.aread()
            tokens.invalidate(token)
            deadline = request.extensions.get(DEADLINE_EXTENSION)
            token = await tokens.acquire(deadline)
            if deadline is not None:
                deadline.fit(request.extensions, "while it got a token")
            self._authorize(request, token)
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        if not self.is_for_api(request):
            yield with_url_credentials(request)
            return
        tokens = self._sync
        if tokens is None:
            raise ConfigurationError("This PinkCloudSyncAuth serves an async client.")
        token = tokens.fresh()
        if token is None:
            deadline: Deadline | None = request.extensions.get(DEADLINE_EXTENSION)
            token = tokens.acquire(deadline)
            if deadline is not None:
                deadline.fit(request.extensions, "while it got a token")
        replayable = is_replayable(request)
        self._authorize(request, token)
        response = yield request
        if response.status_code == 401 and replayable and self.is_for_api(response.request):
            response.read()  # frees its pool connection for the token request
            tokens.invalidate(token)
            deadline = request.extensions.get(DEADLINE_EXTENSION)
            token = tokens.acquire(deadline)
            if deadline is not None:
                deadline.fit(request.extensions, "while it got a token")
            self._authorize(request, token)
            yield request
