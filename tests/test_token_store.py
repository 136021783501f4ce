"""Token stores behind the clients, on a real redis-server, within one process.

Two clients sharing a `RedisTokenStore` stand for two processes of a fleet (the
multi-process tests are in test_fleet.py). Each test runs for every twin; where a
guarantee holds for the in-process store too, for both stores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
import httpx
import pytest
import redis
import twins
from fakes import API_KEY, API_SECRET, BASE_URL
from services import KEY, RedisServer, closing, new_key, redis_store
from twins import Server, Twin, fail, reply, retry_after

from pinkcloudsync_async import (
    APIConnectionError,
    AuthenticationError,
    RateLimitError,
)
from pinkcloudsync_async.stores import InProcessTokenStore, TokenStore
from pinkcloudsync_async.stores._fleet import fleet_keys

twin = twins.twin
anyio_backend = twins.anyio_backend

LOGGER = "pinkcloudsync_async"


@pytest.fixture(params=["in-process", "redis"])
def make_store(request: pytest.FixtureRequest) -> Callable[[], TokenStore]:
    """Each store in turn (a factory: a test may want one per client)."""
    if request.param == "in-process":
        return InProcessTokenStore
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: redis_store(server)


def store_commands(server: RedisServer) -> int:
    """How many commands the token store's kind of traffic made on `server` so far."""
    connection = redis.Redis.from_url(server.url)
    try:
        stats = connection.info("commandstats")
    finally:
        connection.close()
    kinds = ("get", "set", "pttl", "del", "eval", "evalsha", "script|load")
    return sum(int(stats.get(f"cmdstat_{kind}", {}).get("calls", 0)) for kind in kinds)


def refusing_the_first_token(server: Server) -> Callable[[httpx.Request], httpx.Response]:
    """An API that answers 401 to the first token `server` issued (revoked), 200 to others."""

    def api(request: httpx.Request) -> httpx.Response:
        refused = server.bearer_of(request) == server.issued[0]
        return reply(401 if refused else 200, json={"sessions": []})(request)

    return api


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


