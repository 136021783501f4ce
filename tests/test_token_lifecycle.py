"""The pure token decisions, driven by a fake clock (plain floats, no event loop)."""

from __future__ import annotations

import ast
import inspect
import math
from dataclasses import dataclass

import pytest

from pinkcloudsync_async import _token_lifecycle
from pinkcloudsync_async._constants import (
    DEFAULT_REFRESH_MARGIN,
    REFRESH_FAILURE_BACKOFF_BASE,
    REFRESH_FAILURE_BACKOFF_MAX,
)
from pinkcloudsync_async._token_lifecycle import (
    Action,
    Flight,
    TokenLifecycle,
    TokenStatus,
    effective_lifetime,
    refresh_lead,
    token_status,
)


@dataclass(frozen=True, eq=False)
class FakeToken:
    """Only what the lifecycle reads; identity matters, so no value equality."""

    refresh_at: float
    expires_at: float
    name: str = "token"


# A token obtained at t=1000 with a 3600 s lifetime and the default 300 s margin.
T0 = 1000.0
REFRESH_AT = 4300.0
EXPIRES_AT = 4600.0


def token(name: str = "t1", *, refresh_at: float = REFRESH_AT, expires_at: float = EXPIRES_AT):
    return FakeToken(refresh_at=refresh_at, expires_at=expires_at, name=name)


def lifecycle_with(current: FakeToken | None) -> TokenLifecycle[FakeToken]:
    lifecycle: TokenLifecycle[FakeToken] = TokenLifecycle()
    lifecycle.token = current
    return lifecycle


def test_module_is_io_free() -> None:
    """The decisions import neither httpx nor an event loop (the sans-I/O core)."""
    tree = ast.parse(inspect.getsource(_token_lifecycle))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"httpx", "asyncio", "anyio", "trio", "threading", "time", "httpcore"}


# --- token_status ---------------------------------------------------------------------


def test_status_missing_without_token() -> None:
    assert token_status(None, now=T0) is TokenStatus.MISSING


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0, TokenStatus.FRESH),
        (REFRESH_AT - 0.001, TokenStatus.FRESH),
        (REFRESH_AT, TokenStatus.DUE),  # the boundary belongs to DUE
        (EXPIRES_AT - 0.001, TokenStatus.DUE),
        (EXPIRES_AT, TokenStatus.EXPIRED),  # the boundary belongs to EXPIRED
        (EXPIRES_AT + 10_000.0, TokenStatus.EXPIRED),
    ],
)
def test_status_at_the_boundaries(now: float, expected: TokenStatus) -> None:
    assert token_status(token(), now=now) is expected


def test_status_with_no_refresh_window_goes_fresh_to_expired() -> None:
    never_due = token(refresh_at=EXPIRES_AT, expires_at=EXPIRES_AT)
    assert token_status(never_due, now=EXPIRES_AT - 0.001) is TokenStatus.FRESH
    assert token_status(never_due, now=EXPIRES_AT) is TokenStatus.EXPIRED


# --- refresh_lead ---------------------------------------------------------------------


def test_default_margin_is_the_api_guides_five_minutes() -> None:
    assert DEFAULT_REFRESH_MARGIN == 300.0


@pytest.mark.parametrize(
    ("lifetime", "margin", "lead"),
    [
        (3600.0, 300.0, 300.0),  # an hour-long token: the guide's 5 minutes
        (600.0, 300.0, 300.0),  # exactly twice the margin: both rules agree
        (599.0, 300.0, 299.5),  # just shorter: half the lifetime wins
        (60.0, 300.0, 30.0),  # a 60 s token is due after 30 s, not at once
        (1.0, 300.0, 0.5),
        (3600.0, 0.0, 0.0),  # margin 0: never refreshed early
        (3600.0, 1000.0, 1000.0),
    ],
)
def test_refresh_lead_is_margin_capped_at_half_the_lifetime(
    lifetime: float, margin: float, lead: float
) -> None:
    assert refresh_lead(lifetime, margin) == pytest.approx(lead)


