"""The pure retry decisions: what is retried, and after how long."""

from __future__ import annotations

import ast
import email.utils
import inspect
import math

import pytest

from pinkcloudsync_async import _retry_policy
from pinkcloudsync_async._constants import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRY_BACKOFF_BASE,
    DEFAULT_RETRY_BACKOFF_MAX,
)
from pinkcloudsync_async._retry_policy import (
    Failure,
    RetryDecision,
    RetryPolicy,
    next_delay,
    parse_retry_after,
    plan_retry,
    should_retry,
)

IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]
NON_IDEMPOTENT = ["POST", "PATCH"]
ALL_METHODS = IDEMPOTENT + NON_IDEMPOTENT
RETRYABLE_5XX = [500, 502, 503, 504]
# A fixed wall clock for the HTTP-date form: 2024-01-01T00:00:00Z.
NOW = 1_704_067_200.0


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


def test_module_is_io_free() -> None:
    tree = ast.parse(inspect.getsource(_retry_policy))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"httpx", "httpcore", "asyncio", "anyio", "trio", "threading"}


# --- should_retry -------------------------------------------------------------------------


@pytest.mark.parametrize("method", [*ALL_METHODS, "get", "post"])
def test_429_is_retried_for_any_method(method: str) -> None:
    assert should_retry(method, status_code=429) is True


@pytest.mark.parametrize("status", RETRYABLE_5XX)
@pytest.mark.parametrize("method", [*IDEMPOTENT, "get", "delete"])
def test_5xx_is_retried_for_idempotent_methods(method: str, status: int) -> None:
    assert should_retry(method, status_code=status) is True


@pytest.mark.parametrize("status", RETRYABLE_5XX)
@pytest.mark.parametrize("method", NON_IDEMPOTENT)
def test_5xx_is_not_retried_for_post_or_patch(method: str, status: int) -> None:
    assert should_retry(method, status_code=status) is False


def test_post_503_is_not_retried_but_with_an_idempotency_key_it_is() -> None:
    assert should_retry("POST", status_code=503) is False
    assert should_retry("POST", status_code=503, idempotent=True) is True


@pytest.mark.parametrize("status", RETRYABLE_5XX)
@pytest.mark.parametrize("method", NON_IDEMPOTENT)
def test_5xx_is_retried_for_any_method_marked_idempotent(method: str, status: int) -> None:
    assert should_retry(method, status_code=status, idempotent=True) is True


@pytest.mark.parametrize("status", [501, 505, 507, 599])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_other_5xx_are_not_retried(method: str, status: int) -> None:
    assert should_retry(method, status_code=status, idempotent=True) is False


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 408, 409, 410, 413, 422, 425, 428])
@pytest.mark.parametrize("idempotent", [False, True])
@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
def test_4xx_other_than_429_is_never_retried(method: str, idempotent: bool, status: int) -> None:
    assert should_retry(method, status_code=status, idempotent=idempotent) is False


@pytest.mark.parametrize("status", [200, 201, 204, 301, 302, 304])
def test_success_and_redirects_are_not_retried(status: int) -> None:
    assert should_retry("GET", status_code=status, idempotent=True) is False


@pytest.mark.parametrize("method", ALL_METHODS)
def test_not_sent_is_retried_for_any_method(method: str) -> None:
    assert should_retry(method, failure=Failure.NOT_SENT) is True


@pytest.mark.parametrize("method", IDEMPOTENT)
def test_no_response_is_retried_for_idempotent_methods(method: str) -> None:
    assert should_retry(method, failure=Failure.NO_RESPONSE) is True


@pytest.mark.parametrize("method", NON_IDEMPOTENT)
def test_no_response_is_retried_for_post_only_when_idempotent(method: str) -> None:
    assert should_retry(method, failure=Failure.NO_RESPONSE) is False
    assert should_retry(method, failure=Failure.NO_RESPONSE, idempotent=True) is True


@pytest.mark.parametrize(
    "outcome",
    [
        {"status_code": 429},
        {"status_code": 503},
        {"failure": Failure.NOT_SENT},
        {"failure": Failure.NO_RESPONSE},
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_non_replayable_request_is_never_retried(method: str, outcome: dict) -> None:
    assert should_retry(method, idempotent=True, replayable=False, **outcome) is False


def test_nothing_known_is_not_retried() -> None:
    assert should_retry("GET") is False


# --- parse_retry_after ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("1", 1.0),
        ("120", 120.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("-0", 0.0),
        ("86400", 86400.0),
    ],
)
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    result = parse_retry_after(value, now=NOW)
    assert result == seconds
    assert result is not None
    assert result >= 0


def test_retry_after_huge_delta_is_kept_so_the_caller_can_give_up() -> None:
    # A finite, absurd wait is reported as is; next_delay turns it into "give up".
    assert parse_retry_after("99999999999", now=NOW) == 99_999_999_999.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "abc",
        "12abc",
        "1 2",
        "0x10",
        "-1",
        "-0.5",
        "nan",
        "NaN",
        "-nan",
        "inf",
        "+inf",
        "-inf",
        "Infinity",
        "1e400",  # overflows to inf
        "Sun, 32 Foo 2024 99:99:99 GMT",
        "2024-01-01T00:00:30Z",  # ISO 8601 is not an HTTP-date
    ],
)
def test_retry_after_garbage_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize("ahead", [1, 30, 120, 3600])
def test_retry_after_http_date_in_the_future(ahead: int) -> None:
    assert parse_retry_after(http_date(NOW + ahead), now=NOW) == pytest.approx(ahead)


