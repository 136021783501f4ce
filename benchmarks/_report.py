"""The Markdown table: one section per scenario, ratios first, machine on top."""

from __future__ import annotations

import math
from typing import Any

from . import _flows
from . import _socket_client as socket_client


def _num(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores; {m['implementation']} {m['python']} on "
        f"{m['platform']}; pinkcloudsync-async {m['pinkcloudsync_async']} "
        f"({m['commit']}), httpx {m['httpx']}, "
        f"anyio {m['anyio']}, Authlib {m['authlib']}, pydantic {m['pydantic']}. "
        f"Mode: {results['mode']}; wall time {results['wall_s']:.0f} s; load average "
        f"{m['loadavg_start']} at start, {results.get('loadavg_end', '?')} at end "
        "(other processes share the cores: CPU-time ratios are the least disturbed).",
        "",
    ]


def _overhead(title: str, data: dict[str, Any], goal: float | None) -> list[str]:
    if "skipped" in data:
        return [f"### {title}", "", f"skipped: {data['skipped']}", ""]
    lines = [
        f"### {title}",
        "",
        f"{data['n']:,} GETs per round at concurrency {data['concurrency']}; "
        f"{data['rounds']} measured rounds per flow, alternating, after a discarded warm-up "
        f"round; medians. Paired = each round against the floor round just before it.",
        "",
    ]
    rows = []
    for row in data["rows"]:
        verdict = cpu_verdict = ""
        if goal is not None and row["flow"] == _flows.OURS:
            verdict = f" ({'meets' if row['ratio'] <= goal else 'MISSES'} the {goal:.2f} goal)"
            cpu_verdict = f" ({'meets' if row['cpu_ratio'] <= goal else 'MISSES'})"
        rows.append(
            [
                row["flow"],
                _num(row["median_s"], 3),
                _num(row["req_per_s"], 0),
                f"**{row['ratio']:.3f}x**{verdict}",
                f"{row['paired_ratio_median']:.3f}x "
                f"({row['paired_ratio_min']:.3f}-{row['paired_ratio_max']:.3f})",
                f"{row['cpu_ratio']:.3f}x{cpu_verdict}",
            ]
        )
    lines += _table(
        [
            "flow",
            "median s/round",
            "req/s",
            "ratio to floor (wall)",
            "paired wall ratio (min-max)",
            "CPU-time ratio",
        ],
        rows,
    )
    return [*lines, ""]


def _storms(title: str, results: list[dict[str, Any]]) -> list[str]:
    lines = [f"### {title}", ""]
    rows = []
    for r in results:
        tokens = _num(r["token_requests"])
        if r["flow"] == _flows.OURS:
            tokens = f"**{tokens}**" + ("" if r.get("ok") else " FAIL")
        outcome = ", ".join(f"{n:,} x {what}" for what, n in sorted(r["outcomes"].items()))
        if r["cut_off_after_s"] is not None:
            outcome += (
                f"; cut off after {r['cut_off_after_s']:.0f} s, {r['unfinished']:,} unfinished"
            )
        rows.append(
            [
                r["storm"],
                r["flow"],
                _num(r["requests"]),
                tokens,
                _num(r["first_response_s"] and r["first_response_s"] * 1e3, 0),
                _num(r["last_response_s"] and r["last_response_s"] * 1e3, 0),
                outcome,
            ]
        )
    latency = results[0]["token_latency_s"] * 1e3
    lines += _table(
        [
            "storm",
            "flow",
            "requests",
            "token requests",
            "first response ms",
            "last response ms",
            "outcomes",
        ],
        rows,
    )
    lines += ["", f"Token endpoint latency {latency:.0f} ms. Ours must make exactly 1.", ""]
    return lines


