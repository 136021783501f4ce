"""The test fakes, in one place: the test keys and token payloads.

Test modules import these (`from fakes import ...`); conftest.py keeps only fixtures,
since a conftest is pytest's to load and not a module to import from.
"""

from __future__ import annotations

import time
from typing import Any

import jwt

# ------------------------------------------------------------------------- keys

# Only the key the *tests* sign with; clients never verify (they hold no key).
TEST_SIGNING_KEY = "test-signing-key-that-is-long-enough-for-hs256"
API_KEY = "pk_test_unit"
API_SECRET = "sk_test_unit_SECRET_never_printed"


# --------------------------------------------------------------- token payloads


def make_jwt(
    *,
    sub: str = "user_123",
    permissions: tuple[str, ...] = ("sync:read", "sync:write"),
    lifetime: int = 3600,
    iat: int | None = None,
    **extra: Any,
) -> str:
    """A signed JWT as the API would issue it."""
    issued = int(time.time()) if iat is None else iat
    claims = {"sub": sub, "permissions": list(permissions), "iat": issued, "exp": issued + lifetime}
    claims.update(extra)
    return jwt.encode(claims, TEST_SIGNING_KEY, algorithm="HS256")


def token_body(token: str | None = None, *, expires_in: int = 3600) -> dict[str, Any]:
    """A valid `POST /auth/token` response body."""
    return {
        "access_token": token if token is not None else make_jwt(lifetime=expires_in),
        "token_type": "Bearer",
        "expires_in": expires_in,
    }
