"""`PinkCloudSyncClient`: the synchronous twin, for scripts, notebooks and threads.

Same constructor, configuration, errors, retry policy and token lifecycle as the
async client: both drive one `PinkCloudSyncAuth` over the same decision code.
Nothing here touches an event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from httpx._client import USE_CLIENT_DEFAULT, UseClientDefault
from httpx._types import AuthTypes
from pydantic import SecretStr

from ._auth import PinkCloudSyncAuth, is_replayable
from ._client_base import SESSIONS_PATH, build_parts, parse_session_list
from ._constants import (
    DEADLINE_EXTENSION,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
)
from ._models import AccessToken, SessionList
from ._retry_loop import RetryLoop, is_retry_candidate
from ._timeouts import deadline_for, release_budget

__all__ = ["PinkCloudSyncClient"]


class PinkCloudSyncClient(httpx.Client):
    """An `httpx.Client` for the PinkCloudSync API; thread-safe token lifecycle.

    Threads share one token: one of them fetches while the others wait, an early
    refresh is carried by the one thread that noticed it while the others go on.
    """

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | SecretStr | None = None,
        *,
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
            base_url=base_url,
            refresh_margin=refresh_margin,
            allow_insecure_http=allow_insecure_http,
            max_retries=max_retries,
            retry_backoff_base=retry_backoff_base,
            retry_backoff_max=retry_backoff_max,
            max_retry_after=max_retry_after,
            clock=_clock,
            httpx_kwargs=httpx_kwargs,
        )
        self._pcs_auth = parts.auth
        super().__init__(**parts.httpx_kwargs)
        self._retry_policy = parts.policy
        self._clock = _clock
        self._sleep = _sleep
        parts.auth.bind(self.build_request, sync_sender=self._send_token_request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r})"

    @property
    def auth(self) -> PinkCloudSyncAuth:
        """The client's `PinkCloudSyncAuth` (it cannot be replaced)."""
        return self._pcs_auth

    @auth.setter
    def auth(self, value: Any) -> None:
        if value is not self._pcs_auth:
            raise AttributeError("The client's auth is its PinkCloudSyncAuth.")
        self._auth = value

    def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send with the retry policy; after the last attempt its response is returned."""
        started = self._clock()
        replayable = is_replayable(request)  # before a transport buffers the body
        try:
            retry: RetryLoop | None = None  # bookkeeping only once an attempt has failed
            while True:
                try:
                    response = super().send(
                        request, stream=stream, auth=auth, follow_redirects=follow_redirects
                    )
                except httpx.TransportError as exc:
                    retry = retry or self._retry_loop(request, started, replayable)
                    delay = retry.after_error(exc)
                    if delay is None:
                        raise
                else:
                    if retry is None and not is_retry_candidate(response):
                        return response
                    retry = retry or self._retry_loop(request, started, replayable)
                    delay = retry.after_response(response)
                    if delay is None:
                        return response
                    response.close()
                self._sleep(delay)
                retry.next_attempt()
        finally:
            if DEADLINE_EXTENSION in request.extensions:
                release_budget(request.extensions)  # the request may be sent again

    def _retry_loop(self, request: httpx.Request, started: float, replayable: bool) -> RetryLoop:
        return RetryLoop(
            request,
            self._retry_policy,
            self._clock,
            started,
            replayable=replayable,
            unbudgeted=self._pcs_auth.unbudgeted_timeout,
        )

    def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        return self.send(request, auth=None, follow_redirects=False)

    def get_token(self) -> AccessToken:
        """The current valid `AccessToken`, fetched or refreshed if needed."""
        deadline = deadline_for(
            self._clock(), self.timeout.as_dict(), self._pcs_auth.unbudgeted_timeout
        )
        return self._pcs_auth.sync_get_token(deadline)

    def list_sessions(self) -> SessionList:
        """`GET /sync/sessions` as a `SessionList`; raises the typed errors on failure."""
        response = self.get(SESSIONS_PATH)
        return parse_session_list(response)
