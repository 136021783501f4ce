"""`pinkcloudsync demo`: a short real run (exit status checked), and its verdict logic."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from services import missing_service

from pinkcloudsync_async.cli import main
from pinkcloudsync_async.cli.demo import (
    DemoOptions,
    DemoReport,
    _summarize,
    percentile,
    run_demo,
    token_request_bound,
)
from pinkcloudsync_async.testing import Emulator

TIMEOUT = 60


def test_a_short_demo_run_exits_0_within_its_bound() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pinkcloudsync_async",
            "demo",
            "--duration=4",
            "--token-lifetime=3",
            "--concurrency=100",
            "--max-in-flight=16",
            "--revocations=1",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert result.stderr == ""
    assert "result          OK" in out
    assert "\r" not in out  # not a terminal: periodic lines, no rewriting
    assert re.search(r"^\s+1\.\d s  requests", out, re.MULTILINE)  # live progress
    requests = int(re.search(r"requests\s+(\d+) in", out).group(1))  # type: ignore[union-attr]
    assert requests >= 100
    assert re.search(r"errors\s+0 \(none\)", out)
    assert re.search(r"latency\s+p50 [\d.]+ ms, p99 [\d.]+ ms", out)
    made, bound = map(
        int,
        re.search(r"token requests\s+(\d+) \(bound (\d+) =", out).groups(),  # type: ignore[union-attr]
    )
    assert 2 <= made <= bound  # at least the first token and the revocation's
    assert "1 revocations" in out
    # The one revocation was a key rotation, and it cost no failed call.
    assert "the last revocation rotated the key" in out
    assert "with no failed call" in out


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_on_a_terminal_progress_is_one_rewritten_line(anyio_backend: str) -> None:
    out = io.StringIO()
    options = DemoOptions(duration=1.0, concurrency=20, max_in_flight=4, revocations=0)
    with anyio.fail_after(TIMEOUT):
        status = await run_demo(options, out, tty=True)
    text = out.getvalue()
    assert status == 0, text
    assert "\r" in text
    assert "result          OK" in text


@pytest.mark.parametrize(
    ("elapsed", "lifetime", "margin", "revocations", "expected"),
    [
        (15.0, 4, 1.0, 2, (8, 3.0, 5)),  # the default demo: 1 + floor(15 / 3) + 2
        (14.9, 4, 1.0, 0, (5, 3.0, 4)),
        (2.9, 4, 1.0, 0, (1, 3.0, 0)),  # within the first period: the first token only
        (10.0, 2, 300.0, 1, (12, 1.0, 10)),  # the lead is capped at half the lifetime
        (10.0, 4, 0.0, 0, (3, 4.0, 2)),  # no early refresh: one per lifetime
    ],
)
def test_the_token_request_bound(
    elapsed: float,
    lifetime: int,
    margin: float,
    revocations: int,
    expected: tuple[int, float, int],
) -> None:
    assert (
        token_request_bound(
            elapsed, lifetime=lifetime, refresh_margin=margin, revocations=revocations
        )
        == expected
    )


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [
        ([], 0.5, 0.0),
        ([1.0], 0.99, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.0),
        ([float(i) for i in range(1, 101)], 0.99, 99.0),
        ([float(i) for i in range(1, 101)], 1.0, 100.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], fraction: float, expected: float) -> None:
    assert percentile(values, fraction) == expected


def verdict(token_requests: int, errors: Counter[str] | None = None) -> tuple[int, str]:
    emulator = Emulator()
    emulator.stats.token_requests = token_requests
    report = DemoReport(requests=100, errors=errors or Counter(), latencies=[0.01] * 100)
    report.elapsed, report.revocations = 9.5, 1
    out = io.StringIO()
    status = _summarize(DemoOptions(token_lifetime=4, refresh_margin=1.0), emulator, report, out)
    return status, out.getvalue()


def test_the_bound_is_printed_and_met() -> None:
    status, text = verdict(5)  # bound = 1 + floor(9.5 / 3) + 1 = 5
    assert status == 0
    assert (
        "token requests  5 (bound 5 = 1 first + 3 periods of 3 s in 9.5 s + 1 revocations)" in text
    )
    assert "result          OK" in text


def test_one_token_request_too_many_fails() -> None:
    status, text = verdict(6)
    assert status == 1
    assert "result          FAILED" in text
    assert "callers raced to refresh" in text


def test_any_error_fails() -> None:
    status, text = verdict(2, Counter({"AuthenticationError": 1}))
    assert status == 1
    assert "1 AuthenticationError" in text
    assert "result          FAILED" in text


class TestFleetDemo:
    def test_p_processes_share_one_token_and_exit_0(self) -> None:
        if shutil.which("redis-server") is None:
            missing_service("redis-server is not on PATH: demo --fleet cannot run")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pinkcloudsync_async",
                "demo",
                "--fleet=2",
                "--duration=1",
                "--concurrency=8",
                "--token-lifetime=60",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 x 4 coroutines" in result.stdout
        assert re.search(r"token requests\s+1 fleet-wide", result.stdout)

    def test_without_redis_server_it_is_one_line_and_exit_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no redis-server on it
        assert main(["demo", "--fleet", "2"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("pinkcloudsync: error: demo --fleet needs redis-server on PATH")
        assert err.count("\n") == 1
