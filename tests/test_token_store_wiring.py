"""The token store's wiring: arguments, the environment, and who closes what.

Precedence as everywhere: `token_store=` > `PINKCLOUDSYNC_REDIS_URL` > in-process. A
store built from the environment is the client's to close; one passed in is not.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis
import twins
from fakes import API_KEY, API_SECRET
from services import KEY, RedisServer, closing, redis_store
from twins import Server, Twin

from pinkcloudsync_async import AsyncPinkCloudSyncClient, ConfigurationError, PinkCloudSyncClient
from pinkcloudsync_async._constants import (
    ALLOW_UNENCRYPTED_ENV,
    REDIS_URL_ENV,
    TOKEN_ENCRYPTION_KEY_ENV,
)
from pinkcloudsync_async._token_source import TokenSource
from pinkcloudsync_async.stores import InProcessTokenStore, RedisTokenStore
from pinkcloudsync_async.stores._cipher import PlaintextCodec, TokenCipher

twin = twins.twin
anyio_backend = twins.anyio_backend


class TestWiring:
    @pytest.fixture(autouse=True)
    def _clean_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (REDIS_URL_ENV, TOKEN_ENCRYPTION_KEY_ENV, ALLOW_UNENCRYPTED_ENV):
            monkeypatch.delenv(name, raising=False)

    @pytest.mark.parametrize("client_class", [AsyncPinkCloudSyncClient, PinkCloudSyncClient])
    def test_a_redis_url_without_a_key_is_a_configuration_error(
        self, client_class: type[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:1/0")
        with pytest.raises(ConfigurationError, match=TOKEN_ENCRYPTION_KEY_ENV):
            client_class(API_KEY, API_SECRET)

    @pytest.mark.parametrize(
        ("environment", "codec"),
        [
            ({TOKEN_ENCRYPTION_KEY_ENV: KEY}, TokenCipher),
            ({ALLOW_UNENCRYPTED_ENV: "1"}, PlaintextCodec),
        ],
    )
    def test_the_environment_alone_configures_the_store(
        self, environment: dict[str, str], codec: type[Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(REDIS_URL_ENV, "redis://:hunter2@127.0.0.1:1/0")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        client = PinkCloudSyncClient(API_KEY, API_SECRET)
        try:
            store = client.auth.tokens.source.store
            assert isinstance(store, RedisTokenStore)
            assert isinstance(store.codec, codec)
            assert "hunter2" not in repr(store)
            assert KEY not in repr(store)
        finally:
            client.close()

    def test_a_token_store_that_is_no_store_is_a_configuration_error(self) -> None:
        with pytest.raises(ConfigurationError, match="TokenStore"):
            PinkCloudSyncClient(API_KEY, API_SECRET, token_store="redis://127.0.0.1")  # type: ignore[arg-type]

    def test_an_argument_beats_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(REDIS_URL_ENV, "redis://127.0.0.1:1/0")  # and no key: not read
        client = PinkCloudSyncClient(API_KEY, API_SECRET, token_store=InProcessTokenStore())
        try:
            assert isinstance(client.auth.tokens.source, TokenSource)  # untouched: no cost
        finally:
            client.close()

    @pytest.mark.parametrize(
        "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "redis-cluster://x"]
    )
    def test_a_url_that_is_no_redis_url_is_a_configuration_error(self, url: str) -> None:
        with pytest.raises(ConfigurationError, match="redis://"):
            RedisTokenStore.from_url(url, encryption_key=KEY)

    @pytest.mark.anyio
    async def test_the_client_closes_a_store_it_built_but_not_one_it_was_given(
        self, twin: Twin, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(REDIS_URL_ENV, redis_server.url)
        monkeypatch.setenv(TOKEN_ENCRYPTION_KEY_ENV, KEY)
        given = redis_store(redis_server)
        async with twin.client(Server()) as built, twin.client(Server(), token_store=given) as kept:
            await twin.do(built, "get_token")
            await twin.do(kept, "get_token")
            assert store_connections(redis_server) == 2
        assert store_connections(redis_server) == 1  # the given store's, still open
        async with given:  # closed on exit, like a client
            pass
        assert store_connections(redis_server) == 0


def store_connections(server: RedisServer) -> int:
    """Connections to `server` other than the one that counts them."""
    connection = redis.Redis.from_url(server.url)
    try:
        return len(connection.client_list()) - 1
    finally:
        connection.close()


class TestGivenClients:
    @pytest.mark.anyio
    async def test_a_store_on_a_given_sync_client_serves_every_twin_and_leaves_it_open(
        self, twin: Twin, redis_server: RedisServer
    ) -> None:
        server = Server()
        connection = redis.Redis.from_url(redis_server.url, socket_timeout=0.25)
        try:
            store = RedisTokenStore(client=connection, encryption_key=KEY)
            async with (
                closing(store),
                twin.client(server, token_store=store) as first,
                twin.client(server, token_store=store) as second,
            ):
                await twin.gather(10, first, "list_sessions")
                await twin.gather(10, second, "list_sessions")
            assert connection.ping()  # the store never closes a client it was given
        finally:
            connection.close()
        assert len(server.token_requests) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"timeout": True},
        {"failure_ttl": -1},
        {"breaker_cooldown": "5"},
        {"key_prefix": ""},
        {"key_prefix": "a{b"},
        {"encryption_key": None, "previous_encryption_keys": [KEY]},
        {"encryption_key": "not-a-key"},
        {"encryption_key": KEY, "previous_encryption_keys": ["not-a-key"]},
    ],
)
def test_bad_store_options_are_configuration_errors(kwargs: dict[str, Any]) -> None:
    options = {"encryption_key": KEY, **kwargs}
    with pytest.raises(ConfigurationError) as caught:
        RedisTokenStore.from_url("redis://127.0.0.1:6379/0", **options)
    assert KEY not in str(caught.value)
