"""The socket scenario's client process: one variant, one concurrency, rounds on command.

    python -m benchmarks._socket_client VARIANT URL --concurrency C -n N --pool P

Builds the variant's client, gets its token once (as its users would), prints
`{"ready": true}` (or `{"skipped": "why"}` when the variant cannot be built here),
then runs one round per line read on stdin and prints each round's JSON:
`{"wall_s", "cpu_s", "completed", "failures"}`. `cpu_s` is this process's CPU time
(`time.process_time()`, user + system, every thread) across the round, so the
server's speed does not enter it. EOF on stdin ends the process.

A round that would take too long (httpcore's pool scans every queued request for
every request, so thousands of queued requests cost quadratic time) is cut off by
the benchmark with SIGUSR1: the handler prints what the round had done so far and
exits at once, because neither finishing nor cancelling those requests is cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from ._mock import API_KEY, API_SECRET

RAW_AIOHTTP = "raw-aiohttp"
RAW_HTTPX = "raw-httpx"
OURS = "ours"
OURS_AIOHTTP = "ours-aiohttp"
LABELS = {
    RAW_AIOHTTP: "raw aiohttp `ClientSession`, static bearer header",
    RAW_HTTPX: "raw `httpx.AsyncClient`, static bearer header",
    OURS: "ours, default install",
    OURS_AIOHTTP: 'ours, `http_backend="aiohttp"`',
}
# Long enough that no request of a round (however queued) times out, for every variant.
TIMEOUT_S = 600.0
# Longer than any pause between one variant's rounds, so no round reconnects.
KEEPALIVE_S = 600.0
TOKEN_PATH = "/v1/auth/token"
SESSIONS_PATH = "/v1/sync/sessions"
CREDENTIALS = {"api_key": API_KEY, "api_secret": API_SECRET}

Get = Callable[[], Awaitable[int]]  # one GET of the sessions list; its status code


class Skipped(Exception):
    """The variant cannot run in this install (its message says why)."""


async def _raw_aiohttp(url: str, pool: int, stack: AsyncExitStack) -> Get:
    try:
        import aiohttp
    except ImportError as exc:
        raise Skipped(f"aiohttp is not installed ({exc})") from exc
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as bootstrap,
        bootstrap.post(url + TOKEN_PATH, json=CREDENTIALS) as response,
    ):
        response.raise_for_status()
        token = (await response.json())["access_token"]
    connector = aiohttp.TCPConnector(limit=pool, keepalive_timeout=KEEPALIVE_S)
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )
    )
    sessions_url = url + SESSIONS_PATH

    async def get() -> int:
        async with session.get(sessions_url) as response:
            await response.read()
            return response.status

    return get


def _limits(pool: int) -> httpx.Limits:
    return httpx.Limits(
        max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=KEEPALIVE_S
    )


async def _raw_httpx(url: str, pool: int, stack: AsyncExitStack) -> Get:
    client = await stack.enter_async_context(
        httpx.AsyncClient(base_url=url + "/v1", limits=_limits(pool), timeout=TIMEOUT_S)
    )
    response = await client.post("auth/token", json=CREDENTIALS)
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    async def get() -> int:
        return (await client.get("sync/sessions")).status_code

    return get


async def _ours(url: str, pool: int, stack: AsyncExitStack, **backend: Any) -> Get:
    from pinkcloudsync_async import AsyncPinkCloudSyncClient, ConfigurationError

    try:
        client = AsyncPinkCloudSyncClient(
            API_KEY,
            API_SECRET,
            base_url=url + "/v1",
            limits=_limits(pool),
            timeout=TIMEOUT_S,
            **backend,
        )
    except (TypeError, ConfigurationError) as exc:
        raise Skipped(f"{type(exc).__name__}: {exc}") from exc
    # Entered, as its README says: early refreshes run in the background.
    await stack.enter_async_context(client)
    await client.get_token()

    async def get() -> int:
        return (await client.get("sync/sessions")).status_code

    return get


async def build(variant: str, url: str, pool: int, stack: AsyncExitStack) -> Get:
    if variant == RAW_AIOHTTP:
        return await _raw_aiohttp(url, pool, stack)
    if variant == RAW_HTTPX:
        return await _raw_httpx(url, pool, stack)
    if variant == OURS:
        return await _ours(url, pool, stack)
    if variant == OURS_AIOHTTP:
        return await _ours(url, pool, stack, http_backend="aiohttp")
    raise ValueError(variant)


class RoundState:
    """What the running round has done; read by the cut-off handler too."""

    def __init__(self) -> None:
        self.started = self.cpu_started = 0.0
        self.remaining = self.completed = self.failures = 0

    def report(self, **extra: Any) -> str:
        return json.dumps(
            {
                "wall_s": time.perf_counter() - self.started,
                "cpu_s": time.process_time() - self.cpu_started,
                "completed": self.completed,
                "failures": self.failures,
                **extra,
            }
        )


async def run_round(get: Get, n: int, concurrency: int, state: RoundState) -> str:
    """`concurrency` workers make `n` GETs between them; the round's JSON line."""
    state.remaining, state.completed, state.failures = n, 0, 0

    async def worker() -> None:
        while state.remaining > 0:
            state.remaining -= 1
            if await get() != 200:
                state.failures += 1
            state.completed += 1

    gc.collect()  # no round pays for the previous one's garbage
    state.started, state.cpu_started = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return state.report(cut_off=False)


def _emit(line: str) -> None:
    # os.write: the cut-off handler may run while a buffered print is half done.
    os.write(sys.stdout.fileno(), (line + "\n").encode())


async def main(args: argparse.Namespace) -> None:
    state = RoundState()

    def cut_off(signum: int, frame: object) -> None:
        _emit(state.report(cut_off=True))
        os._exit(0)

    signal.signal(signal.SIGUSR1, cut_off)
    loop = asyncio.get_running_loop()
    async with AsyncExitStack() as stack:
        try:
            get = await build(args.variant, args.url, args.pool, stack)
        except Skipped as exc:
            _emit(json.dumps({"skipped": str(exc)}))
            return
        _emit(json.dumps({"ready": True}))
        while await loop.run_in_executor(None, sys.stdin.readline):
            _emit(await run_round(get, args.n, args.concurrency, state))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._socket_client")
    parser.add_argument("variant", choices=tuple(LABELS))
    parser.add_argument("url", help="the server, http://127.0.0.1:PORT")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("-n", type=int, required=True, help="GETs per round")
    parser.add_argument("--pool", type=int, required=True, help="connections per client")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(_parse(None)))
