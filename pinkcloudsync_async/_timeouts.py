"""A request's total time budget, read from and applied to httpx's timeout extension."""

from __future__ import annotations

import math
from typing import Any

from ._constants import DEADLINE_EXTENSION, ORIGINAL_TIMEOUT_EXTENSION

__all__ = ["apply_budget", "deadline_for", "release_budget", "trimmed"]

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


def apply_budget(extensions: dict[str, Any], deadline: float, remaining: float) -> None:
    """Bind a request to its deadline: the next attempt gets only what is left.

    The user's own timeout is kept aside, so `release_budget` can hand the request
    back as it came (a request may be sent again).
    """
    if ORIGINAL_TIMEOUT_EXTENSION not in extensions:
        extensions[ORIGINAL_TIMEOUT_EXTENSION] = extensions.get("timeout")
    extensions[DEADLINE_EXTENSION] = deadline
    extensions["timeout"] = trimmed(extensions.get("timeout"), remaining)


def release_budget(extensions: dict[str, Any]) -> None:
    """Undo `apply_budget` once the request is done."""
    extensions.pop(DEADLINE_EXTENSION, None)
    if ORIGINAL_TIMEOUT_EXTENSION in extensions:
        original = extensions.pop(ORIGINAL_TIMEOUT_EXTENSION)
        if original is None:
            extensions.pop("timeout", None)
        else:
            extensions["timeout"] = original
