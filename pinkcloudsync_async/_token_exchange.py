"""The token request and its response: building one, and reading the other safely.

Shared by the async and sync flows; no I/O happens here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from ._constants import ATTEMPTS_EXTENSION, MAX_CLAIM_TIME
from ._exceptions import InvalidResponseError, api_error_for
from ._models import AccessToken, TokenClaims, TokenResponse
from ._redaction import Redactor, redacted_response
from ._token_lifecycle import effective_lifetime, refresh_lead
from ._wire import parse_json

__all__ = [
    "build_access_token",
    "decode_claims",
    "describe_validation_error",
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


def _is_claim_time(value: Any) -> bool:
    # A date is a number in [0, MAX_CLAIM_TIME]: NaN, infinities, 10**400 and
    # negatives are not (comparing a huge int with a bound never overflows).
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= MAX_CLAIM_TIME
    )


def decode_claims(token: SecretStr | str) -> TokenClaims:
    """The JWT's claims, read without verifying (the client holds no key).

    A token that is not a JWT (or whose payload is not JSON, too deep, too large),
    or claims of the wrong type, give empty claims for those fields: the token is
    still used, the server stays the authority. `iat` and `exp` outside
    [0, MAX_CLAIM_TIME] are ignored.
    """
    # Imported here, once per token: PyJWT pulls in `cryptography` when installed,
    # which doubled the package's import time for something needed once an hour.
    import jwt

    try:
        payload = jwt.decode(
            token.get_secret_value() if isinstance(token, SecretStr) else token,
            options={"verify_signature": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
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
        if _is_claim_time(value):
            known[name] = int(value)
    return TokenClaims(**known, **payload)


def _invalid(message: str, response: httpx.Response, redactor: Redactor) -> InvalidResponseError:
    # Built redacted: a reason phrase, a content-type or a field name may echo a secret.
    # The copy carries no body: a 2xx/3xx token response's body holds a token.
    return InvalidResponseError(
        redactor.text(message), response=redacted_response(response, redactor, body=False)
    )


def _payload_or_problem(content: bytes) -> TokenResponse | str:
    """The validated payload, or what is wrong with it (never a value it holds).

    Kept apart so that no frame that raises holds the parsed body (it holds the
    token) as a local variable: error trackers capture locals.
    """
    try:
        data = parse_json(content)
    except ValueError:
        return "not JSON"
    if not isinstance(data, dict):
        return f"JSON but not an object ({type(data).__name__})"
    try:
        return TokenResponse.model_validate(data)
    except ValidationError as exc:
        return f"invalid: {describe_validation_error(exc)}"


def token_from_response(
    response: httpx.Response,
    *,
    sent_at: float,
    refresh_margin: float,
    secrets: Redactor,
    sent_at_wall: float | None = None,
) -> AccessToken:
    """The AccessToken in a token response, or the typed error it deserves.

    Error statuses raise the APIError subclass for the status (with the number of
    attempts the retry policy made); anything but a valid `TokenResponse` raises
    InvalidResponseError. No message, and nothing the error carries, shows the
    payload or any of `secrets` (the API secret, the token in use). `sent_at` is
    monotonic seconds; `sent_at_wall` (epoch seconds) gives the wall-clock expiry.
    """
    attempts = response.extensions.get(ATTEMPTS_EXTENSION, 1)
    if response.status_code >= 400:
        raise api_error_for(response, attempts=attempts, secrets=secrets)
    if response.status_code != 200:
        raise _invalid(
            f"The token endpoint answered {response.status_code} "
            f"{response.reason_phrase or ''}, not 200.".replace(" ,", ","),
            response,
            secrets,
        )
    payload = _payload_or_problem(response.content)
    if payload == "not JSON":
        raise _invalid(
            f"The token response is not JSON ({_body_kind(response)}).", response, secrets
        )
    if isinstance(payload, str):
        raise _invalid(f"The token response is {payload}.", response, secrets)
    claims = decode_claims(payload.access_token)
    lifetime = effective_lifetime(payload.expires_in, iat=claims.iat, exp=claims.exp)
    expires_at = sent_at + lifetime
    return build_access_token(
        payload.access_token,
        token_type=payload.token_type,
        expires_in=payload.expires_in,
        claims=claims,
        lifetime=lifetime,
        expires_at=expires_at,
        refresh_at=expires_at - refresh_lead(lifetime, refresh_margin),
        expires_at_utc=None
        if sent_at_wall is None
        else datetime.fromtimestamp(sent_at_wall + lifetime, UTC),
    )


def build_access_token(
    access_token: SecretStr,
    *,
    token_type: str,
    expires_in: int,
    claims: TokenClaims,
    lifetime: float,
    expires_at: float,
    refresh_at: float,
    expires_at_utc: datetime | None = None,
) -> AccessToken:
    """An `AccessToken` timed on this process's monotonic clock: `expires_at` and
    `refresh_at` are monotonic seconds; it was obtained `lifetime` before expiry;
    `expires_at_utc` is its wall-clock expiry, when known."""
    return AccessToken(
        access_token=access_token,
        token_type=token_type,
        claims=claims,
        expires_in=expires_in,
        lifetime=lifetime,
        obtained_at=expires_at - lifetime,
        expires_at=expires_at,
        refresh_at=refresh_at,
        expires_at_utc=expires_at_utc,
        # No local holds the raw token: a locals-formatted traceback would show it.
        authorization=SecretStr(f"Bearer {access_token.get_secret_value()}"),
    )
