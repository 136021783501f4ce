"""Scenario 1b: the per-request cost of telemetry, over `httpx.MockTransport`.

The same steady state as scenario 1 (a fresh token, N GETs at concurrency C, rounds
alternating), for our client three ways: telemetry off (`Telemetry(enabled=False)`),
the default (OpenTelemetry's API imported, no provider configured) and an SDK
provider recording to memory. Telemetry records token requests, waits, replays
and retries, none of which happen on this path: all three should sit on the floor.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from pinkcloudsync_async.telemetry import Telemetry

from . import _flows
from ._mock import MockAPI, make_jwt
from ._scenarios_overhead import alternate, summarise

OFF = "ours, telemetry off"
NO_PROVIDER = "ours, OpenTelemetry API, no provider"
SDK = "ours, OpenTelemetry SDK provider"


def _sdk_telemetry() -> Telemetry | None:
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    return Telemetry(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )


async def _telemetry_overhead(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    api = MockAPI()
    transport = api.transport()
    variants: dict[str, Telemetry | None] = {
        OFF: Telemetry(enabled=False),
        NO_PROVIDER: Telemetry(),
    }
    sdk = _sdk_telemetry()
    if sdk is not None:
        variants[SDK] = sdk
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        raw = _flows.build(_flows.RAW, transport, static_token=make_jwt(3600))
        await stack.enter_async_context(raw)
        clients[_flows.RAW] = raw
        for name, telemetry in variants.items():
            client = _flows.build(_flows.OURS, transport, telemetry=telemetry)
            await stack.enter_async_context(client)
            stack.push_async_callback(_flows.close, client)
            await _flows.warm(_flows.OURS, client)
            clients[name] = client
        times = await alternate(clients, n, concurrency, rounds)
    return {
        "n": n,
        "concurrency": concurrency,
        "rounds": rounds,
        "token_requests": api.token_requests,
        "rows": summarise(times, n),
    }


def telemetry_overhead(n: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Scenario 1b: our client with telemetry off, without a provider, with the SDK."""
    return anyio.run(_telemetry_overhead, n, concurrency, rounds)
