"""`python -m benchmarks`: every scenario of issues 6 and 10, side by side, as ratios.

Prints a Markdown table, writes it and the raw numbers to files, saves the refresh
plot, and exits 1 if any of our storms made more than one token request or ended
with a wrong outcome (CI runs `--quick` and relies on that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from . import _flows
from . import _scenarios_fleet as fleet
from . import _scenarios_footprint as footprint
from . import _scenarios_overhead as overhead
from . import _scenarios_refresh as refresh
from . import _scenarios_socket as socket_scenario
from . import _scenarios_storms as storms
from . import _scenarios_telemetry as telemetry
from ._report import render

RESULTS = Path(__file__).parent / "results"
SCENARIOS = (
    "overhead",
    "telemetry",
    "loopback",
    "cold",
    "expiry",
    "failure",
    "refresh",
    "footprint",
    "fleet",
    "socket",
)
OVERHEAD_GOAL = 1.03

FULL = {
    "n": 20_000,
    "concurrency": 100,
    "rounds": 7,
    "loopback_n": 5_000,
    "loopback_rounds": 5,
    "storm_size": 10_000,
    "failure_size": 1_000,
    "storm_token_latency": 0.01,
    "storm_cap": 60.0,
    "import_runs": 15,
    "fleet_processes": 8,
    "fleet_tasks": 50,
    "fleet_expiry": {"lifetime": 3, "margin": 1.0, "duration": 6.0},
    "socket_concurrency": (1, 10, 100, 1_000, 10_000),
    "socket_n": 3_000,
    "socket_rounds": 5,
    "socket_cap_s": 90.0,
}
QUICK = {
    "n": 2_000,
    "concurrency": 100,
    "rounds": 3,
    "loopback_n": 1_000,
    "loopback_rounds": 2,
    "storm_size": 1_000,
    "failure_size": 1_000,
    "storm_token_latency": 0.01,
    "storm_cap": 20.0,
    "import_runs": 5,
    "fleet_processes": 4,
    "fleet_tasks": 20,
    "fleet_expiry": {"lifetime": 3, "margin": 1.0, "duration": 4.0},
    "socket_concurrency": (1, 100),
    "socket_n": 1_000,
    "socket_rounds": 2,
    "socket_cap_s": 15.0,
}
# Scenario 9: every variant's connection pool (httpx's default max_connections).
SOCKET_POOL = 100
# Scenario 6: one early refresh per flow; the same in both modes.
REFRESH = {
    "lifetime": 6,
    "margin": 3.0,
    "token_latency": 0.2,
    "api_latency": 0.005,
    "interval": 0.002,
    "duration": 4.0,
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "pinkcloudsync_async"):
        commit += " + uncommitted changes"
    versions = {name: version(name) for name in ("httpx", "anyio", "authlib", "pydantic")}
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "pinkcloudsync_async": version("pinkcloudsync-async"),
        "commit": commit or "unknown",
        "loadavg_start": _loadavg(),
        **versions,
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 - whichever git is on PATH
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI size: about 2 minutes")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable); default: all",
    )
    parser.add_argument("-n", type=int, help="requests per round (scenario 1)")
    parser.add_argument("-c", "--concurrency", type=int, help="concurrent workers")
    parser.add_argument("--rounds", type=int, help="measured rounds per flow, after warm-up")
    parser.add_argument("--storm-size", type=int, help="requests in the cold and expiry storms")
    parser.add_argument("--json", type=Path, help="raw numbers (full default: results/latest.json)")
    parser.add_argument("--markdown", type=Path, help="table (full default: results/latest.md)")
    parser.add_argument(
        "--plot", type=Path, help="refresh plot (full default: results/refresh-latency.png)"
    )
    parser.add_argument(
        "--socket-plot",
        type=Path,
        help="socket CPU plot (full default: results/socket-cpu.png)",
    )
    args = parser.parse_args(argv)
    if not args.quick:
        # Only a full run replaces the committed results; --quick writes what it is told.
        # A full run of some scenarios writes its own files (results/socket.md), so it
        # never replaces the table of every scenario with part of it.
        chosen = list(dict.fromkeys(args.scenario or SCENARIOS))
        stem = "latest" if len(chosen) == len(SCENARIOS) else "-".join(chosen)
        args.json = args.json or RESULTS / f"{stem}.json"
        args.markdown = args.markdown or RESULTS / f"{stem}.md"
        args.plot = args.plot or RESULTS / "refresh-latency.png"
        args.socket_plot = args.socket_plot or RESULTS / "socket-cpu.png"
    return args


def _run_storms(kind: str, settings: dict[str, Any], failures: list[str]) -> list[dict[str, Any]]:
    names = [name for name in storms.STORMS if name.startswith(kind)]
    results = []
    for name in names:
        spec = storms.STORMS[name]
        size = settings["failure_size"] if spec["reject"] else settings["storm_size"]
        for flow in storms.STORM_FLOWS:
            result = storms.storm(
                flow,
                size=size,
                token_latency=settings["storm_token_latency"],
                cap=settings["storm_cap"],
                **spec,
            )
            result["storm"] = name
            if flow == _flows.OURS:
                problems = storms.check_ours(result, spec["reject"])
                result["ok"] = not problems
                failures.extend(f"{name} storm: ours {problem}" for problem in problems)
            results.append(result)
            _progress(f"  {name:18} {flow:28} token requests: {result['token_requests']}")
    return results


def _link(plot: Path, markdown: Path | None) -> str:
    """The plot's path relative to where the table is written, for its image link."""
    where = markdown.parent if markdown else Path.cwd()
    return os.path.relpath(plot.resolve(), where.resolve())


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    settings = dict(QUICK if args.quick else FULL)
    for key, value in (
        ("n", args.n),
        ("concurrency", args.concurrency),
        ("rounds", args.rounds),
        ("storm_size", args.storm_size),
    ):
        if value is not None:
            settings[key] = value
    chosen = args.scenario or list(SCENARIOS)
    failures: list[str] = []
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "settings": {**settings, "refresh": REFRESH},
        "goal": {"overhead_ratio_max": OVERHEAD_GOAL},
        "scenarios": {},
    }
    scenarios = results["scenarios"]
    started = time.perf_counter()

    if "overhead" in chosen:
        _progress("scenario 1: steady-state overhead over MockTransport")
        scenarios["overhead"] = overhead.mock_overhead(
            settings["n"], settings["concurrency"], settings["rounds"]
        )
    if "telemetry" in chosen:
        _progress("scenario 1b: per-request cost of telemetry over MockTransport")
        scenarios["telemetry"] = telemetry.telemetry_overhead(
            settings["n"], settings["concurrency"], settings["rounds"]
        )
    if "loopback" in chosen:
        _progress("scenario 2: steady-state overhead over loopback against the emulator")
        scenarios["loopback"] = overhead.loopback_overhead(
            settings["loopback_n"], settings["concurrency"], settings["loopback_rounds"]
        )
    for kind in ("cold", "expiry", "failure"):
        if kind in chosen:
            _progress(f"storm: {kind}")
            scenarios[kind] = _run_storms(kind, settings, failures)
    if "refresh" in chosen:
        _progress("scenario 6: early refresh under load")
        runs = []
        for flow in refresh.REFRESH_FLOWS:
            runs.append(refresh.refresh_run(flow, **REFRESH))
            _progress(f"  {flow}: waited on the refresh: {runs[-1].get('waited_on_refresh')}")
        ours = runs[0]
        if ours.get("refreshes", 0) < 1:
            failures.append("refresh: ours made no early refresh during the run")
        elif ours["waited_on_refresh"]:
            # Not a timing: a request issued mid-refresh that carried the new token
            # can only have had it by waiting for it.
            failures.append(f"refresh: {ours['waited_on_refresh']} of ours waited on it")
        if args.plot:
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            refresh.plot(runs, str(args.plot), REFRESH)
            results["plot"] = str(args.plot)
            results["plot_link"] = _link(args.plot, args.markdown)
        scenarios["refresh"] = runs
    if "footprint" in chosen:
        _progress("scenario 7: import time and memory")
        scenarios["footprint"] = {
            "imports": footprint.import_times(settings["import_runs"]),
            "memory": footprint.client_memory(),
        }
    if "fleet" in chosen:
        _progress("scenario 8: a fleet of processes sharing a token through Redis")
        scenarios["fleet"] = fleet.fleet(settings)
        failures.extend(f"fleet: {problem}" for problem in fleet.check(scenarios["fleet"]))
    if "socket" in chosen:
        _progress("scenario 9: client CPU per request on a loopback socket")
        data = socket_scenario.socket_scenario(
            settings["socket_concurrency"],
            settings["socket_n"],
            settings["socket_rounds"],
            SOCKET_POOL,
            settings["socket_cap_s"],
        )
        failures.extend(socket_scenario.check(data))
        if args.socket_plot:
            args.socket_plot.parent.mkdir(parents=True, exist_ok=True)
            socket_scenario.plot(data, str(args.socket_plot))
            results["socket_plot_link"] = _link(args.socket_plot, args.markdown)
        scenarios["socket"] = data

    results["wall_s"] = time.perf_counter() - started
    results["loadavg_end"] = _loadavg()
    results["failures"] = failures
    table = render(results)
    print(table)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0
