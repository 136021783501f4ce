"""What the async and sync clients share: configuration and the typed call's parsing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from ._config import Settings, resolve_settings
from ._constants import (
    ATTEMPTS_EXTENSION,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_REFRESH_MARGIN,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
    DEFAULT_TIMEOUT_SECONDS,
    TOKEN_PATH,
)
from ._credentials import CredentialsCallable
from ._exceptions import (
    ConfigurationError,
    InvalidResponseError,
    PermissionDeniedError,
    raise_for_api_error,
)
from ._models import AccessToken, SessionList
from ._retry_policy import RetryPolicy
from ._token_exchange import describe_validation_error
from ._token_source import AsyncSender, RequestFactory, SyncSender, TokenSource
from .telemetry import Telemetry, TokenHooks
from .telemetry._observer import Observer

__all__ = [
    "DEFAULT_TIMEOUT",
    "SESSIONS_PATH",
    "ClientParts",
    "build_parts",
    "check_permissions",
    "parse_session_list",
]

SESSIONS_PATH = "sync/sessions"
DEFAULT_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, connect=DEFAULT_CONNECT_TIMEOUT_SECONDS)


class ClientParts:
    """What both twins are built from: resolved settings, the retry policy, the
    httpx options to pass on (timeout defaulted, base URL resolved), the default
    timeout that makes no deadline (None when the user set one) and the observer
    (telemetry and hooks) of the token side, the token source and the retry loop."""

    __slots__ = ("default_timeout", "httpx_kwargs", "observer", "policy", "settings")

    def __init__(
        self,
        settings: Settings,
        policy: RetryPolicy,
        httpx_kwargs: dict[str, Any],
        default_timeout: dict[str, Any] | None,
        observer: Observer,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.httpx_kwargs = httpx_kwargs
        self.default_timeout = default_timeout
        self.observer = observer

    def token_source(
        self,
        *,
        clock: Callable[[], float],
        build_request: RequestFactory,
        send: SyncSender | None = None,
        asend: AsyncSender | None = None,
    ) -> TokenSource:
        """The token source for these settings, sending through the given layer."""
        settings = self.settings
        return TokenSource(
            credentials=settings.credentials,
            token_url=settings.base_url.join(TOKEN_PATH),
            refresh_margin=settings.refresh_margin,
            clock=clock,
            build_request=build_request,
            send=send,
            asend=asend,
            observer=self.observer,
        )


def build_parts(
    *,
    api_key: str | None,
    api_secret: str | SecretStr | None,
    credentials: CredentialsCallable | None = None,
    hooks: TokenHooks | None = None,
    telemetry: Telemetry | None = None,
    for_async: bool,
    base_url: str | httpx.URL | None,
    refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    allow_insecure_http: bool = False,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_backoff_base: float = DEFAULT_RETRY_BACKOFF_BASE,
    retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
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
        credentials=credentials,
        for_async=for_async,
    )
    observer = Observer(
        telemetry=telemetry,
        hooks=hooks,
        for_async=for_async,
        token_url=settings.base_url.join(TOKEN_PATH),
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
    return ClientParts(settings, policy, kwargs, default_timeout, observer)


def check_permissions(token: AccessToken, required: tuple[str, ...]) -> None:
    """Raise `PermissionDeniedError` naming what `token`'s claims lack of `required`.

    `admin` grants every permission (the API's table). No permission asked: no check.
    """
    for permission in required:
        if not isinstance(permission, str) or not permission.strip():
            raise ConfigurationError("require_permissions() takes non-empty permission names.")
    held = set(token.claims.permissions)
    if "admin" in held:
        return
    missing = [p for p in dict.fromkeys(required) if p not in held]
    if not missing:
        return
    who = token.claims.sub or "this API key"
    has = ", ".join(token.claims.permissions) or "none"
    raise PermissionDeniedError(
        status_code=403,
        error="insufficient_permissions",
        message=(
            f"The token for {who} lacks {', '.join(missing)} (it has: {has}); "
            "grant them to the API key or use another key."
        ),
    )


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
