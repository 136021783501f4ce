"""`pinkcloudsync`: the command line (also `python -m pinkcloudsync_async`).

    pinkcloudsync emulator [--host H] [--port P] [--token-lifetime S] [--key KEY:SECRET:PERMS]
                           [--clock-skew S]
    pinkcloudsync token [--show-token]
    pinkcloudsync sessions
    pinkcloudsync request METHOD PATH [--json BODY]
    pinkcloudsync doctor [--redis-url URL]
    pinkcloudsync demo [--duration S] [--concurrency N]

Configuration, for every setting: flag > environment variable > `.env` in the
working directory > default. Expected failures print one line on stderr and exit
non-zero: 1 for a failed call, 2 for a usage or configuration error, 130 on Ctrl-C.
Secrets and tokens are never printed (`token --show-token` prints the token, asked).

One module per command: its `add_parser(commands)` adds its subparser, whose `handler`
default runs it and returns the exit status. What the commands share is in `_common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from . import demo, doctor, emulator, request, sessions, token
from ._common import PROG, CLIError, Parser, client_options

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["CLIError", "main"]


class _Command(Protocol):
    """What a command module provides (typed, so mypy checks each one registered)."""

    def add_parser(self, commands: Commands) -> None: ...


# In the order `--help` lists them. A new command is a new module and one entry here.
_COMMANDS: tuple[_Command, ...] = (token, sessions, request, doctor, emulator, demo)


def build_parser() -> argparse.ArgumentParser:
    """The `pinkcloudsync` argument parser."""
    from .. import __version__

    parser = Parser(
        prog=PROG,
        description="The PinkCloudSync API from the command line. The connection flags "
        "work before or after the command.",
        parents=[client_options(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in _COMMANDS:
        command.add_parser(commands)
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
