"""Scenario 9: client CPU per request and throughput on a real loopback socket.

Four variants (`_socket_client.LABELS`) make GETs on keep-alive connections to a
minimal server in another process (`_socket_server`), at each concurrency. Each
variant runs in its own client process, which measures its own CPU time around a
round, so the server's speed does not enter the number; the server's CPU is
sampled around every round too, to show it was not the bottleneck. Every variant
gets a pool of the same size. Rounds alternate A B C D A B C D; each variant's
first round is a discarded warm-up; medians, min-max, ratios to raw aiohttp.

A round is cut off after `cap_s` seconds (httpcore's pool costs quadratic time in
the number of queued requests): its CPU per *completed* request is reported,
flagged, and that variant runs no further rounds at that concurrency.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from . import _socket_client as client
from ._stats import median

ROOT = Path(__file__).parent.parent
VARIANTS = (client.RAW_AIOHTTP, client.RAW_HTTPX, client.OURS, client.OURS_AIOHTTP)
FLOOR = client.RAW_AIOHTTP


def _python(module: str, *args: str, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    # `-m` from the repository root: this checkout's package, not an installed one.
    # "Ours, default" means the default backend, whatever this shell's environment says.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PINKCLOUDSYNC_HTTP_BACKEND", None)
    return subprocess.Popen(  # noqa: S603 - our own interpreter, our own modules
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any] | None:
    """The process's next JSON line, or None if it has none within `timeout` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        return None
    line = process.stdout.readline()
    return json.loads(line) if line else None


class Process:
    """A child process we started; ends it (and only it) on exit."""

    def __init__(self, module: str, *args: str) -> None:
        # Closed in close(): it outlives this call, holding what the child wrote.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = _python(module, *args, stderr=self.stderr)

    def read(self, timeout: float) -> dict[str, Any] | None:
        return _read_line(self.process, timeout)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def died(self, what: str) -> RuntimeError:
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace")[-3000:]
        return RuntimeError(f"{what} (exit status {self.process.poll()}):\n{tail}")

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()  # EOF: both our children exit on it
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


class Server:
    """`_socket_server` in its own process, with a keep-alive connection for its stats."""

    def __init__(self) -> None:
        self.child = Process("benchmarks._socket_server")
        port = self.child.process.stdout and self.child.process.stdout.readline().strip()
        if not port:
            self.child.close()
            raise self.child.died("the socket benchmark's server did not start")
        self.url = f"http://127.0.0.1:{int(port)}"
        self._stats = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)

    def stats(self) -> dict[str, Any]:
        self._stats.request("GET", "/_stats")
        result: dict[str, Any] = json.loads(self._stats.getresponse().read())
        return result

    def close(self) -> None:
        self._stats.close()
        self.child.close()


def _start(variant: str, server: Server, n: int, concurrency: int, pool: int) -> Any:
    """A ready client process, or the reason the variant is skipped."""
    args = ["--concurrency", str(concurrency), "-n", str(n), "--pool", str(pool)]
    worker = Process("benchmarks._socket_client", variant, server.url, *args)
    hello = worker.read(timeout=120)
    if hello is None or "ready" not in hello:
        worker.close()
        if hello is not None and "skipped" in hello:
            return str(hello["skipped"])
        raise worker.died(f"the {variant} client process did not start")
    return worker


def _round(worker: Process, server: Server, cap_s: float) -> dict[str, Any]:
    before = server.stats()
    worker.send("round")
    result = worker.read(timeout=cap_s)
    if result is None:
        worker.process.send_signal(signal.SIGUSR1)
        result = worker.read(timeout=60)
        if result is None:
            raise worker.died("a client process cut off without reporting")
    after = server.stats()
    result["server_cpu_s"] = after["cpu_s"] - before["cpu_s"]
    result["server_busy"] = result["server_cpu_s"] / result["wall_s"]
    return result


def _at_concurrency(
    server: Server, concurrency: int, n: int, rounds: int, pool: int, cap_s: float
) -> dict[str, Any]:
    workers: dict[str, Process] = {}
    skipped: dict[str, str] = {}
    token_requests: dict[str, int] = {}
    raw: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    try:
        for variant in VARIANTS:
            before = server.stats()["token_requests"]
            started = _start(variant, server, n, concurrency, pool)
            token_requests[variant] = server.stats()["token_requests"] - before
            if isinstance(started, str):
                skipped[variant] = started
            else:
                workers[variant] = started
        tokens_ready = server.stats()["token_requests"]
        for round_no in range(rounds + 1):
            for variant, worker in list(workers.items()):
                result = _round(worker, server, cap_s)
                result["round"] = round_no
                if round_no or result["cut_off"]:
                    raw[variant].append(result)
                if result["cut_off"]:
                    worker.close()  # it exits after reporting: its round cannot end cheaply
                    del workers[variant]
        # Nobody made a token request during the rounds (the raw variants cannot).
        during_rounds = server.stats()["token_requests"] - tokens_ready
    finally:
        for worker in workers.values():
            worker.close()
    return {
        "concurrency": concurrency,
        "n": n,
        "skipped": skipped,
        "token_requests_at_start": token_requests,
        "token_requests_during_rounds": during_rounds,
        "rounds": raw,
    }


