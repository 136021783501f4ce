"""Scenario 7: what importing the package and holding one client cost.

Import time: each target is imported in a fresh interpreter that times its own
import statement (`time.perf_counter` around it); targets alternate, medians are
reported. One extra `python -X importtime` run attributes our own modules' share.
Memory: `tracemalloc` around constructing one client and making one request (its
token request included), after a first client has warmed every lazy cache.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from typing import Any

import anyio

from . import _flows
from ._mock import SESSIONS_PATH, MockAPI, make_jwt
from ._stats import median, settle

IMPORT_TARGETS = (
    "httpx, pydantic",
    "httpx, pydantic, anyio, jwt",
    "pinkcloudsync_async",
)
_TIMER = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"


def _import_once(target: str) -> float:
    out = subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, "-c", _TIMER.format(target)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return float(out.stdout.strip())


def _own_modules_share() -> float:
    """Seconds of `import pinkcloudsync_async` spent in our own modules (self time)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pinkcloudsync_async"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    total_us = 0
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip().startswith("pinkcloudsync_async"):
            total_us += int(parts[0].split(":")[-1])
    return total_us / 1e6


def import_times(runs: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {target: [] for target in IMPORT_TARGETS}
    for _ in range(runs):
        for target in IMPORT_TARGETS:
            times[target].append(_import_once(target))
    base = median(times[IMPORT_TARGETS[0]])
    rows = [
        {
            "import": target,
            "median_ms": median(values) * 1e3,
            "ratio": median(values) / base,
            "runs_ms": [v * 1e3 for v in values],
        }
        for target, values in times.items()
    ]
    return {"runs": runs, "rows": rows, "own_modules_self_ms": _own_modules_share() * 1e3}


async def _one_client_bytes(flow: str) -> int:
    api = MockAPI()
    transport = api.transport()
    static = make_jwt(3600)

    async def construct_and_request() -> Any:
        client = _flows.build(flow, transport, static_token=static)
        if flow == _flows.AUTHLIB:
            await client.fetch_token()  # type: ignore[attr-defined]
        response = await client.get(SESSIONS_PATH)
        response.raise_for_status()
        return client

    first = await construct_and_request()  # warms import-time and first-use caches
    await first.aclose()
    await _flows.close(first)
    del first
    settle()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        client = await construct_and_request()
        settle()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    await client.aclose()
    await _flows.close(client)
    return held


def client_memory() -> dict[str, Any]:
    rows = [{"flow": flow, "bytes": anyio.run(_one_client_bytes, flow)} for flow in _flows.FLOWS]
    floor = rows[0]["bytes"]
    for row in rows:
        row["over_floor_bytes"] = row["bytes"] - floor
    return {"rows": rows}
