"""`AsyncPinkCloudSyncClient`: an httpx.AsyncClient with the token lifecycle and retries.

A request goes down named layers, as httpx's own do:

    send                        attaches the request's Deadline (when its timeout is the user's)
    _send_handling_admission    waits, FIFO, until a connection can take the request at once
    _send_handling_retries      the retry policy (the API's origin only; elsewhere httpx's
                                send as is) and the body read within the deadline; token
                                requests enter here, below admission
    httpx's send                its auth handling (PinkCloudSyncAuth), redirects, transport

Admission comes before authentication: a request gets its token only once it is
admitted, so a long queue never sends a token that died while it waited.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from pydantic import SecretStr

from ._admission import (
    AdmittedAsyncStream,
    AsyncAdmission,
    admission_timeout,
    fit_after_wait,
)
from ._auth import PinkCloudSyncAuth, is_replayable
from ._client_base import (
    DEFAULT,
    SESSIONS_PATH,
    admission_limit,
    build_parts,
    check_permissions,
    parse_session_list,
    refuse_new_base_url,
    typed_call_error,
)
from ._config import resolve_http_backend, wrap_secret
from ._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
)
from ._credentials import CredentialsCallable
from ._deadline import Deadline, attach_deadline, cutoff, deadline_of
from ._models import AccessToken, SessionList
from ._redaction import Redactor
from ._retry_loop import RetryLoop, is_retry_candidate
from ._token_flights_async import AsyncTokenFlights
from ._transports import with_own_transports
from .telemetry import Telemetry, TokenHooks

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = ["AsyncPinkCloudSyncClient"]


class AsyncPinkCloudSyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` for the PinkCloudSync API.

    Every request to the base URL's origin carries a shared bearer token, fetched
    lazily, refreshed before it expires and once after a 401; 429/5xx and
    connection failures are retried by policy. Any httpx option passes through.
    Use `async with` so early refreshes run in the background. The connection pool
    and proxy transports the client builds itself follow the event loop.

    `max_concurrency`: requests admitted at once, the rest wait in FIFO order before
    they get a token (default: the pool's `max_connections`, 100; no limit with your
    own `transport=`; None: no limit). `http_backend`: "httpx" (default) or
    "aiohttp" (asyncio only, the `[aiohttp]` extra); argument >
    `PINKCLOUDSYNC_HTTP_BACKEND` > "httpx". Raises ConfigurationError for bad settings.
    `token_store` (a `pinkcloudsync_async.stores.TokenStore`; default: from
    `PINKCLOUDSYNC_REDIS_URL`, else in-process) shares the token with a fleet.
    The key and secret come from `api_key`/`api_secret`, `credentials` (a callable
    or async callable returning the pair) or the environment (`PINKCLOUDSYNC_API_KEY`,
    `..._SECRET`, or their `_FILE`), read again for each token request. `hooks`
    (`TokenHooks`) and `telemetry` (`Telemetry`) observe the token lifecycle.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | SecretStr | None = None,
        *,
        credentials: CredentialsCallable | None = None,
        hooks: TokenHooks | None = None,
        telemetry: Telemetry | None = None,
        base_url: str | httpx.URL | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        allow_insecure_http: bool = False,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_backoff_base: float = DEFAULT_RETRY_BACKOFF_BASE,
        retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        max_concurrency: int | None = DEFAULT,
        http_backend: str | None = None,
        token_store: TokenStore | None = None,
        _clock: Callable[[], float] = time.monotonic,
        _sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        **httpx_kwargs: Any,
    ) -> None:
        api_secret = wrap_secret(api_secret)  # first: no frame of ours holds it plain
        parts = build_parts(
            api_key=api_key,
            api_secret=api_secret,
            credentials=credentials,
            hooks=hooks,
            telemetry=telemetry,
            for_async=True,
            base_url=base_url,
            refresh_margin=refresh_margin,
            allow_insecure_http=allow_insecure_http,
            max_retries=max_retries,
            retry_backoff_base=retry_backoff_base,
            retry_backoff_max=retry_backoff_max,
            max_retry_after=max_retry_after,
            token_store=token_store,
            httpx_kwargs=httpx_kwargs,
        )
        self._clock = _clock
        self._sleep = _sleep
        self._retry_policy = parts.policy
        self._default_timeout = parts.default_timeout
        # The environment picks the backend of a transport the client builds: with
        # your own `transport=` it does not apply (an argument wins over it).
        own = "transport" in httpx_kwargs
        self.http_backend = resolve_http_backend(http_backend, {} if own else None)
        limit = admission_limit(max_concurrency, httpx_kwargs)
        self._admission = None if limit is None else AsyncAdmission(limit)
        # A store built from the environment is the client's to close; one given is not.
        self._owned_store = parts.token_store if parts.owns_store else None
        # Telemetry and hooks; the admission layer reports its queue wait here
        # (`self._observer.record_admission_wait(seconds)`).
        self._observer = parts.observer
        # Composed before httpx's __init__ so that it receives the finished auth; the
        # bound methods it is given are only called once the client exists.
        source = parts.token_source(
            clock=_clock, build_request=self.build_request, asend=self._send_token_request
        )
        self._tokens = AsyncTokenFlights(source, clock=_clock, observer=parts.observer)
        self._pcs_auth = PinkCloudSyncAuth(self._tokens, base_url=parts.settings.base_url)
        self._pcs_base_url = parts.settings.base_url  # with its trailing slash, as httpx's
        super().__init__(
            auth=self._pcs_auth, **with_own_transports(parts.httpx_kwargs, self.http_backend)
        )

    def __repr__(self) -> str:
        try:
            base_url = str(self.base_url)
        except AttributeError:  # a client whose construction failed, in a traceback's locals
            return f"{type(self).__name__}(<not built>)"
        return f"{type(self).__name__}(base_url={base_url!r})"

    @property
    def auth(self) -> PinkCloudSyncAuth:
        """The client's `PinkCloudSyncAuth` (it cannot be replaced)."""
        return self._pcs_auth

    @auth.setter
    def auth(self, value: Any) -> None:
        # httpx's __init__ assigns it once; replacing it later would bypass the lifecycle.
        if value is not getattr(self, "_pcs_auth", None):
            raise AttributeError("The client's auth is its PinkCloudSyncAuth.")

    @property
    def base_url(self) -> httpx.URL:
        """The base URL relative URLs join onto; fixed at construction (it is the
        API's origin, where the token goes): setting another raises ConfigurationError."""
        # httpx reads this twice per request (URL merging): our own attribute, not a
        # property lookup through super().
        return self._pcs_base_url

    @base_url.setter
    def base_url(self, url: httpx.URL | str) -> None:
        refuse_new_base_url(self._pcs_base_url, url)

    async def __aenter__(self) -> AsyncPinkCloudSyncClient:
        await super().__aenter__()
        # The token side owns a task group while entered: early refreshes run there.
        await self._tokens.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            await self._tokens.__aexit__(exc_type, exc_value, traceback)
        finally:
            try:
                await super().__aexit__(exc_type, exc_value, traceback)
            finally:
                await self._close_store()

    async def aclose(self) -> None:
        """Close the connection pool, and the token store if the client built it."""
        try:
            await super().aclose()
        finally:
            await self._close_store()

    async def _close_store(self) -> None:
        store, self._owned_store = self._owned_store, None
        if store is not None:
            await store.aclose()

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send with the retry policy; after the last attempt its response is returned.

        A timeout you set (on the client or this request) is the request's deadline,
        across its retries, its wait for a token and its 401 replay.
        """
        deadline = attach_deadline(request.extensions, self._clock, self._default_timeout)
        try:
            return await self._send_handling_admission(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        finally:
            if deadline is not None:
                deadline.release(request.extensions)  # the request may be sent again

    @property
    def max_concurrency(self) -> int | None:
        """Requests admitted at once (None: no limit)."""
        return None if self._admission is None else self._admission.limit

    async def _send_handling_admission(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        # Token requests never pass here: they must not queue behind the requests
        # that wait for them. The 401 replay and the retries run inside one admission;
        # a streamed response keeps it until it is closed.
        admission = self._admission
        if admission is None:
            return await self._send_handling_retries(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        queued = not admission.try_acquire()
        if queued:
            waited_from = self._clock()
            await admission.acquire(admission_timeout(request.extensions))
            self._observer.record_admission_wait(self._clock() - waited_from)
        generation = admission.generation  # the slot's: it may outlive its event loop
        try:
            if queued:
                fit_after_wait(request.extensions)
            response = await self._send_handling_retries(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        except BaseException:
            admission.release(generation)
            raise
        if stream and not response.is_closed:  # (a transport may hand it over read)
            release = functools.partial(admission.release, generation)
            response.stream = AdmittedAsyncStream(response.stream, release)  # type: ignore[arg-type]
        else:
            admission.release(generation)
        return response

    async def _send_handling_retries(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        if not self._pcs_auth.is_for_api(request):
            # Our policies are for the API's origin; elsewhere the client is httpx.
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        replayable = is_replayable(request)  # before a transport buffers the body
        retry: RetryLoop | None = None  # bookkeeping only once an attempt has failed
        deadline = deadline_of(request.extensions)
        # With a deadline, we read the body (within it); a stream is the caller's to read.
        bound = None if stream else deadline
        while True:
            try:
                if deadline is None:  # the common case: no context manager to enter
                    response = await super().send(
                        request, stream=stream, auth=auth, follow_redirects=follow_redirects
                    )
                else:
                    with cutoff(deadline):  # the whole attempt, trickling headers included
                        response = await super().send(
                            request,
                            stream=stream or bound is not None,
                            auth=auth,
                            follow_redirects=follow_redirects,
                        )
                        if bound is not None:
                            await bound.aread_body(response)
            except httpx.TransportError as exc:
                retry = retry or self._retry_loop(request, replayable)
                delay = retry.after_error(exc)
                if delay is None:
                    raise
            else:
                if retry is None and not is_retry_candidate(response):
                    return response
                retry = retry or self._retry_loop(request, replayable)
                delay = retry.after_response(response)
                if delay is None:
                    return response
                await response.aclose()
            await self._sleep(delay)
            retry.next_attempt()

    def _retry_loop(self, request: httpx.Request, replayable: bool) -> RetryLoop:
        # Built only once an attempt has failed: the fast path pays nothing for it.
        return RetryLoop(
            request,
            self._retry_policy,
            self._clock,
            replayable=replayable,
            observer=self._observer,
        )

    async def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        # Below admission (a token request must never queue behind the requests
        # that wait for it); auth=None: it carries no bearer; never follow a
        # redirect with the secret in the body.
        return await self._send_handling_retries(
            request, stream=False, auth=None, follow_redirects=False
        )

    async def get_token(self) -> AccessToken:
        """The current valid `AccessToken`, fetched or refreshed if needed.

        Raises the typed error of the token request; a timeout you set on the client
        bounds the wait (`RequestTimeoutError`).
        """
        deadline = Deadline.for_timeout(
            self.timeout.as_dict(), clock=self._clock, default=self._default_timeout
        )
        return await self._tokens.get(deadline)

    async def require_permissions(self, *permissions: str) -> AccessToken:
        """Fail early unless the token's claims grant every one of `permissions`.

        Gets a token if needed (no API call) and returns it; raises
        `PermissionDeniedError` naming the missing permissions (`admin` grants
        all), or the token request's typed error. The claims are the server's
        word at issue time; the server still decides each call.
        """
        token = await self.get_token()
        check_permissions(token, permissions)
        return token

    async def list_sessions(self) -> SessionList:
        """`GET /sync/sessions` as a `SessionList`. Raises only `PinkCloudSyncError`s:
        the `APIError` for an error status, `InvalidResponseError` for a body that
        is not a session list (or cannot be decoded), `RequestTimeoutError` and
        `APIConnectionError` when no answer came."""
        request = self.build_request("GET", SESSIONS_PATH)
        deadline = Deadline.for_timeout(
            request.extensions.get("timeout"), clock=self._clock, default=self._default_timeout
        )
        try:
            response = await self.send(request)
        except httpx.RequestError as exc:
            # Raised below, outside the handler: httpx's error (its request holds
            # the bearer token) is not chained to ours.
            error = typed_call_error(exc, request, deadline)
        else:
            return parse_session_list(response, Redactor(*self._tokens.secrets()))
        raise error
