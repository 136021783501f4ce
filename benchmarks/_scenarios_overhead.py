"""Scenarios 1 and 2: steady-state cost per request, in alternating rounds.

Every flow gets the same N GETs at concurrency C; rounds alternate A B C D A B C D,
the first (warm-up) round of each flow is discarded and `gc.collect()` runs before
every round. Reported: median round time, req/s, ratio of medians to the floor, and
the median of the per-round paired ratios (each round against the floor round just
before it), which cancels slow drifts of the machine.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from . import _flows
from ._mock import SESSIONS_PATH, MockAPI, make_jwt
from ._stats import median, settle


async def drive(client: httpx.AsyncClient, n: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds for `concurrency` workers to make `n` GETs between them.

    CPU time (this process only) is what a busy shared machine disturbs least.
    """
    remaining = n
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            response = await client.get(SESSIONS_PATH)
            if response.status_code != 200:
                failures += 1

    started, cpu_started = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if failures:
        raise RuntimeError(f"{failures} of {n} requests failed")
    return elapsed, cpu


Times = dict[str, list[tuple[float, float]]]


async def alternate(
    clients: dict[str, httpx.AsyncClient], n: int, concurrency: int, rounds: int
) -> Times:
    """(wall, CPU) per round per flow: a discarded warm-up round, then `rounds` alternating."""
    times: Times = {name: [] for name in clients}
    for round_no in range(rounds + 1):
        for name, client in clients.items():
            settle()
            measured = await drive(client, n, concurrency)
            if round_no:
                times[name].append(measured)
    return times


def summarise(times: Times, n: int, floor: str = _flows.RAW) -> list[dict[str, Any]]:
    floor_wall = [wall for wall, _ in times[floor]]
    floor_cpu = [cpu for _, cpu in times[floor]]
    rows = []
    for name, measured in times.items():
        wall = [w for w, _ in measured]
        cpu = [c for _, c in measured]
        paired = [value / base for value, base in zip(wall, floor_wall, strict=True)]
        rows.append(
            {
                "flow": name,
                "median_s": median(wall),
                "req_per_s": n / median(wall),
                "ratio": median(wall) / median(floor_wall),
                "paired_ratio_median": median(paired),
                "paired_ratio_min": min(paired),
                "paired_ratio_max": max(paired),
                "cpu_median_s": median(cpu),
                "cpu_ratio": median(cpu) / median(floor_cpu),
                "rounds_s": wall,
                "rounds_cpu_s": cpu,
            }
        )
    return rows


async def _mock_overhead(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    api = MockAPI()
    transport = api.transport()
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        for flow in _flows.FLOWS:
            client = _flows.build(flow, transport, static_token=make_jwt(3600))
            await stack.enter_async_context(client)
            stack.push_async_callback(_flows.close, client)
            await _flows.warm(flow, client)
            clients[flow] = client
        times = await alternate(clients, n, concurrency, rounds)
    return {
        "n": n,
        "concurrency": concurrency,
        "rounds": rounds,
        "token_requests": api.token_requests,
        "rows": summarise(times, n),
    }


def mock_overhead(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Scenario 1: the four flows over `httpx.MockTransport`."""
    return anyio.run(_mock_overhead, n, concurrency, rounds)


async def _loopback_overhead(
    n: int, concurrency: int, rounds: int, flows: Sequence[str]
) -> dict[str, Any]:
    from pinkcloudsync_async.testing import Emulator, serve_emulator

    emulator = Emulator(token_lifetime=3600, token_latency=0.0)
    async with serve_emulator(emulator, host="127.0.0.1", port=0) as url:
        base_url = str(url).rstrip("/")
        transport_kwargs: dict[str, Any] = {"base_url": base_url}
        async with httpx.AsyncClient(timeout=30.0) as bootstrap:
            # The floor sends a token fetched once, by hand, with the emulator's test keys.
            response = await bootstrap.post(
                f"{base_url}/auth/token",
                json={"api_key": "pk_test_emulator", "api_secret": "sk_test_emulator"},
            )
            response.raise_for_status()
            static_token = response.json()["access_token"]
        async with AsyncExitStack() as stack:
            clients: dict[str, httpx.AsyncClient] = {}
            for flow in flows:
                client = _flows.build(
                    flow,
                    httpx.AsyncHTTPTransport(),
                    token_url=f"{base_url}/auth/token",
                    api_key="pk_test_emulator",
                    api_secret="sk_test_emulator",
                    static_token=static_token,
                    **transport_kwargs,
                )
                await stack.enter_async_context(client)
                stack.push_async_callback(_flows.close, client)
                await _flows.warm(flow, client)
                clients[flow] = client
            times = await alternate(clients, n, concurrency, rounds)
        token_requests = emulator.stats.token_requests
    return {
        "n": n,
        "concurrency": concurrency,
        "rounds": rounds,
        "token_requests": token_requests,
        "rows": summarise(times, n),
    }


def emulator_available() -> str | None:
    """None when `pinkcloudsync_async.testing` serves an emulator, else why not."""
    try:
        from pinkcloudsync_async.testing import Emulator, serve_emulator  # noqa: F401
    except ImportError as exc:
        return f"emulator not available ({exc})"
    return None


def loopback_overhead(
    n: int, concurrency: int, rounds: int, flows: Sequence[str] = (_flows.RAW, _flows.OURS)
) -> dict[str, Any]:
    """Scenario 2: the same over a real loopback socket against the emulator."""
    reason = emulator_available()
    if reason is not None:
        return {"skipped": reason}
    return anyio.run(_loopback_overhead, n, concurrency, rounds, flows)
