"""A request's total time budget: where it ends, and trimming each phase to it."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from pinkcloudsync_async._timeouts import deadline_for, trimmed

PHASES = {"connect", "read", "write", "pool"}


def as_extension(timeout: httpx.Timeout) -> dict[str, Any]:
    """What httpx puts in `request.extensions["timeout"]`."""
    return timeout.as_dict()


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


def test_apply_budget_then_release_hands_the_request_back_as_it_came() -> None:
    from pinkcloudsync_async._timeouts import apply_budget, release_budget

    original = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    extensions: dict[str, object] = {"timeout": dict(original)}
    apply_budget(extensions, 101.0, 2.0)
    apply_budget(extensions, 101.0, 1.0)  # a second trim keeps the first original
    assert extensions["timeout"] == {"connect": 1.0, "read": 1.0, "write": 1.0, "pool": 1.0}
    assert extensions["pinkcloudsync.deadline"] == 101.0
    release_budget(extensions)
    assert extensions == {"timeout": original}


def test_release_budget_without_a_timeout_removes_what_it_added() -> None:
    from pinkcloudsync_async._timeouts import apply_budget, release_budget

    extensions: dict[str, object] = {}
    apply_budget(extensions, 10.0, 3.0)
    assert extensions["timeout"] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}
    release_budget(extensions)
    assert extensions == {}