def _summarise(level: dict[str, Any]) -> list[dict[str, Any]]:
    floor_rounds = {r["round"]: r for r in level["rounds"][FLOOR] if not r["cut_off"]}
    floor_cpu = [r["cpu_s"] / r["completed"] for r in floor_rounds.values()]
    rows = []
    for variant in VARIANTS:
        if variant in level["skipped"]:
            rows.append({"variant": variant, "skipped": level["skipped"][variant]})
            continue
        measured = level["rounds"][variant]
        per_request = [
            r["cpu_s"] / r["completed"] if r["completed"] else float("inf") for r in measured
        ]
        paired = [
            (r["cpu_s"] / r["completed"]) / (base["cpu_s"] / base["completed"])
            for r in measured
            if r["completed"] and (base := floor_rounds.get(r["round"])) is not None
        ]
        cpu = median(per_request)
        cut = [r for r in measured if r["cut_off"]]
        rows.append(
            {
                "variant": variant,
                "cpu_us": cpu * 1e6,
                "cpu_us_min": min(per_request) * 1e6,
                "cpu_us_max": max(per_request) * 1e6,
                "ratio": cpu / median(floor_cpu) if floor_cpu else None,
                "paired_ratio": median(paired) if paired else None,
                "req_per_s": median([r["completed"] / r["wall_s"] for r in measured]),
                "server_busy_max": max(r["server_busy"] for r in measured),
                "cut_off": bool(cut),
                "cut_off_completed": cut[0]["completed"] if cut else None,
                "cut_off_after_s": cut[0]["wall_s"] if cut else None,
                "failures": sum(r["failures"] for r in measured),
                "rounds": len(measured),
            }
        )
    return rows


def _progress(level: dict[str, Any]) -> None:
    cells = [
        f"{row['variant']} {row['cpu_us']:,.0f} us/req{' (cut off)' if row['cut_off'] else ''}"
        if "cpu_us" in row
        else f"{row['variant']} skipped"
        for row in level["rows"]
    ]
    print(f"  c={level['concurrency']:,}: " + ", ".join(cells), file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    found = {}
    for name in ("aiohttp", "httpx-aiohttp", "httpcore", "sniffio"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def socket_scenario(
    concurrencies: tuple[int, ...], n: int, rounds: int, pool: int, cap_s: float
) -> dict[str, Any]:
    """Scenario 9: every concurrency, every variant; the raw rounds and the summary."""
    server = Server()
    levels = []
    try:
        for concurrency in concurrencies:
            # At least two requests per worker, so a round is not only its ramp-up.
            level = _at_concurrency(
                server, concurrency, max(n, 2 * concurrency), rounds, pool, cap_s
            )
            level["rows"] = _summarise(level)
            levels.append(level)
            _progress(level)
        final = server.stats()
    finally:
        server.close()
    return {
        "pool": pool,
        "rounds": rounds,
        "cap_s": cap_s,
        "versions": versions(),
        "server_totals": final,
        "levels": levels,
    }


def check(data: dict[str, Any]) -> list[str]:
    """Counts, not timings: failed requests, and token requests made mid-rounds."""
    problems = []
    for level in data["levels"]:
        c = level["concurrency"]
        for row in level["rows"]:
            if row.get("failures"):
                problems.append(
                    f"socket c={c}: {row['variant']}: {row['failures']} requests failed"
                )
        if level["token_requests_during_rounds"]:
            problems.append(
                f"socket c={c}: {level['token_requests_during_rounds']} token requests "
                "during the rounds (ours must reuse its one token)"
            )
        for variant, count in level["token_requests_at_start"].items():
            if variant not in level["skipped"] and count != 1:
                problems.append(f"socket c={c}: {variant} made {count} token requests at start")
    return problems


def plot(data: dict[str, Any], path: str) -> None:
    """CPU per request against concurrency, one line per variant, log-log, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colours = {
        client.RAW_AIOHTTP: "#2f9e44",
        client.RAW_HTTPX: "#1c7ed6",
        client.OURS: "#d6336c",
        client.OURS_AIOHTTP: "#f08c00",
    }
    fig, ax = plt.subplots(figsize=(8, 5))
    for variant in VARIANTS:
        points = [
            (level["concurrency"], row["cpu_us"], row["cut_off"])
            for level in data["levels"]
            for row in level["rows"]
            if row["variant"] == variant and "cpu_us" in row
        ]
        label = client.LABELS[variant].replace("`", "")
        if not points:
            ax.plot([], [], " ", label=f"{label}: skipped")
            continue
        xs, ys, cut = zip(*points, strict=True)
        ax.plot(xs, ys, "-o", color=colours[variant], label=label)
        cut_xs = [x for x, c in zip(xs, cut, strict=True) if c]
        cut_ys = [y for y, c in zip(ys, cut, strict=True) if c]
        if cut_xs:
            ax.plot(cut_xs, cut_ys, "o", ms=11, mfc="none", color=colours[variant])
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel("concurrent requests (coroutines sharing one client)")
    ax.set_ylabel("client CPU per request (µs, median of rounds)")
    ax.set_title(
        f"GETs on keep-alive loopback sockets, pool of {data['pool']} connections\n"
        "(ringed: round cut off, CPU over the requests it completed)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
