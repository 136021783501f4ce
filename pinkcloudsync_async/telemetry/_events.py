"""What the plain hooks receive: the token lifecycle's events, never a token.

Each event carries the claims the client read (subject, permissions, dates and any
other claim: informational, not verified), wall-clock times, attempts and
durations. None holds an access token or a secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

from .._models import TokenClaims

__all__ = [
    "CredentialsRejected",
    "Hook",
    "TokenAcquired",
    "TokenEvent",
    "TokenHooks",
    "TokenRefreshFailed",
]


@dataclass(frozen=True)
class TokenAcquired:
    """A token request succeeded; the new token is in use.

    `expires_at` is the wall-clock expiry (UTC, this machine's clock), `lifetime`
    and `duration` seconds, `attempts` the HTTP requests the token request made,
    `waiters` the callers that waited for it, `early` whether it was an early
    refresh (a valid token was still held).
    """

    claims: TokenClaims
    expires_at: datetime
    lifetime: float
    attempts: int
    duration: float
    waiters: int
    early: bool


@dataclass(frozen=True)
class TokenRefreshFailed:
    """A token request failed. `error` is the typed error its waiters got (its
    message holds no secret); `advisory` is True for a failed early refresh, after
    which the held token stays in use until `held_expires_at` (wall clock, UTC)."""

    error: Exception
    advisory: bool
    attempts: int
    duration: float
    waiters: int
    held_expires_at: datetime | None


@dataclass(frozen=True)
class CredentialsRejected:
    """The token endpoint refused the credentials (401 `invalid_credentials`).

    `api_key` is the key sent (never the secret); `origin` says where the
    credentials came from; `retrying` is True when the credentials read again
    differ (a rotation) and the token request is being made once more with them.
    """

    api_key: str
    origin: str
    retrying: bool


TokenEvent: TypeAlias = TokenAcquired | TokenRefreshFailed | CredentialsRejected
Hook: TypeAlias = Callable[[TokenEvent], Awaitable[None] | None]


@dataclass(frozen=True)
class TokenHooks:
    """Callbacks for the token lifecycle, plain or `async` (the sync client takes
    plain ones only). They run after the outcome reached every waiting caller, in
    the task or thread that made the token request. A hook that raises is logged
    at ERROR on the `pinkcloudsync_async` logger and never breaks a request.

        client = AsyncPinkCloudSyncClient(hooks=TokenHooks(on_token_acquired=print))
    """

    on_token_acquired: Callable[[TokenAcquired], Awaitable[None] | None] | None = None
    on_token_refresh_failed: Callable[[TokenRefreshFailed], Awaitable[None] | None] | None = None
    on_credentials_rejected: Callable[[CredentialsRejected], Awaitable[None] | None] | None = None
