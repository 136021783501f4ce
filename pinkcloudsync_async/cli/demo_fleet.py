"""`pinkcloudsync demo --fleet P`: P processes sharing one token through Redis.

It starts a `redis-server` on loopback (it must be on PATH), the emulator, and P
worker processes, each running its share of the coroutines against its own
client, configured the twelve-factor way (PINKCLOUDSYNC_REDIS_URL and a fresh
PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY). It reports the token requests the whole fleet
made against the token periods the run crossed:

    token requests <= 1 (the first) + floor(elapsed / period)

where a period is `lifetime - lead` as in the single-process demo: the bound of
one process, now for P of them. Without the store it would be P times that.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from typing import TextIO

from ._common import CLIError

__all__ = ["run_fleet_demo"]

_NO_REDIS = (
    "demo --fleet needs redis-server on PATH "
    "(Debian/Ubuntu: apt-get install --no-install-recommends redis-server)"
)


def run_fleet_demo(
    processes: int,
    *,
    duration: float,
    concurrency: int,
    token_lifetime: int,
    refresh_margin: float,
    out: TextIO,
) -> int:
    """Run the fleet demo, print its summary to `out`; 0 if nothing failed and the bound held.

    `concurrency` coroutines in all, split between the `processes`. Raises CLIError
    (exit 2) without `redis-server` or the `[redis]` extra.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise CLIError(_NO_REDIS, status=2)
    try:
        import cryptography  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        raise CLIError(
            'demo --fleet needs the [redis] extra: pip install "pinkcloudsync-async[redis]"',
            status=2,
        ) from None
    from ..testing import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
    from ..testing._fleet import Fleet, RedisServer, fleet_env, serve_in_thread
    from .demo import token_request_bound

    per_process = max(1, concurrency // processes)
    emulator = Emulator(token_lifetime=token_lifetime)
    redis_server = RedisServer(binary)
    redis_server.start()
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    args = [
        "--tasks",
        str(per_process),
        "--duration",
        str(duration),
        "--refresh-margin",
        str(refresh_margin),
    ]
    try:
        with serve_in_thread(emulator) as url:
            env = fleet_env(
                url, redis_server.url, key, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET
            )
            out.write(
                f"PinkCloudSync fleet demo: redis-server on {redis_server.url}, emulator on "
                f"{url}, tokens live {token_lifetime} s; starting {processes} processes x "
                f"{per_process} coroutines for {duration:g} s...\n"
            )
            out.flush()
            with Fleet(processes, env=env, args=args, timeout=duration + 60) as fleet:
                fleet.start()
                started = time.monotonic()
                outcomes = fleet.round()
                elapsed = time.monotonic() - started
    finally:
        redis_server.stop()
    calls = sum(outcome["ok"] for outcome in outcomes)
    failed = sum(sum(outcome["errors"].values()) for outcome in outcomes)
    token_requests = emulator.stats.token_requests
    bound, period, periods = token_request_bound(
        elapsed, lifetime=token_lifetime, refresh_margin=refresh_margin, revocations=0
    )
    ok = failed == 0 and calls > 0 and token_requests <= bound
    out.write(
        "\n".join(
            [
                "",
                "Summary",
                f"  processes       {processes} x {per_process} coroutines, one client each",
                f"  calls           {calls} in {elapsed:.1f} s, {failed} failed",
                f"  lifetimes       {elapsed:.1f} s crossed {periods} token periods of "
                f"{period:g} s ({token_lifetime} s tokens renewed "
                f"{token_lifetime - period:g} s early)",
                f"  token requests  {token_requests} fleet-wide (bound {bound} = 1 first + "
                f"{periods} periods; each process on its own: about {processes * bound})",
                f"  result          {'OK' if ok else 'FAILED'}",
            ]
        )
        + "\n"
    )
    out.flush()
    return 0 if ok else 1
