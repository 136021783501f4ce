"""What the async and sync clients share: configuration and the typed call's parsing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr, ValidationError

from ._config import Settings, resolve_settings, resolve_token_store
from ._constants import (
    ATTEMPTS_EXTENSION,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
    DEFAULT_TIMEOUT_SECONDS,
    HTTPX_DEFAULT_MAX_CONNECTIONS,
    TOKEN_PATH,
)
from ._exceptions import ConfigurationError, InvalidResponseError, raise_for_api_error
from ._models import SessionList
from ._retry_policy import RetryPolicy
from ._token_exchange import describe_validation_error
from ._token_source import AsyncSender, RequestFactory, SyncSender, TokenFetcher, TokenSource

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = [
    "DEFAULT",
    "DEFAULT_TIMEOUT",
    "SESSIONS_PATH",
    "ClientParts",
    "admission_limit",
    "build_parts",
    "parse_session_list",
]

SESSIONS_PATH = "sync/sessions"


class _Default:
    """The type of `DEFAULT`: an argument left out, where None means something."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()


def admission_limit(
    max_concurrency: int | _Default | None, httpx_kwargs: dict[str, Any]
) -> int | None:
    """How many requests the client admits at once; None for no limit.

    Left out, it is the connection pool's `max_connections` when the client builds
    its own pool (httpx's 100 unless `limits=` says otherwise; None if unbounded),
    and no limit with your own `transport=` (its capacity is unknown). Raises
    ConfigurationError unless it is None or a whole number >= 1.
    """
    if isinstance(max_concurrency, _Default):
        if "transport" in httpx_kwargs:
            return None
        limits = httpx_kwargs.get("limits")
        if limits is None:
            return HTTPX_DEFAULT_MAX_CONNECTIONS
        pool: int | None = limits.max_connections
        return pool
    if max_concurrency is None:
        return None
    if (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ConfigurationError(
            f"max_concurrency must be a whole number >= 1 or None, not {max_concurrency!r}."
        )
    return max_concurrency


DEFAULT_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, connect=DEFAULT_CONNECT_TIMEOUT_SECONDS)


class ClientParts:
    """What both twins are built from: resolved settings, the retry policy, the
    httpx options to pass on (timeout defaulted, base URL resolved), the default
    timeout that makes no deadline (None when the user set one), and the token
    store (None: in-process) with whether the client owns it (closes it)."""

    __slots__ = (
        "default_timeout",
        "httpx_kwargs",
        "owns_store",
        "policy",
        "settings",
        "token_store",
    )

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy,
        httpx_kwargs: dict[str, Any],
        default_timeout: dict[str, Any] | None,
        token_store: TokenStore | None = None,
        owns_store: bool = False,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.httpx_kwargs = httpx_kwargs
        self.default_timeout = default_timeout
        self.token_store = token_store
        self.owns_store = owns_store

    def token_source(
        self,
        *,
        clock: Callable[[], float],
        build_request: RequestFactory,
        send: SyncSender | None = None,
        asend: AsyncSender | None = None,
    ) -> TokenFetcher:
        """The token source for these settings, sending through the given layer;
        with a token store, the store's source wrapping it."""
        settings = self.settings
        source = TokenSource(
            api_key=settings.api_key,
            api_secret=settings.api_secret,
            token_url=settings.base_url.join(TOKEN_PATH),
            refresh_margin=settings.refresh_margin,
            clock=clock,
            build_request=build_request,
            send=send,
            asend=asend,
        )
        if self.token_store is None:
            return source
        from .stores._fleet import lock_ttl  # only a client with a store pays the import

        policy = self.policy
        return self.token_store.bind(
            source,
            base_url=str(settings.base_url),
            api_key=settings.api_key,
            lock_ttl=lock_ttl(
                httpx.Timeout(self.httpx_kwargs["timeout"]).as_dict(),
                attempts=policy.max_retries + 1,
                backoff_max=policy.backoff_max,
            ),
            clock=clock,
        )


def build_parts(
    *,
    api_key: str | None,
    api_secret: str | SecretStr | None,
    base_url: str | httpx.URL | None,
    refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    allow_insecure_http: bool = False,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_backoff_base: float = DEFAULT_RETRY_BACKOFF_BASE,
    retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    token_store: TokenStore | None = None,
    httpx_kwargs: dict[str, Any],
) -> ClientParts:
    """Resolve the configuration (argument > environment > default) into parts."""
    if "auth" in httpx_kwargs:
        raise ConfigurationError(
            "auth= cannot be given: the client's auth is its PinkCloudSyncAuth."
        )
    settings = resolve_settings(
        api_key=api_key,
        api_secret=api_secret,
        base_url=base_url,
        refresh_margin=refresh_margin,
        allow_insecure_http=allow_insecure_http,
    )
    try:
        policy = RetryPolicy(
            max_retries=max_retries,
            backoff_base=retry_backoff_base,
            backoff_max=retry_backoff_max,
            max_retry_after=max_retry_after,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(str(exc)) from None
    kwargs = dict(httpx_kwargs)
    default_timeout = None
    if "timeout" not in kwargs:
        kwargs["timeout"] = DEFAULT_TIMEOUT  # never httpx's "no timeout" by accident
        default_timeout = DEFAULT_TIMEOUT.as_dict()
    kwargs["base_url"] = settings.base_url
    store, owns_store = resolve_token_store(token_store)
    return ClientParts(settings, policy, kwargs, default_timeout, store, owns_store)


def parse_session_list(response: httpx.Response) -> SessionList:
    """The typed body of `GET /sync/sessions`, or the typed error it deserves."""
    raise_for_api_error(response, attempts=response.extensions.get(ATTEMPTS_EXTENSION, 1))
    try:
        data = json.loads(response.content)
    except ValueError:
        raise InvalidResponseError(
            "The sessions response is not JSON "
            f"({response.headers.get('content-type', 'no content-type')}, "
            f"{len(response.content)} bytes).",
            response=response,
        ) from None
    try:
        return SessionList.model_validate(data)
    except ValidationError as exc:
        raise InvalidResponseError(
            f"The sessions response is invalid: {describe_validation_error(exc)}.",
            response=response,
        ) from None