def test_short_token_is_not_due_on_every_call() -> None:
    """A 60 s token with the 300 s margin: fresh for its first half, due for the second."""
    lifetime = 60.0
    expires_at = T0 + lifetime
    short = token(refresh_at=expires_at - refresh_lead(lifetime, 300.0), expires_at=expires_at)
    assert token_status(short, now=T0) is TokenStatus.FRESH
    assert token_status(short, now=T0 + 29.9) is TokenStatus.FRESH
    assert token_status(short, now=T0 + 30.0) is TokenStatus.DUE
    assert token_status(short, now=T0 + 60.0) is TokenStatus.EXPIRED


# --- effective_lifetime -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "iat", "exp", "expected"),
    [
        (3600, None, None, 3600.0),  # no claims
        (3600, 1_700_000_000, 1_700_000_600, 600.0),  # claims shorten
        (3600, 1_700_000_000, 1_700_007_200, 3600.0),  # claims never lengthen
        (3600, 1_700_000_000, 1_700_003_600, 3600.0),  # agreeing claims
        (3600, None, 1_700_000_600, 3600.0),  # exp without iat: needs the wall clock
        (3600, 1_700_000_000, None, 3600.0),  # iat alone says nothing
        (3600, 1_700_000_000, 1_700_000_000, 3600.0),  # zero server lifetime: nonsense
        (3600, 1_700_000_600, 1_700_000_000, 3600.0),  # negative: nonsense
        (60, 1_700_000_000, 1_700_000_030, 30.0),
    ],
)
def test_effective_lifetime(expires_in: int, iat: int | None, exp: int | None, expected: float):
    result = effective_lifetime(expires_in, iat=iat, exp=exp)
    assert result == expected
    assert isinstance(result, float)


@pytest.mark.parametrize("skew", [-6 * 3600, 0, 6 * 3600])
def test_effective_lifetime_reads_the_servers_clock_only(skew: int) -> None:
    """Claims issued hours 'in the past' or 'future' of the client give the same lifetime."""
    iat = 1_700_000_000 + skew
    assert effective_lifetime(3600, iat=iat, exp=iat + 900) == 900.0


# --- TokenLifecycle.claim: who fetches, who waits ---------------------------------------


def test_cold_first_claim_fetches_a_mandatory_flight() -> None:
    lifecycle = lifecycle_with(None)
    action, current, flight = lifecycle.claim(T0)
    assert action is Action.FETCH
    assert current is None
    assert isinstance(flight, Flight)
    assert flight.mandatory is True
    assert flight.done is False
    assert lifecycle.flight is flight


def test_cold_many_claims_fetch_exactly_once_and_wait_on_the_same_flight() -> None:
    lifecycle = lifecycle_with(None)
    outcomes = [lifecycle.claim(T0 + i * 0.001) for i in range(1000)]
    actions = [action for action, _, _ in outcomes]
    assert actions.count(Action.FETCH) == 1
    assert actions[0] is Action.FETCH
    assert actions.count(Action.WAIT) == 999
    leader_flight = outcomes[0][2]
    assert all(flight is leader_flight for _, _, flight in outcomes)
    assert all(current is None for _, current, _ in outcomes)


def test_succeed_hands_the_token_to_everyone() -> None:
    lifecycle = lifecycle_with(None)
    _, _, flight = lifecycle.claim(T0)
    _, _, waited = lifecycle.claim(T0)
    assert flight is not None
    new = token("new")
    lifecycle.succeed(flight, new)
    assert waited is flight
    assert flight.done is True
    assert flight.token is new
    assert flight.error is None
    assert lifecycle.token is new
    assert lifecycle.flight is None
    assert lifecycle.claim(T0 + 1) == (Action.USE, new, None)


def test_fresh_token_is_used_without_a_flight() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    for now in (T0, REFRESH_AT - 0.001):
        assert lifecycle.claim(now) == (Action.USE, current, None)
    assert lifecycle.flight is None


