"""The fleet's pure decisions, without Redis: keys, freshness, locks, the breaker,
encryption, the stored entries, and the flight's steps driven by a scripted store."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Generator
from typing import Any

import pytest
from fakes import API_KEY, API_SECRET, BASE_URL, make_jwt
from pydantic import SecretStr

from pinkcloudsync_async import (
    AccessToken,
    APIConnectionError,
    AuthenticationError,
    ConfigurationError,
    RateLimitError,
    RequestTimeoutError,
)
from pinkcloudsync_async._deadline import Deadline
from pinkcloudsync_async._token_exchange import build_access_token, decode_claims
from pinkcloudsync_async.stores._cipher import (
    PlaintextCodec,
    TokenCipher,
    UnreadableEntry,
    parse_keys,
)
from pinkcloudsync_async.stores._entry import (
    decode_failure,
    decode_token,
    encode_failure,
    encode_token,
)
from pinkcloudsync_async.stores._fleet import (
    Breaker,
    BreakerState,
    entry_ttl_ms,
    failure_ttl_ms,
    fleet_keys,
    is_fresh,
    lock_ttl,
    poll_delay,
)
from pinkcloudsync_async.stores._flight import (
    DOWN,
    Fetch,
    FleetFlight,
    Read,
    Release,
    Sleep,
    Snapshot,
    TryLock,
    Write,
)

RAW_KEY = os.urandom(32)
KEY_TEXT = base64.urlsafe_b64encode(RAW_KEY).decode()
KEYS = fleet_keys("pinkcloudsync", BASE_URL, API_KEY)


def token(now: float = 1000.0, *, lifetime: float = 3600, lead: float = 300) -> AccessToken:
    raw = make_jwt(lifetime=int(lifetime), jti=f"t-{now}")
    return build_access_token(
        SecretStr(raw),
        token_type="Bearer",
        expires_in=int(lifetime),
        claims=decode_claims(raw),
        lifetime=lifetime,
        expires_at=now + lifetime,
        refresh_at=now + lifetime - lead,
    )


class TestKeys:
    def test_the_keys_share_a_cluster_hash_tag_and_hold_no_credential(self) -> None:
        names = [KEYS.token, KEYS.lock, KEYS.failure]
        tags = {name[name.index("{") : name.index("}") + 1] for name in names}
        assert len(tags) == 1
        assert all(name.startswith("pinkcloudsync:{") for name in names)
        assert not any(API_KEY in name or API_SECRET in name for name in names)

    def test_another_api_key_or_base_url_gets_other_keys(self) -> None:
        assert fleet_keys("pinkcloudsync", BASE_URL, "pk_other").token != KEYS.token
        assert fleet_keys("pinkcloudsync", "https://other/v1", API_KEY).token != KEYS.token


class TestTimings:
    @pytest.mark.parametrize(
        ("seconds", "jitter", "expected"),
        [(3300.0, 0.0, 3_300_000), (3300.0, 0.999, 3_298_002), (10.0, 0.5, 9_750), (0.05, 0, None)],
    )
    def test_the_entry_ttl_ends_at_the_refresh_less_a_little_jitter(
        self, seconds: float, jitter: float, expected: int | None
    ) -> None:
        assert entry_ttl_ms(seconds, jitter) == expected

    @pytest.mark.parametrize(
        ("pttl", "fresh"), [(-2, False), (-1, False), (99, False), (100, True)]
    )
    def test_freshness_is_the_remaining_ttl_on_redis_clock(self, pttl: int, fresh: bool) -> None:
        assert is_fresh(pttl) is fresh

    def test_the_lock_outlives_the_token_request_with_its_retries(self) -> None:
        phases = {"connect": 10.0, "read": 30.0, "write": 30.0, "pool": 30.0}
        assert lock_ttl(phases, attempts=3, backoff_max=8.0) == 30 * 3 + 8 * 2
        assert lock_ttl({"connect": None, "read": None}, attempts=3, backoff_max=8) == 60.0
        assert lock_ttl({"read": 0.1}, attempts=1, backoff_max=8) == 1.0

    def test_a_waiter_polls_with_jitter_never_past_the_lock(self) -> None:
        assert poll_delay(-2, 0.0, 0.5) == 0.0
        assert poll_delay(10_000, 0.0, 0.0) == pytest.approx(0.0125)
        assert poll_delay(10_000, 10.0, 0.99) == pytest.approx(0.25 * 1.49)
        assert poll_delay(40, 10.0, 0.99) == 0.04

    def test_a_failure_is_shared_for_retry_after_else_the_window(self) -> None:
        assert failure_ttl_ms(None, 2.0) == 2000
        assert failure_ttl_ms(7.0, 2.0) == 7000
        assert failure_ttl_ms(3600.0, 2.0) == 60_000


class TestBreaker:
    def test_one_outage_opens_it_once_and_one_probe_per_cooldown_closes_it(self) -> None:
        breaker = Breaker(cooldown=5.0)
        assert breaker.allow(0.0)
        assert breaker.failure(0.0) is True  # an outage starts: the shell warns once
        assert breaker.failure(0.1) is False  # the same outage
        assert not breaker.allow(1.0)
        assert breaker.allow(5.1)  # the probe
        assert breaker.state is BreakerState.HALF_OPEN
        assert not breaker.allow(5.2)  # only one probe at a time
        assert breaker.failure(5.3) is False
        assert not breaker.allow(6.0)
        assert breaker.allow(10.4)
        assert breaker.success() is True  # the outage ends
        assert breaker.success() is False
        assert breaker.allow(10.5)

    def test_a_probe_that_never_reports_does_not_wedge_it(self) -> None:
        breaker = Breaker(cooldown=1.0)
        breaker.failure(0.0)
        assert breaker.allow(1.0)  # a probe, then cancelled: no outcome
        assert not breaker.allow(1.5)
        assert breaker.allow(2.0)


class TestCipher:
    def test_a_value_opens_under_its_key_and_holds_no_plaintext(self) -> None:
        cipher = TokenCipher([RAW_KEY])
        sealed = cipher.seal(KEYS.token, b"the token")
        assert b"the token" not in sealed
        assert cipher.open(KEYS.token, sealed) == b"the token"

    @pytest.mark.parametrize("spoil", ["tampered", "copied", "unknown-key", "truncated", "plain"])
    def test_a_spoiled_value_does_not_open(self, spoil: str) -> None:
        cipher = TokenCipher([RAW_KEY])
        sealed = cipher.seal(KEYS.token, b"the token")
        where = KEYS.token
        if spoil == "tampered":
            sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])
        elif spoil == "copied":
            where = KEYS.lock
        elif spoil == "unknown-key":
            cipher = TokenCipher([os.urandom(32)])
        elif spoil == "truncated":
            sealed = sealed[:24]
        else:
            sealed = PlaintextCodec().seal(KEYS.token, b"the token")
        with pytest.raises(UnreadableEntry) as caught:
            cipher.open(where, sealed)
        assert "the token" not in caught.value.reason

    def test_a_rotation_reads_previous_keys_and_writes_the_current_one(self) -> None:
        old, new = os.urandom(32), os.urandom(32)
        sealed_before = TokenCipher([old]).seal(KEYS.token, b"x")
        during = TokenCipher([new, old])
        assert during.open(KEYS.token, sealed_before) == b"x"
        assert TokenCipher([new]).open(KEYS.token, during.seal(KEYS.token, b"y")) == b"y"
        assert repr(during).count(",") == 1
        assert KEY_TEXT not in repr(during)

    @pytest.mark.parametrize("text", ["", "short", "not base64!!", KEY_TEXT[:-4], f"{KEY_TEXT},x"])
    def test_a_bad_key_is_a_configuration_error_that_does_not_show_it(self, text: str) -> None:
        with pytest.raises(ConfigurationError) as caught:
            parse_keys(text)
        if text:
            assert text not in str(caught.value)

    def test_keys_come_as_one_text_a_comma_list_or_a_sequence(self) -> None:
        other = base64.urlsafe_b64encode(os.urandom(32)).decode()
        assert parse_keys(KEY_TEXT) == [RAW_KEY]
        assert len(parse_keys(f"{KEY_TEXT}, {other}")) == 2
        assert len(parse_keys([KEY_TEXT, other.encode()])) == 2


class TestEntries:
    def test_a_reader_times_the_token_from_the_remaining_ttl_whatever_its_wall_clock(
        self,
    ) -> None:
        held = token(now=1000.0)
        stored = encode_token(held, now=1000.0, wall_now=1.7e9, entry_ttl=3300.0)
        assert json.loads(stored)["expires_at"] == 1.7e9 + 3600
        # Another host, whose monotonic clock reads 5 and whose wall clock is hours
        # off: only the remaining TTL matters.
        read = decode_token(stored, remaining_ms=1_000_000, now=5.0)
        assert read.refresh_at == 5.0 + 1000.0
        assert read.expires_at == 5.0 + 1000.0 + 300.0
        assert read.access_token == held.access_token
        assert read.authorization == held.authorization

    @pytest.mark.parametrize(
        "entry",
        [b"not json", b"[]", b'{"v": 2}', b'{"v": 1, "access_token": 1}', b'{"v": 1}'],
    )
    def test_a_malformed_entry_is_unreadable(self, entry: bytes) -> None:
        with pytest.raises(UnreadableEntry):
            decode_token(entry, remaining_ms=1000, now=0.0)

    def test_a_shared_failure_comes_back_as_the_same_typed_error(self) -> None:
        error = AuthenticationError(
            status_code=401, error="invalid_credentials", message="Invalid API key or secret"
        )
        shared = decode_failure(encode_failure(error), remaining_ms=1500)
        assert isinstance(shared, AuthenticationError)
        assert shared.error == "invalid_credentials"
        limited = RateLimitError(status_code=429, error="rate_limited", message="slow down")
        shared_limit = decode_failure(encode_failure(limited), remaining_ms=6200)
        assert isinstance(shared_limit, RateLimitError)
        assert shared_limit.retry_after == 7


# ------------------------------------------------------------------ the flight

CODEC = TokenCipher([RAW_KEY])
NO_LOCK = -2


def flight(**kwargs: Any) -> FleetFlight:
    kwargs.setdefault("deadline", None)
    return FleetFlight(
        keys=KEYS,
        codec=CODEC,
        clock=lambda: 1000.0,
        wall_clock=lambda: 1.7e9,
        rng=lambda: 0.5,
        lock_ttl=10.0,
        failure_window=2.0,
        **kwargs,
    )


def empty(lock_ms: int = NO_LOCK) -> Snapshot:
    return Snapshot(None, -2, None, -2, lock_ms)


def stored(value: bytes, ms: int = 3_000_000) -> Snapshot:
    return Snapshot(value, ms, None, -2, NO_LOCK)


def sealed_entry(held: AccessToken) -> bytes:
    return CODEC.seal(KEYS.token, encode_token(held, now=1000.0, wall_now=1.7e9, entry_ttl=3300))


def drive(
    steps: Generator[Any, Any, AccessToken], answers: list[Any], seen: list[Any] | None = None
) -> list[Any]:
    """Run a flight: each step gets the next answer; returns the steps (also in `seen`,
    kept when the flight raises) and the result."""
    seen = [] if seen is None else seen
    result: Any = None
    try:
        step = next(steps)
        while True:
            seen.append(step)
            answer = answers.pop(0)
            step = steps.throw(answer) if isinstance(answer, Exception) else steps.send(answer)
    except StopIteration as stop:
        result = stop.value
    seen.append(result)
    return seen


class TestFlight:
    def test_a_fresh_entry_is_used_without_a_lock(self) -> None:
        held = token()
        one = flight()
        seen = drive(one.run(), [stored(sealed_entry(held))])
        assert [type(step) for step in seen[:-1]] == [Read]
        assert seen[-1].access_token == held.access_token
        assert one.blob is not None

    def test_a_miss_takes_the_lock_rechecks_fetches_writes_fenced_and_releases(self) -> None:
        held = token()
        one = flight()
        seen = drive(one.run(), [empty(), True, empty(), held, True, True])
        assert [type(step) for step in seen[:-1]] == [Read, TryLock, Read, Fetch, Write, Release]
        write = seen[4]
        assert write.lock == KEYS.lock
        assert write.fence == one.fence
        assert write.key == KEYS.token
        assert write.clear == KEYS.failure
        assert seen[5] == Release(KEYS.lock, one.fence)
        assert seen[-1] is held
        assert one.blob == write.value
        assert not one.holds_lock

    def test_a_waiter_polls_until_the_leader_stores(self) -> None:
        held = token()
        seen = drive(flight().run(), [empty(lock_ms=5000), None, stored(sealed_entry(held))])
        assert [type(step) for step in seen[:-1]] == [Read, Sleep, Read]
        assert seen[-1].access_token == held.access_token

    def test_a_waiter_takes_over_a_lock_that_expired(self) -> None:
        held = token()
        answers = [empty(lock_ms=5000), None, empty(), True, empty(), held, True, True]
        seen = drive(flight().run(), answers)
        assert [type(step) for step in seen[:4]] == [Read, Sleep, Read, TryLock]
        assert seen[-1] is held

    def test_a_refused_token_is_deleted_by_compare_and_delete_first(self) -> None:
        held = token()
        seen = drive(flight(refused=b"old").run(), [True, empty(), True, empty(), held, 1, 1])
        assert seen[0] == Release(KEYS.token, b"old")

    @pytest.mark.parametrize("when", [0, 1, 2])
    def test_redis_down_at_any_step_before_the_fetch_falls_back_to_a_plain_fetch(
        self, when: int
    ) -> None:
        held = token()
        # Down before the lock: a plain fetch. Down while holding it: fetch, and the
        # write and the release find Redis down too (answered DOWN, nothing raised).
        answers: list[Any] = [*[empty(), True][:when], DOWN, held, DOWN, DOWN]
        seen = drive(flight().run(), answers)
        assert sum(type(step) is Fetch for step in seen) == 1
        assert seen[-1] is held

    def test_a_failed_token_request_is_shared_and_the_lock_released(self) -> None:
        error = AuthenticationError(status_code=401, error="invalid_credentials", message="no")
        one = flight()
        steps = one.run()
        with pytest.raises(AuthenticationError):
            drive(steps, [empty(), True, empty(), error, True, True])
        assert not one.holds_lock

    def test_a_shared_failure_is_raised_without_a_token_request(self) -> None:
        error = RateLimitError(status_code=429, error="rate_limited", message="slow")
        failure = CODEC.seal(KEYS.failure, encode_failure(error))
        with pytest.raises(RateLimitError):
            drive(flight().run(), [Snapshot(None, -2, failure, 4000, NO_LOCK)])

    def test_a_waiter_whose_deadline_passes_times_out(self) -> None:
        spent = Deadline(999.0, lambda: 1000.0)
        with pytest.raises(RequestTimeoutError):
            drive(flight(deadline=spent).run(), [empty(lock_ms=5000)])


def test_a_failure_found_on_the_recheck_is_raised_not_shared_again() -> None:
    error = RateLimitError(status_code=429, error="rate_limited", message="slow")
    failure = CODEC.seal(KEYS.failure, encode_failure(error))
    one = flight()
    seen: list[Any] = []
    with pytest.raises(RateLimitError):
        drive(one.run(), [empty(), True, Snapshot(None, -2, failure, 4000, NO_LOCK), True], seen)
    assert [type(step) for step in seen] == [Read, TryLock, Read, Release]
    assert not one.holds_lock


@pytest.mark.parametrize("error_class", [RequestTimeoutError, APIConnectionError])
def test_a_timeout_or_unreachable_host_is_shared_as_the_same_typed_error(
    error_class: type[Exception],
) -> None:
    shared = decode_failure(
        encode_failure(error_class("The token request to https://x/auth/token failed")),
        remaining_ms=2000,
    )
    assert type(shared) is error_class
    assert "shared outcome" in str(shared)


@pytest.mark.parametrize(("spent", "shared"), [(False, True), (True, False)])
def test_a_timeout_is_shared_unless_it_was_the_leaders_own_deadline(
    spent: bool, shared: bool
) -> None:
    deadline = Deadline(999.0 if spent else 2000.0, lambda: 1000.0)
    seen: list[Any] = []
    error = RequestTimeoutError("The token request timed out")
    with pytest.raises(RequestTimeoutError):
        drive(flight(deadline=deadline).run(), [empty(), True, empty(), error, True, True], seen)
    assert any(isinstance(step, Write) for step in seen) is shared
