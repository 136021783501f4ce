"""`Observer`: what a client records about its token lifecycle, and the hooks it calls.

The token side (`_token_flights_*`) opens a `TokenRequestRecord` for each flight
and closes it with the flight's outcome; the token source notes each response on
the record of the flight it serves (a context variable finds it, so the source's
signature stays what it is); the retry loop counts retries; the client's admission
layer calls `record_admission_wait`. None of this runs on the per-request path of
a request that has a fresh token.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from .._constants import LOGGER_NAME
from .._exceptions import ConfigurationError
from ._events import (
    CredentialsRejected,
    TokenAcquired,
    TokenEvent,
    TokenHooks,
    TokenRefreshFailed,
)
from ._otel import Instruments, load_instruments

if TYPE_CHECKING:
    from .._models import AccessToken
    from .._token_lifecycle import Flight

__all__ = ["Observer", "Telemetry", "TokenRequestRecord"]

logger = logging.getLogger(LOGGER_NAME)

_CURRENT: contextvars.ContextVar[TokenRequestRecord | None] = contextvars.ContextVar(
    "pinkcloudsync_token_request", default=None
)


@dataclass(frozen=True)
class Telemetry:
    """OpenTelemetry for a client: which providers to record to.

    `tracer_provider` / `meter_provider`: None (the default) means OpenTelemetry's
    global ones, as set by `trace.set_tracer_provider` (before or after the client
    is built). `enabled=False` records nothing. Needs `opentelemetry-api` (the
    `[otel]` extra); without it nothing is recorded and nothing fails.
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    enabled: bool = True


class TokenRequestRecord:
    """One token request as the observer sees it: timing, attempts, last status."""

    __slots__ = (
        "attempts",
        "context_token",
        "credentials_retried",
        "early",
        "events",
        "span",
        "started",
        "started_wall",
        "status_code",
        "var_token",
    )

    def __init__(self, *, early: bool) -> None:
        self.early = early
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.attempts = 1
        self.status_code: int | None = None
        self.credentials_retried = False
        self.span: Any = None
        self.context_token: Any = None
        self.var_token: contextvars.Token[TokenRequestRecord | None] | None = None
        self.events: list[TokenEvent] = []