def test_due_token_starts_exactly_one_advisory_refresh() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    outcomes = [lifecycle.claim(REFRESH_AT + i * 0.01) for i in range(500)]
    actions = [action for action, _, _ in outcomes]
    assert actions.count(Action.USE_AND_REFRESH) == 1
    assert actions[0] is Action.USE_AND_REFRESH
    assert actions.count(Action.USE) == 499
    # Everyone, including the refresher, goes on immediately with the old token.
    assert all(used is current for _, used, _ in outcomes)
    flight = outcomes[0][2]
    assert flight is not None
    assert flight.mandatory is False
    assert lifecycle.flight is flight
    assert all(f is None for _, _, f in outcomes[1:])


def test_due_token_is_used_while_its_refresh_is_in_flight() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    lifecycle.claim(REFRESH_AT)
    assert lifecycle.claim(EXPIRES_AT - 0.001) == (Action.USE, current, None)


def test_expiry_during_an_early_refresh_makes_callers_wait_on_it() -> None:
    """Only an expired token makes requests wait; they wait on the flight already running."""
    lifecycle = lifecycle_with(token())
    _, _, refresh = lifecycle.claim(REFRESH_AT)
    action, current, flight = lifecycle.claim(EXPIRES_AT)
    assert action is Action.WAIT
    assert current is None
    assert flight is refresh


def test_expired_token_fetches_a_mandatory_flight() -> None:
    lifecycle = lifecycle_with(token())
    action, current, flight = lifecycle.claim(EXPIRES_AT)
    assert action is Action.FETCH
    assert current is None
    assert flight is not None
    assert flight.mandatory is True
    assert lifecycle.claim(EXPIRES_AT + 1)[0] is Action.WAIT


def test_refreshed_token_ends_the_due_window() -> None:
    lifecycle = lifecycle_with(token("old"))
    _, _, flight = lifecycle.claim(REFRESH_AT)
    assert flight is not None
    new = token("new", refresh_at=REFRESH_AT + 3300, expires_at=EXPIRES_AT + 3600)
    lifecycle.succeed(flight, new)
    assert lifecycle.claim(REFRESH_AT + 1) == (Action.USE, new, None)


# --- fail: advisory vs mandatory, and the backoff --------------------------------------


def test_mandatory_failure_reaches_waiters_and_is_not_advisory() -> None:
    lifecycle = lifecycle_with(None)
    _, _, flight = lifecycle.claim(T0)
    _, _, waited = lifecycle.claim(T0)
    assert flight is not None
    error = RuntimeError("token endpoint down")
    assert lifecycle.fail(flight, error, now=T0 + 1) is False
    assert waited is flight
    assert flight.done is True
    assert flight.error is error
    assert flight.token is None
    assert lifecycle.flight is None
    assert lifecycle.token is None
    # No backoff for a mandatory fetch: the next caller tries again at once.
    assert lifecycle.failed_refreshes == 0
    assert lifecycle.claim(T0 + 1)[0] is Action.FETCH


def test_failure_of_an_expired_tokens_flight_is_mandatory() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    _, _, flight = lifecycle.claim(REFRESH_AT)
    assert flight is not None
    assert lifecycle.fail(flight, RuntimeError("late"), now=EXPIRES_AT) is False
    assert lifecycle.claim(EXPIRES_AT)[0] is Action.FETCH


def test_advisory_failure_keeps_the_old_token_and_backs_off() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    _, _, flight = lifecycle.claim(REFRESH_AT)
    assert flight is not None
    error = RuntimeError("refresh failed")
    assert lifecycle.fail(flight, error, now=REFRESH_AT + 1) is True
    assert flight.done is True
    assert flight.error is error
    assert lifecycle.token is current
    assert lifecycle.flight is None
    assert lifecycle.failed_refreshes == 1
    not_before = REFRESH_AT + 1 + REFRESH_FAILURE_BACKOFF_BASE
    assert lifecycle.refresh_not_before == pytest.approx(not_before)
    # Inside the backoff: still due, but nobody refreshes.
    assert lifecycle.claim(not_before - 0.001) == (Action.USE, current, None)
    # At its end exactly one caller refreshes again.
    action, used, again = lifecycle.claim(not_before)
    assert action is Action.USE_AND_REFRESH
    assert used is current
    assert again is not None
    assert again is not flight
    assert lifecycle.claim(not_before)[0] is Action.USE


