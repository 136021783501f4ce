"""`pinkcloudsync demo`: the client doing its real job against a local emulator.

Hundreds of coroutines share one `AsyncPinkCloudSyncClient` for several token
lifetimes while the emulator revokes every token a few times, the last time by
rotating the key (a new key added, the client's credential store updated, the old
key removed and its tokens revoked). What it shows: each token is fetched once and
shared, renewed early in the background, and a revoked token, or a rotated key,
costs one token request and one replay per refused call, not an error.

The bound it checks. The client renews a token `lead = min(refresh_margin,
lifetime / 2)` seconds before it expires, so one token serves a *period* of
`lifetime - lead` seconds, measured from when it was requested. A revocation
starts a new token early. Over `elapsed` seconds of work, then:

    token requests <= 1 (the first) + floor(elapsed / period) + revocations

Each term is one token request: any more means requests raced to refresh.
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

import anyio
import httpx

from .._async_client import AsyncPinkCloudSyncClient
from .._constants import HTTP_BACKENDS
from .._exceptions import PinkCloudSyncError, raise_for_api_error
from .._token_lifecycle import refresh_lead
from ..testing import Emulator, EmulatorKey, serve_emulator
from ._common import positive, run_coroutine

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["DemoOptions", "DemoReport", "add_parser", "run", "run_demo", "token_request_bound"]

# The revoker strikes no later than this before an early refresh is due, in
# seconds, or this fraction of the token's period if shorter.
_BEFORE_REFRESH = (0.5, 1 / 6)


@dataclass(frozen=True)
class DemoOptions:
    """How hard and how long the demo drives the emulator."""

    duration: float = 15.0
    concurrency: int = 256  # worker coroutines
    # In flight at once: the client's pool size, and so its admission limit.
    max_in_flight: int = 32
    token_lifetime: int = 4
    refresh_margin: float = 1.0
    revocations: int = 2
    write_every: int = 200  # one request in this many creates a session
    http_backend: str | None = None  # None: PINKCLOUDSYNC_HTTP_BACKEND, else httpx


def add_parser(commands: Commands) -> None:
    """Add the `demo` command to the CLI's subparsers."""
    defaults = DemoOptions()
    parser = commands.add_parser(
        "demo",
        help="run the client hard against a local emulator",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # --help shows each default
    )
    parser.add_argument(
        "--duration", type=positive(float), default=defaults.duration, help="seconds"
    )
    parser.add_argument(
        "--concurrency", type=positive(int), default=defaults.concurrency, help="worker coroutines"
    )
    parser.add_argument(
        "--max-in-flight",
        type=positive(int),
        default=defaults.max_in_flight,
        help="requests in flight (pool size)",
    )
    parser.add_argument(
        "--token-lifetime", type=positive(int), default=defaults.token_lifetime, help="seconds"
    )
    parser.add_argument(
        "--revocations", type=int, default=defaults.revocations, help="times every token is revoked"
    )
    parser.add_argument(
        "--http-backend",
        choices=HTTP_BACKENDS,
        default=defaults.http_backend,
        help="the async client's HTTP backend (default: PINKCLOUDSYNC_HTTP_BACKEND, else httpx)",
    )
    parser.add_argument(
        "--fleet",
        type=positive(int),
        metavar="P",
        help="run P processes sharing one token through Redis (needs redis-server on PATH)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `demo` command."""
    if args.fleet is not None:
        from .demo_fleet import run_fleet_demo

        return run_fleet_demo(
            args.fleet,
            duration=args.duration,
            concurrency=args.concurrency,
            token_lifetime=args.token_lifetime,
            refresh_margin=DemoOptions.refresh_margin,
            out=sys.stdout,
        )
    options = DemoOptions(
        duration=args.duration,
        concurrency=args.concurrency,
        max_in_flight=args.max_in_flight,
        token_lifetime=args.token_lifetime,
        revocations=args.revocations,
        http_backend=args.http_backend,
    )
    return run_coroutine(run_demo(options, sys.stdout))


def token_request_bound(
    elapsed: float, *, lifetime: float, refresh_margin: float, revocations: int
) -> tuple[int, float, int]:
    """(bound, period, periods crossed): see the module docstring."""
    period = lifetime - refresh_lead(lifetime, refresh_margin)
    periods = math.floor(elapsed / period)
    return 1 + periods + revocations, period, periods


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 if there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class _Vault:
    """The demo's credential store: the client reads it for each token request."""

    def __init__(self, key: EmulatorKey) -> None:
        self.key = key

    async def read(self) -> tuple[str, str]:
        return self.key.api_key, self.key.api_secret


def _rotation(emulator: Emulator, vault: _Vault) -> Callable[[], None]:
    """The operator's key rotation: new key first, then the store, then the old key
    removed and its tokens revoked."""

    def rotate() -> None:
        old = vault.key
        new = EmulatorKey(old.api_key + "_rotated", secrets.token_urlsafe(16))
        emulator.add_key(new)
        vault.key = new
        emulator.remove_key(old.api_key)
        emulator.revoke_tokens(old.api_key)

    return rotate


@dataclass
class DemoReport:
    """What the demo measured."""

    requests: int = 0
    writes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    revocations: int = 0
    rotated: bool = False  # the last revocation rotated the key
    elapsed: float = 0.0
    in_flight_since: dict[int, float] = field(default_factory=dict)  # by request number
    http_backend: str = ""

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self.in_flight_since)