class Observer:
    """Records spans and metrics (when OpenTelemetry is there) and calls the hooks.

    `for_async=False` (the sync client) refuses `async` hooks with a
    `ConfigurationError`. `server` is the token endpoint's URL (for the span's
    `server.address`, `server.port`, `url.full`; it holds no secret).
    """

    def __init__(
        self,
        *,
        telemetry: Telemetry | None = None,
        hooks: TokenHooks | None = None,
        for_async: bool,
        token_url: httpx.URL | None = None,
    ) -> None:
        telemetry = Telemetry() if telemetry is None else telemetry
        hooks = TokenHooks() if hooks is None else hooks
        if not isinstance(telemetry, Telemetry):
            raise ConfigurationError(
                f"telemetry= must be a Telemetry, not {type(telemetry).__name__}."
            )
        if not isinstance(hooks, TokenHooks):
            raise ConfigurationError(f"hooks= must be a TokenHooks, not {type(hooks).__name__}.")
        for name in ("on_token_acquired", "on_token_refresh_failed", "on_credentials_rejected"):
            hook = getattr(hooks, name)
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"TokenHooks.{name} must be callable.")
            if hook is not None and not for_async and inspect.iscoroutinefunction(hook):
                raise ConfigurationError(
                    f"TokenHooks.{name} is async: the sync client calls plain hooks only."
                )
        for name, method in (("tracer_provider", "get_tracer"), ("meter_provider", "get_meter")):
            provider = getattr(telemetry, name)
            if provider is not None and not callable(getattr(provider, method, None)):
                raise ConfigurationError(
                    f"Telemetry.{name} must be an OpenTelemetry {name.replace('_', ' ')} "
                    f"(with .{method}()), not {type(provider).__name__}."
                )
        self.hooks = hooks
        self._otel: Instruments | None = None
        if telemetry.enabled:
            self._otel = load_instruments(telemetry.tracer_provider, telemetry.meter_provider)
        self._span_attributes: dict[str, Any] = {"http.request.method": "POST"}
        if token_url is not None:
            self._span_attributes.update(
                {
                    "server.address": token_url.host,
                    "server.port": token_url.port or (443 if token_url.scheme == "https" else 80),
                    # Scheme, host, port and path only: never a userinfo or a query.
                    "url.full": str(
                        httpx.URL(
                            scheme=token_url.scheme,
                            host=token_url.host,
                            port=token_url.port,
                            path=token_url.path,
                        )
                    ),
                }
            )

    def __repr__(self) -> str:
        otel = "on" if self._otel is not None else "off"
        return f"{type(self).__name__}(opentelemetry={otel})"

    # ----------------------------------------------------------- token requests

    def start(self, flight: Flight[AccessToken]) -> TokenRequestRecord:
        """A flight's token request begins; its span becomes the current one."""
        record = TokenRequestRecord(early=not flight.mandatory)
        otel = self._otel
        if otel is not None:
            attributes = dict(self._span_attributes)
            attributes["pinkcloudsync.token.early_refresh"] = record.early
            record.span = otel.tracer.start_span(
                "pinkcloudsync.token", kind=otel.trace.SpanKind.CLIENT, attributes=attributes
            )
            record.context_token = otel.context.attach(otel.trace.set_span_in_context(record.span))
        record.var_token = _CURRENT.set(record)
        return record

    def response(self, status_code: int, attempts: int) -> None:
        """The token source got an answer (called inside the flight)."""
        record = _CURRENT.get()
        if record is not None:
            record.status_code = status_code
            record.attempts = attempts

    def credentials_rejected(self, api_key: str, origin: str, *, retrying: bool) -> TokenEvent:
        """The token endpoint refused the credentials; the event for the hook."""
        record = _CURRENT.get()
        if record is not None and retrying:
            record.credentials_retried = True
        if self._otel is not None:
            self._otel.credentials_rejected.add(1, {"pinkcloudsync.credentials.retried": retrying})
        return CredentialsRejected(api_key=api_key, origin=origin, retrying=retrying)

    def end(
        self, record: TokenRequestRecord, flight: Flight[AccessToken], held: AccessToken | None
    ) -> None:
        """The flight has its outcome: end the span, count it, queue the hook's event."""
        if record.var_token is not None:
            _CURRENT.reset(record.var_token)
        duration = time.perf_counter() - record.started
        waiters = getattr(flight, "waiters", 0)
        token, error = flight.token, flight.error
        if token is not None:
            outcome, error_type = "success", None
            if self.hooks.on_token_acquired is not None:
                record.events.append(
                    TokenAcquired(
                        claims=token.claims,
                        expires_at=_wall_expiry(token),
                        lifetime=token.lifetime,
                        attempts=record.attempts,
                        duration=duration,
                        waiters=waiters,
                        early=record.early,
                    )
                )
        elif error is not None:
            outcome, error_type = "error", type(error).__name__
            attempts = getattr(error, "attempts", record.attempts)
            record.attempts = attempts if isinstance(attempts, int) else record.attempts
            if self.hooks.on_token_refresh_failed is not None:
                advisory = held is not None and record.early
                record.events.append(
                    TokenRefreshFailed(
                        error=error,
                        advisory=advisory,
                        attempts=record.attempts,
                        duration=duration,
                        waiters=waiters,
                        held_expires_at=_wall_expiry(held) if advisory and held else None,
                    )
                )
        else:
            outcome, error_type = "cancelled", "cancelled"
        otel = self._otel
        if otel is None:
            return
        attributes: dict[str, Any] = {
            "pinkcloudsync.token.outcome": outcome,
            "pinkcloudsync.token.early_refresh": record.early,
        }
        if error_type is not None:
            attributes["error.type"] = error_type
        otel.token_requests.add(1, attributes)
        otel.token_duration.record(duration, attributes)
        span = record.span
        span.set_attributes(attributes)
        span.set_attribute("pinkcloudsync.token.attempts", record.attempts)
        span.set_attribute("pinkcloudsync.token.waiters", waiters)
        span.set_attribute("pinkcloudsync.credentials.retried", record.credentials_retried)
        if record.status_code is not None:
            span.set_attribute("http.response.status_code", record.status_code)
        if token is not None:
            if token.claims.sub is not None:
                span.set_attribute("enduser.id", token.claims.sub)
            span.set_attribute("pinkcloudsync.token.permissions", list(token.claims.permissions))
            span.set_attribute("pinkcloudsync.token.lifetime", token.lifetime)
        if error_type is not None:
            # The class name only: a description could carry a server's text.
            span.set_status(otel.trace.Status(otel.trace.StatusCode.ERROR, error_type))
        span.end()
        if record.context_token is not None:
            otel.context.detach(record.context_token)

    # ------------------------------------------------------------------- hooks

    async def anotify(self, events: list[TokenEvent]) -> None:
        """Call the hooks for `events` on an event loop (awaiting async ones)."""
        for event in events:
            hook = self._hook_for(event)
            if hook is None:
                continue
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                _log_hook_failure(event)

    def notify(self, events: list[TokenEvent]) -> None:
        """Call the (plain) hooks for `events` from a thread."""
        for event in events:
            hook = self._hook_for(event)
            if hook is None:
                continue
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    if inspect.iscoroutine(result):
                        result.close()
                    raise TypeError("a hook of the sync client returned an awaitable")
            except Exception:
                _log_hook_failure(event)

    def _hook_for(self, event: TokenEvent) -> Any:
        hooks = self.hooks
        if isinstance(event, TokenAcquired):
            return hooks.on_token_acquired
        if isinstance(event, TokenRefreshFailed):
            return hooks.on_token_refresh_failed
        return hooks.on_credentials_rejected

    # ------------------------------------------------------------------ metrics

    def waited(self, seconds: float) -> None:
        """A caller waited `seconds` for a token (leading a token request or not)."""
        if self._otel is not None:
            self._otel.token_wait.record(seconds)

    def replay(self) -> None:
        """A request got a 401 and is replayed with a new token."""
        if self._otel is not None:
            self._otel.replays.add(1)

    def retry(self, reason: str) -> None:
        """A request is retried; `reason` is the status code or the error's class name."""
        if self._otel is not None:
            self._otel.retries.add(1, {"pinkcloudsync.retry.reason": reason})

    def record_admission_wait(self, seconds: float) -> None:
        """A request waited `seconds` in the admission queue before it was sent.

        For the client's admission layer, once per admitted request; returns at
        once without OpenTelemetry (one attribute test).
        """
        otel = self._otel
        if otel is not None:
            otel.admission_wait.record(seconds)


def _wall_expiry(token: AccessToken) -> datetime:
    expiry = token.expires_at_utc
    if expiry is not None:
        return expiry
    return datetime.fromtimestamp(time.time(), UTC)  # a token built without a wall clock


def _log_hook_failure(event: TokenEvent) -> None:
    logger.error(
        "A pinkcloudsync %s hook raised; the request goes on", type(event).__name__, exc_info=True
    )