def test_backoff_doubles_and_is_capped() -> None:
    lifecycle: TokenLifecycle[FakeToken] = TokenLifecycle(backoff_base=1.0, backoff_max=10.0)
    lifecycle.token = token(refresh_at=0.0, expires_at=1e9)
    now = 100.0
    backoffs = []
    for _ in range(7):
        action, _, flight = lifecycle.claim(now)
        assert action is Action.USE_AND_REFRESH
        assert flight is not None
        assert lifecycle.fail(flight, RuntimeError("x"), now=now) is True
        backoffs.append(lifecycle.refresh_not_before - now)
        # Just before the backoff ends nobody refreshes; at its end one does.
        assert lifecycle.claim(lifecycle.refresh_not_before - 0.001)[0] is Action.USE
        now = lifecycle.refresh_not_before
    assert backoffs == pytest.approx([1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0])
    assert lifecycle.failed_refreshes == 7


def test_default_backoff_doubles_from_its_base_up_to_its_cap() -> None:
    lifecycle: TokenLifecycle[FakeToken] = TokenLifecycle()
    lifecycle.token = token(refresh_at=0.0, expires_at=1e9)
    now = 100.0
    backoffs = []
    for _ in range(12):
        _, _, flight = lifecycle.claim(now)
        assert flight is not None
        lifecycle.fail(flight, RuntimeError("x"), now=now)
        backoffs.append(lifecycle.refresh_not_before - now)
        now = lifecycle.refresh_not_before
    assert backoffs[0] == REFRESH_FAILURE_BACKOFF_BASE
    assert backoffs[1] == 2 * REFRESH_FAILURE_BACKOFF_BASE
    assert all(b <= REFRESH_FAILURE_BACKOFF_MAX for b in backoffs)
    assert backoffs[-1] == REFRESH_FAILURE_BACKOFF_MAX
    assert backoffs == sorted(backoffs)
    assert all(math.isfinite(b) for b in backoffs)


def test_backoff_stays_capped_after_very_many_failures() -> None:
    """A long-lived token refreshed early (large margin) may fail thousands of times."""
    lifecycle: TokenLifecycle[FakeToken] = TokenLifecycle(backoff_base=1.0, backoff_max=30.0)
    lifecycle.token = token(refresh_at=0.0, expires_at=1e12)
    now = 100.0
    for _ in range(1100):
        action, _, flight = lifecycle.claim(now)
        assert action is Action.USE_AND_REFRESH
        assert flight is not None
        assert lifecycle.fail(flight, RuntimeError("x"), now=now) is True
        assert lifecycle.refresh_not_before - now <= 30.0
        now = lifecycle.refresh_not_before
    assert lifecycle.failed_refreshes == 1100


def test_succeed_resets_the_backoff() -> None:
    lifecycle = lifecycle_with(token())
    for i in range(3):
        now = max(REFRESH_AT, lifecycle.refresh_not_before) + i
        _, _, flight = lifecycle.claim(now)
        assert flight is not None
        lifecycle.fail(flight, RuntimeError("x"), now=now)
    assert lifecycle.failed_refreshes == 3
    now = lifecycle.refresh_not_before
    _, _, flight = lifecycle.claim(now)
    assert flight is not None
    # The new token is itself already due (a short one): it must refresh at once.
    new = token("new", refresh_at=now, expires_at=now + 100)
    lifecycle.succeed(flight, new)
    assert lifecycle.failed_refreshes == 0
    assert lifecycle.refresh_not_before == -math.inf
    assert lifecycle.claim(now)[0] is Action.USE_AND_REFRESH
    # And a later failure starts over from the base.
    assert lifecycle.flight is not None
    lifecycle.fail(lifecycle.flight, RuntimeError("x"), now=now)
    assert lifecycle.refresh_not_before - now == REFRESH_FAILURE_BACKOFF_BASE


def test_backoff_does_not_delay_a_mandatory_fetch() -> None:
    lifecycle = lifecycle_with(token())
    _, _, flight = lifecycle.claim(REFRESH_AT)
    assert flight is not None
    lifecycle.fail(flight, RuntimeError("x"), now=EXPIRES_AT - 0.5)
    assert lifecycle.refresh_not_before > EXPIRES_AT
    assert lifecycle.claim(EXPIRES_AT)[0] is Action.FETCH


