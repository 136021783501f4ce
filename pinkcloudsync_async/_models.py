"""The API's payloads as pydantic models, and the token the auth holds."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
)

from ._constants import MAX_EXPIRES_IN

__all__ = [
    "AccessToken",
    "ErrorResponse",
    "SessionList",
    "SyncSession",
    "TokenClaims",
    "TokenResponse",
]

# A bearer token goes in a header: visible ASCII only, no spaces, no controls
# (RFC 9110 field-vchar minus obs-text; RFC 6750's b64token is a subset).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")


class TokenResponse(BaseModel):
    """The body of a successful `POST /auth/token`, validated strictly.

    `access_token` is a `SecretStr`, so neither `repr` nor `model_dump` shows it.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    access_token: SecretStr
    token_type: StrictStr
    # StrictInt refuses "3600" and True; gt=0 refuses 0 and negatives; le= bounds it
    # so that no arithmetic on it can overflow (1 followed by 400 zeros is an int).
    expires_in: Annotated[StrictInt, Field(gt=0, le=MAX_EXPIRES_IN)]

    @field_validator("access_token", mode="before")
    @classmethod
    def _non_empty_string(cls, value: Any) -> Any:
        # Checked before SecretStr wraps it, and without echoing the value.
        if not isinstance(value, str):
            raise ValueError("access_token must be a string")
        if not value.strip():
            raise ValueError("access_token must not be empty")
        if not _HEADER_TOKEN.fullmatch(value):
            raise ValueError(
                "access_token must be visible ASCII without spaces or control "
                "characters (it is sent in a header)"
            )
        return value

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError("token_type must be 'Bearer'")
        return value


class TokenClaims(BaseModel):
    """What the client reads from the JWT, unverified: informational only.

    Unknown claims are kept (`model_extra`). Claims of the wrong type are dropped
    rather than failing, because the server, not the client, is the authority.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    sub: str | None = None
    permissions: tuple[str, ...] = ()
    iat: int | None = None
    exp: int | None = None


class ErrorResponse(BaseModel):
    """The API's error body: `{"error": "<code>", "message": "<human text>"}`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    error: StrictStr
    message: StrictStr


class SyncSession(BaseModel):
    """One sync session. Its fields are undocumented, so every field is kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str | int | None = None


class SessionList(BaseModel):
    """The body of `GET /sync/sessions`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    sessions: list[SyncSession]


class AccessToken(BaseModel):
    """The token the auth holds, with its timing on the monotonic clock.

    `obtained_at` is when the token request was *sent* (so the lifetime can only be
    underestimated); `lifetime` is `expires_in`, shortened by the claims when they
    say so; `expires_at = obtained_at + lifetime`; `refresh_at` is when it becomes
    due for an early refresh. `expires_at_utc` is the same expiry on this machine's
    wall clock (UTC), for people and logs. `repr` shows the subject, permissions,
    wall-clock expiry and time left, never the token.
    """

    model_config = ConfigDict(frozen=True)

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105
    claims: TokenClaims = TokenClaims()
    expires_in: int
    lifetime: float
    obtained_at: float
    expires_at: float
    refresh_at: float
    expires_at_utc: datetime | None = None

    # Built once per token so the per-request path does no string work.
    authorization: SecretStr = Field(repr=False)

    def remaining(self, now: float) -> float:
        """Seconds left before expiry at monotonic time `now` (may be negative)."""
        return self.expires_at - now

    def __repr__(self) -> str:
        # The monotonic numbers mean nothing to a reader: show who, what and until when.
        claims = self.claims
        parts = [f"sub={claims.sub!r}", f"permissions={claims.permissions!r}"]
        if self.expires_at_utc is not None:
            left = (self.expires_at_utc - datetime.now(UTC)).total_seconds()
            expiry = self.expires_at_utc.isoformat(timespec="seconds").replace("+00:00", "Z")
            parts.append(f"expires={expiry!r}")
            parts.append(f"left={_duration(left)!r}" if left > 0 else "left='expired'")
        else:
            parts.append(f"lifetime={self.lifetime:g}s")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__


def _duration(seconds: float) -> str:
    """`59m12s`, `1h0m5s`, `42s`: a time left, for people."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
