"""`AsyncPinkCloudSyncClient`: an httpx.AsyncClient with the token lifecycle and retries."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import anyio
import httpx
from anyio.lowlevel import EventLoopToken, current_token
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

__all__ = ["AsyncPinkCloudSyncClient"]

_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


class AsyncPinkCloudSyncClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` for the PinkCloudSync API.

    Every request to the base URL's origin carries a shared bearer token, fetched
    lazily, refreshed before it expires and once after a 401; 429/5xx and
    connection failures are retried by policy. Any httpx option passes through.
    Use `async with` so early refreshes run in the background.
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
        _sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
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
        # A pool's connections belong to the event loop that opened them. When the
        # client built its own transport, a later loop (a second asyncio.run() in a
        # REPL) gets a fresh one instead of a connection from a dead loop.
        self._rebuildable_transport: dict[str, Any] | None = (
            None
            if "transport" in httpx_kwargs or "mounts" in httpx_kwargs
            else {k: httpx_kwargs[k] for k in _TRANSPORT_OPTIONS if k in httpx_kwargs}
        )
        self._transport_loop: EventLoopToken | None = None
        self._entered_by: int | None = None
        self._clock = _clock
        self._sleep = _sleep
        parts.auth.bind(self.build_request, async_sender=self._send_token_request)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={str(self.base_url)!r})"

    @property
    def auth(self) -> PinkCloudSyncAuth:
        """The client's `PinkCloudSyncAuth` (it cannot be replaced)."""
        return self._pcs_auth

    @auth.setter
    def auth(self, value: Any) -> None:
        # httpx's __init__ assigns it once; replacing it later would bypass the lifecycle.
        if (
            not isinstance(value, PinkCloudSyncAuth)
            or getattr(self, "_pcs_auth", value) is not value
        ):
            raise AttributeError("The client's auth is its PinkCloudSyncAuth.")
        self._pcs_auth = value
        self._auth = value

    async def __aenter__(self) -> AsyncPinkCloudSyncClient:
        await super().__aenter__()
        # Owning a task group lets early refreshes run in the background.
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._pcs_auth.task_group = task_group
        self._entered_by = anyio.get_current_task().id
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        task_group = self._pcs_auth.task_group
        self._pcs_auth.task_group = None
        try:
            if task_group is not None:
                if anyio.get_current_task().id == self._entered_by:
                    task_group.cancel_scope.cancel()
                    await task_group.__aexit__(None, None, None)
                else:
                    # Only the task that entered a task group may exit it, and
                    # cancelling its scope would cancel that task. Some callers exit
                    # from another task (pytest-asyncio runs a fixture's teardown in
                    # a new one): there the refresh is cancelled, not waited for.
                    self._pcs_auth.cancel_background_refresh()
        finally:
            self._pcs_auth.settle_background_refresh()
            await super().__aexit__(exc_type, exc_value, traceback)

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: AuthTypes | UseClientDefault | None = USE_CLIENT_DEFAULT,
        follow_redirects: bool | UseClientDefault = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send with the retry policy; after the last attempt its response is returned."""
        if self._rebuildable_transport is not None:
            self._follow_event_loop()
        started = self._clock()
        replayable = is_replayable(request)  # before a transport buffers the body
        try:
            retry: RetryLoop | None = None  # bookkeeping only once an attempt has failed
            while True:
                try:
                    response = await super().send(
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
                    await response.aclose()
                await self._sleep(delay)
                retry.next_attempt()
        finally:
            if DEADLINE_EXTENSION in request.extensions:
                release_budget(request.extensions)  # the request may be sent again

    async def aclose(self) -> None:
        """Close the client's connections (on whichever event loop is running now)."""
        if self._rebuildable_transport is not None:
            self._follow_event_loop()  # the old loop's pool cannot be closed from here
        await super().aclose()

    def _follow_event_loop(self) -> None:
        loop = current_token()
        if loop != self._transport_loop:
            if self._transport_loop is not None:
                assert self._rebuildable_transport is not None
                # The old pool's loop is gone, so it cannot be closed; let it go.
                self._transport = httpx.AsyncHTTPTransport(**self._rebuildable_transport)
            self._transport_loop = loop

    def _retry_loop(self, request: httpx.Request, started: float, replayable: bool) -> RetryLoop:
        return RetryLoop(
            request,
            self._retry_policy,
            self._clock,
            started,
            replayable=replayable,
            unbudgeted=self._pcs_auth.unbudgeted_timeout,
        )

    async def _send_token_request(self, request: httpx.Request) -> httpx.Response:
        # auth=None: the token request carries no bearer; never follow a redirect
        # with the secret in the body.
        return await self.send(request, auth=None, follow_redirects=False)

    async def get_token(self) -> AccessToken:
        """The current valid `AccessToken`, fetched or refreshed if needed."""
        deadline = deadline_for(
            self._clock(), self.timeout.as_dict(), self._pcs_auth.unbudgeted_timeout
        )
        return await self._pcs_auth.async_get_token(deadline)

    async def list_sessions(self) -> SessionList:
        """`GET /sync/sessions` as a `SessionList`; raises the typed errors on failure."""
        response = await self.get(SESSIONS_PATH)
        return parse_session_list(response)
