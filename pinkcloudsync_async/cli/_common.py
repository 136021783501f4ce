"""What the commands share: the expected-failure error, parsing helpers, the connection
flags and settings of the commands that call the API, and how a command runs async code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

import anyio
import httpx

from .._async_client import AsyncPinkCloudSyncClient
from .._config import FILE_SUFFIX, resolve_credentials
from .._constants import API_KEY_ENV, API_SECRET_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from .._credentials import CredentialProvider
from .._exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    InvalidResponseError,
    PermissionDeniedError,
    PinkCloudSyncError,
    RateLimitError,
)
from .._redaction import Redactor

if TYPE_CHECKING:
    # argparse's subparsers action has no public name; typeshed types it generically.
    Commands: TypeAlias = argparse._SubParsersAction["Parser"]

__all__ = [
    "PROG",
    "CLIError",
    "Call",
    "Connection",
    "Parser",
    "client_options",
    "connection",
    "positive",
    "run_coroutine",
]

PROG = "pinkcloudsync"


class CLIError(Exception):
    """An expected failure: one line for stderr, and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one `prog: error: ...` line after the usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(kind: Callable[[str], Any], *, allow_zero: bool = False) -> Callable[[str], Any]:
    """An argparse `type=` that accepts numbers > 0 (or >= 0)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0: {text!r}")
        return value

    return parse


def client_options(*, top_level: bool = False) -> Parser:
    """The connection flags, as a parent parser.

    The top-level parser carries them with their defaults, and each command that
    calls the API carries them again without defaults (`SUPPRESS`), so a flag works
    before the command (`pinkcloudsync --api-key X token`) and after it, the later
    one winning.
    """

    def default(value: Any) -> Any:
        return value if top_level else argparse.SUPPRESS

    parser = Parser(add_help=False)
    group = parser.add_argument_group("connection (flags override the environment)")
    group.add_argument(
        "--api-key", default=default(None), help=f"default: ${API_KEY_ENV}, then .env"
    )
    group.add_argument(
        "--api-secret",
        default=default(None),
        help=f"default: ${API_SECRET_ENV}, then .env (or ${API_SECRET_ENV}_FILE)",
    )
    group.add_argument(
        "--base-url",
        default=default(None),
        help=f"default: ${BASE_URL_ENV}, then .env, then {DEFAULT_BASE_URL}",
    )
    group.add_argument(
        "--timeout",
        type=positive(float),
        default=default(30.0),
        help="seconds (default 30)",
    )
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=default(False),
        help="allow plain http to a non-loopback host",
    )
    return parser


def _dotenv(path: Path) -> dict[str, str]:
    """The variables in `path` (a `.env`), or none; never fails a command."""
    if not path.is_file():
        return {}
    try:
        from dotenv import dotenv_values
    except ImportError:
        print(
            f"{PROG}: note: ignoring {path.name}: python-dotenv is not installed "
            '(pip install "pinkcloudsync-async[emulator]")',
            file=sys.stderr,
        )
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


@dataclass(frozen=True)
class Connection:
    """Where a command connects, and where each setting came from (for messages and
    `doctor`): flag > environment (plain or `*_FILE`) > `.env` > default."""

    credentials: CredentialProvider
    base_url: str
    base_url_origin: str


def _given(value: str | None) -> str | None:
    return value if value is not None and value.strip() else None


def connection(args: argparse.Namespace, environ: Mapping[str, str]) -> Connection:
    """The credentials and base URL for `args`; CLIError (exit 2) naming what to set."""
    layers = [("environment", environ), (".env", _dotenv(Path.cwd() / ".env"))]
    missing = [
        name
        for name, flag in ((API_KEY_ENV, args.api_key), (API_SECRET_ENV, args.api_secret))
        if _given(flag) is None
        and not any(_given(v.get(name)) or _given(v.get(name + FILE_SUFFIX)) for _, v in layers)
    ]
    if missing:
        raise CLIError(
            f"no credentials: set {' and '.join(missing)} (in the environment or a .env file) "
            "or pass --api-key/--api-secret",
            2,
        )
    try:
        credentials = resolve_credentials(
            api_key=_given(args.api_key),
            api_secret=_given(args.api_secret),
            layers=layers,
            argument_origins=("--api-key", "--api-secret"),
        )
    except ConfigurationError as exc:
        raise CLIError(str(exc), 2) from None
    if _given(args.base_url):
        return Connection(credentials, args.base_url.strip(), "--base-url")
    for label, variables in layers:
        if value := _given(variables.get(BASE_URL_ENV)):
            where = "in the environment" if label == "environment" else f"in {label}"
            return Connection(credentials, value.strip(), f"{BASE_URL_ENV} {where}")
    return Connection(credentials, DEFAULT_BASE_URL, "the default")


class Call:
    """One client command: its client, and how to describe its failures safely."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.connection = connection(args, os.environ)
        self.base_url = self.connection.base_url
        try:
            self.client = AsyncPinkCloudSyncClient(
                credentials=self.connection.credentials,
                base_url=self.base_url,
                allow_insecure_http=args.allow_insecure_http,
                timeout=args.timeout,
            )
        except ConfigurationError as exc:
            # The library's advice names its argument; here the flag is what to use.
            text = str(exc).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise CLIError(text, 2) from None

    def redact(self, text: str) -> str:
        """`text` without the API secret or the token the client holds, in any form
        (raw, JSON-escaped as `json.dumps` prints it, percent-encoded)."""
        token = self.client.auth.token
        try:
            secret = self.connection.credentials.read().api_secret
        except ConfigurationError:  # a secret file gone since: nothing of it to hide
            secret = None
        return Redactor(secret, None if token is None else token.access_token).text(text)

    def error(self, exc: Exception) -> CLIError:
        """The one line to show for an expected failure of this call."""
        if isinstance(exc, AuthenticationError):
            # Name where the refused key and secret came from: a flag, the
            # environment, a *_FILE or .env, not always the environment variables.
            where = self.connection.credentials.description
            text = f"authentication failed ({exc.error}: {exc.message}); check {where}"
        elif isinstance(exc, PermissionDeniedError):
            text = f"permission denied: {exc.message}"
        elif isinstance(exc, RateLimitError):
            wait = "" if exc.retry_after is None else f"; retry after {exc.retry_after:g} s"
            text = f"rate limited: {exc.message}{wait}"
        elif isinstance(exc, APIError):
            text = f"the API answered {exc.status_code} {exc.error}: {exc.message}"
        elif isinstance(exc, InvalidResponseError):
            text = f"unexpected response from {self.base_url}: {exc.message}"
        elif isinstance(exc, httpx.TimeoutException):
            text = f"timed out talking to {self.base_url}"
        elif isinstance(exc, httpx.DecodingError | httpx.TooManyRedirects):
            text = f"unexpected response from {self.base_url} ({type(exc).__name__})"
        else:
            text = f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})"
        return CLIError(self.redact(text))

    async def run(self, body: Callable[[AsyncPinkCloudSyncClient], Awaitable[int]]) -> int:
        """`body(client)` inside `async with client`; its expected failures as a CLIError."""
        try:
            async with self.client:
                return await body(self.client)
        except (PinkCloudSyncError, httpx.HTTPError) as exc:
            error = self.error(exc)
        raise error  # outside the handler: nothing of the call's error is chained


def run_coroutine(coroutine: Awaitable[int]) -> int:
    """Run `coroutine` to completion on a new event loop; its exit status."""

    async def wrapper() -> int:
        return await coroutine

    # asyncio: the demo serves uvicorn on this same loop.
    return anyio.run(wrapper, backend="asyncio")
