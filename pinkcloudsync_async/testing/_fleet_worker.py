"""One process of a fleet (see `Fleet`): its tests, its benchmark and its demo.

    python -m pinkcloudsync_async.testing._fleet_worker --mode async --tasks 50

Configured the twelve-factor way (PINKCLOUDSYNC_BASE_URL, _API_KEY, _API_SECRET,
_REDIS_URL, _TOKEN_ENCRYPTION_KEY from the environment) unless `--failure-ttl` or
`--breaker-cooldown` ask for a store built here. It builds one client, prints
`ready`, then for every `go` line on stdin runs one round (`--tasks` coroutines or
threads, each making `--calls` calls, or calling for `--duration` seconds) and
prints the round's outcome as one JSON line; `exit` (or EOF) ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

import anyio

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
from pinkcloudsync_async.stores import RedisTokenStore


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["async", "sync"], default="async")
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0)
    parser.add_argument("--pace", type=float, default=0.01, help="seconds between calls")
    parser.add_argument("--timeout", type=float, default=None)
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--refresh-margin", type=float, default=300.0)
    parser.add_argument("--failure-ttl", type=float, default=None)
    parser.add_argument("--breaker-cooldown", type=float, default=None)
    return parser.parse_args(argv)


def _client_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_retries": args.max_retries,
        "refresh_margin": args.refresh_margin,
    }
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    if args.failure_ttl is not None or args.breaker_cooldown is not None:
        kwargs["token_store"] = RedisTokenStore.from_url(
            os.environ["PINKCLOUDSYNC_REDIS_URL"],
            encryption_key=os.environ["PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY"],
            failure_ttl=args.failure_ttl or 2.0,
            breaker_cooldown=args.breaker_cooldown or 5.0,
        )
    return kwargs


class Round:
    """The outcome of one round: calls that succeeded, errors by type, first-call times."""

    def __init__(self) -> None:
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.first_call: list[float] = []
        self._lock = threading.Lock()

    def record(self, started: float, error: Exception | None, first: bool) -> None:
        with self._lock:
            if first:
                self.first_call.append(time.perf_counter() - started)
            if error is None:
                self.ok += 1
            else:
                self.errors[type(error).__name__] += 1

    def report(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "errors": dict(self.errors),
                "first_call_max_s": max(self.first_call, default=0.0),
            }
        )


def _keep_going(args: argparse.Namespace, started: float, done: int) -> bool:
    if args.duration:
        return bool(time.perf_counter() - started < args.duration)
    return bool(done < args.calls)


async def _async_round(client: AsyncPinkCloudSyncClient, args: argparse.Namespace) -> Round:
    outcome = Round()
    round_started = time.perf_counter()

    async def one() -> None:
        done = 0
        while _keep_going(args, round_started, done):
            started = time.perf_counter()
            try:
                await client.list_sessions()
            except Exception as exc:
                outcome.record(started, exc, first=done == 0)
            else:
                outcome.record(started, None, first=done == 0)
            done += 1
            if args.duration:
                await anyio.sleep(args.pace)  # pacing the load, not synchronizing

    async with anyio.create_task_group() as group:
        for _ in range(args.tasks):
            group.start_soon(one)
    return outcome


def _sync_round(client: PinkCloudSyncClient, args: argparse.Namespace) -> Round:
    outcome = Round()
    round_started = time.perf_counter()

    def one() -> None:
        done = 0
        while _keep_going(args, round_started, done):
            started = time.perf_counter()
            try:
                client.list_sessions()
            except Exception as exc:
                outcome.record(started, exc, first=done == 0)
            else:
                outcome.record(started, None, first=done == 0)
            done += 1
            if args.duration:
                time.sleep(args.pace)  # pacing the load, not synchronizing

    threads = [threading.Thread(target=one) for _ in range(args.tasks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


async def _run_async(args: argparse.Namespace) -> None:
    async with AsyncPinkCloudSyncClient(**_client_kwargs(args)) as client:
        print("ready", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() != "go":
                return
            print((await _async_round(client, args)).report(), flush=True)


def _run_sync(args: argparse.Namespace) -> None:
    with PinkCloudSyncClient(**_client_kwargs(args)) as client:
        print("ready", flush=True)
        for line in iter(sys.stdin.readline, ""):
            if line.strip() != "go":
                return
            print(_sync_round(client, args).report(), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.mode == "async":
        anyio.run(_run_async, args)
    else:
        _run_sync(args)


if __name__ == "__main__":
    main()
