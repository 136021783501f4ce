"""`pinkcloudsync`: the command line (also `python -m pinkcloudsync_async`).

    pinkcloudsync emulator [--host H] [--port P] [--token-lifetime S] [--key KEY:SECRET:PERMS]
    pinkcloudsync token [--show-token]
    pinkcloudsync sessions
    pinkcloudsync request METHOD PATH [--json BODY]
    pinkcloudsync demo [--duration S] [--concurrency N]

Configuration, for every setting: flag > environment variable > `.env` in the
working directory > default. Expected failures print one line on stderr and exit
non-zero: 1 for a failed call, 2 for a usage or configuration error, 130 on Ctrl-C.
Secrets and tokens are never printed (`token --show-token` prints the token, asked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx

from .._async_client import AsyncPinkCloudSyncClient
from .._constants import API_KEY_ENV, API_SECRET_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from .._exceptions import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    InvalidResponseError,
    PermissionDeniedError,
    RateLimitError,
)
from .._token_exchange import redact
from ._common import PROG, CLIError, Parser, positive
from .demo import DemoOptions, run_demo
from .emulator import add_emulator_parser

__all__ = ["CLIError", "main"]

_HIDDEN = "[hidden: see `pinkcloudsync token --show-token`]"


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


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """(api_key, api_secret, base_url): flag > environment > .env > default."""
    dotenv = _dotenv(Path.cwd() / ".env")

    def pick(flag: str | None, name: str) -> str | None:
        for value in (flag, environ.get(name), dotenv.get(name)):
            if value is not None and value.strip():
                return value.strip()
        return None

    api_key = pick(args.api_key, API_KEY_ENV)
    api_secret = pick(args.api_secret, API_SECRET_ENV)
    missing = [
        name for name, value in ((API_KEY_ENV, api_key), (API_SECRET_ENV, api_secret)) if not value
    ]
    if missing:
        raise CLIError(
            f"no credentials: set {' and '.join(missing)} (in the environment or a .env file) "
            "or pass --api-key/--api-secret",
            2,
        )
    assert api_key is not None
    assert api_secret is not None
    return api_key, api_secret, pick(args.base_url, BASE_URL_ENV) or DEFAULT_BASE_URL


class _Call:
    """One client command: its client, and how to describe its failures safely."""

    def __init__(self, args: argparse.Namespace) -> None:
        api_key, api_secret, self.base_url = _settings(args, os.environ)
        self._secret = api_secret
        try:
            self.client = AsyncPinkCloudSyncClient(
                api_key,
                api_secret,
                base_url=self.base_url,
                allow_insecure_http=args.allow_insecure_http,
                timeout=args.timeout,
            )
        except ConfigurationError as exc:
            # The library's advice names its argument; here the flag is what to use.
            text = str(exc).replace("allow_insecure_http=True", "--allow-insecure-http")
            raise CLIError(text, 2) from None

    def redact(self, text: str) -> str:
        token = self.client.auth.token
        held = token.access_token.get_secret_value() if token is not None else ""
        return redact(text, (self._secret, held))

    def error(self, exc: Exception) -> CLIError:
        """The one line to show for an expected failure of this call."""
        if isinstance(exc, AuthenticationError):
            text = (
                f"authentication failed ({exc.error}: {exc.message}); check {API_KEY_ENV} "
                f"and {API_SECRET_ENV}"
            )
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
        else:
            text = f"cannot reach {self.base_url} ({type(exc).__name__}: {exc})"
        return CLIError(self.redact(text))

    async def run(self, body: Callable[[AsyncPinkCloudSyncClient], Awaitable[int]]) -> int:
        try:
            async with self.client:
                return await body(self.client)
        except (APIError, InvalidResponseError, httpx.TransportError) as exc:
            raise self.error(exc) from None


def _command_token(args: argparse.Namespace) -> int:
    call = _Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        token = await client.get_token()
        claims = token.claims
        print(f"subject:      {claims.sub or '(none)'}")
        print(f"permissions:  {', '.join(claims.permissions) or '(none)'}")
        print(f"expires in:   {token.remaining(time.monotonic()):.0f} s")
        if args.show_token:
            print(f"access token: {token.access_token.get_secret_value()}")
        return 0

    return _run(call.run(body))


def _command_sessions(args: argparse.Namespace) -> int:
    call = _Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        sessions = await client.list_sessions()
        print(json.dumps(sessions.model_dump(mode="json"), indent=2))
        return 0

    return _run(call.run(body))


def _hide_tokens(value: Any) -> Any:
    """`value` with every `access_token` field hidden, at any depth."""
    if isinstance(value, dict):
        return {
            k: _HIDDEN if k == "access_token" and isinstance(v, str) else _hide_tokens(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hide_tokens(item) for item in value]
    return value


def _command_request(args: argparse.Namespace) -> int:
    body_json: Any = None
    if args.json is not None:
        try:
            body_json = json.loads(args.json)
        except ValueError as exc:
            raise CLIError(f"--json is not valid JSON: {exc}", 2) from None
    path = args.path
    if "://" in path:
        raise CLIError("PATH is relative to the base URL, for example: sync/sessions", 2)
    call = _Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        kwargs = {} if args.json is None else {"json": body_json}
        response = await client.request(args.method.upper(), path.lstrip("/"), **kwargs)
        # The status goes to stderr so that stdout is the body alone (pipe it to jq).
        print(f"{response.status_code} {response.reason_phrase}", file=sys.stderr)
        try:
            text = json.dumps(_hide_tokens(json.loads(response.content)), indent=2)
        except ValueError:
            text = response.text
        if text:
            print(call.redact(text))
        return 0 if response.status_code < 400 else 1

    return _run(call.run(body))


def _command_demo(args: argparse.Namespace) -> int:
    options = DemoOptions(
        duration=args.duration,
        concurrency=args.concurrency,
        max_in_flight=args.max_in_flight,
        token_lifetime=args.token_lifetime,
        revocations=args.revocations,
    )
    return _run(run_demo(options, sys.stdout))


def _run(coroutine: Awaitable[int]) -> int:
    async def wrapper() -> int:
        return await coroutine

    # asyncio: the demo serves uvicorn on this same loop.
    return anyio.run(wrapper, backend="asyncio")


def build_parser() -> argparse.ArgumentParser:
    """The `pinkcloudsync` argument parser."""
    from .. import __version__

    parser = Parser(prog=PROG, description="The PinkCloudSync API from the command line.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    client_options = Parser(add_help=False)
    group = client_options.add_argument_group("connection (flags override the environment)")
    group.add_argument("--api-key", help=f"default: ${API_KEY_ENV}, then .env")
    group.add_argument("--api-secret", help=f"default: ${API_SECRET_ENV}, then .env")
    group.add_argument(
        "--base-url", help=f"default: ${BASE_URL_ENV}, then .env, then {DEFAULT_BASE_URL}"
    )
    group.add_argument("--timeout", type=positive(float), default=30.0, help="seconds (default 30)")
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http to a non-loopback host",
    )

    token = commands.add_parser(
        "token",
        parents=[client_options],
        help="get a token; show its subject, permissions, lifetime",
    )
    token.add_argument("--show-token", action="store_true", help="also print the token itself")
    token.set_defaults(handler=_command_token)

    sessions = commands.add_parser(
        "sessions", parents=[client_options], help="list sync sessions as JSON"
    )
    sessions.set_defaults(handler=_command_sessions)

    request = commands.add_parser(
        "request", parents=[client_options], help="make any authenticated call"
    )
    request.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    request.add_argument(
        "path", metavar="PATH", help="relative to the base URL, e.g. sync/sessions"
    )
    request.add_argument("--json", metavar="BODY", help="a JSON request body")
    request.set_defaults(handler=_command_request)

    add_emulator_parser(commands)

    defaults = DemoOptions()
    demo = commands.add_parser("demo", help="run the client hard against a local emulator")
    demo.add_argument("--duration", type=positive(float), default=defaults.duration, help="seconds")
    demo.add_argument(
        "--concurrency", type=positive(int), default=defaults.concurrency, help="worker coroutines"
    )
    demo.add_argument(
        "--max-in-flight",
        type=positive(int),
        default=defaults.max_in_flight,
        help="requests in flight (pool size)",
    )
    demo.add_argument(
        "--token-lifetime", type=positive(int), default=defaults.token_lifetime, help="seconds"
    )
    demo.add_argument(
        "--revocations", type=int, default=defaults.revocations, help="times every token is revoked"
    )
    demo.set_defaults(handler=_command_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except ImportError as exc:
        # `emulator` and `demo` need the [emulator] extra; say so in one line.
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