@pytest.mark.parametrize(
    "value",
    [
        "Mon, 01 Jan 2024 00:00:30 GMT",  # IMF-fixdate, the preferred form
        "Monday, 01-Jan-24 00:00:30 GMT",  # obsolete RFC 850 form
        "Mon Jan  1 00:00:30 2024",  # obsolete asctime form (GMT implied)
    ],
)
def test_retry_after_accepts_all_three_http_date_formats(value: str) -> None:
    """RFC 9110 5.6.7: a recipient MUST accept all three HTTP-date formats (all GMT)."""
    assert parse_retry_after(value, now=NOW) == pytest.approx(30.0)


@pytest.mark.parametrize("behind", [1, 3600, 10 * 365 * 86400])
def test_retry_after_http_date_in_the_past_means_now(behind: int) -> None:
    assert parse_retry_after(http_date(NOW - behind), now=NOW) == 0.0


def test_retry_after_http_date_exactly_now_is_zero() -> None:
    assert parse_retry_after(http_date(NOW), now=NOW) == 0.0


def test_retry_after_http_date_uses_its_own_timezone() -> None:
    # Same instant as 00:00:30 GMT, written two hours east.
    assert parse_retry_after("Mon, 01 Jan 2024 02:00:30 +0200", now=NOW) == pytest.approx(30.0)


def test_retry_after_http_date_defaults_to_the_current_wall_clock() -> None:
    # Without `now`, a date an hour ahead of a fixed 2024 clock is long past today.
    assert parse_retry_after(http_date(NOW + 3600)) == 0.0


# --- next_delay -----------------------------------------------------------------------


def fixed(value: float):
    return lambda: value


@pytest.mark.parametrize("retry_after", [0.0, 0.5, 1.0, 30.0, 60.0])
def test_next_delay_retry_after_wins(retry_after: float) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0, max_retry_after=60.0)
    for retries_done in range(4):
        assert (
            next_delay(retries_done, retry_after=retry_after, policy=policy, rand=fixed(1.0))
            == retry_after
        )


@pytest.mark.parametrize("retry_after", [60.001, 61.0, 3600.0, 1e12])
def test_next_delay_retry_after_above_the_cap_gives_up(retry_after: float) -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert next_delay(0, retry_after=retry_after, policy=policy, rand=fixed(0.5)) is None


def test_next_delay_default_cap_is_sixty_seconds() -> None:
    policy = RetryPolicy()
    assert next_delay(0, retry_after=60.0, policy=policy) == 60.0
    assert next_delay(0, retry_after=60.5, policy=policy) is None


@pytest.mark.parametrize(
    ("retries_done", "ceiling"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0), (1000, 8.0)],
)
def test_next_delay_full_jitter_is_bounded_by_the_capped_exponential(
    retries_done: int, ceiling: float
) -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0)
    top = next_delay(retries_done, retry_after=None, policy=policy, rand=fixed(1.0))
    bottom = next_delay(retries_done, retry_after=None, policy=policy, rand=fixed(0.0))
    middle = next_delay(retries_done, retry_after=None, policy=policy, rand=fixed(0.25))
    assert top == pytest.approx(ceiling)
    assert bottom == 0.0
    assert middle == pytest.approx(0.25 * ceiling)


@pytest.mark.parametrize("retries_done", [1024, 5000])
def test_next_delay_stays_capped_after_very_many_retries(retries_done: int) -> None:
    """The cap holds for any retry count (a per-request max_retries may be large)."""
    policy = RetryPolicy(max_retries=10_000, backoff_base=0.5, backoff_max=8.0)
    assert next_delay(retries_done, retry_after=None, policy=policy, rand=fixed(1.0)) == 8.0


def test_next_delay_uses_the_random_source_every_time() -> None:
    """Full jitter: the delay follows `rand`, so clients failing together spread out."""
    policy = RetryPolicy(backoff_base=1.0, backoff_max=100.0)
    values = iter([0.1, 0.9, 0.4])
    delays = [next_delay(3, retry_after=None, policy=policy, rand=lambda: next(values))]
    delays += [next_delay(3, retry_after=None, policy=policy, rand=lambda: next(values))]
    delays += [next_delay(3, retry_after=None, policy=policy, rand=lambda: next(values))]
    assert delays == pytest.approx([0.8, 7.2, 3.2])


