"""`pinkcloudsync sessions`: list the sync sessions, as JSON on stdout."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from .._async_client import AsyncPinkCloudSyncClient
from ._common import Call, client_options, run_coroutine

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add the `sessions` command to the CLI's subparsers."""
    parser = commands.add_parser(
        "sessions", parents=[client_options()], help="list sync sessions as JSON"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `sessions` command."""
    call = Call(args)

    async def body(client: AsyncPinkCloudSyncClient) -> int:
        sessions = await client.list_sessions()
        print(json.dumps(sessions.model_dump(mode="json"), indent=2))
        return 0

    return run_coroutine(call.run(body))
