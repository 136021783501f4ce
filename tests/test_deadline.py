"""A request's deadline: where it ends, how much is left, and each phase clamped to it."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from pinkcloudsync_async import RequestTimeoutError
from pinkcloudsync_async._deadline import Deadline, clamped, deadline_of

PHASES = {"connect", "read", "write", "pool"}


def as_extension(timeout: httpx.Timeout) -> dict[str, Any]:
    """What httpx puts in `request.extensions["timeout"]`."""
    return timeout.as_dict()


def deadline_for(
    now: float, timeout: dict[str, Any] | None, default: dict[str, Any] | None = None
) -> float | None:
    """When a request sent at `now` must be done: the deadline's `at`, or None."""
    deadline = Deadline.for_timeout(timeout, clock=lambda: now, default=default)
    return None if deadline is None else deadline.at


trimmed = clamped


@pytest.mark.parametrize("timeout", [None, {}])
def test_no_timeout_means_no_deadline(timeout: dict[str, Any] | None) -> None:
    assert deadline_for(100.0, timeout) is None


def test_all_phases_unbounded_means_no_deadline() -> None:
    assert deadline_for(100.0, as_extension(httpx.Timeout(None))) is None


def test_non_finite_phases_are_ignored() -> None:
    timeout = {"connect": math.inf, "read": 7.0, "write": None, "pool": math.nan}
    assert deadline_for(100.0, timeout) == 107.0
    assert deadline_for(100.0, {"connect": math.inf, "read": math.nan}) is None


@pytest.mark.parametrize("seconds", [0.5, 5.0, 30.0])
def test_a_single_number_is_the_total_budget(seconds: float) -> None:
    assert deadline_for(100.0, as_extension(httpx.Timeout(seconds))) == 100.0 + seconds


def test_the_budget_is_the_largest_phase() -> None:
    timeout = as_extension(httpx.Timeout(30.0, connect=10.0))
    assert deadline_for(1000.0, timeout) == 1030.0
    timeout = as_extension(httpx.Timeout(5.0, read=None, pool=12.0))
    assert deadline_for(1000.0, timeout) == 1012.0


def test_the_deadline_counts_from_now() -> None:
    timeout = as_extension(httpx.Timeout(5.0))
    assert deadline_for(0.0, timeout) == 5.0
    assert deadline_for(12_345.5, timeout) == 12_350.5


def test_trimmed_caps_every_phase_to_what_remains() -> None:
    timeout = as_extension(httpx.Timeout(30.0, connect=10.0))
    assert trimmed(timeout, 4.0) == dict.fromkeys(PHASES, 4.0)


def test_trimmed_keeps_shorter_phases() -> None:
    timeout = as_extension(httpx.Timeout(30.0, connect=2.0))
    result = trimmed(timeout, 10.0)
    assert result == {"connect": 2.0, "read": 10.0, "write": 10.0, "pool": 10.0}


def test_trimmed_bounds_unbounded_phases() -> None:
    timeout = {"connect": None, "read": 3.0, "write": None, "pool": None}
    assert trimmed(timeout, 8.0) == {"connect": 8.0, "read": 3.0, "write": 8.0, "pool": 8.0}


@pytest.mark.parametrize("timeout", [None, {}])
def test_trimmed_without_a_timeout_uses_the_remainder_everywhere(
    timeout: dict[str, Any] | None,
) -> None:
    assert trimmed(timeout, 2.5) == dict.fromkeys(PHASES, 2.5)


@pytest.mark.parametrize("remaining", [0.0, -0.001, -100.0])
def test_trimmed_never_goes_negative(remaining: float) -> None:
    result = trimmed(as_extension(httpx.Timeout(5.0)), remaining)
    assert result == dict.fromkeys(PHASES, 0.0)


def test_trimmed_is_a_valid_httpx_timeout_and_leaves_the_input_alone() -> None:
    original = as_extension(httpx.Timeout(30.0, connect=10.0))
    snapshot = dict(original)
    result = trimmed(original, 3.0)
    assert original == snapshot
    assert httpx.Timeout(**result).as_dict() == result


def test_the_default_timeout_makes_no_deadline() -> None:
    default = as_extension(httpx.Timeout(30.0, connect=10.0))
    assert deadline_for(100.0, dict(default), default) is None
    assert deadline_for(100.0, as_extension(httpx.Timeout(30.0)), default) == 130.0


def test_fit_then_release_hands_the_request_back_as_it_came() -> None:
    now = [96.0]
    original = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    extensions: dict[str, Any] = {"timeout": dict(original)}
    deadline = Deadline.for_timeout(extensions["timeout"], clock=lambda: now[0])
    assert deadline is not None
    deadline.attach(extensions)
    assert deadline_of(extensions) is deadline
    now[0] = 99.0
    deadline.fit(extensions, "while it got a token")
    now[0] = 100.0
    deadline.fit(extensions, "while it got a token")  # a second clamp keeps the original
    assert extensions["timeout"] == {"connect": 1.0, "read": 1.0, "write": 1.0, "pool": 1.0}
    assert deadline.remaining() == 1.0
    deadline.release(extensions)
    assert extensions == {"timeout": original}


def test_release_without_a_timeout_removes_what_it_added() -> None:
    extensions: dict[str, Any] = {}
    deadline = Deadline(10.0, lambda: 7.0)
    deadline.attach(extensions)
    deadline.fit(extensions, "before its next attempt")
    assert extensions["timeout"] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    deadline.release(extensions)
    assert extensions == {}


@pytest.mark.parametrize("now", [10.0, 10.5, 1e9])
def test_a_spent_deadline_raises_the_typed_timeout(now: float) -> None:
    extensions: dict[str, Any] = {"timeout": {"read": 5.0}}
    deadline = Deadline(10.0, lambda: now)
    with pytest.raises(RequestTimeoutError, match="ran out while it got a token"):
        deadline.fit(extensions, "while it got a token")
    assert extensions == {"timeout": {"read": 5.0}}  # nothing half-done
    assert isinstance(RequestTimeoutError("x"), httpx.TimeoutException)
