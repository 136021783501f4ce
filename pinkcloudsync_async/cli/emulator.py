"""`pinkcloudsync emulator`: serve the emulator on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from .._config import is_loopback_host
from .._constants import API_KEY_ENV, API_SECRET_ENV, BASE_URL_ENV
from ..testing import ALL_PERMISSIONS, DEFAULT_PERMISSIONS, Emulator, EmulatorKey, serve_emulator
from ._common import PROG, CLIError, positive

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["add_parser", "parse_key", "run"]

DEFAULT_PORT = 8787


def parse_key(spec: str) -> EmulatorKey:
    """`KEY:SECRET[:PERM,PERM...]` as an EmulatorKey (default: the four sync/conflicts
    permissions). The error never repeats the spec: it holds a secret."""
    api_key, _, rest = spec.partition(":")
    api_secret, _, perms = rest.partition(":")
    if not api_key or not api_secret:
        raise CLIError("--key wants KEY:SECRET[:PERM,PERM...] (neither KEY nor SECRET empty)", 2)
    permissions = tuple(p.strip() for p in perms.split(",") if p.strip()) or DEFAULT_PERMISSIONS
    unknown = [p for p in permissions if p not in ALL_PERMISSIONS]
    if unknown:
        raise CLIError(
            f"--key {api_key}: unknown permission(s) {', '.join(unknown)} "
            f"(known: {', '.join(ALL_PERMISSIONS)})",
            2,
        )
    return EmulatorKey(api_key, api_secret, permissions)


def add_parser(commands: Commands) -> None:
    """Add the `emulator` subcommand to the CLI's subparsers."""
    parser = commands.add_parser("emulator", help="serve the PinkCloudSync emulator locally")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    parser.add_argument(
        "--port",
        type=positive(int, allow_zero=True),
        default=DEFAULT_PORT,
        help=f"default {DEFAULT_PORT}; 0 picks a free port",
    )
    parser.add_argument(
        "--token-lifetime", type=positive(int), default=3600, metavar="S", help="default 3600"
    )
    parser.add_argument(
        "--token-latency",
        type=positive(float, allow_zero=True),
        default=0.0,
        metavar="S",
        help="delay before each token response",
    )
    parser.add_argument(
        "--clock-skew",
        type=float,
        default=0.0,
        metavar="S",
        help="serve as if the server's clock were S seconds ahead (negative: behind); "
        "its Date header and tokens follow (for `pinkcloudsync doctor`)",
    )
    parser.add_argument(
        "--key",
        action="append",
        metavar="KEY:SECRET[:PERMS]",
        help="accept this key pair (repeatable; replaces the default test key); "
        "PERMS is a comma list, e.g. sync:read,conflicts:read",
    )
    parser.set_defaults(handler=run)


def _announce(url: str, emulator: Emulator, custom_keys: bool) -> None:
    first = emulator.keys[0]
    keys = "; ".join(f"{k.api_key} ({', '.join(k.permissions)})" for k in emulator.keys)
    lines = [
        f"PinkCloudSync emulator listening on {url} (Ctrl-C to stop)",
        f"# keys: {keys}; tokens live {emulator.token_lifetime} s",
        f"# keys at run time: POST {url}/_emulator/keys {{api_key, api_secret}}, "
        f"DELETE {url}/_emulator/keys/KEY, POST {url}/_emulator/keys/KEY/revoke",
        "# to use it, in another shell:",
        f"export {BASE_URL_ENV}={url}",
        f"export {API_KEY_ENV}={first.api_key}",
        # The well-known test secret may be shown; a secret given with --key is not echoed.
        f"# export {API_SECRET_ENV}=<the secret you gave with --key {first.api_key}>"
        if custom_keys
        else f"export {API_SECRET_ENV}={first.api_secret}",
    ]
    print("\n".join(lines), flush=True)


async def _serve(emulator: Emulator, host: str, port: int, custom_keys: bool) -> None:
    # Signals are ours, not uvicorn's: either one stops the server gracefully and the
    # command exits 0 (uvicorn alone would re-raise SIGTERM after its shutdown).
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve_emulator(emulator, host=host, port=port) as url:
            _announce(url, emulator, custom_keys)
            async for signum in signals:
                print(f"{PROG}: {signal.Signals(signum).name}: stopping", file=sys.stderr)
                break


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def run(args: argparse.Namespace) -> int:
    """The `emulator` command."""
    keys = [parse_key(spec) for spec in args.key] if args.key else None
    if not math.isfinite(args.clock_skew):
        raise CLIError("--clock-skew must be a finite number of seconds", 2)
    emulator = Emulator(
        keys,
        token_lifetime=args.token_lifetime,
        token_latency=args.token_latency,
        clock_skew=args.clock_skew,
    )
    if not is_loopback_host(args.host):
        print(
            f"{PROG}: warning: serving on {args.host}, not loopback: anyone who can reach it "
            "can use its keys",
            file=sys.stderr,
        )
    try:
        anyio.run(_serve, emulator, args.host, args.port, bool(keys), backend="asyncio")
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:  # where signals cannot be received (Windows)
        pass
    stats = emulator.stats
    print(
        f"{PROG}: emulator stopped after {_count(stats.token_requests, 'token request')} "
        f"and {_count(stats.api_requests, 'API request')}",
        file=sys.stderr,
    )
    return 0
