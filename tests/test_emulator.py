"""The emulator's own contract, in-process (httpx.ASGITransport): statuses, bodies, JWTs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import jwt
import pytest
from fakes import WALL_T0, FakeClock

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    PermissionDeniedError,
    PinkCloudSyncClient,
    raise_for_api_error,
)
from pinkcloudsync_async.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_PERMISSIONS,
    Emulator,
    EmulatorKey,
)

pytestmark = pytest.mark.anyio

BASE = "http://emulator.test/v1/"
CREDENTIALS = {"api_key": DEFAULT_API_KEY, "api_secret": DEFAULT_API_SECRET}
READER = EmulatorKey("pk_test_reader", "sk_test_reader_SECRET", permissions=("sync:read",))
WRITER = EmulatorKey("pk_test_writer", "sk_test_writer_SECRET", permissions=("sync:write",))
ADMIN = EmulatorKey("pk_test_admin", "sk_test_admin_SECRET", permissions=("admin",))


def raw(emulator: Emulator) -> httpx.AsyncClient:
    """A plain httpx client on the emulator: no token handling, every status visible."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=BASE)


async def token_for(http: httpx.AsyncClient, key: EmulatorKey | None = None) -> str:
    body = CREDENTIALS if key is None else {"api_key": key.api_key, "api_secret": key.api_secret}
    response = await http.post("auth/token", json=body)
    assert response.status_code == 200
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(keys=[EmulatorKey(DEFAULT_API_KEY, DEFAULT_API_SECRET), READER, WRITER, ADMIN])


