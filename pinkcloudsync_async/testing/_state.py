"""The emulator's state: keys, issued tokens, injected failures, rate limits, counters.

Every method is a quick step that never awaits, guarded by one thread lock, so a
single `Emulator` may serve an event loop and sync clients in other threads at once.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_PERMISSIONS",
    "EmulatorKey",
    "EmulatorStats",
    "Failure",
    "FailureQueue",
    "KeyRing",
    "RateLimiter",
    "TokenIssuer",
    "default_key",
]

DEFAULT_API_KEY = "pk_test_emulator"
# Well known on purpose: it only ever opens the emulator.
DEFAULT_API_SECRET = "sk_test_emulator"  # noqa: S105
DEFAULT_PERMISSIONS = ("sync:read", "sync:write", "conflicts:read", "conflicts:write")
ALL_PERMISSIONS = (*DEFAULT_PERMISSIONS, "admin")


@dataclass(frozen=True)
class EmulatorKey:
    """One API key pair the emulator accepts, and what it may do.

    `subject` is the JWT `sub`; by default it is derived from `api_key` (never from
    the secret), so a token never reveals anything about the secret.
    """

    api_key: str
    api_secret: str = field(repr=False)
    permissions: tuple[str, ...] = DEFAULT_PERMISSIONS
    subject: str | None = None

    def __post_init__(self) -> None:
        for name in ("api_key", "api_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"EmulatorKey.{name} must be a non-empty string")
        permissions = self.permissions
        if isinstance(permissions, str):
            permissions = (permissions,)  # a lone "sync:read" is not 9 permissions
        permissions = tuple(permissions)
        if not all(isinstance(p, str) and p for p in permissions):
            raise ValueError("EmulatorKey.permissions must be non-empty strings")
        object.__setattr__(self, "permissions", permissions)

    @property
    def sub(self) -> str:
        """The token subject for this key."""
        if self.subject is not None:
            return self.subject
        return "user_" + hashlib.sha256(self.api_key.encode()).hexdigest()[:12]

    def grants(self, permission: str) -> bool:
        """Does this key hold `permission` (`admin` grants everything)?"""
        return permission in self.permissions or "admin" in self.permissions


def default_key() -> EmulatorKey:
    """The key pair an `Emulator` accepts when given none."""
    return EmulatorKey(DEFAULT_API_KEY, DEFAULT_API_SECRET)


@dataclass
class EmulatorStats:
    """Counters a test can read. Updated as requests arrive."""

    token_requests: int = 0
    tokens_issued: int = 0
    revocations: int = 0
    token_requests_by_status: Counter[int] = field(default_factory=Counter)
    api_requests_by_status: Counter[int] = field(default_factory=Counter)

    @property
    def api_requests(self) -> int:
        """API (non-token) requests answered, whatever their status."""
        return sum(self.api_requests_by_status.values())


@dataclass(frozen=True)
class Failure:
    """One injected failure: the status to answer, and its `Retry-After` if any."""

    status: int
    retry_after: float | None = None


class FailureQueue:
    """Upcoming requests to fail, first in first out."""

    def __init__(self) -> None:
        self._pending: deque[Failure] = deque()

    def add(self, count: int, status: int, retry_after: float | None) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an int >= 0")
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if retry_after is None and status == 429:
            retry_after = 1.0  # a 429 without Retry-After would not be the API's
        if retry_after is not None and (not math.isfinite(retry_after) or retry_after < 0):
            raise ValueError("retry_after must be a finite number of seconds >= 0")
        self._pending.extend(Failure(status, retry_after) for _ in range(count))

    def take(self) -> Failure | None:
        return self._pending.popleft() if self._pending else None

    def __len__(self) -> int:
        return len(self._pending)


class RateLimiter:
    """A fixed-window limit: at most `limit` requests per `window` seconds."""

    def __init__(self, limit: int, window: float, retry_after: float | None) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be an int >= 0")
        if not math.isfinite(window) or window <= 0:
            raise ValueError("window must be a finite number of seconds > 0")
        self.limit = limit
        self.window = window
        self.retry_after = retry_after
        self._window_start = -math.inf
        self._count = 0

    def check(self, now: float) -> float | None:
        """None to let the request through, else the seconds to put in Retry-After."""
        if now >= self._window_start + self.window:
            self._window_start = now
            self._count = 0
        if self._count < self.limit:
            self._count += 1
            return None
        if self.retry_after is not None:
            return self.retry_after
        # Whole seconds, rounded up: the conventional form, never "0" while still limited.
        return float(max(1, math.ceil(self._window_start + self.window - now)))


class TokenIssuer:
    """Signs HS256 JWTs with a per-instance random key and verifies them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._signing_key = secrets.token_bytes(32)
        self._clock = clock
        self._serial = 0
        self._valid_from_serial = 0  # tokens below it were revoked
        # Every token issued starts with this same header segment. Anything else is not
        # ours and is refused before PyJWT parses its header, which it reads as JSON
        # before checking the signature: older PyJWT releases (2.8, which we allow) let
        # the RecursionError of a deeply nested header escape, a 500.
        sample = jwt.encode({}, self._signing_key, algorithm="HS256")
        self._header_segment = sample.partition(".")[0]
        self._key_of: dict[int, str] = {}  # serial -> api_key, to revoke one key's tokens
        self._revoked: set[int] = set()

    def issue(self, key: EmulatorKey, lifetime: int) -> str:
        now = self._clock()
        self._serial += 1
        self._key_of[self._serial] = key.api_key
        claims = {
            "sub": key.sub,
            "permissions": list(key.permissions),
            "iat": math.floor(now),
            # Rounded up: a token lives at least `expires_in` seconds from issue.
            "exp": math.ceil(now + lifetime),
            "jti": str(self._serial),
        }
        return jwt.encode(claims, self._signing_key, algorithm="HS256")

    def revoke_all(self) -> None:
        self._valid_from_serial = self._serial + 1
        self._key_of.clear()
        self._revoked.clear()

    def revoke_key(self, api_key: str) -> int:
        """Revoke every token issued so far for `api_key`; how many were live."""
        serials = [s for s, key in self._key_of.items() if key == api_key]
        for serial in serials:
            del self._key_of[serial]
        self._revoked.update(serials)
        return len(serials)

    def verify(self, token: str) -> tuple[dict[str, Any] | None, str]:
        """The token's claims, or None and the reason it is refused."""
        header_segment, dot, _ = token.partition(".")
        if header_segment != self._header_segment or not dot:
            return None, "Invalid access token"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._signing_key,
                algorithms=["HS256"],
                # Expiry is checked below against the emulator's own clock.
                options={
                    "require": ["sub", "exp", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return None, "Invalid access token"
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or self._clock() >= exp:
            return None, "Access token has expired"
        jti = claims.get("jti")
        if (
            not isinstance(jti, str)
            or not jti.isdigit()
            or int(jti) < self._valid_from_serial
            or int(jti) in self._revoked
        ):
            return None, "Access token has been revoked"
        return claims, ""


class KeyRing:
    """The accepted key pairs, by api_key."""

    def __init__(self, keys: Iterable[EmulatorKey]) -> None:
        self.by_api_key: dict[str, EmulatorKey] = {}
        self.by_sub: dict[str, EmulatorKey] = {}
        for key in keys:
            self.add(key)
        if not self.by_api_key:
            raise ValueError("an Emulator needs at least one key")

    def add(self, key: EmulatorKey) -> None:
        """Accept `key` from now on; ValueError if its api_key is already accepted."""
        if not isinstance(key, EmulatorKey):
            raise TypeError(f"keys must be EmulatorKey instances, not {type(key).__name__}")
        if key.api_key in self.by_api_key:
            raise ValueError(f"duplicate api_key {key.api_key!r}")
        self.by_api_key[key.api_key] = key
        self.by_sub[key.sub] = key

    def remove(self, api_key: str) -> EmulatorKey:
        """Stop accepting `api_key`; KeyError (naming it) if it is not accepted."""
        key = self.by_api_key.pop(api_key, None)
        if key is None:
            raise KeyError(f"no key {api_key!r} in this emulator")
        if self.by_sub.get(key.sub) is key:
            del self.by_sub[key.sub]
        return key

    def check(self, api_key: str, api_secret: str) -> EmulatorKey | None:
        key = self.by_api_key.get(api_key)
        # Compared in constant time, as a real server would.
        if key is None or not secrets.compare_digest(key.api_secret.encode(), api_secret.encode()):
            return None
        return key

    @property
    def first(self) -> EmulatorKey:
        if not self.by_api_key:
            raise LookupError("this emulator accepts no key now (all were removed)")
        return next(iter(self.by_api_key.values()))
