"""Scenario 6: does any request wait while an early refresh is in flight?

Open-loop load: one GET every `interval` seconds (each its own task, so a stalled
request does not slow the issuing of the next), for `duration` seconds, against a
mock whose token endpoint takes `token_latency` (200 ms) and API `api_latency`.
Tokens live `lifetime` seconds and are due `margin` seconds before expiry, for
every flow (ours: refresh_margin, capped at lifetime/2; Authlib: leeway; the naive
flow: its margin), so each flow refreshes once during the run.

The refresh window is the first token request after warm-up, from its arrival at
the mock to its answer. Requests issued inside it are compared with the steady
state (issued before it). A request *waited on the refresh* when it was issued in
the window yet carried the new token: it can only have had it by waiting.
"""

from __future__ import annotations

import math
import time
from typing import Any

import anyio

from . import _flows
from ._mock import SESSIONS_PATH, MockAPI
from ._stats import percentile

OURS_CARRIED = "pinkcloudsync-async, no `async with`"
REFRESH_FLOWS = (_flows.OURS, OURS_CARRIED, _flows.AUTHLIB, _flows.NAIVE)


async def _run(
    flow: str,
    *,
    lifetime: int,
    margin: float,
    token_latency: float,
    api_latency: float,
    interval: float,
    duration: float,
) -> dict[str, Any]:
    api = MockAPI(
        token_lifetime=lifetime,
        token_latency=token_latency,
        api_latency=api_latency,
        track_tokens=True,
    )
    kind = _flows.OURS if flow == OURS_CARRIED else flow
    client = _flows.build(kind, api.transport(), margin=margin)
    issued: dict[int, float] = {}
    latency: dict[int, float] = {}

    async def one(bench_id: int) -> None:
        started = time.perf_counter()
        issued[bench_id] = started
        response = await client.get(SESSIONS_PATH, headers={"x-bench-id": str(bench_id)})
        latency[bench_id] = time.perf_counter() - started
        response.raise_for_status()

    async def load() -> None:
        await _flows.warm(kind, client)
        warm_generations = api.token_requests
        start = time.perf_counter()
        count = math.floor(duration / interval)
        async with anyio.create_task_group() as tg:
            for bench_id in range(count):
                delay = start + bench_id * interval - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                tg.start_soon(one, bench_id)
        assert warm_generations == 1

    try:
        if flow == OURS_CARRIED:
            await load()  # not entered: the request that notices carries the refresh
        else:
            async with client:
                await load()
    finally:
        await client.aclose()
        await _flows.close(client)
    return _analyse(flow, api, issued, latency, api_latency + token_latency / 2)


def _analyse(
    flow: str,
    api: MockAPI,
    issued: dict[int, float],
    latency: dict[int, float],
    stall_threshold: float,
) -> dict[str, Any]:
    refreshes = api.token_log[1:]  # [0] is the warm-up fetch
    points = sorted((issued[i], latency[i], api.carried[i]) for i in latency)
    result: dict[str, Any] = {
        "flow": flow,
        "refreshes": len(refreshes),
        "requests": len(points),
        # Anywhere in the run: catches the one caller that carries a refresh, too.
        "stalled": sum(1 for _, lat, _ in points if lat > stall_threshold),
        "stall_threshold_ms": stall_threshold * 1e3,
        "max_ms": max(lat for _, lat, _ in points) * 1e3,
    }
    if not refreshes:
        result["points"] = [(t - points[0][0], lat) for t, lat, _ in points]
        return result
    window_start, window_end = refreshes[0]
    steady = [lat for t, lat, _ in points if t < window_start]
    inside = [(lat, generation) for t, lat, generation in points if window_start <= t < window_end]
    inside_latencies = [lat for lat, _ in inside]
    result.update(
        {
            "window_s": window_end - window_start,
            "steady_n": len(steady),
            "steady_p50_ms": percentile(steady, 50) * 1e3,
            "steady_p99_ms": percentile(steady, 99) * 1e3,
            "window_n": len(inside),
            "window_p50_ms": percentile(inside_latencies, 50) * 1e3,
            "window_p99_ms": percentile(inside_latencies, 99) * 1e3,
            "window_max_ms": max(inside_latencies, default=math.nan) * 1e3,
            "waited_on_refresh": sum(1 for _, generation in inside if generation > 1),
            # Times relative to the refresh's start, for the plot.
            "window": (0.0, window_end - window_start),
            "points": [(round(t - window_start, 6), round(lat, 6)) for t, lat, _ in points],
        }
    )
    return result


def refresh_run(flow: str, **settings: Any) -> dict[str, Any]:
    """One flow through one early refresh, in its own event loop."""
    return anyio.run(lambda: _run(flow, **settings))


def plot(results: list[dict[str, Any]], path: str, settings: dict[str, Any]) -> None:
    """Latency over time across the refresh, one panel per flow, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = [r for r in results if r["flow"] != OURS_CARRIED]
    fig, axes = plt.subplots(
        len(shown), 1, figsize=(9, 2.3 * len(shown) + 0.8), sharex=True, sharey=True
    )
    colours = {_flows.OURS: "#d6336c", _flows.AUTHLIB: "#1c7ed6", _flows.NAIVE: "#f08c00"}
    for ax, result in zip(axes, shown, strict=True):
        xs = [t for t, _ in result["points"]]
        ys = [lat * 1e3 for _, lat in result["points"]]
        ax.plot(xs, ys, ".", ms=2.5, color=colours.get(result["flow"], "black"))
        if "window" in result:
            ax.axvspan(*result["window"], color="grey", alpha=0.2, lw=0)
            waited = result["waited_on_refresh"]
            label = f"{result['flow']}: {waited} of {result['window_n']} waited on the refresh"
        else:
            label = f"{result['flow']}: no refresh during the run"
        ax.set_title(label, fontsize=10, loc="left")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_ylabel("latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
    axes[-1].set_xlabel("request issued at (s, 0 = refresh starts; grey = refresh in flight)")
    fig.suptitle(
        f"Request latency across an early token refresh (token endpoint "
        f"{settings['token_latency'] * 1e3:.0f} ms, API {settings['api_latency'] * 1e3:.0f} ms, "
        f"one request every {settings['interval'] * 1e3:.0f} ms)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