class _Progress:
    """A single rewritten line on a terminal, periodic lines otherwise."""

    def __init__(self, out: TextIO, tty: bool, emulator: Emulator, report: DemoReport) -> None:
        self.out, self.tty, self.emulator, self.report = out, tty, emulator, report

    def line(self, elapsed: float) -> str:
        report = self.report
        rate = report.requests / elapsed if elapsed > 0 else 0.0
        return (
            f"{elapsed:5.1f} s  requests {report.requests:>6} ({rate:4.0f}/s)  "
            f"errors {sum(report.errors.values())}  "
            f"token requests {self.emulator.stats.token_requests}  "
            f"revocations {report.revocations}  in flight {report.in_flight:>3}"
        )

    async def run(self, clock: Callable[[], float], start: float) -> None:
        interval = 0.2 if self.tty else 1.0
        while True:
            await anyio.sleep(interval)
            self.show(clock() - start)

    def show(self, elapsed: float, *, final: bool = False) -> None:
        if self.tty:
            self.out.write("\r" + self.line(elapsed) + ("\n" if final else ""))
        elif not final:
            self.out.write(self.line(elapsed) + "\n")
        self.out.flush()


async def run_demo(options: DemoOptions, out: TextIO, *, tty: bool | None = None) -> int:
    """Run the demo, print progress and a summary to `out`; 0 if everything held."""
    tty = out.isatty() if tty is None else tty
    emulator = Emulator(token_lifetime=options.token_lifetime)
    vault = _Vault(emulator.keys[0])
    report = DemoReport()
    progress = _Progress(out, tty, emulator, report)
    clock = time.monotonic
    limits = httpx.Limits(
        max_connections=options.max_in_flight, max_keepalive_connections=options.max_in_flight
    )
    async with serve_emulator(emulator) as url:
        client = AsyncPinkCloudSyncClient(
            credentials=vault.read,
            base_url=url,
            refresh_margin=options.refresh_margin,
            limits=limits,
            http_backend=options.http_backend,
        )
        out.write(
            f"PinkCloudSync demo: emulator on {url}, tokens live {options.token_lifetime} s; "
            f"{options.concurrency} coroutines share one client "
            f"(at most {client.max_concurrency} requests in flight, its pool size; "
            f"HTTP backend {client.http_backend}) for {options.duration:g} s, "
            f"revoking every token {options.revocations} times (the last by rotating the "
            "key).\n"
        )
        out.flush()
        report.http_backend = client.http_backend
        async with client:
            start = clock()
            end = start + options.duration

            # The workers' own limit, at the client's admission limit: what counts as
            # in flight here was sent, so the revoker can find a moment when every
            # request in flight carries the current token.
            gate = anyio.Semaphore(options.max_in_flight)

            async def worker() -> None:
                while clock() < end:
                    async with gate:
                        await _one_request(client, report, options.write_every)

            async with anyio.create_task_group() as workers:
                for _ in range(options.concurrency):
                    workers.start_soon(worker)
                async with anyio.create_task_group() as helpers:
                    helpers.start_soon(progress.run, clock, start)
                    helpers.start_soon(
                        _revoke,
                        emulator,
                        client,
                        report,
                        options,
                        start,
                        _rotation(emulator, vault),
                    )
                    # Once the workers are done, so are the helpers.
                    await _wait_until(clock, end)
                    helpers.cancel_scope.cancel()
            report.elapsed = clock() - start
    progress.show(report.elapsed, final=True)
    return _summarize(options, emulator, report, out)


async def _one_request(
    client: AsyncPinkCloudSyncClient, report: DemoReport, write_every: int
) -> None:
    number = report.requests + report.in_flight
    report.in_flight_since[number] = time.monotonic()
    write = write_every > 0 and number % write_every == write_every - 1
    started = time.perf_counter()
    try:
        if write:
            response = await client.post("sync/sessions", json={"device": "demo"})
            raise_for_api_error(response)
        else:
            await client.list_sessions()
    except (PinkCloudSyncError, httpx.HTTPError) as exc:
        report.errors[type(exc).__name__] += 1
    else:
        report.latencies.append(time.perf_counter() - started)
    finally:
        del report.in_flight_since[number]
        report.requests += 1
        report.writes += write


