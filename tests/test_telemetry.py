"""OpenTelemetry: a span per token request and the lifecycle's metrics, recorded to
in-memory exporters, on both twins against the emulator; and never a secret, a
token or a claim value other than `sub` and the permission names in an attribute."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import twins
from fakes import make_client, token_body
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from twins import HoldFirstTokenRequest, Twin, WaitSpy

from pinkcloudsync_async import AuthenticationError
from pinkcloudsync_async.telemetry import Telemetry, TokenAcquired, TokenHooks
from pinkcloudsync_async.testing import Emulator, EmulatorKey

twin = twins.twin
anyio_backend = twins.anyio_backend

pytestmark = pytest.mark.anyio

KEY = EmulatorKey("pk_test_otel", "sk_test_otel_SECRET", ("sync:read", "sync:write"))


class Recorded:
    """In-memory span exporter and metric reader, and what they hold."""

    def __init__(self) -> None:
        self.spans_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider
        )

    def client(self, twin: Twin, app: Any, **kwargs: Any) -> Any:
        """`twin.emulated(app)` on KEY, recording here, with retries that barely wait."""
        kwargs.setdefault("api_key", KEY.api_key)
        kwargs.setdefault("api_secret", KEY.api_secret)
        return twin.emulated(
            app,
            telemetry=self.telemetry,
            retry_backoff_base=0.001,
            retry_backoff_max=0.001,
            **kwargs,
        )

    def spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans_exporter.get_finished_spans() if s.name.startswith("pink")]

    def points(self, name: str) -> list[Any]:
        """The data points of metric `name` (empty if it recorded nothing)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """The sum of a counter, or the count of a histogram, over matching points."""
        return sum(
            getattr(p, "value", None) if hasattr(p, "value") else p.count
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attributes.items())
        )

    def every_attribute_value(self) -> Iterator[Any]:
        """Every attribute value of every span and data point, and span statuses."""
        for span in self.spans_exporter.get_finished_spans():
            for value in (span.attributes or {}).values():
                yield from value if isinstance(value, tuple) else (value,)
            if span.status.description:
                yield span.status.description
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        yield from (point.attributes or {}).values()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


async def test_a_token_request_is_one_span_with_its_outcome_and_waiters(
    twin: Twin, recorded: Recorded
) -> None:
    emulator = Emulator([KEY])
    emulator.fail_token_requests(1, status=503)  # one retry inside the flight
    app = HoldFirstTokenRequest(emulator, twin, twin.crowd - 1)
    async with recorded.client(twin, app) as client:
        app.spy = WaitSpy(client)
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")
    assert not [o for o in outcomes if isinstance(o, BaseException)]

    [span] = recorded.spans()
    attributes = dict(span.attributes or {})
    assert span.name == "pinkcloudsync.token"
    assert span.kind is trace.SpanKind.CLIENT
    assert attributes["pinkcloudsync.token.outcome"] == "success"
    assert attributes["pinkcloudsync.token.attempts"] == 2
    assert attributes["http.response.status_code"] == 200
    assert attributes["pinkcloudsync.token.waiters"] == twin.crowd - 1
    assert attributes["enduser.id"] == KEY.sub
    assert attributes["pinkcloudsync.token.permissions"] == ("sync:read", "sync:write")
    assert attributes["http.request.method"] == "POST"
    assert attributes["server.address"] == "emulator.test"
    assert attributes["url.full"] == "http://emulator.test/v1/auth/token"
    assert span.status.status_code is trace.StatusCode.UNSET

    assert (
        recorded.total("pinkcloudsync.token.requests", **{"pinkcloudsync.token.outcome": "success"})
        == 1
    )
    assert recorded.total("pinkcloudsync.token.request.duration") == 1
    # Every caller waited: the one leading the token request and all the others.
    assert recorded.total("pinkcloudsync.token.wait.duration") == twin.crowd
    assert recorded.total("pinkcloudsync.retries", **{"pinkcloudsync.retry.reason": "503"}) == 1


async def test_replays_and_retries_are_counted(twin: Twin, recorded: Recorded) -> None:
    emulator = Emulator([KEY])
    async with recorded.client(twin, emulator) as client:
        await twin.do(client, "list_sessions")
        emulator.revoke_all_tokens()
        await twin.do(client, "list_sessions")  # 401, one refresh, one replay
        emulator.fail_api_requests(2, status=429, retry_after=0)
        await twin.do(client, "list_sessions")
    assert recorded.total("pinkcloudsync.auth.replays") == 1
    assert recorded.total("pinkcloudsync.retries", **{"pinkcloudsync.retry.reason": "429"}) == 2
    assert recorded.total("pinkcloudsync.token.requests") == 2
    assert len(recorded.spans()) == 2


async def test_a_failed_token_request_is_an_error_span_naming_only_the_error_type(
    twin: Twin, recorded: Recorded
) -> None:
    emulator = Emulator([KEY])
    async with recorded.client(twin, emulator, api_secret="sk_wrong_SECRET") as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, AuthenticationError)
    [span] = recorded.spans()
    attributes = dict(span.attributes or {})
    assert attributes["pinkcloudsync.token.outcome"] == "error"
    assert attributes["error.type"] == "AuthenticationError"
    assert attributes["http.response.status_code"] == 401
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "AuthenticationError"
    assert (
        recorded.total("pinkcloudsync.token.requests", **{"error.type": "AuthenticationError"}) == 1
    )
    assert recorded.total("pinkcloudsync.credentials.rejected") == 1
    assert "sk_wrong_SECRET" not in " ".join(map(str, recorded.every_attribute_value()))