@pytest.fixture
async def http(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with raw(emulator) as client:
        yield client


class TestTokenEndpoint:
    async def test_issues_a_bearer_token_with_the_configured_lifetime(self) -> None:
        async with raw(Emulator(token_lifetime=120)) as http:
            response = await http.post("auth/token", json=CREDENTIALS)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 120
        assert response.headers["cache-control"] == "no-store"

    async def test_the_jwt_is_hs256_with_sub_permissions_iat_exp(self) -> None:
        clock = FakeClock(1_700_000_000.25)
        async with raw(Emulator(token_lifetime=120, clock=clock)) as http:
            token = await token_for(http)
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == EmulatorKey(DEFAULT_API_KEY, "anything").sub
        assert claims["permissions"] == list(DEFAULT_PERMISSIONS)
        assert claims["iat"] == 1_700_000_000
        # Rounded up: the token lives at least expires_in seconds.
        assert claims["exp"] == 1_700_000_121

    async def test_sub_derives_from_the_key_never_the_secret(self) -> None:
        a = EmulatorKey("pk_test_a", "sk_shared_secret")
        b = EmulatorKey("pk_test_b", "sk_shared_secret")
        assert a.sub != b.sub
        assert a.sub == EmulatorKey("pk_test_a", "sk_other").sub
        async with raw(Emulator(keys=[a])) as http:
            token = await token_for(http, a)
        payload = jwt.decode(token, options={"verify_signature": False})
        assert "sk_shared_secret" not in json.dumps(payload)

    async def test_a_given_subject_is_used(self) -> None:
        key = EmulatorKey("pk_test_s", "sk_test_s", subject="user_123")
        async with raw(Emulator(keys=[key])) as http:
            token = await token_for(http, key)
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "user_123"

    @pytest.mark.parametrize(
        "body",
        [
            {"api_key": DEFAULT_API_KEY, "api_secret": "wrong"},
            {"api_key": "pk_test_unknown", "api_secret": DEFAULT_API_SECRET},
        ],
    )
    async def test_a_wrong_pair_is_401_invalid_credentials(
        self, http: httpx.AsyncClient, emulator: Emulator, body: dict[str, str]
    ) -> None:
        response = await http.post("auth/token", json=body)
        assert response.status_code == 401
        assert response.json() == {
            "error": "invalid_credentials",
            "message": "Invalid API key or secret",
        }
        assert emulator.stats.tokens_issued == 0
        assert emulator.stats.token_requests == 1

    @pytest.mark.parametrize(
        ("content", "names"),
        [
            (b"not json", "JSON"),
            (b"", "JSON"),
            (b"\xff\xfe", "JSON"),
            (b"[1, 2]", "object"),
            (b'"text"', "object"),
            (b'{"api_key": "pk_test_emulator"}', "api_secret"),
            (b'{"api_secret": "sk"}', "api_key"),
            (b'{"api_key": 1, "api_secret": "sk"}', "api_key"),
            (b'{"api_key": "", "api_secret": ""}', "api_key, api_secret"),
        ],
    )
    async def test_a_bad_body_is_400_with_an_error_body(
        self, http: httpx.AsyncClient, content: bytes, names: str
    ) -> None:
        response = await http.post(
            "auth/token", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        body = response.json()
        assert body["error"] == "invalid_request"
        assert names in body["message"]

    async def test_an_oversized_body_is_413(self, http: httpx.AsyncClient) -> None:
        response = await http.post("auth/token", content=b"x" * (2 << 20))
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

    async def test_only_post_is_allowed(self, http: httpx.AsyncClient) -> None:
        response = await http.get("auth/token")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"] == "method_not_allowed"

    async def test_latency_delays_the_answer(self) -> None:
        async with raw(Emulator(token_latency=0.05)) as http:
            started = anyio.current_time()
            await token_for(http)
            assert anyio.current_time() - started >= 0.05

    async def test_injected_failures_come_first_then_tokens(self) -> None:
        emulator = Emulator()
        emulator.fail_token_requests(2, status=500)
        async with raw(emulator) as http:
            statuses = [
                (await http.post("auth/token", json=CREDENTIALS)).status_code for _ in range(3)
            ]
        assert statuses == [500, 500, 200]
        assert emulator.stats.token_requests == 3
        assert emulator.stats.tokens_issued == 1
        assert emulator.stats.token_requests_by_status == {500: 2, 200: 1}

    @pytest.mark.parametrize(("retry_after", "header"), [(None, "1"), (7, "7"), (0.5, "0.5")])
    async def test_an_injected_429_has_retry_after(
        self, retry_after: float | None, header: str
    ) -> None:
        emulator = Emulator()
        emulator.fail_token_requests(1, status=429, retry_after=retry_after)
        async with raw(emulator) as http:
            response = await http.post("auth/token", json=CREDENTIALS)
        assert response.status_code == 429
        assert response.headers["retry-after"] == header
        assert response.json()["error"] == "rate_limit_exceeded"

    async def test_an_injected_503_has_an_error_body(self) -> None:
        emulator = Emulator()
        emulator.fail_token_requests(1)
        async with raw(emulator) as http:
            response = await http.post("auth/token", json=CREDENTIALS)
        assert response.status_code == 503
        assert response.json()["error"] == "service_unavailable"
        assert "retry-after" not in response.headers


class TestBearerTokens:
    async def test_missing_token_is_401_with_an_error_body(self, http: httpx.AsyncClient) -> None:
        response = await http.get("sync/sessions")
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token", "message": "Missing bearer token"}
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer    ", "token"])
    async def test_a_non_bearer_authorization_is_401(
        self, http: httpx.AsyncClient, value: str
    ) -> None:
        response = await http.get("sync/sessions", headers={"Authorization": value})
        assert response.status_code == 401

    async def test_a_garbage_token_is_401(self, http: httpx.AsyncClient) -> None:
        response = await http.get("sync/sessions", headers=bearer("not.a.jwt"))
        assert response.status_code == 401
        assert response.json()["message"] == "Invalid access token"

    async def test_a_token_signed_by_another_emulator_is_401(self, http: httpx.AsyncClient) -> None:
        async with raw(Emulator()) as other:
            foreign = await token_for(other)
        response = await http.get("sync/sessions", headers=bearer(foreign))
        assert response.status_code == 401

    async def test_a_forged_unsigned_token_is_401(self, http: httpx.AsyncClient) -> None:
        genuine = jwt.decode(await token_for(http), options={"verify_signature": False})
        genuine["permissions"] = ["admin"]
        forged = jwt.encode(genuine, "guessed-key-guessed-key-guessed-key", algorithm="HS256")
        response = await http.get("sync/sessions", headers=bearer(forged))
        assert response.status_code == 401

    async def test_an_expired_token_is_401(self) -> None:
        clock = FakeClock(WALL_T0)
        emulator = Emulator(token_lifetime=10, clock=clock)
        async with raw(emulator) as http:
            token = await token_for(http)
            clock.now += 9.9
            assert (await http.get("sync/sessions", headers=bearer(token))).status_code == 200
            clock.now += 1.1
            response = await http.get("sync/sessions", headers=bearer(token))
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token", "message": "Access token has expired"}

    async def test_revoking_invalidates_every_token_issued_so_far(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        old = [await token_for(http), await token_for(http, READER)]
        emulator.revoke_all_tokens()
        new = await token_for(http)
        for token in old:
            response = await http.get("sync/sessions", headers=bearer(token))
            assert response.status_code == 401
            assert response.json()["message"] == "Access token has been revoked"
        assert (await http.get("sync/sessions", headers=bearer(new))).status_code == 200
        assert emulator.stats.revocations == 1


class TestSessions:
    async def test_listing_starts_empty(self, http: httpx.AsyncClient) -> None:
        response = await http.get("sync/sessions", headers=bearer(await token_for(http)))
        assert response.status_code == 200
        assert response.json() == {"sessions": []}

    async def test_post_creates_a_session_with_an_id(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        headers = bearer(await token_for(http))
        created = await http.post(
            "sync/sessions", json={"name": "laptop", "id": "mine"}, headers=headers
        )
        assert created.status_code == 201
        session = created.json()
        assert session["name"] == "laptop"
        assert session["id"].startswith("sess_")  # the server's id, not the client's
        assert session["created_by"] == EmulatorKey(DEFAULT_API_KEY, "x").sub
        listed = (await http.get("sync/sessions", headers=headers)).json()
        assert listed == {"sessions": [session]}
        assert emulator.sessions == [session]

    @pytest.mark.parametrize("content", [b"nope", b"[]", b"null", b"3"])
    async def test_post_with_a_body_that_is_no_object_is_400(
        self, http: httpx.AsyncClient, content: bytes
    ) -> None:
        response = await http.post(
            "sync/sessions", content=content, headers=bearer(await token_for(http))
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"

    async def test_add_session_seeds_the_listing(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        seeded = emulator.add_session(name="seeded", status="active")
        listed = (await http.get("sync/sessions", headers=bearer(await token_for(http)))).json()
        assert listed["sessions"] == [seeded]
        assert seeded["id"].startswith("sess_")

    async def test_a_trailing_slash_is_the_same_path(self, http: httpx.AsyncClient) -> None:
        response = await http.get("sync/sessions/", headers=bearer(await token_for(http)))
        assert response.status_code == 200

    async def test_unknown_paths_are_404_and_other_methods_405(
        self, http: httpx.AsyncClient
    ) -> None:
        headers = bearer(await token_for(http))
        missing = await http.get("sync/conflicts", headers=headers)
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        wrong = await http.delete("sync/sessions", headers=headers)
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "GET, POST"


class TestPermissions:
    async def test_write_without_sync_write_is_403_naming_it(self, http: httpx.AsyncClient) -> None:
        response = await http.post(
            "sync/sessions", json={}, headers=bearer(await token_for(http, READER))
        )
        assert response.status_code == 403
        assert response.json() == {
            "error": "insufficient_permissions",
            "message": "API key does not have 'sync:write' permission",
        }

    async def test_read_without_sync_read_is_403_naming_it(self, http: httpx.AsyncClient) -> None:
        response = await http.get("sync/sessions", headers=bearer(await token_for(http, WRITER)))
        assert response.status_code == 403
        assert response.json()["message"] == "API key does not have 'sync:read' permission"

    async def test_admin_grants_everything(self, http: httpx.AsyncClient) -> None:
        headers = bearer(await token_for(http, ADMIN))
        assert (await http.get("sync/sessions", headers=headers)).status_code == 200
        assert (await http.post("sync/sessions", json={}, headers=headers)).status_code == 201

    async def test_permissions_come_from_the_signed_token(self, http: httpx.AsyncClient) -> None:
        claims = jwt.decode(await token_for(http, READER), options={"verify_signature": False})
        assert claims["permissions"] == ["sync:read"]


class TestRateLimitsAndFailures:
    async def test_requests_past_the_limit_are_429_until_the_window_ends(self) -> None:
        clock = FakeClock(WALL_T0)
        emulator = Emulator(clock=clock)
        async with raw(emulator) as http:
            headers = bearer(await token_for(http))
            emulator.set_rate_limit(2, window=10.0)
            statuses = [
                (await http.get("sync/sessions", headers=headers)).status_code for _ in range(2)
            ]
            clock.now += 2.5
            limited = await http.get("sync/sessions", headers=headers)
            clock.now += 7.5
            after = await http.get("sync/sessions", headers=headers)
            emulator.set_rate_limit(None)
            unlimited = [
                (await http.get("sync/sessions", headers=headers)).status_code for _ in range(5)
            ]
        assert statuses == [200, 200]
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "8"  # 7.5 s left, whole seconds up
        assert limited.json()["error"] == "rate_limit_exceeded"
        assert after.status_code == 200
        assert unlimited == [200] * 5
        assert emulator.stats.api_requests_by_status == {200: 8, 429: 1}

    async def test_a_fixed_retry_after_is_used(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        emulator.set_rate_limit(0, retry_after=3)
        response = await http.get("sync/sessions")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"

    async def test_token_requests_are_not_rate_limited(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        emulator.set_rate_limit(0)
        assert await token_for(http)

    async def test_injected_api_failures(self, http: httpx.AsyncClient, emulator: Emulator) -> None:
        headers = bearer(await token_for(http))
        emulator.fail_api_requests(1, status=502)
        first = await http.get("sync/sessions", headers=headers)
        second = await http.get("sync/sessions", headers=headers)
        assert (first.status_code, second.status_code) == (502, 200)
        assert first.json()["error"] == "bad_gateway"

    @pytest.mark.parametrize(
        ("args", "kwargs"),
        [((-1,), {}), ((1,), {"status": 200}), ((1,), {"retry_after": -1.0})],
    )
    def test_bad_failure_settings_are_refused(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - which setting is in the parameters
            Emulator().fail_token_requests(*args, **kwargs)

    def test_bad_rate_limits_are_refused(self) -> None:
        with pytest.raises(ValueError, match="window"):
            Emulator().set_rate_limit(1, window=0)


class TestRobustness:
    async def test_an_emulator_bug_is_a_json_500_not_a_traceback(
        self, http: httpx.AsyncClient, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("bug")

        monkeypatch.setattr(emulator._keys, "check", broken)
        response = await http.post("auth/token", json=CREDENTIALS)
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
        assert "Traceback" not in response.text

    async def test_lifespan_is_acknowledged(self) -> None:
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: Any) -> None:
            sent.append(dict(message))

        with anyio.fail_after(5):
            await Emulator()({"type": "lifespan"}, receive, send)
        assert sent == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]

    async def test_concurrent_requests_are_all_counted_and_distinct(
        self, emulator: Emulator
    ) -> None:
        tokens: list[str] = []
        sessions: list[str] = []
        async with raw(emulator) as http:
            headers = bearer(await token_for(http))

            async def get_token() -> None:
                tokens.append(await token_for(http))

            async def create() -> None:
                response = await http.post("sync/sessions", json={}, headers=headers)
                sessions.append(response.json()["id"])

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tasks:
                    for _ in range(100):
                        tasks.start_soon(get_token)
                        tasks.start_soon(create)
        assert emulator.stats.tokens_issued == 101
        assert len(set(tokens)) == 100
        assert len(set(sessions)) == 100
        assert len(emulator.sessions) == 100
        assert emulator.stats.api_requests_by_status == {201: 100}


class TestConstruction:
    def test_defaults(self) -> None:
        emulator = Emulator()
        (key,) = emulator.keys
        assert (key.api_key, key.api_secret) == ("pk_test_emulator", "sk_test_emulator")
        assert key.permissions == (
            "sync:read",
            "sync:write",
            "conflicts:read",
            "conflicts:write",
        )
        assert emulator.token_lifetime == 3600
        assert emulator.token_latency == 0.0

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"token_lifetime": 0}, ValueError),
            ({"token_lifetime": 1.5}, TypeError),
            ({"token_latency": -1.0}, ValueError),
            ({"keys": []}, ValueError),
            ({"keys": [READER, READER]}, ValueError),
            ({"keys": [("pk", "sk")]}, TypeError),
        ],
    )
    def test_bad_settings_are_refused(self, kwargs: dict[str, Any], error: type[Exception]) -> None:
        with pytest.raises(error):
            Emulator(**kwargs)

    def test_key_reprs_hide_the_secret(self) -> None:
        assert "SECRET" not in repr(READER)
        assert "SECRET" not in repr(Emulator(keys=[READER]))

    def test_a_lone_permission_string_is_one_permission(self) -> None:
        assert EmulatorKey("pk", "sk", permissions="sync:read").permissions == ("sync:read",)  # type: ignore[arg-type]

    @pytest.mark.parametrize("kwargs", [{"api_key": ""}, {"api_secret": ""}])
    def test_empty_key_parts_are_refused(self, kwargs: dict[str, str]) -> None:
        values = {"api_key": "pk", "api_secret": "sk", **kwargs}
        with pytest.raises(ValueError, match="non-empty"):
            EmulatorKey(**values)

    def test_grants(self) -> None:
        assert READER.grants("sync:read")
        assert not READER.grants("sync:write")
        assert ADMIN.grants("conflicts:write")


class TestWiredClients:
    async def test_client_is_wired_in_process_with_the_default_key(
        self, emulator: Emulator
    ) -> None:
        async with emulator.client() as client:
            assert isinstance(client, AsyncPinkCloudSyncClient)
            assert str(client.base_url) == "http://emulator.test/v1/"
            assert (await client.list_sessions()).sessions == []
            token = await client.get_token()
        assert token.claims.permissions == DEFAULT_PERMISSIONS
        assert emulator.stats.token_requests == 1

    async def test_client_takes_a_key_by_name_or_object(self, emulator: Emulator) -> None:
        async with emulator.client(key="pk_test_reader") as client:
            assert (await client.get_token()).claims.sub == READER.sub
            response = await client.post("sync/sessions", json={})
            with pytest.raises(PermissionDeniedError, match="sync:write"):
                raise_for_api_error(response)
        async with emulator.client(key=ADMIN) as client:
            assert (await client.get_token()).claims.permissions == ("admin",)

    async def test_client_arguments_win(self, emulator: Emulator) -> None:
        async with emulator.client(refresh_margin=1.0, max_retries=0, timeout=2.0) as client:
            assert client.timeout.read == 2.0
            assert client.auth.tokens.source.refresh_margin == 1.0

    def test_an_unknown_key_is_refused(self, emulator: Emulator) -> None:
        with pytest.raises(ValueError, match="pk_nope"):
            emulator.client(key="pk_nope")

    def test_sync_client_outside_an_event_loop(self, emulator: Emulator) -> None:
        emulator.add_session(name="seeded")
        with emulator.sync_client() as client:
            assert isinstance(client, PinkCloudSyncClient)
            assert [s.model_extra for s in client.list_sessions().sessions] == [
                {"name": "seeded", "created_at": emulator.sessions[0]["created_at"]}
            ]
            created = client.post("sync/sessions", json={"name": "two"})
        assert created.status_code == 201
        assert emulator.stats.token_requests == 1

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_sync_client_inside_a_running_event_loop(self, emulator: Emulator) -> None:
        # A blocking call from async code: it runs the app on a helper thread.
        with emulator.sync_client(key=READER) as client:
            assert client.list_sessions().sessions == []
            assert client.get_token().claims.permissions == ("sync:read",)


def test_the_testing_module_exports_what_it_documents() -> None:
    import types

    import pinkcloudsync_async.testing as testing

    public = {
        name
        for name, value in vars(testing).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    }
    # Sorted as ruff's RUF022 wants (constants first); ruff checks the order.
    assert len(set(testing.__all__)) == len(testing.__all__)
    assert set(testing.__all__) == public
    for name in testing.__all__:
        value = getattr(testing, name)
        if callable(value):
            assert value.__doc__, name
