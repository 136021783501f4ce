"""`pinkcloudsync request METHOD PATH [--json BODY]`: any authenticated call.

The status line goes to stderr and the body, alone, to stdout; the exit status is 1
for a 4xx or 5xx answer. Access tokens in the body are hidden.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from .._async_client import AsyncPinkCloudSyncClient
from .._wire import parse_json
from ._common import Call, CLIError, client_options, run_coroutine

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["add_parser", "run"]

_HIDDEN = "[hidden: see `pinkcloudsync token --show-token`]"


def add_parser(commands: Commands) -> None:
    """Add the `request` command to the CLI's subparsers."""
    parser = commands.add_parser(
        "request", parents=[client_options()], help="make any authenticated call"
    )
    parser.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    parser.add_argument("path", metavar="PATH", help="relative to the base URL, e.g. sync/sessions")
    parser.add_argument("--json", metavar="BODY", help="a JSON request body")
    parser.set_defaults(handler=run)


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


def run(args: argparse.Namespace) -> int:
    """The `request` command."""
    body_json: Any = None
    if args.json is not None:
        try:
            body_json = parse_json(args.json)
        except ValueError as exc:
            raise CLIError(f"--json is not valid JSON: {exc}", 2) from None
    path = args.path
    if "://" in path:
        raise CLIError("PATH is relative to the base URL, for example: sync/sessions", 2)
    call = Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        kwargs = {} if args.json is None else {"json": body_json}
        response = await client.request(args.method.upper(), path.lstrip("/"), **kwargs)
        # The status goes to stderr so that stdout is the body alone (pipe it to jq).
        print(call.redact(f"{response.status_code} {response.reason_phrase}"), file=sys.stderr)
        try:
            text = json.dumps(_hide_tokens(parse_json(response.content)), indent=2)
        except (ValueError, RecursionError):  # not JSON; or too deep to print as JSON
            text = response.text
        if text:
            print(call.redact(text))
        return 0 if response.status_code < 400 else 1

    return run_coroutine(call.run(body))