async def test_no_attribute_holds_a_token_a_secret_or_another_claim_value(
    twin: Twin, recorded: Recorded
) -> None:
    emulator = Emulator([KEY])
    seen: list[TokenAcquired] = []
    hooks = TokenHooks(on_token_acquired=seen.append)
    async with recorded.client(twin, emulator, hooks=hooks) as client:
        token = await twin.do(client, "get_token")
        emulator.revoke_all_tokens()
        await twin.do(client, "list_sessions")
    raw = token.access_token.get_secret_value()
    claims = token.claims
    secrets = [raw, *raw.split("."), KEY.api_secret]
    # iat and exp are ints, jti a string: a leak would carry its own type.
    other_claims = {claims.iat, claims.exp, *(claims.model_extra or {}).values()}
    values = list(recorded.every_attribute_value())
    assert values  # something was recorded
    assert [(s, v) for s in secrets for v in values if s in str(v)] == []
    assert [v for v in values if v in other_claims and type(v) is not bool] == []
    assert KEY.sub in values


async def test_the_token_span_is_current_while_the_credentials_are_read(
    twin: Twin, recorded: Recorded
) -> None:
    current: list[str] = []

    def credentials() -> tuple[str, str]:
        span = trace.get_current_span()
        current.append(getattr(span, "name", "none"))
        return KEY.api_key, KEY.api_secret

    async with twin.emulated(
        Emulator([KEY]), credentials=credentials, telemetry=recorded.telemetry
    ) as client:
        await twin.do(client, "get_token")
    assert current == ["pinkcloudsync.token"]


async def test_without_a_provider_nothing_is_recorded_and_nothing_fails(twin: Twin) -> None:
    # No tracer or meter provider was ever set globally in this process: the API's
    # proxies hand out no-op spans and instruments.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    async with twin.emulated(
        Emulator([KEY]), api_key=KEY.api_key, api_secret=KEY.api_secret
    ) as client:
        token = await twin.do(client, "get_token")
    assert token.claims.sub == KEY.sub


async def test_without_opentelemetry_installed_the_hooks_still_work(
    twin: Twin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
        monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # type: ignore[arg-type]
    seen: list[TokenAcquired] = []
    async with twin.emulated(
        Emulator([KEY]),
        api_key=KEY.api_key,
        api_secret=KEY.api_secret,
        hooks=TokenHooks(on_token_acquired=seen.append),
    ) as client:
        await twin.do(client, "list_sessions")
        assert "opentelemetry=off" in repr(client._observer)
    assert [event.claims.sub for event in seen] == [KEY.sub]


async def test_telemetry_can_be_disabled(twin: Twin, recorded: Recorded) -> None:
    telemetry = Telemetry(
        tracer_provider=recorded.tracer_provider,
        meter_provider=recorded.meter_provider,
        enabled=False,
    )
    async with twin.emulated(
        Emulator([KEY]), api_key=KEY.api_key, api_secret=KEY.api_secret, telemetry=telemetry
    ) as client:
        await twin.do(client, "list_sessions")
    assert recorded.spans() == []
    assert recorded.points("pinkcloudsync.token.requests") == []


def test_a_queued_request_records_its_admission_wait(recorded: Recorded) -> None:
    """The sync twin with one slot, held by an open streamed response: a second
    request queues until the stream closes, and the histogram gets its wait."""
    import threading

    from pinkcloudsync_async import PinkCloudSyncClient

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json=token_body())
        return httpx.Response(200, content=iter([b'{"sessions": []}']))  # streamed

    with PinkCloudSyncClient(
        "pk",
        "sk",
        telemetry=recorded.telemetry,
        transport=httpx.MockTransport(handler),
        max_concurrency=1,
    ) as client:
        client.get("sync/sessions")  # admitted at once: no wait recorded
        assert recorded.points("pinkcloudsync.admission.wait.duration") == []
        with client.stream("GET", "sync/sessions") as response:
            waiter = threading.Thread(target=client.get, args=("sync/sessions",))
            waiter.start()
            assert client._admission is not None
            for _ in range(10_000):  # until the thread is queued (10 s at most)
                if client._admission.waiting:
                    break
                threading.Event().wait(0.001)
            response.read()
        waiter.join(10)
    [point] = recorded.points("pinkcloudsync.admission.wait.duration")
    assert point.count == 1
    assert point.sum > 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_per_request_path_makes_the_same_calls_with_or_without_telemetry(
    anyio_backend: str, recorded: Recorded
) -> None:
    """The cost on the per-request path, counted rather than timed: every Python
    function call a request with a fresh token makes, for telemetry off, the API
    without a provider, and an SDK provider. The benchmark (`python -m benchmarks
    --scenario telemetry`) times the same three."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json=token_body())
        return httpx.Response(200, json={"sessions": []})

    async def calls_per_request(telemetry: Telemetry) -> int:
        async with make_client(handler, telemetry=telemetry) as client:
            await client.get("sync/sessions")  # the token, and every lazy import
            await client.get("sync/sessions")
            calls = 0

            def count(frame: Any, event: str, arg: Any) -> None:
                nonlocal calls
                calls += event == "call"

            # No collection mid-count: finalizers of other tests' garbage would count.
            gc.collect()
            gc.disable()
            sys.setprofile(count)
            try:
                for _ in range(20):
                    await client.get("sync/sessions")
            finally:
                sys.setprofile(None)
                gc.enable()
        return calls

    async def fewest_calls(telemetry: Telemetry) -> int:
        return min([await calls_per_request(telemetry) for _ in range(3)])

    off = await fewest_calls(Telemetry(enabled=False))
    assert await fewest_calls(Telemetry()) == off
    assert await fewest_calls(recorded.telemetry) == off