def _refresh(runs: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    lines = [
        "### 6. Early refresh under load",
        "",
        f"One GET every {settings['interval'] * 1e3:.0f} ms for {settings['duration']:.0f} s; "
        f"API {settings['api_latency'] * 1e3:.0f} ms, token endpoint "
        f"{settings['token_latency'] * 1e3:.0f} ms; tokens live {settings['lifetime']} s, due "
        f"{settings['margin']:.0f} s before expiry. Window = the refresh's token request in "
        "flight. *Waited* = issued in the window but sent with the new token. *Stalled* = "
        "anywhere in the run, slower than API latency + half the token latency.",
        "",
    ]
    rows = []
    for r in runs:
        if not r.get("refreshes"):
            rows.append([r["flow"], "no refresh observed", *["-"] * 6])
            continue
        rows.append(
            [
                r["flow"],
                f"{_num(r['steady_p50_ms'])} / {_num(r['steady_p99_ms'])}",
                f"{_num(r['window_p50_ms'])} / {_num(r['window_p99_ms'])}",
                _num(r["window_max_ms"], 1),
                f"{r['waited_on_refresh']} of {r['window_n']}",
                _num(r["stalled"]),
                _num(r["max_ms"], 1),
            ]
        )
    lines += _table(
        [
            "flow",
            "steady p50 / p99 ms",
            "in window p50 / p99 ms",
            "window max ms",
            "waited on refresh",
            "stalled (whole run)",
            "run max ms",
        ],
        rows,
    )
    return [*lines, ""]


def _footprint(data: dict[str, Any]) -> list[str]:
    imports = data["imports"]
    lines = [
        "### 7. Import time and memory",
        "",
        f"Fresh interpreter per import, {imports['runs']} runs each, alternating; medians.",
        "",
    ]
    lines += _table(
        ["import", "median ms", "ratio to httpx + pydantic"],
        [
            [f"`import {row['import']}`", _num(row["median_ms"], 1), f"{row['ratio']:.2f}x"]
            for row in imports["rows"]
        ],
    )
    lines += [
        "",
        f"Of which in `pinkcloudsync_async` modules themselves (`-X importtime` self time, "
        f"one run): {imports['own_modules_self_ms']:.1f} ms.",
        "",
    ]
    lines += _table(
        ["one client: construct + one request (tracemalloc)", "bytes held", "over raw httpx"],
        [
            [row["flow"], _num(row["bytes"]), _num(row["over_floor_bytes"])]
            for row in data["memory"]["rows"]
        ],
    )
    return [*lines, ""]


def _fleet(data: dict[str, Any]) -> list[str]:
    lines = ["### 8. A fleet sharing one token through Redis", ""]
    if "skipped" in data:
        return [*lines, f"Skipped: {data['skipped']}.", ""]
    expiry = data["expiry"]
    lines += [
        f"{data['processes']} processes x {data['tasks']} coroutines; token requests made "
        f"fleet-wide. Expiry: {expiry['lifetime']} s tokens refreshed {expiry['margin']} s "
        f"early, {expiry['duration']} s of calls.",
        "",
    ]
    flows = [name for name in data if isinstance(data[name], dict) and "cold" in data[name]]
    lines += _table(
        ["", "cold start", "second wave", "expiry run", "revocation", "failed calls"],
        [
            [
                name,
                str(data[name]["cold"]),
                str(data[name]["second_wave"]),
                str(data[name]["expiry"]["token_requests"]),
                str(data[name]["revocation"]),
                str(data[name]["failed_calls"] + data[name]["expiry"]["failed_calls"]),
            ]
            for name in flows
        ],
    )
    down = data["redis_down"]
    lines += [
        "",
        f"Redis stopped: {down['token_requests']} token requests, {down['failed_calls']} "
        f"failed calls, slowest first call {down['first_call_max_s']:.3f} s.",
        "",
    ]
    return lines + _overhead(
        "8b. Per-request cost with the store (warm), MockTransport", data["overhead"], None
    )


def _socket_cpu(row: dict[str, Any], n: int) -> str:
    text = f"{_num(row['cpu_us'], 0)} ({_num(row['cpu_us_min'], 0)}-{_num(row['cpu_us_max'], 0)})"
    if row["cut_off"]:
        text += (
            f"; **cut off** after {row['cut_off_after_s']:.0f} s, "
            f"{row['cut_off_completed']:,} of {n:,} done"
        )
    return text


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _socket_goals(levels: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    """The issue's goals, each with the measured value and a verdict."""

    def cpu(c: int, variant: str) -> float | None:
        row = levels.get(c, {}).get(variant, {})
        return float(row["cpu_us"]) if "cpu_us" in row else None

    def was_cut(*cells: tuple[int, str]) -> bool:
        return any(levels.get(c, {}).get(variant, {}).get("cut_off") for c, variant in cells)

    def missing(*cells: tuple[int, str]) -> str:
        for c, variant in cells:
            row = levels.get(c, {}).get(variant)
            if row is None:
                return f"c={c:,} not run"
            if "skipped" in row:
                return f"{socket_client.LABELS[variant]} skipped"
        return "-"

    raw_aiohttp, raw_httpx = socket_client.RAW_AIOHTTP, socket_client.RAW_HTTPX
    ours, fast = socket_client.OURS, socket_client.OURS_AIOHTTP

    def goal(measured: tuple[int, str], base: tuple[int, str], limit: float) -> str:
        top, bottom = cpu(*measured), cpu(*base)
        if top is None or bottom is None:
            return f"not measured ({missing(measured, base)})"
        note = ", from a cut-off round" if was_cut(measured, base) else ""
        ratio = top / bottom
        return f"{ratio:.2f}x ({'meets' if ratio <= limit else 'MISSES'} {limit:.2f}x{note})"

    lines = [
        "Goals (issue 10), CPU per request:",
        "",
        f"- {socket_client.LABELS[fast]} over raw aiohttp at c=100, at most 1.5x: "
        + goal((100, fast), (100, raw_aiohttp), 1.5),
    ]
    for variant in (ours, fast):
        lines.append(
            f"- {socket_client.LABELS[variant]}, c=10,000 over c=100, at most 1.3x: "
            + goal((10_000, variant), (100, variant), 1.3)
        )
    per_c = "; ".join(f"c={c:,}: " + goal((c, ours), (c, raw_httpx), 1.05) for c in sorted(levels))
    lines.append(f"- {socket_client.LABELS[ours]} over raw httpx, at most 1.05x: {per_c}")
    return [*lines, ""]


def _socket(data: dict[str, Any], plot_link: str | None) -> list[str]:
    v = data["versions"]
    lines = [
        "### 9. Client CPU per request, loopback socket",
        "",
        "GETs on keep-alive loopback connections to a minimal HTTP/1.1 server in another "
        "process (`benchmarks/_socket_server.py`, a bare `asyncio.Protocol`). Each variant "
        "runs in its own client process; CPU = that process's `time.process_time()` across "
        f"a round, per request. Every variant has a pool of {data['pool']} connections. "
        f"{data['rounds']} measured rounds per variant, alternating, after a discarded "
        "warm-up round; medians (min-max). Paired = each round against the raw aiohttp "
        f"round just before it. A round still running after {data['cap_s']:.0f} s is cut off "
        "and its CPU is divided by the requests it completed. Server CPU = the server "
        "process's CPU over the round's wall time (100% = one core busy: the bottleneck). "
        f"aiohttp {v['aiohttp']}, httpx-aiohttp {v['httpx-aiohttp']}, httpcore "
        f"{v['httpcore']}, sniffio {v['sniffio']}.",
        "",
    ]
    rows = []
    by_level: dict[int, dict[str, dict[str, Any]]] = {}
    for level in data["levels"]:
        c = level["concurrency"]
        by_level[c] = {row["variant"]: row for row in level["rows"]}
        for row in level["rows"]:
            label = socket_client.LABELS[row["variant"]]
            if "skipped" in row:
                rows.append([f"{c:,}", label, f"skipped: {row['skipped']}", *["-"] * 4])
                continue
            rows.append(
                [
                    f"{c:,}",
                    label,
                    _socket_cpu(row, level["n"]),
                    f"**{_ratio(row['ratio'])}**",
                    _ratio(row["paired_ratio"]),
                    _num(row["req_per_s"], 0),
                    f"{row['server_busy_max'] * 100:.0f}%",
                ]
            )
    lines += _table(
        [
            "concurrency",
            "client",
            "CPU µs/request (min-max)",
            "ratio to raw aiohttp",
            "paired ratio",
            "req/s",
            "server CPU (max)",
        ],
        rows,
    )
    lines += ["", *_socket_goals(by_level)]
    if plot_link:
        lines += [f"![client CPU per request against concurrency]({plot_link})", ""]
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    s = results["scenarios"]
    goal = results["goal"]["overhead_ratio_max"]
    lines = ["## Benchmark results", "", *_machine(results)]
    if "overhead" in s:
        lines += _overhead("1. Steady-state overhead, httpx.MockTransport", s["overhead"], goal)
    if "telemetry" in s:
        lines += _overhead(
            "1b. Per-request cost of telemetry, httpx.MockTransport", s["telemetry"], None
        )
    if "loopback" in s:
        lines += _overhead(
            "2. Steady-state overhead, loopback socket, emulator", s["loopback"], None
        )
    titles = {
        "cold": "3. Cold-start storm",
        "expiry": "4. Expiry storm",
        "failure": "5. Failure storm",
    }
    for key, title in titles.items():
        if key in s:
            lines += _storms(title, s[key])
    if "refresh" in s:
        lines += _refresh(s["refresh"], results["settings"]["refresh"])
        if "plot" in results:
            lines += [f"![latency across a token refresh]({results['plot_link']})", ""]
    if "footprint" in s:
        lines += _footprint(s["footprint"])
    if "fleet" in s:
        lines += _fleet(s["fleet"])
    if "socket" in s:
        lines += _socket(s["socket"], results.get("socket_plot_link"))
    if results["failures"]:
        lines += ["**FAILED:**", "", *[f"- {f}" for f in results["failures"]], ""]
    return "\n".join(lines)
