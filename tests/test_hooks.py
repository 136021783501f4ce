"""Plain hooks (no OpenTelemetry needed): token acquired, token refresh failed,
credentials rejected; plain or async; a hook that raises never breaks a request."""

from __future__ import annotations

import inspect
import logging
import time
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
import twins
from twins import Twin

from pinkcloudsync_async import ConfigurationError, PinkCloudSyncClient, ServerError
from pinkcloudsync_async.telemetry import (
    Telemetry,
    TokenAcquired,
    TokenEvent,
    TokenHooks,
    TokenRefreshFailed,
)
from pinkcloudsync_async.testing import Emulator, EmulatorKey

twin = twins.twin
anyio_backend = twins.anyio_backend

pytestmark = pytest.mark.anyio

KEY = EmulatorKey("pk_test_hooks", "sk_test_hooks_SECRET", ("sync:read",))
CREDENTIALS = {"api_key": KEY.api_key, "api_secret": KEY.api_secret}


class Collector:
    """Hooks that record their events, plain or async as the twin allows."""

    def __init__(self, twin: Twin, flavour: str = "sync") -> None:
        self.events: list[TokenEvent] = []
        self.use_async = twin.is_async and flavour == "async"

    def record(self, event: Any) -> None:
        self.events.append(event)

    async def arecord(self, event: Any) -> None:
        await anyio.lowlevel.checkpoint()
        self.events.append(event)

    def hooks(self) -> TokenHooks:
        hook = self.arecord if self.use_async else self.record
        return TokenHooks(
            on_token_acquired=hook, on_token_refresh_failed=hook, on_credentials_rejected=hook
        )


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_token_acquired_carries_claims_expiry_attempts_and_duration(
    twin: Twin, flavour: str
) -> None:
    emulator = Emulator([KEY], token_lifetime=600)
    emulator.fail_token_requests(1, status=503)
    collector = Collector(twin, flavour)
    before = time.time()
    async with twin.emulated(
        emulator, hooks=collector.hooks(), retry_backoff_base=0.001, **CREDENTIALS
    ) as client:
        await twin.do(client, "list_sessions")
        await twin.do(client, "list_sessions")  # the held token: no new event
    [event] = collector.events
    assert isinstance(event, TokenAcquired)
    assert event.claims.sub == KEY.sub
    assert event.claims.permissions == ("sync:read",)
    assert event.attempts == 2
    assert event.lifetime == 600
    assert 0 <= event.duration < 10
    assert event.early is False
    assert event.expires_at.tzinfo is UTC
    assert before + 600 - 1 <= event.expires_at.timestamp() <= time.time() + 600
    assert KEY.api_secret not in repr(event)
    assert "access_token" not in repr(event)


async def test_a_failed_token_request_is_reported_with_its_error(twin: Twin) -> None:
    emulator = Emulator([KEY])
    emulator.fail_token_requests(5, status=503)
    collector = Collector(twin)
    async with twin.emulated(
        emulator, hooks=collector.hooks(), max_retries=1, retry_backoff_base=0.001, **CREDENTIALS
    ) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, ServerError)
    [event] = collector.events
    assert isinstance(event, TokenRefreshFailed)
    assert isinstance(event.error, ServerError)
    assert event.advisory is False
    assert event.attempts == 2
    assert event.held_expires_at is None


async def test_a_failed_early_refresh_is_advisory_and_says_until_when_the_old_token_serves(
    twin: Twin,
) -> None:
    emulator = Emulator([KEY], token_lifetime=3600)
    collector = Collector(twin)
    async with twin.emulated(
        emulator, hooks=collector.hooks(), max_retries=0, _clock=twin.clock, **CREDENTIALS
    ) as client:
        await twin.do(client, "list_sessions")
        twin.clock.advance(3600 - 100)  # inside the 300 s refresh margin
        emulator.fail_token_requests(1, status=503)
        await twin.do(client, "list_sessions")  # carries the early refresh, which fails
    acquired, failed = collector.events
    assert isinstance(acquired, TokenAcquired)
    assert isinstance(failed, TokenRefreshFailed)
    assert failed.advisory is True
    assert failed.held_expires_at == acquired.expires_at


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_hook_that_raises_is_logged_and_breaks_nothing(
    twin: Twin, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    async def abroken(event: Any) -> None:
        raise RuntimeError("hook bug")

    hook = abroken if twin.is_async and flavour == "async" else broken
    emulator = Emulator([KEY])
    with caplog.at_level(logging.ERROR, logger="pinkcloudsync_async"):
        async with twin.emulated(
            emulator, hooks=TokenHooks(on_token_acquired=hook), **CREDENTIALS
        ) as client:
            outcomes = await twin.gather(20, client, "list_sessions")
    assert not [o for o in outcomes if isinstance(o, BaseException)]
    assert emulator.stats.token_requests == 1
    [record] = [r for r in caplog.records if "hook raised" in r.getMessage()]
    assert record.exc_info is not None
    assert "TokenAcquired" in record.getMessage()


def test_the_sync_client_refuses_async_hooks() -> None:
    async def hook(event: Any) -> None:
        return None

    with pytest.raises(ConfigurationError, match="on_token_acquired is async"):
        PinkCloudSyncClient("pk", "sk", hooks=TokenHooks(on_token_acquired=hook))


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"hooks": print}, "hooks= must be a TokenHooks"),
        ({"hooks": TokenHooks(on_token_acquired=42)}, "must be callable"),  # type: ignore[arg-type]
        ({"telemetry": "otel"}, "telemetry= must be a Telemetry"),
        ({"telemetry": Telemetry(tracer_provider="x")}, "tracer_provider must be"),
        ({"telemetry": Telemetry(meter_provider=object())}, "meter_provider must be"),
    ],
)
def test_wrong_hooks_or_telemetry_are_configuration_errors(
    kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        PinkCloudSyncClient("pk", "sk", **kwargs)


def test_events_are_frozen_values() -> None:
    event = TokenRefreshFailed(
        error=ValueError("x"),
        advisory=False,
        attempts=1,
        duration=0.1,
        waiters=0,
        held_expires_at=datetime.now(UTC),
    )
    with pytest.raises(AttributeError):
        event.advisory = True  # type: ignore[misc]


def test_the_telemetry_package_s_public_surface_is_sorted_and_documented() -> None:
    import pinkcloudsync_async.telemetry as telemetry

    assert telemetry.__all__ == sorted(telemetry.__all__)
    public = {name for name in vars(telemetry) if not name.startswith("_")}
    public -= {"annotations"}
    assert set(telemetry.__all__) == {
        name for name in public if not inspect.ismodule(getattr(telemetry, name))
    }
    for name in telemetry.__all__:
        value = getattr(telemetry, name)
        if inspect.isclass(value):
            assert "__doc__" in vars(value)
            assert value.__doc__
            assert not value.__doc__.startswith(f"{name}(")
