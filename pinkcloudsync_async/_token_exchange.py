"""The token request and its response: building one, and reading the other safely.

Shared by the async and sync flows; no I/O happens here.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from ._constants import ATTEMPTS_EXTENSION
from ._exceptions import InvalidResponseError, api_error_for, redact
from ._models import AccessToken, TokenClaims, TokenResponse
from ._token_lifecycle import effective_lifetime, refresh_lead

__all__ = [
    "decode_claims",
    "describe_validation_error",
    "redact",
    "token_from_response",
]


def describe_validation_error(error: ValidationError) -> str:
    """Which fields were wrong and why, never the values that were sent."""
    parts = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def _body_kind(response: httpx.Response) -> str:
    content_type = response.headers.get("content-type", "no content-type").split(";")[0]
    return f"{content_type}, {len(response.content)} bytes"


def decode_claims(raw_token: str) -> TokenClaims:
    """The JWT's claims, read without verifying (the client holds no key).

    A token that is not a JWT, or claims of the wrong type, give empty claims for
    those fields: the token is still used, the server stays the authority.
    """
    # Imported here, once per token: PyJWT pulls in `cryptography` when installed,
    # which doubled the package's import time for something needed once an hour.
    import jwt

    try:
        payload = jwt.decode(raw_token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        return TokenClaims()
    if not isinstance(payload, dict):
        return TokenClaims()
    known: dict[str, Any] = {}
    sub = payload.pop("sub", None)
    if isinstance(sub, str):
        known["sub"] = sub
    permissions = payload.pop("permissions", None)
    if isinstance(permissions, list) and all(isinstance(p, str) for p in permissions):
        known["permissions"] = tuple(permissions)
    for name in ("iat", "exp"):
        value = payload.pop(name, None)
        # PyJWT's JSON accepts NaN and Infinity; a date must be a finite number.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            known[name] = int(value)
    return TokenClaims(**known, **payload)


def token_from_response(
    response: httpx.Response,
    *,
    sent_at: float,
    refresh_margin: float,
    secrets: tuple[str, ...],
    sent_at_wall: float | None = None,
) -> AccessToken:
    """The AccessToken in a token response, or the typed error it deserves.

    Error statuses raise the APIError subclass for the status (with the number of
    attempts the retry policy made); anything but a valid `TokenResponse` raises
    InvalidResponseError. No message echoes the payload or a secret. `sent_at` is
    monotonic seconds; `sent_at_wall` (epoch seconds) gives the wall-clock expiry.
    """
    attempts = response.extensions.get(ATTEMPTS_EXTENSION, 1)
    if response.status_code >= 400:
        raise api_error_for(response, attempts=attempts, secrets=secrets)
    if response.status_code != 200:
        raise InvalidResponseError(
            f"The token endpoint answered {response.status_code} "
            f"{response.reason_phrase or ''}, not 200.".replace(" ,", ","),
            response=response,
        )
    try:
        data = json.loads(response.content)
    except ValueError:
        raise InvalidResponseError(
            f"The token response is not JSON ({_body_kind(response)}).", response=response
        ) from None
    if not isinstance(data, dict):
        raise InvalidResponseError(
            f"The token response is JSON but not an object ({type(data).__name__}).",
            response=response,
        )
    try:
        payload = TokenResponse.model_validate(data)
    except ValidationError as exc:
        raise InvalidResponseError(
            f"The token response is invalid: {describe_validation_error(exc)}.",
            response=response,
        ) from None
    raw = payload.access_token.get_secret_value()
    claims = decode_claims(raw)
    lifetime = effective_lifetime(payload.expires_in, iat=claims.iat, exp=claims.exp)
    expires_at = sent_at + lifetime
    return AccessToken(
        access_token=payload.access_token,
        token_type=payload.token_type,
        claims=claims,
        expires_in=payload.expires_in,
        lifetime=lifetime,
        obtained_at=sent_at,
        expires_at=expires_at,
        refresh_at=expires_at - refresh_lead(lifetime, refresh_margin),
        expires_at_utc=None
        if sent_at_wall is None
        else datetime.fromtimestamp(sent_at_wall + lifetime, UTC),
        authorization=SecretStr(f"Bearer {raw}"),
    )
