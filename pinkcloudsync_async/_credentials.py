"""Where the API key and secret come from, read again for each token request.

A `CredentialProvider` is the token source's collaborator: the source asks it for
`Credentials` each time it makes a token request (never on the per-request path),
so a rotated secret file or a vault's new secret takes effect at the next refresh
without a restart. Three kinds, chosen by the configuration (`_config.py`):

- fixed values (an argument or an environment variable),
- files (`PINKCLOUDSYNC_API_KEY_FILE` / `PINKCLOUDSYNC_API_SECRET_FILE`, the Docker
  and Kubernetes secrets convention: the value is the file's content, stripped),
- a callable or async callable returning `(api_key, api_secret)` (`credentials=`).

The secret stays in a `SecretStr` in our frames; no message here holds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeAlias, runtime_checkable

import anyio.to_thread
from pydantic import SecretStr

from ._exceptions import CredentialsError

__all__ = [
    "CallableCredentials",
    "CredentialProvider",
    "Credentials",
    "CredentialsCallable",
    "FromFile",
    "Setting",
    "SettingCredentials",
    "Value",
]

_Pair: TypeAlias = tuple[str, str | SecretStr]
CredentialsCallable: TypeAlias = Callable[[], _Pair | Awaitable[_Pair]]


class Credentials(NamedTuple):
    """One API key and its secret, as read for one token request."""

    api_key: str
    api_secret: SecretStr

    def same_as(self, other: Credentials) -> bool:
        """Do both hold the same key and secret?"""
        return (
            self.api_key == other.api_key
            and self.api_secret.get_secret_value() == other.api_secret.get_secret_value()
        )


class Value:
    """A setting fixed once: an argument or an environment variable. `origin` says
    which (e.g. "the PINKCLOUDSYNC_API_SECRET environment variable")."""

    __slots__ = ("_value", "origin")
    changes = False

    def __init__(self, value: str | SecretStr, origin: str) -> None:
        self._value = value if isinstance(value, SecretStr) else SecretStr(value)
        self.origin = origin

    def read(self) -> SecretStr:
        return self._value


class FromFile:
    """A setting read from a file each time: its content, stripped.

    `origin` names the variable that pointed here; the error for a missing,
    unreadable or empty file names the file, never its content.
    """

    __slots__ = ("origin", "path")
    changes = True

    def __init__(self, path: str | Path, origin: str) -> None:
        self.path = Path(path)
        self.origin = f"{origin} ({self.path})"

    def read(self) -> SecretStr:
        # A blocking read, also on an event loop: a secret file is a few bytes on a
        # tmpfs, read once per token request; a worker thread would cost more.
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8"
            raise CredentialsError(f"Cannot read {self.origin}: {reason}.") from None
        if not text:
            raise CredentialsError(f"{self.origin} is empty.")
        return SecretStr(text)


Setting: TypeAlias = Value | FromFile


@runtime_checkable
class CredentialProvider(Protocol):
    """What a token source asks for credentials: `read` on a thread, `aread` on an
    event loop; `changes` is False when they can never differ from one read to the
    next (then a refused secret is not read again); `description` says where they
    come from, for error messages and `pinkcloudsync doctor`. A provider is also a
    `credentials=` callable (calling it reads)."""

    changes: bool
    description: str

    def read(self) -> Credentials: ...

    async def aread(self) -> Credentials: ...

    def __call__(self) -> Credentials: ...


class SettingCredentials:
    """The key and the secret, each a fixed value or a file (a `CredentialProvider`)."""

    def __init__(self, api_key: Setting, api_secret: Setting) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.changes = api_key.changes or api_secret.changes
        self.description = f"the API key from {api_key.origin}, the secret from {api_secret.origin}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def read(self) -> Credentials:
        return Credentials(self.api_key.read().get_secret_value(), self.api_secret.read())

    async def aread(self) -> Credentials:
        # Files are read blocking, on purpose: see FromFile.read.
        return self.read()

    def __call__(self) -> Credentials:
        return self.read()


class CallableCredentials:
    """A `credentials=` callable (sync or async) returning `(api_key, api_secret)`,
    as a `CredentialProvider`.

    On an event loop a plain callable runs in a worker thread (a vault client may
    block); an async one is awaited. A sync client refuses an async callable at
    construction. Whatever it raises, or a result that is not a pair of non-empty
    strings, becomes a `CredentialsError` (the original is its `__cause__`).
    """

    def __init__(self, function: CredentialsCallable, *, for_async: bool) -> None:
        if not callable(function):
            raise CredentialsError(
                "credentials= must be a callable returning (api_key, api_secret), "
                f"not {type(function).__name__}."
            )
        self._function = function
        self._is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
        )
        if self._is_async and not for_async:
            raise CredentialsError(
                "credentials= is an async callable: the sync client needs a plain one."
            )
        name = getattr(function, "__qualname__", None) or type(function).__name__
        self.description = f"the credentials= callable {name}"
        self.changes = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def read(self) -> Credentials:
        result = self._call(self._function)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # never awaited: no "coroutine was never awaited" warning
            raise CredentialsError(
                f"{self.description} returned an awaitable: the sync client needs "
                "(api_key, api_secret)."
            )
        return self._check(result)

    def __call__(self) -> Credentials:
        return self.read()

    async def aread(self) -> Credentials:
        if self._is_async:
            result = await self._acall()
        else:
            result = await anyio.to_thread.run_sync(self._call, self._function)
            if inspect.isawaitable(result):
                result = await self._await(result)
        return self._check(result)

    def _call(self, function: Callable[[], Any]) -> Any:
        try:
            return function()
        except Exception as exc:
            raise CredentialsError(f"{self.description} raised {type(exc).__name__}.") from exc

    async def _acall(self) -> Any:
        try:
            return await self._function()  # type: ignore[misc]
        except Exception as exc:
            raise CredentialsError(f"{self.description} raised {type(exc).__name__}.") from exc

    async def _await(self, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            raise CredentialsError(f"{self.description} raised {type(exc).__name__}.") from exc

    def _check(self, result: Any) -> Credentials:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise CredentialsError(
                f"{self.description} returned {type(result).__name__}, not a pair "
                "(api_key, api_secret)."
            )
        api_key, api_secret = result
        if isinstance(api_secret, SecretStr):
            api_secret = api_secret.get_secret_value()
        for name, value in (("api_key", api_key), ("api_secret", api_secret)):
            if not isinstance(value, str) or not value.strip():
                kind = "an empty string" if isinstance(value, str) else type(value).__name__
                raise CredentialsError(
                    f"{self.description} returned {kind} for {name}, not a non-empty string."
                )
        return Credentials(api_key.strip(), SecretStr(api_secret.strip()))
