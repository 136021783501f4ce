"""Every default of the library, in one place."""

from __future__ import annotations

# Plain values only: the pure decision modules import this one, and they import
# neither httpx nor an event loop (the clients build httpx.Timeout from these).

__all__ = [
    "ALLOW_UNENCRYPTED_ENV",
    "API_KEY_ENV",
    "API_SECRET_ENV",
    "ATTEMPTS_EXTENSION",
    "BASE_URL_ENV",
    "DEADLINE_EXTENSION",
    "DEFAULT_BASE_URL",
    "DEFAULT_CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_HTTP_BACKEND",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_AFTER",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_RETRY_BACKOFF_BASE",
    "DEFAULT_RETRY_BACKOFF_MAX",
    "DEFAULT_TIMEOUT_SECONDS",
    "HTTPX_DEFAULT_MAX_CONNECTIONS",
    "HTTP_BACKENDS",
    "HTTP_BACKEND_ENV",
    "IDEMPOTENT_EXTENSION",
    "LOGGER_NAME",
    "MAX_RETRIES_EXTENSION",
    "REDIS_URL_ENV",
    "REFRESH_FAILURE_BACKOFF_BASE",
    "REFRESH_FAILURE_BACKOFF_MAX",
    "TOKEN_ENCRYPTION_KEY_ENV",
    "TOKEN_PATH",
]

DEFAULT_BASE_URL = "https://api.pinkcloudsync.example/v1"
TOKEN_PATH = "auth/token"  # noqa: S105

API_KEY_ENV = "PINKCLOUDSYNC_API_KEY"
API_SECRET_ENV = "PINKCLOUDSYNC_API_SECRET"  # noqa: S105
BASE_URL_ENV = "PINKCLOUDSYNC_BASE_URL"
# A fleet's token store, the twelve-factor way: the URL makes every client share.
REDIS_URL_ENV = "PINKCLOUDSYNC_REDIS_URL"
TOKEN_ENCRYPTION_KEY_ENV = "PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY"  # noqa: S105
ALLOW_UNENCRYPTED_ENV = "PINKCLOUDSYNC_TOKEN_STORE_UNENCRYPTED"

# The API guide's own sample client refreshes 5 minutes before the stated expiry.
DEFAULT_REFRESH_MARGIN = 300.0

# httpx's own default is 5 s for everything; a short connect timeout fails fast on a
# dead host while the read timeout leaves room for a slow listing.
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0

# As openai-python and stripe-python: two retries, capped and jittered.
DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_BACKOFF_BASE = 0.5
DEFAULT_RETRY_BACKOFF_MAX = 8.0
# A server asking us to wait longer than this is answered by giving up, not sleeping.
DEFAULT_MAX_RETRY_AFTER = 60.0

# After a failed *early* refresh (the old token still works) the next attempt waits.
REFRESH_FAILURE_BACKOFF_BASE = 1.0
REFRESH_FAILURE_BACKOFF_MAX = 30.0

LOGGER_NAME = "pinkcloudsync_async"

# httpx's own pool size (`httpx.Limits` default, not exported by httpx): the default
# admission limit of a client that builds its own pool without `limits=`.
HTTPX_DEFAULT_MAX_CONNECTIONS = 100

# Which HTTP backend carries the async client's requests: "httpx" (httpcore's pool,
# asyncio and trio) or "aiohttp" (asyncio only, the `[aiohttp]` extra).
HTTP_BACKEND_ENV = "PINKCLOUDSYNC_HTTP_BACKEND"
HTTP_BACKENDS = ("httpx", "aiohttp")
DEFAULT_HTTP_BACKEND = "httpx"

# Keys of httpx request/response `extensions` that the clients and the auth share.
# `pinkcloudsync.max_retries` is public: a per-request override of max_retries.
MAX_RETRIES_EXTENSION = "pinkcloudsync.max_retries"
IDEMPOTENT_EXTENSION = "pinkcloudsync.idempotent"
DEADLINE_EXTENSION = "pinkcloudsync.deadline"
ATTEMPTS_EXTENSION = "pinkcloudsync.attempts"
