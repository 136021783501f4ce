"""`PinkCloudSyncClient`: the synchronous twin, for scripts, notebooks and threads.

Same constructor, configuration, errors, retry policy and token lifecycle as the
async client, over the same decision code; the same named layers:

    send                        attaches the request's Deadline (when its timeout is the user's)
    _send_handling_admission    waits, FIFO, until a connection can take the request at once
    _send_handling_retries      the retry policy (the API's origin only; elsewhere httpx's
                                send as is) and the body read within the deadline; token
                                requests enter here, below admission
    httpx's send                its auth handling (PinkCloudSyncAuth), redirects, transport

Nothing here touches an event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from ._admission import AdmittedSyncStream, SyncAdmission, admission_timeout, fit_after_wait
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
from ._deadline import Deadline, attach_deadline, deadline_of
from ._exceptions import ConfigurationError
from ._models import AccessToken, SessionList
from ._redaction import Redactor
from ._retry_loop import RetryLoop, is_retry_candidate
from ._token_flights_sync import SyncTokenFlights
from .telemetry import Telemetry, TokenHooks

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = ["PinkCloudSyncClient"]


class PinkCloudSyncClient(httpx.Client):
    """An `httpx.Client` for the PinkCloudSync API; thread-safe token lifecycle.

    Threads share one token: one of them fetches while the others wait, an early
    refresh is carried by the one thread that noticed it while the others go on.

    `max_concurrency`: requests admitted at once, the other threads wait in FIFO
    order before they get a token (default: the pool's `max_connections`, 100; no
    limit with your own `transport=`; None: no limit). `http_backend`: "httpx" only
    (aiohttp is asynchronous; `PINKCLOUDSYNC_HTTP_BACKEND` is for the async client).
    `token_store` (a `pinkcloudsync_async.stores.TokenStore`; default: from
    `PINKCLOUDSYNC_REDIS_URL`, else in-process) shares the token with a fleet.
    Credentials, `hooks` and `telemetry` as for `AsyncPinkCloudSyncClient` (plain
    callables only).
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
        _sleep: Callable[[float], None] = time.sleep,
        **httpx_kwargs: Any,
    ) -> None:
        api_secret = wrap_secret(api_secret)  # first: no frame of ours holds it plain
        # Spelt as the async client accepts it (any case, spaces); the environment
        # variable is for the async client.
        if http_backend is not None and resolve_http_backend(http_backend, {}) != "httpx":
            raise ConfigurationError(
                f"PinkCloudSyncClient has one HTTP backend, 'httpx', not {http_backend!r}: "
                'http_backend="aiohttp" is for AsyncPinkCloudSyncClient.'
            )
        parts = build_parts(
            api_key=api_key,
            api_secret=api_secret,
            credentials=credentials,
            hooks=hooks,
            telemetry=telemetry,
            for_async=False,
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
        self.http_backend = "httpx"
        limit = admission_limit(max_concurrency, httpx_kwargs)
        self._admission = None if limit is None else SyncAdmission(limit)
        # A store built from the environment is the client's to close; one given is not.
        self._owned_store = parts.token_store if parts.owns_store else None
        # Telemetry and hooks; the admission layer reports its queue wait here
        # (`self._observer.record_admission_wait(seconds)`).
        self._observer = parts.observer
        # Composed before httpx's __init__ so that it receives the finished auth; the
        # bound methods it is given are only called once the client exists.
        source = parts.token_source(
            clock=_clock, build_request=self.build_request, send=self._send_token_request
        )
        self._tokens = SyncTokenFlights(source, clock=_clock, observer=parts.observer)
        self._pcs_auth = PinkCloudSyncAuth(self._tokens, base_url=parts.settings.base_url)
        self._pcs_base_url = parts.settings.base_url  # with its trailing slash, as httpx's
        super().__init__(auth=self._pcs_auth, **parts.httpx_kwargs)

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
        if value is not getattr(self, "_pcs_auth", None):
            raise AttributeError("The client's auth is its PinkCloudSyncAuth.")

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._close_store()

    def close(self) -> None:
        """Close the connection pool, and the token store if the client built it."""
        try:
            super().close()
        finally:
            self._close_store()

    def _close_store(self) -> None:
        store, self._owned_store = self._owned_store, None
        if store is not None:
            store.close()

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

    def send(
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
            return self._send_handling_admission(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        finally:
            if deadline is not None:
                deadline.release(request.extensions)  # the request may be sent again

    @property
    def max_concurrency(self) -> int | None:
        """Requests admitted at once (None: no limit)."""
        return None if self._admission is None else self._admission.limit

    def _send_handling_admission(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        # Token requests never pass here: they must not queue behind the requests
        # that wait for them. The 401 replay and the retries run inside one admission;
        # a streamed response keeps it until it is closed.
        admission = self._admission
        if admission is None:
            return self._send_handling_retries(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        waited_from = self._clock()
        queued = admission.acquire(admission_timeout(request.extensions))
        if queued:
            self._observer.record_admission_wait(self._clock() - waited_from)
        try:
            if queued:
                fit_after_wait(request.extensions)
            response = self._send_handling_retries(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        except BaseException:
            admission.release()
            raise
        if stream and not response.is_closed:  # (a transport may hand it over read)
            response.stream = AdmittedSyncStream(response.stream, admission.release)  # type: ignore[arg-type]
        else:
            admission.release()
        return response

    def _send_handling_retries(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        if not self._pcs_auth.is_for_api(request):
            # Our policies are for the API's origin; elsewhere the client is httpx.
            return super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        replayable = is_replayable(request)  # before a transport buffers the body
        retry: RetryLoop | None = None  # bookkeeping only once an attempt has failed
        # With a deadline, we read the body (within it); a stream is the caller's to read.
        bound = None if stream else deadline_of(request.extensions)
        while True:
            try:
                response = super().send(
                    request,
                    stream=stream or bound is not None,
                    auth=auth,
                    follow_redirects=follow_redirects,
                )
                if bound is not None:
                    bound.read_body(response)
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
                response.close()
            self._sleep(delay)
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

    def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        # Below admission; no bearer; never follow a redirect with the secret in the body.
        return self._send_handling_retries(request, stream=False, auth=None, follow_redirects=False)

    def get_token(self) -> AccessToken:
        """The current valid `AccessToken`, fetched or refreshed if needed.

        Raises the typed error of the token request; a timeout you set on the client
        bounds the wait (`RequestTimeoutError`).
        """
        deadline = Deadline.for_timeout(
            self.timeout.as_dict(), clock=self._clock, default=self._default_timeout
        )
        return self._tokens.get(deadline)

    def require_permissions(self, *permissions: str) -> AccessToken:
        """Fail early unless the token's claims grant every one of `permissions`.

        Gets a token if needed (no API call) and returns it; raises
        `PermissionDeniedError` naming the missing permissions (`admin` grants
        all), or the token request's typed error. The claims are the server's
        word at issue time; the server still decides each call.
        """
        token = self.get_token()
        check_permissions(token, permissions)
        return token

    def list_sessions(self) -> SessionList:
        """`GET /sync/sessions` as a `SessionList`. Raises only `PinkCloudSyncError`s:
        the `APIError` for an error status, `InvalidResponseError` for a body that
        is not a session list (or cannot be decoded), `RequestTimeoutError` and
        `APIConnectionError` when no answer came."""
        request = self.build_request("GET", SESSIONS_PATH)
        deadline = Deadline.for_timeout(
            request.extensions.get("timeout"), clock=self._clock, default=self._default_timeout
        )
        try:
            response = self.send(request)
        except httpx.RequestError as exc:
            # Raised below, outside the handler: httpx's error (its request holds
            # the bearer token) is not chained to ours.
            error = typed_call_error(exc, request, deadline)
        else:
            return parse_session_list(response, Redactor(*self._tokens.secrets()))
        raise error
