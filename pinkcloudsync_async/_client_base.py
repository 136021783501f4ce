"""What the async and sync clients share: configuration and the typed call's parsing."""

from __future__ import annotations

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
from ._credentials import CredentialProvider, CredentialsCallable, SettingCredentials
from ._deadline import Deadline
from ._exceptions import (
    ConfigurationError,
    InvalidResponseError,
    PermissionDeniedError,
    PinkCloudSyncError,
    api_error_for,
    request_failure_error,
)
from ._models import AccessToken, SessionList
from ._redaction import Redactor, hide_in_reason_phrase, redacted_response, sent_credentials
from ._retry_policy import RetryPolicy
from ._token_exchange import describe_validation_error
from ._token_source import AsyncSender, RequestFactory, SyncSender, TokenFetcher, TokenSource
from ._wire import parse_json
from .telemetry import Telemetry, TokenHooks
from .telemetry._observer import Observer

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = [
    "DEFAULT",
    "DEFAULT_TIMEOUT",
    "SESSIONS_PATH",
    "ClientParts",
    "admission_limit",
    "build_parts",
    "check_permissions",
    "parse_session_list",
    "refuse_new_base_url",
    "typed_call_error",
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
    timeout that makes no deadline (None when the user set one), the observer
    (telemetry and hooks) of the token side, the token source and the retry loop,
    and the token store (None: in-process) with whether the client owns it (closes it)."""

    __slots__ = (
        "default_timeout",
        "httpx_kwargs",
        "observer",
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
        observer: Observer,
        token_store: TokenStore | None = None,
        owns_store: bool = False,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.httpx_kwargs = httpx_kwargs
        self.default_timeout = default_timeout
        self.observer = observer
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
            credentials=settings.credentials,
            token_url=settings.base_url.join(TOKEN_PATH),
            refresh_margin=settings.refresh_margin,
            clock=clock,
            build_request=build_request,
            send=send,
            asend=asend,
            observer=self.observer,
        )
        if self.token_store is None:
            return source
        from .stores._fleet import lock_ttl  # only a client with a store pays the import

        policy = self.policy
        return self.token_store.bind(
            source,
            base_url=str(settings.base_url),
            api_key=fleet_identity(settings.credentials),
            lock_ttl=lock_ttl(
                httpx.Timeout(self.httpx_kwargs["timeout"]).as_dict(),
                attempts=policy.max_retries + 1,
                backoff_max=policy.backoff_max,
            ),
            clock=clock,
        )


def fleet_identity(credentials: CredentialProvider) -> str:
    """The API key a fleet's token store keys its entries by: the configured key
    (an argument, a variable or a file, read now); for a `credentials=` callable,
    which cannot be read here, the name of the kind (its processes share one entry)."""
    if isinstance(credentials, SettingCredentials):
        return credentials.api_key.read().get_secret_value()
    return "credentials="


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
    else:
        kwargs["timeout"] = _checked_timeout(kwargs["timeout"])
    kwargs["base_url"] = settings.base_url
    store, owns_store = resolve_token_store(token_store)
    return ClientParts(settings, policy, kwargs, default_timeout, observer, store, owns_store)


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


def _checked_timeout(timeout: Any) -> Any:
    """The user's `timeout`, refused (ConfigurationError) when a phase is not a number
    of seconds a float can hold (10**400 would overflow in the socket layer)."""
    try:
        phases = httpx.Timeout(timeout).as_dict()
        for seconds in phases.values():
            if seconds is not None and (isinstance(seconds, bool) or float(seconds) < 0):
                raise ValueError("a timeout must be >= 0 seconds")
    except (TypeError, ValueError, OverflowError) as exc:
        message = f"timeout is not a usable number of seconds: {exc}"
    else:
        return timeout
    raise ConfigurationError(message)


def _sessions_or_problem(content: bytes) -> SessionList | str:
    # Apart from the frame that raises, so that no raising frame holds the body.
    try:
        data = parse_json(content)
    except ValueError:
        return "not JSON"
    try:
        return SessionList.model_validate(data)
    except ValidationError as exc:
        return f"invalid: {describe_validation_error(exc)}"


def parse_session_list(response: httpx.Response, secrets: Redactor) -> SessionList:
    """The typed body of `GET /sync/sessions`, or the typed error it deserves,
    built without `secrets` (the client's) or the bearer token the request sent."""
    redactor = secrets.with_secrets([sent_credentials(response)])
    hide_in_reason_phrase(response, redactor)  # before any frame of ours can fail
    if response.status_code >= 400:
        raise api_error_for(
            response, attempts=response.extensions.get(ATTEMPTS_EXTENSION, 1), secrets=redactor
        )
    sessions = _sessions_or_problem(response.content)
    if isinstance(sessions, SessionList):
        return sessions
    if sessions == "not JSON":
        # Described inline: no local holds the content-type, where a server may
        # echo the token (error trackers print every local of a raising frame).
        sessions = redactor.text(
            f"not JSON ({response.headers.get('content-type', 'no content-type')}, "
            f"{len(response.content)} bytes)"
        )
    error = InvalidResponseError(
        redactor.text(f"The sessions response is {sessions}."),
        response=redacted_response(response, redactor),
    )
    raise error


def refuse_new_base_url(current: httpx.URL, new: httpx.URL | str) -> None:
    """Setting `client.base_url` after construction: the same URL is a no-op, any
    other raises ConfigurationError. The base URL fixes the API's origin, where
    the token goes and the token request is sent; moving URL joining alone would
    send `GET /x` elsewhere without a token."""
    url = httpx.URL(new)
    if not url.raw_path.endswith(b"/"):
        url = url.copy_with(raw_path=url.raw_path + b"/")
    if url != current:
        raise ConfigurationError(
            f"base_url is fixed when the client is built ({current}): it is the API's "
            "origin, where the token goes. Build another client for another base_url."
        )


def typed_call_error(
    exc: httpx.RequestError, request: httpx.Request, deadline: Deadline | None
) -> PinkCloudSyncError:
    """The typed error a typed call raises for a request that got no usable response
    (see `request_failure_error`); `deadline` is the call's own, if it has one."""
    return request_failure_error(
        exc,
        what=f"{request.method} {request.url.copy_with(query=None)}",
        request=request,
        spent=deadline is not None and deadline.remaining() <= 0,
    )
