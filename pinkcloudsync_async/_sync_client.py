"""`PinkCloudSyncClient`: the synchronous twin, for scripts, notebooks and threads.

Same constructor, configuration, errors, retry policy and token lifecycle as the
async client, over the same decision code; the same named layers:

    send                        attaches the request's Deadline (when its timeout is the user's)
    _send_handling_admission    (no limit yet: where requests will queue before the token)
    _send_handling_retries      the retry policy; token requests enter here, below admission
    httpx's send                its auth handling (PinkCloudSyncAuth), redirects, transport

Nothing here touches an event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from ._auth import PinkCloudSyncAuth, is_replayable
from ._client_base import SESSIONS_PATH, build_parts, check_permissions, parse_session_list
from ._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
)
from ._credentials import CredentialsCallable
from ._deadline import Deadline, attach_deadline
from ._models import AccessToken, SessionList
from ._retry_loop import RetryLoop, is_retry_candidate
from ._token_flights_sync import SyncTokenFlights
from .telemetry import Telemetry, TokenHooks

__all__ = ["PinkCloudSyncClient"]


class PinkCloudSyncClient(httpx.Client):
    """An `httpx.Client` for the PinkCloudSync API; thread-safe token lifecycle.

    Threads share one token: one of them fetches while the others wait, an early
    refresh is carried by the one thread that noticed it while the others go on.
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
        _clock: Callable[[], float] = time.monotonic,
        _sleep: Callable[[float], None] = time.sleep,
        **httpx_kwargs: Any,
    ) -> None:
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
            httpx_kwargs=httpx_kwargs,
        )
        self._clock = _clock
        self._sleep = _sleep
        self._retry_policy = parts.policy
        self._default_timeout = parts.default_timeout
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
        super().__init__(auth=self._pcs_auth, **parts.httpx_kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r})"

    @property
    def auth(self) -> PinkCloudSyncAuth:
        """The client's `PinkCloudSyncAuth` (it cannot be replaced)."""
        return self._pcs_auth

    @auth.setter
    def auth(self, value: Any) -> None:
        if value is not getattr(self, "_pcs_auth", None):
            raise AttributeError("The client's auth is its PinkCloudSyncAuth.")

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

    def _send_handling_admission(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        # Admits every request for now: the layer where threads will wait for a
        # connection before they get a token. Token requests never pass here.
        return self._send_handling_retries(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )

    def _send_handling_retries(
        self, request: httpx.Request, *, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        replayable = is_replayable(request)  # before a transport buffers the body
        retry: RetryLoop | None = None  # bookkeeping only once an attempt has failed
        while True:
            try:
                response = super().send(
                    request, stream=stream, auth=auth, follow_redirects=follow_redirects
                )
            except httpx.TransportError as exc:
                retry = retry or RetryLoop(
                    request,
                    self._retry_policy,
                    self._clock,
                    replayable=replayable,
                    observer=self._observer,
                )
                delay = retry.after_error(exc)
                if delay is None:
                    raise
            else:
                if retry is None and not is_retry_candidate(response):
                    return response
                retry = retry or RetryLoop(
                    request,
                    self._retry_policy,
                    self._clock,
                    replayable=replayable,
                    observer=self._observer,
                )
                delay = retry.after_response(response)
                if delay is None:
                    return response
                response.close()
            self._sleep(delay)
            retry.next_attempt()

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
        """`GET /sync/sessions` as a `SessionList`; raises the typed errors on failure."""
        response = self.get(SESSIONS_PATH)
        return parse_session_list(response)