# --- abandon ---------------------------------------------------------------------------


def test_abandoned_fetch_lets_the_next_claim_fetch() -> None:
    lifecycle = lifecycle_with(None)
    _, _, flight = lifecycle.claim(T0)
    _, _, waited = lifecycle.claim(T0)
    assert flight is not None
    lifecycle.abandon(flight)
    assert waited is flight
    assert flight.abandoned is True
    assert flight.done is True  # waiters wake up ...
    assert flight.token is None
    assert flight.error is None  # ... to no outcome: they start over
    assert lifecycle.flight is None
    action, _, takeover = lifecycle.claim(T0 + 0.1)
    assert action is Action.FETCH
    assert takeover is not flight
    assert lifecycle.claim(T0 + 0.1)[0] is Action.WAIT


def test_abandoned_early_refresh_can_be_restarted_without_backoff() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    _, _, flight = lifecycle.claim(REFRESH_AT)
    assert flight is not None
    lifecycle.abandon(flight)
    assert lifecycle.failed_refreshes == 0
    action, used, again = lifecycle.claim(REFRESH_AT)
    assert action is Action.USE_AND_REFRESH
    assert used is current
    assert again is not flight


def test_abandoning_a_stale_flight_leaves_the_current_one() -> None:
    lifecycle = lifecycle_with(None)
    _, _, first = lifecycle.claim(T0)
    assert first is not None
    lifecycle.abandon(first)
    _, _, second = lifecycle.claim(T0)
    lifecycle.abandon(first)
    assert lifecycle.flight is second
    assert lifecycle.claim(T0)[0] is Action.WAIT


# --- invalidate (401) --------------------------------------------------------------------


def test_invalidate_drops_the_current_token_once() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    lifecycle.invalidate(current)
    assert lifecycle.token is None
    action, _, flight = lifecycle.claim(T0)
    assert action is Action.FETCH
    # 99 more requests refused for the same token: still one flight.
    for _ in range(99):
        lifecycle.invalidate(current)
        assert lifecycle.claim(T0) == (Action.WAIT, None, flight)


def test_invalidate_with_an_older_token_keeps_the_newer_one() -> None:
    old, new = token("old"), token("new")
    lifecycle = lifecycle_with(new)
    lifecycle.invalidate(old)
    assert lifecycle.token is new
    assert lifecycle.claim(T0) == (Action.USE, new, None)


def test_invalidate_compares_identity_not_equality() -> None:
    @dataclass(frozen=True)
    class EqualToken:
        refresh_at: float
        expires_at: float

    current = EqualToken(REFRESH_AT, EXPIRES_AT)
    lifecycle: TokenLifecycle[EqualToken] = TokenLifecycle()
    lifecycle.token = current
    lifecycle.invalidate(EqualToken(REFRESH_AT, EXPIRES_AT))  # equal, but not the same token
    assert lifecycle.token is current


def test_invalidate_during_an_early_refresh_waits_on_it() -> None:
    current = token()
    lifecycle = lifecycle_with(current)
    _, _, refresh = lifecycle.claim(REFRESH_AT)
    lifecycle.invalidate(current)
    assert lifecycle.claim(REFRESH_AT) == (Action.WAIT, None, refresh)


@pytest.mark.parametrize("module", ["_token_lifecycle", "_retry_policy"])
def test_the_decisions_import_neither_httpx_nor_an_event_loop(module: str) -> None:
    """Read the decision modules' imports, and those of the package modules they
    import in turn: no HTTP library, no event loop, anywhere in that closure."""
    import ast
    from pathlib import Path

    import pinkcloudsync_async

    package = Path(pinkcloudsync_async.__file__).parent
    forbidden = {"httpx", "httpcore", "anyio", "trio", "asyncio", "sniffio", "threading"}
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((package / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # a module of this package: follow it
                    pending.append((node.module or "").split(".")[0])
                    continue
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{name} imports {roots & forbidden}"
    assert "_constants" in seen  # the closure was really followed