async def _wait_until(clock: Callable[[], float], when: float) -> None:
    await anyio.sleep(max(0.0, when - clock()))


async def _revoke(
    emulator: Emulator,
    client: AsyncPinkCloudSyncClient,
    report: DemoReport,
    options: DemoOptions,
    start: float,
    rotate: Callable[[], None],
) -> None:
    """Revoke every token at evenly spaced moments, clear of the early refreshes; the
    last time by rotating the key (which revokes the old key's tokens: all of them)."""
    _, period, _ = token_request_bound(
        0.0,
        lifetime=options.token_lifetime,
        refresh_margin=options.refresh_margin,
        revocations=0,
    )
    before_refresh = min(_BEFORE_REFRESH[0], period * _BEFORE_REFRESH[1])
    seen: tuple[object, float] = (None, 0.0)  # the current token, and since when
    for i in range(1, options.revocations + 1):
        await _wait_until(time.monotonic, start + options.duration * i / (options.revocations + 1))
        # Revoke only when it can cost each request at most one replay, as it would
        # with any server whose revocations are rarer than its response times:
        # - every request in flight was sent with the current token: one sent with
        #   an older token would be refused, and replayed with the current one,
        #   revoked too;
        # - no early refresh is near: one in flight could bring back a token issued
        #   a moment before the revocation.
        while True:
            token, now = client.auth.token, time.monotonic()
            if token is not seen[0]:
                seen = (token, now)
            oldest = min(report.in_flight_since.values(), default=now)
            if token is not None and oldest > seen[1] and token.refresh_at - now >= before_refresh:
                break
            await anyio.sleep(0.02)
        if i == options.revocations:
            rotate()
            report.rotated = True
        else:
            emulator.revoke_all_tokens()
        report.revocations += 1


def _summarize(options: DemoOptions, emulator: Emulator, report: DemoReport, out: TextIO) -> int:
    stats = emulator.stats
    token_requests = stats.token_requests
    bound, period, periods = token_request_bound(
        report.elapsed,
        lifetime=options.token_lifetime,
        refresh_margin=options.refresh_margin,
        revocations=report.revocations,
    )
    lifetimes = math.floor(report.elapsed / options.token_lifetime)
    errors = sum(report.errors.values())
    latencies = sorted(report.latencies)
    by_status = ", ".join(f"{s}: {n}" for s, n in sorted(stats.api_requests_by_status.items()))
    refused = stats.api_requests_by_status.get(401, 0)
    ok = errors == 0 and report.requests > 0 and token_requests <= bound
    rate = report.requests / report.elapsed if report.elapsed else 0.0
    error_text = ", ".join(f"{n} {name}" for name, n in report.errors.most_common()) or "none"
    lines = [
        "",
        "Summary",
        f"  requests        {report.requests} in {report.elapsed:.1f} s ({rate:.0f}/s), "
        f"{report.writes} of them writes",
        f"  errors          {errors} ({error_text})",
        f"  HTTP backend    {report.http_backend or 'httpx'}",
        f"  latency         p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms",
        f"  server answers  {by_status}"
        + (f" ({refused} refused a revoked token and were replayed)" if refused else ""),
        f"  lifetimes       {report.elapsed:.1f} s crossed {lifetimes} token lifetimes of "
        f"{options.token_lifetime} s; each token is renewed {options.token_lifetime - period:g} s "
        f"early, so it serves a {period:g} s period",
        f"  token requests  {token_requests} (bound {bound} = 1 first + {periods} periods of "
        f"{period:g} s in {report.elapsed:.1f} s + {report.revocations} revocations)",
    ]
    if report.rotated:
        lines.append(
            "  key rotation    the last revocation rotated the key (new key added, credential "
            "store updated, old key removed and its tokens revoked) with no failed call"
            if errors == 0
            else "  key rotation    the last revocation rotated the key"
        )
    lines.append(f"  result          {'OK' if ok else 'FAILED'}")
    if report.revocations < options.revocations:
        lines.append(
            f"  note            {report.revocations} of {options.revocations} revocations found "
            "a moment clear of older requests and refreshes"
        )
    if token_requests > bound:
        lines.append("  more token requests than the bound: callers raced to refresh")
    out.write("\n".join(lines) + "\n")
    out.flush()
    return 0 if ok else 1
