"""Seeing what the token lifecycle does: plain hooks, and OpenTelemetry.

    from pinkcloudsync_async.telemetry import Telemetry, TokenHooks

    client = AsyncPinkCloudSyncClient(
        hooks=TokenHooks(on_token_acquired=lambda event: print(event.claims.sub)),
        telemetry=Telemetry(tracer_provider=..., meter_provider=...),  # default: global
    )

With `opentelemetry-api` installed (the `[otel]` extra), each token request is a
span (`pinkcloudsync.token`) and the client records metrics; without it, or with
no provider configured, nothing is recorded and the per-request path is untouched.
No attribute ever holds a token, a secret or a claim value other than `sub` and the
permission names.
"""

from __future__ import annotations

from ._events import (
    CredentialsRejected,
    TokenAcquired,
    TokenEvent,
    TokenHooks,
    TokenRefreshFailed,
)
from ._observer import Telemetry

__all__ = [
    "CredentialsRejected",
    "Telemetry",
    "TokenAcquired",
    "TokenEvent",
    "TokenHooks",
    "TokenRefreshFailed",
]
