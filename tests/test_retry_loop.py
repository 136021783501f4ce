"""Retries end to end through both clients (issue 3).

Every scenario runs against each twin (`twins.Twin`: the async client on asyncio and
trio, the sync client on threads) with an injected sleep that records each delay and
advances a fake clock by it, so nothing here really sleeps. The cancellation tests at
the end are the async client's own and use real anyio sleeps, bounded.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time

import anyio
import anyio.lowlevel
import httpx
import pytest
import twins
from fakes import API_KEY, API_SECRET, BASE_URL
from twins import (
    SESSIONS,
    TIMEOUT,
    Server,
    Twin,
    WaitSpy,
    fail,
    reply,
    retry_after,
    token_reply,
)

from pinkcloudsync_async import (
    APIConnectionError,
    AsyncPinkCloudSyncClient,
    PinkCloudSyncError,
    RateLimitError,
    ServerError,
)

# The fixtures every test here shares (see twins.py).
twin = twins.twin
anyio_backend = twins.anyio_backend

pytestmark = pytest.mark.anyio

FAILURES = pytest.mark.parametrize("failures", [0, 1, 2, 3])
BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
DEFAULT_MAX_RETRIES = 2
OK = reply(200, json={"ok": True})
LOGGER = "pinkcloudsync_async"
FROZEN_NOW = 1_700_000_000  # a wall-clock second, for HTTP-date Retry-After values
HTML = {"content-type": "text/html"}


def assert_full_jitter(sleeps: list[float], *, base: float = 0.5, cap: float = 8.0) -> None:
    """Each wait lies in [0, min(cap, base * 2**retry)]: capped exponential, full jitter."""
    for retry, delay in enumerate(sleeps):
        assert 0.0 <= delay <= min(cap, base * 2.0**retry), (retry, delay, sleeps)


def http_date(offset: float) -> str:
    return email.utils.formatdate(FROZEN_NOW + offset, usegmt=True)


# ------------------------------------------------------------ what is retried


@FAILURES
@pytest.mark.parametrize("method", ["GET", "POST", "PATCH"])
async def test_429_is_retried_for_any_method(twin: Twin, failures: int, method: str) -> None:
    server = Server(api=[reply(429)] * failures + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, method, "things")
    attempts = min(failures, DEFAULT_MAX_RETRIES) + 1
    assert len(server.api_requests) == attempts
    assert {r.method for r in server.api_requests} == {method}
    assert response.status_code == (200 if failures <= DEFAULT_MAX_RETRIES else 429)
    assert len(twin.sleeps) == attempts - 1
    assert_full_jitter(twin.sleeps)


@FAILURES
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ConnectTimeout])
@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_connection_failures_are_retried_for_any_method(
    twin: Twin, failures: int, error: type[httpx.TransportError], method: str
) -> None:
    server = Server(api=[fail(error)] * failures + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            if failures <= DEFAULT_MAX_RETRIES:
                response = await twin.request(client, method, "things")
                assert response.status_code == 200
            else:
                # Raw calls keep httpx semantics: the last transport error is raised.
                with pytest.raises(error) as caught:
                    await twin.request(client, method, "things")
                assert "3 attempts" in " ".join(getattr(caught.value, "__notes__", []))
    attempts = min(failures, DEFAULT_MAX_RETRIES) + 1
    assert len(server.api_requests) == attempts
    assert len(twin.sleeps) == attempts - 1
    assert_full_jitter(twin.sleeps)


@FAILURES
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retried_for_get(twin: Twin, failures: int, status: int) -> None:
    server = Server(api=[reply(status)] * failures + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, "GET", "things")
    attempts = min(failures, DEFAULT_MAX_RETRIES) + 1
    assert len(server.api_requests) == attempts
    assert response.status_code == (200 if failures <= DEFAULT_MAX_RETRIES else status)
    assert len(twin.sleeps) == attempts - 1
    assert_full_jitter(twin.sleeps)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
async def test_503_is_retried_for_every_idempotent_method(twin: Twin, method: str) -> None:
    server = Server(api=[reply(503), reply(503), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, method, "things")
    assert response.status_code == 200
    assert len(server.api_requests) == 3
    assert len(twin.sleeps) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_5xx_is_not_retried_for_a_non_idempotent_method(
    twin: Twin, status: int, method: str
) -> None:
    server = Server(api=[reply(status), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, method, "things", json={"n": 1})
    assert response.status_code == status
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


@FAILURES
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_503_is_retried_for_post_with_an_idempotency_key(
    twin: Twin, failures: int, method: str
) -> None:
    server = Server(api=[reply(503)] * failures + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(
                client, method, "things", json={"n": 1}, headers={"Idempotency-Key": "job-42"}
            )
    attempts = min(failures, DEFAULT_MAX_RETRIES) + 1
    assert len(server.api_requests) == attempts
    assert {r.headers["Idempotency-Key"] for r in server.api_requests} == {"job-42"}
    assert {r.content for r in server.api_requests} == {b'{"n":1}'}
    assert response.status_code == (200 if failures <= DEFAULT_MAX_RETRIES else 503)
    assert len(twin.sleeps) == attempts - 1


@FAILURES
@pytest.mark.parametrize("error", [httpx.ReadError, httpx.ReadTimeout])
@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", {}), ("PUT", {}), ("POST", {"Idempotency-Key": "job-7"})],
    ids=["GET", "PUT", "POST-with-key"],
)
async def test_read_failures_are_retried_when_the_request_is_idempotent(
    twin: Twin,
    failures: int,
    error: type[httpx.TransportError],
    method: str,
    headers: dict[str, str],
) -> None:
    server = Server(api=[fail(error)] * failures + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            if failures <= DEFAULT_MAX_RETRIES:
                response = await twin.request(client, method, "things", headers=headers)
                assert response.status_code == 200
            else:
                with pytest.raises(error):
                    await twin.request(client, method, "things", headers=headers)
    attempts = min(failures, DEFAULT_MAX_RETRIES) + 1
    assert len(server.api_requests) == attempts
    assert len(twin.sleeps) == attempts - 1


@pytest.mark.parametrize("error", [httpx.ReadError, httpx.ReadTimeout])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_read_failures_are_not_retried_for_a_non_idempotent_request(
    twin: Twin, error: type[httpx.TransportError], method: str
) -> None:
    # The server may have processed it: repeating a POST could do it twice.
    server = Server(api=[fail(error), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            with pytest.raises(error):
                await twin.request(client, method, "things", json={"n": 1})
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 422])
@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", {}), ("POST", {"Idempotency-Key": "job-9"})],
    ids=["GET", "POST-with-key"],
)
async def test_other_4xx_are_never_retried(
    twin: Twin, status: int, method: str, headers: dict[str, str]
) -> None:
    # Even with a Retry-After header: only 429 means "come back later".
    server = Server(api=[retry_after(status, "1"), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, method, "things", headers=headers)
    assert response.status_code == status
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


@pytest.mark.parametrize(
    "network_like", [True, False], ids=["network-like-transport", "MockTransport"]
)
@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [("PUT", {}, 503), ("POST", {"Idempotency-Key": "job-3"}, 503), ("POST", {}, 429)],
    ids=["PUT-503", "POST-with-key-503", "POST-429"],
)
async def test_a_streamed_body_is_never_retried(
    twin: Twin, network_like: bool, method: str, headers: dict[str, str], status: int
) -> None:
    # A generator body is sent once; whether the transport happened to buffer it
    # (MockTransport reads it into memory) must not change the rule.
    server = Server(api=[reply(status), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, network_like=network_like) as client:
            body = twin.stream_body([b"chunk-1,", b"chunk-2"])
            response = await twin.request(client, method, "things", content=body, headers=headers)
    assert response.status_code == status
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


# ------------------------------------------------------------ how long to wait


@pytest.mark.parametrize("value", ["0", "1", "3", "1.5", " 7 "])
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_is_honoured_exactly(
    twin: Twin, value: str, status: int
) -> None:
    server = Server(api=[retry_after(status, value)] * 2 + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 200
    assert twin.sleeps == [float(value), float(value)]


@pytest.mark.parametrize(
    ("offset", "expected"), [(7, 7.0), (42, 42.0), (0, 0.0), (-3600, 0.0)]
)  # a date in the past means now
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_as_an_http_date_is_honoured_exactly(
    twin: Twin, monkeypatch: pytest.MonkeyPatch, offset: int, expected: float, status: int
) -> None:
    monkeypatch.setattr(time, "time", lambda: float(FROZEN_NOW))
    server = Server(api=[retry_after(status, http_date(offset)), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, timeout=None) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 200
    assert twin.sleeps == [expected]


@pytest.mark.parametrize("value", ["45", "60"])
async def test_retry_after_up_to_the_cap_is_honoured_without_a_timeout(
    twin: Twin, value: str
) -> None:
    server = Server(api=[retry_after(429, value), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, timeout=None) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 200
    assert twin.sleeps == [float(value)]


@pytest.mark.parametrize("value", ["45", "60"])
async def test_retry_after_up_to_the_cap_is_honoured_by_a_default_client(
    twin: Twin, value: str
) -> None:
    # The 60 s cap is the documented limit: a client built with no timeout= of its
    # own must honour a server that asks for 45 s, not give up because of the
    # library's default per-phase timeout (30 s read).
    server = Server(api=[retry_after(429, value), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, "GET", "things")
    assert twin.sleeps == [float(value)]
    assert response.status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "-5",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "",
        "5 seconds",
        "0x10",
        "Wed, 99 Foo 2024 25:61:00 GMT",
    ],
)
async def test_garbage_retry_after_falls_back_to_jittered_backoff(twin: Twin, value: str) -> None:
    server = Server(api=[retry_after(503, value)] * 3 + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=3) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 200
    assert len(server.api_requests) == 4
    assert len(twin.sleeps) == 3
    assert_full_jitter(twin.sleeps)


async def test_backoff_is_exponential_with_full_jitter_and_capped(twin: Twin) -> None:
    server = Server(api=[reply(503)] * 10 + [OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(
            server, max_retries=10, retry_backoff_base=0.5, retry_backoff_max=2.0, timeout=None
        ) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 200
    assert len(twin.sleeps) == 10
    assert_full_jitter(twin.sleeps, base=0.5, cap=2.0)
    ceilings = [min(2.0, 0.5 * 2.0**retry) for retry in range(10)]
    # Full jitter: not the ceiling every time (lockstep clients would stay in lockstep).
    assert any(
        delay < 0.999 * ceiling for delay, ceiling in zip(twin.sleeps, ceilings, strict=True)
    )
    assert len(set(twin.sleeps)) > 1


# ---------------------------------------------------------------- the 60 s cap


@pytest.mark.parametrize("value", ["61", "120", "3600"])
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_over_the_cap_returns_the_response_at_once(
    twin: Twin, value: str, status: int
) -> None:
    server = Server(api=[retry_after(status, value), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, timeout=None) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == status
    assert response.headers["Retry-After"] == value
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_http_date_over_the_cap_returns_the_response_at_once(
    twin: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: float(FROZEN_NOW))
    server = Server(api=[retry_after(429, http_date(120)), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, timeout=None) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 429
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_list_sessions_raises_rate_limit_error_over_the_cap(twin: Twin) -> None:
    server = Server(
        api=[
            reply(
                429,
                json={"error": "rate_limited", "message": "Slow down"},
                headers={"Retry-After": "120"},
            ),
            reply(200, json=SESSIONS),
        ]
    )
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            with pytest.raises(RateLimitError) as caught:
                await twin.do(client, "list_sessions")
    assert caught.value.retry_after == 120.0
    assert caught.value.status_code == 429
    assert caught.value.error == "rate_limited"
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_token_endpoint_retry_after_over_the_cap_raises_at_once(twin: Twin) -> None:
    server = Server(token=[retry_after(429, "120"), token_reply()])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            with pytest.raises(RateLimitError) as caught:
                await twin.do(client, "get_token")
    assert caught.value.retry_after == 120.0
    assert len(server.token_requests) == 1
    assert twin.sleeps == []


@pytest.mark.parametrize(("value", "retried"), [("5", True), ("5.5", False), ("6", False)])
async def test_the_cap_is_configurable(twin: Twin, value: str, retried: bool) -> None:
    server = Server(api=[retry_after(429, value), OK])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retry_after=5.0) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == (200 if retried else 429)
    assert twin.sleeps == ([float(value)] if retried else [])


# ----------------------------------------------------------- when retries run out


@pytest.mark.parametrize("max_retries", [0, 1, 2, 3])
async def test_exhausted_raw_call_returns_the_last_response(twin: Twin, max_retries: int) -> None:
    server = Server(api=[reply(503, json={"attempt": n}) for n in range(10)])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=max_retries) as client:
            response = await twin.request(client, "GET", "things")
    assert response.status_code == 503
    assert response.json() == {"attempt": max_retries}
    assert len(server.api_requests) == max_retries + 1
    assert len(twin.sleeps) == max_retries


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (reply(503, json={"error": "unavailable", "message": "down"}), ServerError),
        (reply(502, content=b"<html>Bad Gateway</html>", headers=HTML), ServerError),
        (retry_after(429, "1"), RateLimitError),
    ],
    ids=["503-json", "502-html", "429"],
)
async def test_exhausted_list_sessions_raises_the_typed_error_with_attempts(
    twin: Twin, answer: object, error_type: type[PinkCloudSyncError]
) -> None:
    server = Server(api=[answer])  # type: ignore[list-item]
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            with pytest.raises(error_type) as caught:
                await twin.do(client, "list_sessions")
    error = caught.value
    assert error.attempts == 3  # type: ignore[attr-defined]
    assert "3 attempts" in str(error)
    assert len(server.api_requests) == 3
    if isinstance(error, RateLimitError):
        assert error.retry_after == 1.0


@pytest.mark.parametrize("call", ["get_token", "list_sessions", "raw"])
@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (reply(503), ServerError),
        (retry_after(429, "1"), RateLimitError),
        (fail(httpx.ConnectError), APIConnectionError),
        (fail(httpx.ConnectTimeout), APIConnectionError),
        (fail(httpx.ReadTimeout), PinkCloudSyncError),
    ],
    ids=["503", "429", "ConnectError", "ConnectTimeout", "ReadTimeout"],
)
async def test_exhausted_token_acquisition_raises_the_typed_error_with_attempts(
    twin: Twin, call: str, answer: object, error_type: type[PinkCloudSyncError]
) -> None:
    server = Server(token=[answer])  # type: ignore[list-item]
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            outcome = await (
                twin.outcome(client, "request", "GET", "things")
                if call == "raw"
                else twin.outcome(client, call)
            )
    assert isinstance(outcome, error_type)
    assert "3 attempts" in str(outcome)
    assert len(server.token_requests) == DEFAULT_MAX_RETRIES + 1
    assert server.api_requests == []
    assert len(twin.sleeps) == DEFAULT_MAX_RETRIES


# ------------------------------------------------------ configuring the policy


@pytest.mark.parametrize(
    "answer",
    [reply(429), retry_after(429, "1"), reply(503), fail(httpx.ConnectError)],
    ids=["429", "429-retry-after", "503", "ConnectError"],
)
async def test_max_retries_zero_disables_retries(twin: Twin, answer: object) -> None:
    server = Server(api=[answer, OK])  # type: ignore[list-item]
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=0) as client:
            try:
                response = await twin.request(client, "GET", "things")
            except httpx.ConnectError:
                pass
            else:
                assert response.status_code != 200
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_max_retries_zero_disables_token_retries(twin: Twin) -> None:
    server = Server(token=[reply(503), token_reply()])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=0) as client:
            with pytest.raises(ServerError):
                await twin.do(client, "get_token")
    assert len(server.token_requests) == 1
    assert twin.sleeps == []


@pytest.mark.parametrize(
    ("client_max", "override"), [(0, 3), (2, 0), (2, 5), (3, 1)], ids=lambda v: str(v)
)
async def test_per_request_max_retries_override(twin: Twin, client_max: int, override: int) -> None:
    server = Server(api=[reply(503)])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=client_max, timeout=None) as client:
            response = await twin.request(
                client, "GET", "things", extensions={"pinkcloudsync.max_retries": override}
            )
            assert response.status_code == 503
            assert len(server.api_requests) == override + 1
            # The override is for that request only.
            await twin.request(client, "GET", "things")
    assert len(server.api_requests) == override + 1 + client_max + 1
    assert len(twin.sleeps) == override + client_max


# ---------------------------------------------------------------------- logging


def _mentions(message: str, delay: float) -> bool:
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", message)]
    return any(abs(n - delay) < 0.006 for n in numbers)


async def test_each_retry_is_logged_at_debug_with_reason_and_delay(
    twin: Twin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Server(
        token=[retry_after(503, "2"), token_reply()],
        api=[retry_after(429, "3"), fail(httpx.ConnectError), OK],
    )
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            response = await twin.request(client, "POST", "things", json={"n": 1})
    assert response.status_code == 200
    assert twin.sleeps[:2] == [2.0, 3.0]
    assert len(twin.sleeps) == 3
    ours = [r for r in caplog.records if r.name == LOGGER]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    for reason, delay in [("503", 2.0), ("429", 3.0), ("ConnectError", twin.sleeps[2])]:
        assert any(reason in m and _mentions(m, delay) for m in debug), (reason, delay, debug)
    # A retry is routine: nothing above DEBUG from us.
    assert all(r.levelno == logging.DEBUG for r in ours)
    secrets = [API_SECRET, *server.issued]
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        for secret in secrets:
            assert secret not in text


# --------------------------------------------------------------- overall timeout


async def test_timeout_bounds_the_total_time_across_retries(twin: Twin) -> None:
    server = Server(api=[retry_after(503, "4")])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=10) as client:
            response = await twin.request(client, "GET", "things", timeout=10)
    assert response.status_code == 503
    # Waits end at 4 and 8; a third would end at 12, past the 10 s budget.
    assert twin.sleeps == [4.0, 4.0]
    assert len(server.api_requests) == 3


async def test_timeout_bounds_jittered_retries_of_connection_failures(twin: Twin) -> None:
    server = Server(api=[fail(httpx.ConnectError)])
    with anyio.fail_after(TIMEOUT):
        async with twin.client(
            server, max_retries=100, retry_backoff_base=1.0, retry_backoff_max=4.0
        ) as client:
            with pytest.raises(httpx.ConnectError):
                await twin.request(client, "GET", "things", timeout=5)
    assert sum(twin.sleeps) <= 5.0
    assert len(server.api_requests) == len(twin.sleeps) + 1 < 101


async def test_timeout_covers_token_acquisition_and_retries_together(twin: Twin) -> None:
    server = Server(
        token=[retry_after(503, "3"), retry_after(503, "3"), token_reply()],
        api=[retry_after(503, "3")],
    )
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=5) as client:
            response = await twin.request(client, "GET", "things", timeout=10)
    # The token took 6 s; the call's own waits may use only the 4 s left: one wait.
    assert response.status_code == 503
    assert twin.sleeps == [3.0, 3.0, 3.0]
    assert len(server.token_requests) == 3
    assert len(server.api_requests) == 2


@pytest.mark.parametrize("how", ["request-timeout", "client-timeout"])
async def test_timeout_bounds_the_token_request_retries(twin: Twin, how: str) -> None:
    server = Server(token=[retry_after(503, "4")])
    kwargs = {"timeout": 10} if how == "client-timeout" else {}
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=5, **kwargs) as client:
            outcome = await (
                twin.outcome(client, "get_token")
                if how == "client-timeout"
                else twin.outcome(client, "request", "GET", "things", timeout=10)
            )
    assert isinstance(outcome, ServerError)
    assert twin.sleeps == [4.0, 4.0]
    assert len(server.token_requests) == 3
    assert "3 attempts" in str(outcome)
    assert server.api_requests == []


# ------------------------------------- the token endpoint, inside the single flight


@pytest.mark.parametrize(
    ("first_answers", "exact_sleeps"),
    [
        ([reply(503), reply(503)], None),
        ([retry_after(429, "2"), retry_after(429, "2")], [2.0, 2.0]),
        ([fail(httpx.ConnectError), fail(httpx.ConnectTimeout)], None),
    ],
    ids=["503-twice", "429-retry-after-twice", "connect-failures-twice"],
)
async def test_storm_on_a_cold_client_retries_the_token_inside_one_flight(
    twin: Twin, first_answers: list[object], exact_sleeps: list[float] | None
) -> None:
    # The storm: a crowd (500 coroutines / 50 threads) on a cold client whose
    # token endpoint fails twice then answers 200. One caller retries; all wait.
    server = Server(token=[*first_answers, token_reply()])  # type: ignore[list-item]
    gates: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server) as client:
            spy = WaitSpy(client)
            server.before_token = lambda index: (
                gates.append(spy.wait_for(twin.crowd - 1)) if index == 0 else None
            )
            outcomes = await twin.gather(twin.crowd, client, "request", "GET", "things")
    assert gates == [True], "the crowd never lined up behind the first token request"
    assert len(server.token_requests) == 3
    assert [getattr(o, "status_code", o) for o in outcomes] == [200] * twin.crowd
    assert len(server.api_requests) == twin.crowd
    assert set(server.api_bearers) == {server.issued[0]}
    assert len(twin.sleeps) == 2  # only the one caller that flies sleeps
    if exact_sleeps is not None:
        assert twin.sleeps == exact_sleeps


@pytest.mark.parametrize(
    ("answer", "error_type", "max_retries"),
    [
        (reply(503, json={"error": "unavailable", "message": "down"}), ServerError, 0),
        (reply(503, json={"error": "unavailable", "message": "down"}), ServerError, 2),
        (reply(503, json={"error": "unavailable", "message": "down"}), ServerError, 3),
        (retry_after(429, "1"), RateLimitError, 2),
        (fail(httpx.ConnectError), APIConnectionError, 2),
    ],
    ids=["503-max0", "503-max2", "503-max3", "429-max2", "ConnectError-max2"],
)
async def test_failing_token_endpoint_gives_every_waiter_the_same_error(
    twin: Twin, answer: object, error_type: type[Exception], max_retries: int
) -> None:
    server = Server(token=[answer])  # type: ignore[list-item]
    gates: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with twin.client(server, max_retries=max_retries) as client:
            spy = WaitSpy(client)
            server.before_token = lambda index: (
                gates.append(spy.wait_for(twin.crowd - 1)) if index == 0 else None
            )
            outcomes = await twin.gather(twin.crowd, client, "request", "GET", "things")
    assert gates == [True]
    assert len(server.token_requests) == max_retries + 1
    assert server.api_requests == []
    assert {type(o) for o in outcomes} == {error_type}
    assert len({str(o) for o in outcomes}) == 1
    if max_retries:
        assert f"{max_retries + 1} attempts" in str(outcomes[0])
    if hasattr(outcomes[0], "error"):
        assert {o.error for o in outcomes} == {outcomes[0].error}
        assert {o.attempts for o in outcomes} == {max_retries + 1}


# ---------------------------------------------- cancellation (the async client)


def _real_sleeping_client(
    server: Server, sleeping: anyio.Event | None = None
) -> AsyncPinkCloudSyncClient:
    async def sleep(seconds: float) -> None:
        if sleeping is not None:
            sleeping.set()
        await anyio.sleep(seconds)  # a real sleep: only cancellation ends it early

    return AsyncPinkCloudSyncClient(
        API_KEY,
        API_SECRET,
        base_url=BASE_URL,
        transport=httpx.MockTransport(server),
        _sleep=sleep,
    )


@BACKENDS
async def test_cancelled_caller_stops_waiting_during_a_retry_sleep() -> None:
    server = Server(api=[retry_after(503, "20"), OK])
    client = _real_sleeping_client(server)
    with anyio.fail_after(2):
        start = anyio.current_time()
        with anyio.move_on_after(0.2) as scope:
            await client.get("things")
        assert scope.cancelled_caught
        assert anyio.current_time() - start < 1.5
        await client.aclose()
    assert len(server.api_requests) == 1


@BACKENDS
async def test_cancelled_caller_stops_waiting_during_the_default_anyio_sleep() -> None:
    server = Server(api=[retry_after(429, "20"), OK])
    client = AsyncPinkCloudSyncClient(
        API_KEY, API_SECRET, base_url=BASE_URL, transport=httpx.MockTransport(server)
    )
    with anyio.fail_after(2):
        with anyio.move_on_after(0.2) as scope:
            await client.get("things")
        assert scope.cancelled_caught
        await client.aclose()
    assert len(server.api_requests) == 1


@BACKENDS
async def test_cancelled_waiter_stops_waiting_while_the_token_is_retried() -> None:
    server = Server(token=[retry_after(503, "20"), token_reply()])
    sleeping = anyio.Event()
    client = _real_sleeping_client(server, sleeping)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(client.get_token)
            await sleeping.wait()  # the leader is in its 20 s retry sleep
            start = anyio.current_time()
            with anyio.move_on_after(0.2) as scope:
                await client.get_token()
            assert scope.cancelled_caught
            assert anyio.current_time() - start < 1.5
            group.cancel_scope.cancel()
        await client.aclose()
    assert len(server.token_requests) == 1


@BACKENDS
async def test_cancelled_token_leader_in_its_retry_sleep_hands_over_at_once() -> None:
    server = Server(token=[retry_after(503, "20"), token_reply()])
    sleeping = anyio.Event()
    client = _real_sleeping_client(server, sleeping)
    spy = WaitSpy(client)
    got: list[object] = []

    async def waiter() -> None:
        got.append(await client.get_token())

    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            leader = anyio.CancelScope()

            async def lead() -> None:
                with leader:
                    await client.get_token()

            group.start_soon(lead)
            await sleeping.wait()
            group.start_soon(waiter)
            while spy.waits < 1:
                await anyio.lowlevel.checkpoint()
            leader.cancel()  # the waiter takes over: it does not wait out the 20 s
        await client.aclose()
    assert len(got) == 1
    assert len(server.token_requests) == 2
    assert got[0].access_token.get_secret_value() == server.issued[0]  # type: ignore[attr-defined]
