"""A request's total time budget, read from and applied to httpx's timeout extension."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["deadline_for", "trimmed"]

_PHASES = ("connect", "read", "write", "pool")


def deadline_for(
    now: float, timeout: dict[str, Any] | None, unbudgeted: dict[str, Any] | None = None
) -> float | None:
    """When a request sent at `now` with this `timeout` must be done, or None.

    A timeout the user set is a budget: its largest phase, so `timeout=5` means 5 s
    in total across retries and the wait for a token, while httpx still applies
    each phase's own. The library's default (`unbudgeted`) bounds phases only, so a
    default client still honours a `Retry-After` up to the cap.
    """
    if not timeout or timeout == unbudgeted:
        return None
    values = [v for v in timeout.values() if v is not None and math.isfinite(v)]
    return now + max(values) if values else None


def trimmed(timeout: dict[str, Any] | None, remaining: float) -> dict[str, Any]:
    """`timeout` with no phase longer than `remaining` seconds."""
    remaining = max(remaining, 0.0)
    current = timeout or {}
    return {
        phase: remaining if current.get(phase) is None else min(current[phase], remaining)
        for phase in _PHASES
    }
