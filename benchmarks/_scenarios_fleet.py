"""Scenario 8: a fleet of P processes x C coroutines sharing one token through Redis.

Real worker processes (`pinkcloudsync_async.testing._fleet`), a real
`redis-server` on loopback and the emulator, served from a thread of this process,
which counts every token request the fleet makes. Each phase runs with the Redis
token store and without it (each process on its own), and reports token requests:

- cold: P x C at once, then a second wave of P new processes (a deploy);
- expiry: short-lived tokens over several lifetimes;
- revocation: every token revoked, the fleet refused;
- Redis down: the store's server stopped before the fleet starts.

And the per-request cost of a client with the store (warm) against one without,
over `httpx.MockTransport`: the store must not be on the per-request path.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from pinkcloudsync_async.stores import RedisTokenStore
from pinkcloudsync_async.testing import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from pinkcloudsync_async.testing._fleet import Fleet, RedisServer, fleet_env, serve_in_thread

from . import _flows
from ._mock import MockAPI, make_jwt
from ._scenarios_overhead import alternate, summarise

WITH_STORE = "Redis token store"
WITHOUT = "in-process (no store)"
STORE_FLOW = "pinkcloudsync-async + Redis store"


def _errors(outcomes: list[dict[str, Any]]) -> int:
    return sum(sum(outcome["errors"].values()) for outcome in outcomes)


class _Phases:
    def __init__(self, redis: RedisServer, key: str, processes: int, tasks: int) -> None:
        self.redis = redis
        self.key = key
        self.processes = processes
        self.tasks = tasks

    def env(self, url: str, store: bool) -> dict[str, str]:
        redis_url = self.redis.url if store else None
        key = self.key if store else None
        return fleet_env(url, redis_url, key, api_key=DEFAULT_API_KEY, secret=DEFAULT_API_SECRET)

    def cold_and_revocation(self, store: bool) -> dict[str, Any]:
        emulator = Emulator()
        args = ["--tasks", str(self.tasks)]
        with (
            serve_in_thread(emulator) as url,
            Fleet(self.processes, env=self.env(url, store), args=args) as fleet,
        ):
            fleet.start()
            started = time.perf_counter()
            errors = _errors(fleet.round())
            cold_s = time.perf_counter() - started
            cold = emulator.stats.token_requests
            second = fleet.start()
            errors += _errors(fleet.round(second))
            wave = emulator.stats.token_requests - cold
            emulator.revoke_all_tokens()
            before = emulator.stats.token_requests
            errors += _errors(fleet.round())
            revoked = emulator.stats.token_requests - before
        return {
            "cold": cold,
            "cold_s": cold_s,
            "second_wave": wave,
            "revocation": revoked,
            "failed_calls": errors,
        }

    def expiry(self, store: bool, lifetime: int, margin: float, duration: float) -> dict[str, Any]:
        emulator = Emulator(token_lifetime=lifetime)
        args = ["--tasks", "4", "--duration", str(duration), "--refresh-margin", str(margin)]
        with (
            serve_in_thread(emulator) as url,
            Fleet(self.processes, env=self.env(url, store), args=args) as fleet,
        ):
            fleet.start()
            errors = _errors(fleet.round())
        return {"token_requests": emulator.stats.token_requests, "failed_calls": errors}

    def redis_down(self) -> dict[str, Any]:
        emulator = Emulator()
        self.redis.stop()
        args = ["--tasks", str(self.tasks)]
        with (
            serve_in_thread(emulator) as url,
            Fleet(self.processes, env=self.env(url, True), args=args) as fleet,
        ):
            fleet.start()
            outcomes = fleet.round()
        return {
            "token_requests": emulator.stats.token_requests,
            "failed_calls": _errors(outcomes),
            "first_call_max_s": max(outcome["first_call_max_s"] for outcome in outcomes),
        }


async def _overhead(
    redis_url: str, key: str, n: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    api = MockAPI()
    transport = api.transport()
    store = RedisTokenStore.from_url(redis_url, encryption_key=key)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(store.aclose)
        clients: dict[str, httpx.AsyncClient] = {}
        for name, flow, extra in (
            (_flows.RAW, _flows.RAW, {}),
            (_flows.OURS, _flows.OURS, {}),
            (STORE_FLOW, _flows.OURS, {"token_store": store}),
        ):
            client = _flows.build(flow, transport, static_token=make_jwt(3600), **extra)
            await stack.enter_async_context(client)
            stack.push_async_callback(_flows.close, client)
            await _flows.warm(flow, client)
            clients[name] = client
        times = await alternate(clients, n, concurrency, rounds)
    return {"n": n, "concurrency": concurrency, "rounds": rounds, "rows": summarise(times, n)}


def fleet(settings: dict[str, Any]) -> dict[str, Any]:
    """Scenario 8; `{"skipped": why}` without `redis-server` on PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        return {"skipped": "redis-server is not on PATH"}
    processes, tasks = settings["fleet_processes"], settings["fleet_tasks"]
    expiry = settings["fleet_expiry"]
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    redis = RedisServer(binary)
    redis.start()
    try:
        phases = _Phases(redis, key, processes, tasks)
        result: dict[str, Any] = {"processes": processes, "tasks": tasks, "expiry": expiry}
        result["overhead"] = anyio.run(
            _overhead, redis.url, key, settings["n"], settings["concurrency"], settings["rounds"]
        )
        for label, store in ((WITH_STORE, True), (WITHOUT, False)):
            result[label] = {
                **phases.cold_and_revocation(store),
                "expiry": phases.expiry(store, **expiry),
            }
        result["redis_down"] = phases.redis_down()
    finally:
        redis.stop()
    return result


def check(result: dict[str, Any]) -> list[str]:
    """What a fleet run got wrong (CI fails on any)."""
    if "skipped" in result:
        return []
    ours, down = result[WITH_STORE], result["redis_down"]
    problems = []
    if ours["cold"] != 1:
        problems.append(f"a cold fleet made {ours['cold']} token requests, not 1")
    if ours["second_wave"] != 0:
        problems.append(f"a second wave made {ours['second_wave']} token requests, not 0")
    if ours["revocation"] != 1:
        problems.append(f"a revocation cost {ours['revocation']} token requests, not 1")
    if down["failed_calls"] or down["token_requests"] > result["processes"]:
        problems.append(f"with Redis down: {down}")
    failed = ours["failed_calls"] + ours["expiry"]["failed_calls"]
    if failed:
        problems.append(f"{failed} calls failed with the store")
    return problems
