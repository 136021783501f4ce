"""`pinkcloudsync token`: get a token; show its subject, permissions and lifetime."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from .._async_client import AsyncPinkCloudSyncClient
from ._common import Call, client_options, run_coroutine

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add the `token` command to the CLI's subparsers."""
    parser = commands.add_parser(
        "token",
        parents=[client_options()],
        help="get a token; show its subject, permissions, lifetime",
    )
    parser.add_argument("--show-token", action="store_true", help="also print the token itself")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `token` command."""
    call = Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        token = await client.get_token()
        claims = token.claims
        print(f"subject:      {claims.sub or '(none)'}")
        print(f"permissions:  {', '.join(claims.permissions) or '(none)'}")
        print(f"expires in:   {token.remaining(time.monotonic()):.0f} s")
        if args.show_token:
            print(f"access token: {token.access_token.get_secret_value()}")
        return 0

    return run_coroutine(call.run(body))