class TestSingleFlight:
    @pytest.mark.anyio
    async def test_a_crowd_makes_one_token_request(
        self, twin: Twin, make_store: Callable[[], TokenStore]
    ) -> None:
        server = Server()
        async with closing(make_store()) as store, twin.client(server, token_store=store) as c:
            with anyio.fail_after(twins.TIMEOUT):
                outcomes = await twin.gather(twin.crowd, c, "list_sessions")
        assert all(not isinstance(outcome, Exception) for outcome in outcomes)
        assert len(server.token_requests) == 1

    @pytest.mark.anyio
    async def test_a_crowd_refused_one_token_makes_one_more_token_request(
        self, twin: Twin, make_store: Callable[[], TokenStore]
    ) -> None:
        server = Server()

        server.api_script = [refusing_the_first_token(server)]
        async with closing(make_store()) as store, twin.client(server, token_store=store) as c:
            await twin.do(c, "get_token")
            with anyio.fail_after(twins.TIMEOUT):
                outcomes = await twin.gather(twin.crowd, c, "request", "GET", "sync/sessions")
        assert [outcome.status_code for outcome in outcomes] == [200] * twin.crowd
        assert len(server.token_requests) == 2

    @pytest.mark.anyio
    async def test_two_clients_on_one_redis_store_make_one_token_request(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server()
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(server, token_store=store) as first,
            twin.client(server, token_store=store) as second,
        ):
            with anyio.fail_after(twins.TIMEOUT):
                async with anyio.create_task_group() as group:
                    group.start_soon(twin.gather, twin.crowd // 2, first, "list_sessions")
                    group.start_soon(twin.gather, twin.crowd // 2, second, "list_sessions")
        assert len(server.token_requests) == 1
        assert len(server.api_requests) == (twin.crowd // 2) * 2

    @pytest.mark.anyio
    async def test_the_per_request_path_never_touches_redis(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(Server(), token_store=store) as client,
        ):
            await twin.do(client, "list_sessions")  # the token: one round of store traffic
            before = store_commands(redis_server)
            assert before > 0
            for _ in range(100):
                await twin.do(client, "list_sessions")
            after = store_commands(redis_server)
        assert after == before


class TestRefusedTokens:
    @pytest.mark.anyio
    async def test_a_401_deletes_the_refused_token_fleet_wide_never_a_newer_one(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server()

        server.api_script = [refusing_the_first_token(server)]
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(server, token_store=store) as first,
            twin.client(server, token_store=store) as second,
        ):
            await twin.do(first, "get_token")
            await twin.do(second, "get_token")  # read from the store: the same token
            assert len(server.token_requests) == 1
            # The second is refused first: it deletes the first token and stores one.
            assert (await twin.request(second, "GET", "sync/sessions")).status_code == 200
            # The first is refused the same old token: the newer one stays and serves.
            assert (await twin.request(first, "GET", "sync/sessions")).status_code == 200
        assert len(server.token_requests) == 2
        assert server.api_bearers[-1] == server.issued[1]

    @pytest.mark.anyio
    async def test_a_shared_429_honours_retry_after_without_another_token_request(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server(token=[retry_after(429, "7")])
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(server, token_store=store, max_retries=0) as first,
            twin.client(server, token_store=store, max_retries=0) as second,
        ):
            with pytest.raises(RateLimitError):
                await twin.do(first, "get_token")
            with pytest.raises(RateLimitError) as shared:
                await twin.do(second, "get_token")
        assert len(server.token_requests) == 1
        assert shared.value.retry_after is not None
        assert 5 <= shared.value.retry_after <= 7


class TestUnreadableEntries:
    @pytest.mark.parametrize("spoil", ["tampered", "copied", "unknown-key"])
    @pytest.mark.anyio
    async def test_a_spoiled_entry_is_a_miss_with_one_warning(
        self,
        twin: Twin,
        redis_server: RedisServer,
        spoil: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger=LOGGER)
        server = Server()
        connection = redis.Redis.from_url(redis_server.url)
        reader_key, reader_secret, reader_store = API_KEY, API_SECRET, redis_store(redis_server)
        async with AsyncExitStack() as stack:
            stack.callback(connection.close)
            writer_store = await stack.enter_async_context(closing(redis_store(redis_server)))
            writer = await stack.enter_async_context(twin.client(server, token_store=writer_store))
            await twin.do(writer, "get_token")
            keys = fleet_keys("pinkcloudsync", f"{BASE_URL}/", API_KEY)
            value = connection.get(keys.token)
            assert value is not None
            if spoil == "tampered":
                flipped = value[:-1] + bytes([value[-1] ^ 1])
                connection.set(keys.token, flipped, keepttl=True)
            elif spoil == "copied":
                reader_key, reader_secret = "pk_test_other", "sk_test_other"
                other = fleet_keys("pinkcloudsync", f"{BASE_URL}/", reader_key)
                connection.set(other.token, value, px=connection.pttl(keys.token))
            else:
                await reader_store.aclose()
                reader_store = redis_store(redis_server, encryption_key=new_key())
            await stack.enter_async_context(closing(reader_store))
            reader = await stack.enter_async_context(
                twin.client(
                    server, token_store=reader_store, api_key=reader_key, api_secret=reader_secret
                )
            )
            token = await twin.do(reader, "get_token")
        assert len(server.token_requests) == 2  # the spoiled entry was not used
        assert token.access_token.get_secret_value() == server.issued[1]
        [warning] = warnings_of(caplog)
        message = warning.getMessage()
        assert "treated as a miss" in message
        for secret in [*server.issued, API_SECRET, KEY]:
            assert secret not in message

    @pytest.mark.anyio
    async def test_rotation_reads_entries_sealed_with_a_previous_key(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server()
        old, new = new_key(), new_key()
        async with (
            closing(redis_store(redis_server, encryption_key=old)) as before,
            closing(
                redis_store(redis_server, encryption_key=new, previous_encryption_keys=[old])
            ) as after,
            twin.client(server, token_store=before) as writer,
            twin.client(server, token_store=after) as reader,
        ):
            await twin.do(writer, "get_token")
            await twin.do(reader, "get_token")
        assert len(server.token_requests) == 1


class TestRedisFailing:
    @pytest.mark.anyio
    async def test_a_stopped_redis_costs_no_call_and_one_warning_per_outage(
        self, twin: Twin, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger=LOGGER)
        redis_server.stop()
        server = Server()
        async with (
            closing(redis_store(redis_server, breaker_cooldown=0.2)) as store,
            twin.client(server, token_store=store) as first,
            twin.client(server, token_store=store) as second,
        ):
            started = time.perf_counter()
            await twin.do(first, "list_sessions")
            first_call = time.perf_counter() - started
            await twin.do(second, "list_sessions")
            assert len(server.token_requests) == 2  # each on its own, none failed
            assert len(warnings_of(caplog)) == 1
            redis_server.start()
            await anyio.sleep(0.25)  # the breaker's cooldown, the scenario's own time
            async with twin.client(server, token_store=store) as third:
                await twin.do(third, "list_sessions")  # the probe: Redis answers again
            async with twin.client(server, token_store=store) as fourth:
                await twin.do(fourth, "list_sessions")  # shares the third's token
        assert first_call < 0.5
        assert len(server.token_requests) == 3
        assert len(warnings_of(caplog)) == 1
        assert any("answers again" in r.getMessage() for r in caplog.records)

    @pytest.mark.anyio
    async def test_a_frozen_redis_costs_about_its_timeout(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server()
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(server, token_store=store) as client,
        ):
            redis_server.pause()
            try:
                started = time.perf_counter()
                await twin.do(client, "list_sessions")
                elapsed = time.perf_counter() - started
            finally:
                redis_server.resume()
        assert len(server.token_requests) == 1
        assert elapsed < 1.5  # 250 ms timeouts, no retries: not redis-py's 7 s


class TestCancellation:
    @pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
    @pytest.mark.anyio
    async def test_a_cancelled_leader_gives_the_lock_back_and_leaves_nothing_behind(
        self, anyio_backend: str, redis_server: RedisServer
    ) -> None:
        arrived, release = threading.Event(), threading.Event()
        server = Server()
        server.before_token = lambda index: (arrived.set(), release.wait(twins.TIMEOUT))
        twin_ = Twin("async", anyio_backend)
        keys = fleet_keys("pinkcloudsync", f"{BASE_URL}/", API_KEY)
        connection = redis.Redis.from_url(redis_server.url)
        try:
            async with (
                closing(redis_store(redis_server)) as store,
                twin_.client(server, token_store=store) as client,
            ):
                with anyio.fail_after(twins.TIMEOUT):
                    async with anyio.create_task_group() as group:
                        group.start_soon(client.get_token)
                        assert await twins.wait_event(arrived)  # mid token request
                        assert connection.pttl(keys.lock) > 0
                        group.cancel_scope.cancel()
                    assert connection.pttl(keys.lock) == -2  # released, not left to expire
                    assert client.auth.tokens.lifecycle.flight is None
                    release.set()
                    await client.get_token()  # the next caller leads a new flight
        finally:
            release.set()
            connection.close()
        assert len(server.token_requests) == 2


class TestSharedFailures:
    @pytest.mark.anyio
    async def test_bad_credentials_are_shared_for_one_window_then_tried_again(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server(token=[reply(401, json={"error": "invalid_credentials", "message": "no"})])
        async with (
            closing(redis_store(redis_server, failure_ttl=0.3)) as store,
            twin.client(server, token_store=store) as first,
            twin.client(server, token_store=store) as second,
        ):
            for client in (first, second, first):
                with pytest.raises(AuthenticationError):
                    await twin.do(client, "get_token")
            assert len(server.token_requests) == 1  # one per window, for the fleet
            await anyio.sleep(0.35)  # the window is Redis's TTL: let it pass
            with pytest.raises(AuthenticationError):
                await twin.do(second, "get_token")
        assert len(server.token_requests) == 2

    @pytest.mark.anyio
    async def test_an_unreachable_token_endpoint_is_shared_too(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server(token=[fail(httpx.ConnectError)])
        async with (
            closing(redis_store(redis_server)) as store,
            twin.client(server, token_store=store, max_retries=0) as first,
            twin.client(server, token_store=store, max_retries=0) as second,
        ):
            for client in (first, second):
                with pytest.raises(APIConnectionError):
                    await twin.do(client, "get_token")
        assert len(server.token_requests) == 1


class TestNoSecretLogged:
    @pytest.mark.anyio
    async def test_no_log_line_holds_a_token_the_secret_or_the_key(
        self, twin: Twin, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        server = Server()

        server.api_script = [refusing_the_first_token(server)]
        async with (
            closing(redis_store(redis_server, breaker_cooldown=0.1)) as store,
            twin.client(server, token_store=store) as first,
            twin.client(server, token_store=store) as second,
        ):
            await twin.do(first, "list_sessions")  # cold, refused, refetched, stored
            redis_server.stop()
            await twin.do(second, "list_sessions")  # Redis down: its own token
        texts = [record.getMessage() for record in caplog.records]
        assert any("unavailable" in text for text in texts)
        for secret in [*server.issued, API_SECRET, KEY]:
            assert not any(secret in text for text in texts)
