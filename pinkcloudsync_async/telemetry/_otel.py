"""OpenTelemetry's tracer and instruments for one client, made once, lazily.

`opentelemetry-api` is imported here, when a client is built, never when the
package is imported; without it there is nothing to record. With it but without a
configured provider, the global proxies hand out no-op spans and instruments (and
forward to a provider configured later). Names follow the semantic conventions
where one exists (`http.response.status_code`, `error.type`, `server.address`,
`enduser.id`); ours are under `pinkcloudsync.`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Instruments", "load_instruments"]

_SCOPE = "pinkcloudsync_async"


class Instruments:
    """The tracer and the metric instruments of one client."""

    __slots__ = (
        "admission_wait",
        "context",
        "credentials_rejected",
        "replays",
        "retries",
        "token_duration",
        "token_requests",
        "token_wait",
        "trace",
        "tracer",
    )

    def __init__(self, tracer_provider: Any, meter_provider: Any, version: str) -> None:
        from opentelemetry import context, metrics, trace

        self.trace = trace
        self.context = context
        self.tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, version, meter_provider=meter_provider)
        self.token_requests = meter.create_counter(
            "pinkcloudsync.token.requests",
            unit="{request}",
            description="Token requests made, by outcome",
        )
        self.token_duration = meter.create_histogram(
            "pinkcloudsync.token.request.duration",
            unit="s",
            description="How long each token request took, its retries included",
        )
        self.token_wait = meter.create_histogram(
            "pinkcloudsync.token.wait.duration",
            unit="s",
            description="How long a caller waited for a token (only callers that had to)",
        )
        self.replays = meter.create_counter(
            "pinkcloudsync.auth.replays",
            unit="{request}",
            description="Requests replayed after a 401 with a new token",
        )
        self.retries = meter.create_counter(
            "pinkcloudsync.retries", unit="{retry}", description="Retries, by reason"
        )
        self.credentials_rejected = meter.create_counter(
            "pinkcloudsync.credentials.rejected",
            unit="{response}",
            description="401 invalid_credentials answers from the token endpoint",
        )
        self.admission_wait = meter.create_histogram(
            "pinkcloudsync.admission.wait.duration",
            unit="s",
            description="How long a request waited in the admission queue",
        )


def load_instruments(tracer_provider: Any, meter_provider: Any) -> Instruments | None:
    """The instruments, or None when `opentelemetry-api` is not installed."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return None
    from .. import __version__

    return Instruments(tracer_provider, meter_provider, __version__)
