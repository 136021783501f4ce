"""Resolving the client's configuration: argument > environment variable > default."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping, Sequence
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
from ._credentials import (
    CallableCredentials,
    CredentialProvider,
    CredentialsCallable,
    FromFile,
    Setting,
    SettingCredentials,
    Value,
)
from ._exceptions import ConfigurationError

if TYPE_CHECKING:
    from .stores import TokenStore

__all__ = [
    "FILE_SUFFIX",
    "Layers",
    "Settings",
    "is_loopback_host",
    "resolve_credentials",
    "resolve_http_backend",
    "resolve_settings",
    "resolve_token_store",
    "wrap_secret",
]

# PINKCLOUDSYNC_API_SECRET_FILE=/run/secrets/x: the Docker and Kubernetes convention.
FILE_SUFFIX = "_FILE"


@dataclass(frozen=True)
class Settings:
    """Resolved, validated configuration.

    `credentials` is read again for each token request (files and callables may
    change); `base_url_origin` says where the base URL came from.
    """

    credentials: CredentialProvider
    base_url: httpx.URL
    refresh_margin: float
    base_url_origin: str = "the default"

    @property
    def api_key(self) -> str:
        """The API key as the credentials read now."""
        return self.credentials.read().api_key

    @property
    def api_secret(self) -> SecretStr:
        """The API secret as the credentials read now (a `SecretStr`)."""
        return self.credentials.read().api_secret


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


# Where settings are looked for after the arguments: (label, variables), in order.
# The library reads the process environment; the CLI adds the `.env` file after it.
Layers = Sequence[tuple[str, Mapping[str, str]]]


def _from_layers(env_name: str, layers: Layers) -> Setting | None:
    """A setting from the first layer that has `env_name` or `env_name_FILE`."""
    file_name = env_name + FILE_SUFFIX
    for label, variables in layers:
        plain, path = variables.get(env_name), variables.get(file_name)
        plain = None if _blank(plain) else plain
        path = None if _blank(path) else path
        where = "" if label == "environment" else f" in {label}"
        if plain is not None and path is not None:
            raise ConfigurationError(
                f"Both {env_name} and {file_name} are set{where}: set only one of them."
            )
        if path is not None:
            setting = FromFile(path.strip(), f"the file named by {file_name}{where}")
            setting.read()  # a missing or empty file fails now, not at the first call
            return setting
        if plain is not None:
            return Value(plain.strip(), f"{env_name}" + (where or " in the environment"))
    return None


def _setting(
    name: str, argument: str | SecretStr | None, origin: str, env_name: str, layers: Layers
) -> Setting:
    if argument is not None:
        raw = argument.get_secret_value() if isinstance(argument, SecretStr) else argument
        if not isinstance(raw, str):
            raise ConfigurationError(f"{name} must be a string, not {type(raw).__name__}.")
        if not raw.strip():
            raise ConfigurationError(f"No {name} configured: pass {name}= or set {env_name}.")
        return Value(raw.strip(), origin)
    setting = _from_layers(env_name, layers)
    if setting is None:
        raise ConfigurationError(
            f"No {name} configured: pass {name}= or set {env_name} (or {env_name}{FILE_SUFFIX})."
        )
    return setting


def resolve_credentials(
    *,
    api_key: str | None,
    api_secret: str | SecretStr | None,
    credentials: CredentialsCallable | CredentialProvider | None = None,
    for_async: bool = True,
    layers: Layers | None = None,
    argument_origins: tuple[str, str] = ("the api_key= argument", "the api_secret= argument"),
) -> CredentialProvider:
    """The credential provider: argument > environment (`*_FILE` or plain) > nothing.

    `credentials=` is an argument too, exclusive with `api_key=` / `api_secret=`.
    """
    if credentials is not None:
        if api_key is not None or api_secret is not None:
            raise ConfigurationError(
                "Pass either credentials= or api_key= and api_secret=, not both."
            )
        if isinstance(credentials, CredentialProvider):
            return credentials
        return CallableCredentials(credentials, for_async=for_async)
    layers = [("environment", os.environ)] if layers is None else layers
    if (
        api_key is None
        and api_secret is None
        and all(
            _blank(variables.get(name)) and _blank(variables.get(name + FILE_SUFFIX))
            for _, variables in layers
            for name in (API_KEY_ENV, API_SECRET_ENV)
        )
    ):
        raise ConfigurationError(
            f"No API credentials configured: set {API_KEY_ENV} and {API_SECRET_ENV} "
            f"(or {API_KEY_ENV}{FILE_SUFFIX} and {API_SECRET_ENV}{FILE_SUFFIX}, or pass "
            "api_key= and api_secret=, or credentials=)."
        )
    key = _setting("api_key", api_key, argument_origins[0], API_KEY_ENV, layers)
    secret = _setting("api_secret", api_secret, argument_origins[1], API_SECRET_ENV, layers)
    return SettingCredentials(key, secret)


def wrap_secret(value: str | SecretStr | None) -> SecretStr | None:
    """`value` as a SecretStr (None stays None), whatever it was given as."""
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def resolve_settings(
    *,
    api_key: str | None,
    api_secret: str | SecretStr | None,
    base_url: str | httpx.URL | None,
    refresh_margin: float,
    allow_insecure_http: bool,
    credentials: CredentialsCallable | CredentialProvider | None = None,
    for_async: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve and validate; raise ConfigurationError naming what to set or fix.

    Precedence, for every setting: argument > environment variable > default. The
    key and the secret may each come from a file (`PINKCLOUDSYNC_API_KEY_FILE`,
    `PINKCLOUDSYNC_API_SECRET_FILE`), read again for each token request.
    """
    env = os.environ if environ is None else environ
    provider = resolve_credentials(
        api_key=api_key,
        api_secret=api_secret,
        credentials=credentials,
        for_async=for_async,
        layers=[("environment", env)],
    )
    if base_url is not None:
        url_origin = "the base_url= argument"
    elif env.get(BASE_URL_ENV):
        url_origin = f"{BASE_URL_ENV} in the environment"
    else:
        url_origin = "the default"
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
        credentials=provider,
        base_url=url,
        refresh_margin=float(refresh_margin),
        base_url_origin=url_origin,
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