def test_next_delay_default_rand_stays_within_bounds() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0)
    delays = [next_delay(2, retry_after=None, policy=policy) for _ in range(500)]
    assert all(d is not None and 0.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a constant


# --- plan_retry ---------------------------------------------------------------------------


def plan(**overrides: object) -> RetryDecision:
    arguments: dict = {
        "retries_done": 0,
        "policy": RetryPolicy(max_retries=2, backoff_base=0.5, backoff_max=8.0),
        "now": 100.0,
        "deadline": None,
        "status_code": 503,
        "rand": fixed(1.0),
    }
    arguments.update(overrides)
    method = arguments.pop("method", "GET")
    return plan_retry(method, **arguments)


@pytest.mark.parametrize("failures_before_success", [0, 1, 2, 3])
def test_plan_retry_failures_before_success(failures_before_success: int) -> None:
    """With the default two retries, up to two failures are survived, a third is not."""
    policy = RetryPolicy()
    # The decision after each failed attempt, the n-th having `n` retries behind it.
    decisions = [plan(retries_done=n, policy=policy) for n in range(failures_before_success)]
    survived = all(decision.retry for decision in decisions)
    assert survived is (failures_before_success <= 2)
    if not survived:
        assert [d.retry for d in decisions] == [True, True, False]
        assert "exhausted" in decisions[-1].reason
    # rand=1.0: each delay is the capped exponential ceiling, 0.5 s then 1 s.
    assert [d.delay for d in decisions if d.retry] == pytest.approx(
        [0.5, 1.0][: min(failures_before_success, 2)]
    )


def test_plan_retry_retries_then_stops_when_exhausted() -> None:
    first = plan(retries_done=0)
    second = plan(retries_done=1)
    third = plan(retries_done=2)
    assert first.retry is True
    assert first.delay == pytest.approx(0.5)
    assert second.retry is True
    assert second.delay == pytest.approx(1.0)
    assert third.retry is False
    assert "exhausted" in third.reason


def test_plan_retry_zero_max_retries_disables_retries() -> None:
    decision = plan(policy=RetryPolicy(max_retries=0), status_code=429)
    assert decision.retry is False


def test_plan_retry_not_retryable() -> None:
    decision = plan(method="POST", status_code=503)
    assert decision.retry is False
    assert "not retryable" in decision.reason
    assert plan(method="POST", status_code=503, idempotent=True).retry is True
    assert plan(method="GET", status_code=503, replayable=False).retry is False
    assert plan(status_code=404).retry is False


def test_plan_retry_honours_retry_after() -> None:
    decision = plan(status_code=429, retry_after=7.0, method="POST")
    assert decision.retry is True
    assert decision.delay == 7.0
    assert "429" in decision.reason


def test_plan_retry_gives_up_at_once_on_a_retry_after_above_the_cap() -> None:
    decision = plan(status_code=429, retry_after=61.0)
    assert decision.retry is False
    assert "Retry-After" in decision.reason


def test_plan_retry_stops_when_the_wait_would_pass_the_deadline() -> None:
    # now=100, rand=1.0: the first backoff is 0.5 s.
    assert plan(deadline=100.6).retry is True
    assert plan(deadline=100.6).delay == pytest.approx(0.5)
    stopped = plan(deadline=100.4)
    assert stopped.retry is False
    assert "timeout" in stopped.reason
    assert plan(status_code=429, retry_after=10.0, deadline=105.0).retry is False
    assert plan(status_code=429, retry_after=10.0, deadline=115.0).retry is True


def test_plan_retry_already_past_the_deadline_stops() -> None:
    assert plan(now=200.0, deadline=150.0, rand=fixed(0.0)).retry is False


def test_plan_retry_failure_reason_names_the_failure() -> None:
    decision = plan(status_code=None, failure=Failure.NOT_SENT, method="POST")
    assert decision.retry is True
    assert decision.reason == Failure.NOT_SENT.value


# --- RetryPolicy --------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_retries == DEFAULT_MAX_RETRIES == 2
    assert policy.backoff_base == DEFAULT_RETRY_BACKOFF_BASE
    assert policy.backoff_max == DEFAULT_RETRY_BACKOFF_MAX
    assert policy.max_retry_after == DEFAULT_MAX_RETRY_AFTER == 60.0


@pytest.mark.parametrize("max_retries", [1.0, "2", None, True, False])
def test_policy_max_retries_must_be_an_int(max_retries: object) -> None:
    with pytest.raises(TypeError, match="max_retries"):
        RetryPolicy(max_retries=max_retries)  # type: ignore[arg-type]


def test_policy_max_retries_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)


@pytest.mark.parametrize("field", ["backoff_base", "backoff_max", "max_retry_after"])
@pytest.mark.parametrize("value", [-1.0, -0.001, math.nan, math.inf, -math.inf, "1", None])
def test_policy_bounds_must_be_finite_and_non_negative(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_accepts_zero_and_ints() -> None:
    policy = RetryPolicy(max_retries=0, backoff_base=0, backoff_max=3, max_retry_after=0)
    assert next_delay(5, retry_after=None, policy=policy, rand=fixed(1.0)) == 0.0
    assert next_delay(5, retry_after=0.0, policy=policy) == 0.0
    assert next_delay(5, retry_after=0.1, policy=policy) is None


def test_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_retries = 5  # type: ignore[misc]
