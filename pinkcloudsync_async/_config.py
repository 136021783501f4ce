"""Resolving the client's configuration: argument > environment variable > default."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from ._constants import (
    ALLOW_UNENCRYPTED_ENV,
    API_KEY_ENV,
    API_SECRET_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_HTTP_BACKEND,
    HTTP_BACKEND_ENV,
    HTTP_BACKENDS,
    REDIS_URL_ENV,
    TOKEN_ENCRYPTION_KEY_ENV,
)
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = [
    "Settings",
    "is_loopback_host",
    "resolve_http_backend",
    "resolve_settings",
    "resolve_token_store",
]


@dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration. The secret stays wrapped in a SecretStr."""

    api_key: str
    api_secret: SecretStr
    base_url: httpx.URL
    refresh_margin: float


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1: plain HTTP there never leaves the machine."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _pick(name: str, argument: str | None, environ: Mapping[str, str], env_name: str) -> str:
    value = argument if argument is not None else environ.get(env_name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigurationError(f"No {name} configured: pass {name}= or set {env_name}.")
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, not {type(value).__name__}.")
    return value.strip()


def resolve_settings(
    *,
    api_key: str | None,
    api_secret: str | SecretStr | None,
    base_url: str | httpx.URL | None,
    refresh_margin: float,
    allow_insecure_http: bool,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve and validate; raise ConfigurationError naming what to set or fix.

    Precedence, for every setting: argument > environment variable > default.
    """
    env = os.environ if environ is None else environ
    raw_secret = api_secret.get_secret_value() if isinstance(api_secret, SecretStr) else api_secret
    key_value = api_key if api_key is not None else env.get(API_KEY_ENV)
    secret_value = raw_secret if raw_secret is not None else env.get(API_SECRET_ENV)
    if _blank(key_value) and _blank(secret_value):
        raise ConfigurationError(
            f"No API credentials configured: set {API_KEY_ENV} and {API_SECRET_ENV} "
            "(or pass api_key= and api_secret=)."
        )
    key = _pick("api_key", api_key, env, API_KEY_ENV)
    secret = SecretStr(_pick("api_secret", raw_secret, env, API_SECRET_ENV))

    raw_url = base_url if base_url is not None else env.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    try:
        url = httpx.URL(str(raw_url).strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {exc}") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise ConfigurationError(
            f"base_url must be an absolute http(s) URL, got {str(url)!r} "
            f"(set base_url= or {BASE_URL_ENV})."
        )
    if b"?" in url.raw_path or url.fragment:
        raise ConfigurationError("base_url must not carry a query string or a fragment.")
    if url.scheme == "http" and not allow_insecure_http and not is_loopback_host(url.host):
        raise ConfigurationError(
            f"Refusing to send credentials over plain HTTP to {url.host}: use https, a "
            "loopback host, or allow_insecure_http=True."
        )
    if not url.raw_path.endswith(b"/"):
        # httpx joins relative paths onto the base path only when it ends in '/'.
        url = url.copy_with(raw_path=url.raw_path + b"/")

    if (
        isinstance(refresh_margin, bool)
        or not isinstance(refresh_margin, (int, float))
        or not math.isfinite(refresh_margin)
        or refresh_margin < 0
    ):
        raise ConfigurationError("refresh_margin must be a finite number of seconds >= 0.")
    return Settings(
        api_key=key, api_secret=secret, base_url=url, refresh_margin=float(refresh_margin)
    )


def resolve_http_backend(argument: str | None, environ: Mapping[str, str] | None = None) -> str:
    """ "httpx" or "aiohttp": argument > `PINKCLOUDSYNC_HTTP_BACKEND` > "httpx".

    Raises ConfigurationError naming the choices for anything else.
    """
    env = os.environ if environ is None else environ
    if argument is not None:
        value, source = argument, "http_backend="
    else:
        value, source = env.get(HTTP_BACKEND_ENV, "") or DEFAULT_HTTP_BACKEND, HTTP_BACKEND_ENV
    if not isinstance(value, str) or value.strip().lower() not in HTTP_BACKENDS:
        shown = value if isinstance(value, str) else type(value).__name__
        raise ConfigurationError(
            f"{source} must be one of {', '.join(map(repr, HTTP_BACKENDS))}, not {shown!r}."
        )
    return value.strip().lower()


def resolve_token_store(
    token_store: TokenStore | None, environ: Mapping[str, str] | None = None
) -> tuple[TokenStore | None, bool]:
    """The client's token store, and whether the client owns (and so closes) it.

    Precedence: `token_store=` > `PINKCLOUDSYNC_REDIS_URL` (with
    `PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY`, or `PINKCLOUDSYNC_TOKEN_STORE_UNENCRYPTED=1`)
    > none (the token in the client's own memory). A store given is the caller's;
    one built from the environment is the client's.
    """
    if token_store is not None:
        if not callable(getattr(token_store, "bind", None)):
            raise ConfigurationError(
                f"token_store must be a TokenStore, not {type(token_store).__name__}."
            )
        return token_store, False
    env = os.environ if environ is None else environ
    url = env.get(REDIS_URL_ENV, "").strip()
    if not url:
        return None, False
    from .stores import RedisTokenStore

    key = env.get(TOKEN_ENCRYPTION_KEY_ENV, "").strip() or None
    allow = env.get(ALLOW_UNENCRYPTED_ENV, "").strip().lower() in {"1", "true", "yes"}
    return RedisTokenStore.from_url(url, encryption_key=key, allow_unencrypted=allow), True
