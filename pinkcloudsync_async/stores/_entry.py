"""What the fleet stores, as plaintext before sealing: a token, or a failed token request
(an error status, a timeout, or a host not reached).

Pure: JSON in, JSON out. A token is stored as the server sent it (the token, its
type, `expires_in`), with its wall-clock expiry (informational) and its `lead`, the
seconds from the entry's expiry to the token's. Never a monotonic timestamp: those
mean nothing in another process. A reader times its own `AccessToken` from the
entry's remaining TTL on Redis's clock.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
from pydantic import SecretStr

from .._exceptions import APIConnectionError, APIError, RequestTimeoutError, api_error_for
from .._models import AccessToken
from .._token_exchange import build_access_token, decode_claims
from ._cipher import UnreadableEntry

__all__ = [
    "SHARED_ERRORS",
    "SharedError",
    "decode_failure",
    "decode_token",
    "encode_failure",
    "encode_token",
]

_VERSION = 1


def encode_token(token: AccessToken, *, now: float, wall_now: float, entry_ttl: float) -> bytes:
    """The entry for `token`, stored now (`now` monotonic, `wall_now` epoch seconds)
    with a TTL of `entry_ttl` seconds."""
    remaining = token.expires_at - now
    entry = {
        "v": _VERSION,
        "access_token": token.access_token.get_secret_value(),
        "token_type": token.token_type,
        "expires_in": token.expires_in,
        "lifetime": token.lifetime,
        "expires_at": wall_now + remaining,
        "lead": max(0.0, remaining - entry_ttl),
    }
    return json.dumps(entry, separators=(",", ":")).encode()


def _load(plaintext: bytes) -> dict[str, Any]:
    try:
        entry = json.loads(plaintext)
    except ValueError:
        raise UnreadableEntry("not JSON") from None
    if not isinstance(entry, dict) or entry.get("v") != _VERSION:
        raise UnreadableEntry("not an entry of this version")
    return entry


def _number(entry: dict[str, Any], name: str) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UnreadableEntry(f"{name} is not a number")
    if value < 0:
        raise UnreadableEntry(f"{name} is negative")
    return float(value)


def decode_token(plaintext: bytes, *, remaining_ms: int, now: float) -> AccessToken:
    """The token of an entry with `remaining_ms` left, timed on this process's
    monotonic clock at `now`. Raises UnreadableEntry."""
    entry = _load(plaintext)
    raw, token_type = entry.get("access_token"), entry.get("token_type")
    expires_in = entry.get("expires_in")
    if not isinstance(raw, str) or not raw or not isinstance(token_type, str):
        raise UnreadableEntry("no token in it")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise UnreadableEntry("expires_in is not a positive integer")
    lifetime, lead = _number(entry, "lifetime"), _number(entry, "lead")
    refresh_at = now + remaining_ms / 1000
    return build_access_token(
        SecretStr(raw),
        token_type=token_type,
        expires_in=expires_in,
        claims=decode_claims(raw),
        lifetime=lifetime,
        expires_at=refresh_at + lead,
        refresh_at=refresh_at,
    )


SharedError = APIError | RequestTimeoutError | APIConnectionError
SHARED_ERRORS = (APIError, RequestTimeoutError, APIConnectionError)  # for `except`
_KINDS: dict[str, type[RequestTimeoutError] | type[APIConnectionError]] = {
    "timeout": RequestTimeoutError,
    "connection": APIConnectionError,
}
_SHARED_NOTE = "the fleet's shared outcome of a recent token request"


def encode_failure(error: SharedError) -> bytes:
    """The entry for a token request that failed with `error` (already redacted):
    an answer's status and error, or a timeout or a host not reached."""
    entry: dict[str, Any] = {"v": _VERSION, "message": getattr(error, "message", str(error))}
    if isinstance(error, APIError):
        entry.update(kind="api", status=error.status_code, error=error.error)
    else:
        entry["kind"] = "timeout" if isinstance(error, RequestTimeoutError) else "connection"
    return json.dumps(entry, separators=(",", ":")).encode()


def decode_failure(plaintext: bytes, *, remaining_ms: int) -> SharedError:
    """The typed error another process's token request got; for a 429 its
    `retry_after` is what is left of the shared window. Raises UnreadableEntry."""
    entry = _load(plaintext)
    kind, message = entry.get("kind"), entry.get("message")
    if not isinstance(message, str):
        raise UnreadableEntry("no message in it")
    if isinstance(kind, str) and kind in _KINDS:
        return _KINDS[kind](f"{message} ({_SHARED_NOTE})")
    status, code = entry.get("status"), entry.get("error")
    if kind != "api" or not isinstance(status, int) or not 400 <= status <= 599:
        raise UnreadableEntry("not a failure of a known kind")
    if not isinstance(code, str):
        raise UnreadableEntry("no error in it")
    headers = {"Retry-After": str(max(1, math.ceil(remaining_ms / 1000)))}
    # Built through the one path every API error takes, so the class, the fields
    # and a 429's retry_after are what the process that made the request got.
    response = httpx.Response(status, json={"error": code, "message": message}, headers=headers)
    error = api_error_for(response)
    error.message = f"{message} ({_SHARED_NOTE})"
    error.args = (f"{status} {code}: {error.message}",)
    return error
