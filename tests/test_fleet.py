"""A fleet shares one token: real worker processes, a real redis-server, one emulator.

Each test serves an emulator on loopback (from a thread), starts a `redis-server`
of its own (the `redis_server` fixture) and P worker processes configured the
twelve-factor way, and counts the token requests the emulator received from the
whole fleet. Every process a test starts is ended by that test.
"""

from __future__ import annotations

import base64
import math
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from services import RedisServer

from pinkcloudsync_async import PinkCloudSyncClient
from pinkcloudsync_async.stores import RedisTokenStore
from pinkcloudsync_async.testing import DEFAULT_API_KEY, DEFAULT_API_SECRET, Emulator
from pinkcloudsync_async.testing._fleet import Fleet, fleet_env, serve_in_thread

P = 8  # the fleet: cold starts and the sync twin
SMALL = 4  # enough processes to tell "one per fleet" from "one per process", for less time
ENCRYPTION_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()


def _failed(outcomes: list[dict[str, Any]]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for outcome in outcomes:
        for name, count in outcome["errors"].items():
            errors[name] = errors.get(name, 0) + count
    return errors


def _calls(outcomes: list[dict[str, Any]]) -> int:
    return sum(outcome["ok"] for outcome in outcomes)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
def api_url(emulator: Emulator) -> Iterator[str]:
    with serve_in_thread(emulator) as url:
        yield url


def fleet(
    api_url: str,
    redis_server: RedisServer,
    *args: str,
    size: int = P,
    secret: str = DEFAULT_API_SECRET,
) -> Fleet:
    env = fleet_env(
        api_url, redis_server.url, ENCRYPTION_KEY, api_key=DEFAULT_API_KEY, secret=secret
    )
    return Fleet(size, env=env, args=list(args))


class TestColdStart:
    def test_8_processes_x_50_coroutines_make_one_token_request_then_none(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        with fleet(api_url, redis_server, "--tasks", "50") as first:
            first.start()
            outcomes = first.round()
            assert _failed(outcomes) == {}
            assert _calls(outcomes) == P * 50
            assert emulator.stats.token_requests == 1
            with fleet(api_url, redis_server, "--tasks", "50", size=SMALL) as second:
                second.start()  # a second wave of new processes: a deploy
                assert _calls(second.round()) == SMALL * 50
        assert emulator.stats.token_requests == 1

    def test_the_sync_twin_in_8_processes_x_8_threads_makes_one_token_request(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        with fleet(api_url, redis_server, "--mode", "sync", "--tasks", "8") as workers:
            workers.start()
            outcomes = workers.round()
        assert _failed(outcomes) == {}
        assert _calls(outcomes) == P * 8
        assert emulator.stats.token_requests == 1

    def test_redis_holds_no_token_and_no_secret_in_plaintext(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        with fleet(api_url, redis_server, "--tasks", "5", size=2) as workers:
            workers.start()
            assert _failed(workers.round()) == {}
        store = RedisTokenStore.from_url(redis_server.url, encryption_key=ENCRYPTION_KEY)
        with PinkCloudSyncClient(
            DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=api_url, token_store=store
        ) as client:
            token = client.get_token().access_token.get_secret_value()
        store.close()
        assert emulator.stats.token_requests == 1  # the token read back is the fleet's
        _header, claims, signature = token.split(".")
        forbidden = [token, claims, signature, DEFAULT_API_SECRET, DEFAULT_API_KEY]
        connection = redis.Redis.from_url(redis_server.url)
        try:
            keys = list(connection.scan_iter("*"))
            assert keys, "the fleet stored nothing"
            for key in keys:
                value = connection.get(key) or b""
                for text in forbidden:
                    assert text.encode() not in key
                    assert text.encode() not in value
                    assert base64.b64encode(text.encode()) not in value
        finally:
            connection.close()


class TestLifetimes:
    def test_short_lived_tokens_cost_the_same_token_requests_whatever_the_fleet_size(
        self, redis_server: RedisServer
    ) -> None:
        lifetime, margin, duration = 3, 1.0, 5.0
        emulator = Emulator(token_lifetime=lifetime)
        with (
            serve_in_thread(emulator) as url,
            fleet(
                url,
                redis_server,
                "--tasks",
                "4",
                "--duration",
                str(duration),
                "--refresh-margin",
                str(margin),
                size=SMALL,
            ) as workers,
        ):
            workers.start()
            started = time.monotonic()
            outcomes = workers.round()
            elapsed = time.monotonic() - started
        assert _failed(outcomes) == {}
        # One token per refresh interval (lifetime less the margin) the run spans,
        # for the whole fleet; P processes on their own would make P times as many.
        refreshes = math.ceil(elapsed / (lifetime - margin))
        assert 2 <= emulator.stats.token_requests <= refreshes + 1


class TestFailures:
    def test_a_lock_holder_killed_mid_request_costs_at_most_one_more_token_request(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        # The holder's lock lasts its own timeout (2 s, no retries); the others'
        # requests may wait longer than that, so they outlive the lost lock.
        holder = fleet(api_url, redis_server, "--timeout", "2", "--max-retries", "0", size=1)
        rest = fleet(api_url, redis_server, "--timeout", "10", "--tasks", "10", size=SMALL)
        with holder, rest:
            rest.start()
            [leader] = holder.start()
            emulator.token_latency = 1.5  # the leader's token request hangs...
            leader.send("go")
            deadline = time.monotonic() + 10
            while emulator.stats.token_requests < 1:  # ...until it has arrived
                assert time.monotonic() < deadline, "the leader made no token request"
                time.sleep(0.01)
            emulator.token_latency = 0.0
            leader.process.send_signal(signal.SIGKILL)
            leader.process.wait()
            outcomes = rest.round()
        assert _failed(outcomes) == {}
        assert emulator.stats.token_requests == 2

    def test_with_redis_stopped_every_call_succeeds_with_one_token_request_per_process(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        with fleet(api_url, redis_server, "--tasks", "50", size=SMALL) as workers:
            workers.start()
            redis_server.stop()
            outcomes = workers.round()
        assert _failed(outcomes) == {}
        assert _calls(outcomes) == SMALL * 50
        assert 1 <= emulator.stats.token_requests <= SMALL
        # No redis-py retries, no long timeouts (with redis-py's defaults: 7 s). The
        # bound is loose for a loaded machine; test_token_store.py measures it alone.
        assert max(outcome["first_call_max_s"] for outcome in outcomes) < 5.0

    def test_a_401_across_the_fleet_costs_one_new_token(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        with fleet(api_url, redis_server, "--tasks", "10", size=SMALL) as workers:
            workers.start()
            assert _failed(workers.round()) == {}
            assert emulator.stats.token_requests == 1
            emulator.revoke_all_tokens()  # every process now holds a refused token
            outcomes = workers.round()
        assert _failed(outcomes) == {}
        assert emulator.stats.token_requests == 2
        assert emulator.stats.api_requests_by_status[401] >= SMALL

    def test_bad_credentials_make_one_token_request_per_failure_window(
        self, emulator: Emulator, api_url: str, redis_server: RedisServer
    ) -> None:
        args = ("--tasks", "10", "--failure-ttl", "30", "--max-retries", "0")
        with fleet(api_url, redis_server, *args, secret="sk_wrong", size=SMALL) as workers:
            workers.start()
            outcomes = workers.round()
        assert _failed(outcomes) == {"AuthenticationError": SMALL * 10}
        assert emulator.stats.token_requests == 1
