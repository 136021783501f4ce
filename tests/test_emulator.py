"""The emulator's own contract, in-process (httpx.ASGITransport): statuses, bodies, JWTs."""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import jwt
import pytest
from fakes import WALL_T0, FakeClock
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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
    serve_emulator,
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


def api_error(response: httpx.Response, status: int) -> dict[str, str]:
    """The response's error body, once checked to be the API's and nothing else."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"error", "message"}
    assert all(isinstance(value, str) and value for value in body.values())
    return body


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the test wrote to the log at ERROR or with a traceback."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


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


# ------------------------------------------------------------------ hostile input

BODY_ENDPOINTS = pytest.mark.parametrize("path", ["auth/token", "sync/sessions"])

# 100,000 levels: Python's json module raises RecursionError, not ValueError.
TOO_DEEP_FOR_PYTHON = b"[" * 100_000
# The field report verbatim: a lone surrogate escape as the secret.
LONE_SURROGATE_SECRET = b'{"api_key": "pk_test_emulator", "api_secret": "\\ud800"}'


def credentials_with(value: bytes) -> bytes:
    """Good credentials and a field `x` holding `value` (raw JSON text): a body both
    endpoints accept when their JSON parser lets `value` through."""
    return b'{"api_key": "pk_test_emulator", "api_secret": "sk_test_emulator", "x": ' + value + b"}"


async def post_body(
    http: httpx.AsyncClient,
    path: str,
    content: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> httpx.Response:
    """POST `content` as a client allowed to get as far as the body (a token for sessions)."""
    sent = (
        []
        if path == "auth/token"
        else [(b"authorization", f"Bearer {await token_for(http)}".encode())]
    )
    return await http.post(path, content=content, headers=sent + (headers or []))


def strict_json(content: bytes) -> Any:
    """`content` parsed as RFC 8259 JSON: UTF-8, no NaN or Infinity, no lone surrogate."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    value = json.loads(content.decode("utf-8"), parse_constant=refuse)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


def nested(depth: int) -> list[Any]:
    """`depth` lists, each the only item of the one around it."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


# Any JSON value Python's json module writes: NaN, Infinity, huge integers and lone
# surrogates (which come only when asked for by category) included.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.floats()
    | st.integers()
    | st.text(st.characters() | st.characters(categories=["Cs"]))
    | st.sampled_from([math.nan, math.inf, 10**400, -(10**400), "\ud800", "\udc00"]),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
# JSON's own tokens in any order, the ones Python accepts and an API must not included.
JSON_SOUP = st.lists(
    st.sampled_from(
        [b"[", b"]", b"{", b"}", b":", b",", b'"a"', b"1", b"null", b"NaN", b"1e400", b'"\\ud800"']
    ),
    max_size=50,
).map(b"".join)
DEEP_NESTING = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from([b"[", b'{"a":', b'[{"a":']),
    st.integers(1, 200_000),
)
ANY_BODY = st.one_of(
    st.binary(),
    JSON_SOUP,
    DEEP_NESTING,
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    JSON_VALUES.map(lambda value: credentials_with(json.dumps(value).encode())),
    JSON_VALUES.map(
        lambda value: json.dumps({"api_key": DEFAULT_API_KEY, "api_secret": value}).encode()
    ),
)


class TestHostileInput:
    """No input is a 500 or a traceback: whatever a client sends gets a 4xx and the
    API's `{error, message}` body, and no message repeats a secret or a token."""

    @BODY_ENDPOINTS
    @pytest.mark.parametrize(
        ("content", "says"),
        [
            pytest.param(TOO_DEEP_FOR_PYTHON, "nested", id="100k-["),
            pytest.param(b'{"a": ' * 100_000, "nested", id="100k-{"),
            pytest.param(credentials_with(b"[" * 100 + b"]" * 100), "nested", id="deeper-than-64"),
            pytest.param(LONE_SURROGATE_SECRET, "surrogate", id="surrogate-secret"),
            pytest.param(credentials_with(b'"\\udfff"'), "surrogate", id="low-surrogate"),
            pytest.param(credentials_with(b'{"\\ud800": 1}'), "surrogate", id="surrogate-key"),
            pytest.param(credentials_with(b'["ok", "\\udbff"]'), "surrogate", id="in-an-array"),
            pytest.param(credentials_with(b'"\\ud800\\u0041"'), "surrogate", id="unpaired-high"),
            pytest.param(credentials_with(b'"\\udc00\\ud800"'), "surrogate", id="pair-reversed"),
            pytest.param(credentials_with(b"NaN"), "NaN", id="NaN"),
            pytest.param(credentials_with(b"Infinity"), "Infinity", id="Infinity"),
            pytest.param(credentials_with(b"-Infinity"), "Infinity", id="-Infinity"),
            pytest.param(credentials_with(b"1e400"), "number", id="1e400"),
            pytest.param(credentials_with(b"-1e400"), "number", id="-1e400"),
            pytest.param(credentials_with(str(10**400).encode()), "number", id="10**400"),
            pytest.param(credentials_with(str(-(10**400)).encode()), "number", id="-10**400"),
            pytest.param(credentials_with(str(9 * 10**308).encode()), "number", id="9*10**308"),
            pytest.param(credentials_with(b"1" + b"0" * 5000), "number", id="10**5000"),
            pytest.param(credentials_with(b'1, "x": 2'), "duplicate", id="duplicate-key"),
            pytest.param(
                b'{"api_key": "pk_test_emulator", "api_secret": "wrong", '
                b'"api_secret": "sk_test_emulator"}',
                "duplicate",
                id="duplicate-secret",
            ),
            pytest.param(json.dumps(CREDENTIALS).encode("utf-16"), "UTF-8", id="utf-16"),
            pytest.param(json.dumps(CREDENTIALS).encode("utf-32"), "UTF-8", id="utf-32"),
            pytest.param(credentials_with('"\xe9"'.encode("latin-1")), "UTF-8", id="latin-1"),
            pytest.param(credentials_with(b'"\xed\xa0\x80"'), "UTF-8", id="surrogate-bytes"),
        ],
    )
    async def test_json_that_python_tolerates_but_an_api_must_not_is_400(
        self,
        http: httpx.AsyncClient,
        emulator: Emulator,
        caplog: pytest.LogCaptureFixture,
        path: str,
        content: bytes,
        says: str,
    ) -> None:
        response = await post_body(http, path, content)
        body = api_error(response, 400)
        assert body["error"] == "invalid_request"
        assert says in body["message"]
        assert DEFAULT_API_SECRET not in response.text
        assert emulator.sessions == []
        assert emulator.stats.tokens_issued == (0 if path == "auth/token" else 1)
        assert tracebacks(caplog) == []

    @pytest.mark.parametrize(
        ("content", "stored"),
        [
            pytest.param(b'{"x": ' + b"[" * 63 + b"]" * 63 + b"}", nested(63), id="64-deep"),
            pytest.param(b'{"x": "\\ud83d\\ude00"}', "\U0001f600", id="surrogate-pair"),
            pytest.param(b'{"x": 1.7976931348623157e308}', 1.7976931348623157e308, id="max-double"),
            pytest.param(b'{"x": 1e-400}', 0.0, id="underflow-is-zero"),
            pytest.param(b'{"x": %d}' % -(10**308), -(10**308), id="-10**308"),
            pytest.param(b'\xef\xbb\xbf{"x": "bom"}', "bom", id="utf-8-bom"),
            pytest.param('{"x": "\u00e9\u4e2d"}'.encode(), "\u00e9\u4e2d", id="utf-8"),
        ],
    )
    async def test_strict_json_still_takes_valid_edge_cases(
        self, http: httpx.AsyncClient, emulator: Emulator, content: bytes, stored: Any
    ) -> None:
        response = await post_body(http, "sync/sessions", content)
        assert response.status_code == 201
        assert emulator.sessions[0]["x"] == stored

    @BODY_ENDPOINTS
    @pytest.mark.parametrize(
        "content_type",
        [
            b"text/plain",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/jsonx",
            b"json",
            b"",
            b";",
            b"\xff\xfe",
        ],
    )
    async def test_a_body_declared_as_anything_but_json_is_415(
        self, http: httpx.AsyncClient, emulator: Emulator, path: str, content_type: bytes
    ) -> None:
        response = await post_body(
            http, path, json.dumps(CREDENTIALS).encode(), [(b"content-type", content_type)]
        )
        assert api_error(response, 415)["error"] == "unsupported_media_type"
        assert emulator.sessions == []

    @BODY_ENDPOINTS
    @pytest.mark.parametrize(
        "content_type",
        [
            b"application/json",
            b"Application/JSON",
            b"application/json; charset=utf-8",
            b"application/merge-patch+json",
        ],
    )
    async def test_json_content_types_are_taken(
        self, http: httpx.AsyncClient, path: str, content_type: bytes
    ) -> None:
        response = await post_body(
            http, path, json.dumps(CREDENTIALS).encode(), [(b"content-type", content_type)]
        )
        assert response.status_code in {200, 201}

    @pytest.mark.parametrize(
        ("content", "says"),
        [
            (b'{"api_key": ["pk_test_emulator"], "api_secret": "sk_test_emulator"}', "api_key"),
            (b'{"api_key": "pk_test_emulator", "api_secret": {"sk": 1}}', "api_secret"),
            (b'{"api_key": "pk_test_emulator", "api_secret": true}', "api_secret"),
            (b'{"api_key": null, "api_secret": 12}', "api_key, api_secret"),
            (b"[]", "object"),
            (b"null", "object"),
        ],
    )
    async def test_wrong_field_types_and_non_objects_are_400(
        self, http: httpx.AsyncClient, content: bytes, says: str
    ) -> None:
        body = api_error(await http.post("auth/token", content=content), 400)
        assert body["error"] == "invalid_request"
        assert says in body["message"]

    async def test_an_oversized_session_is_413(
        self, http: httpx.AsyncClient, emulator: Emulator
    ) -> None:
        content = b'{"x": "' + b"a" * (1 << 20) + b'"}'
        response = await post_body(http, "sync/sessions", content)
        assert api_error(response, 413)["error"] == "payload_too_large"
        assert emulator.sessions == []

    @pytest.mark.parametrize(
        "authorization",
        [
            pytest.param(b"", id="empty"),
            pytest.param(b"\x00", id="nul"),
            pytest.param(b"Bearer \xff\xfe\x80", id="latin-1"),
            pytest.param(b"Bearer\tsomething", id="tab"),
            pytest.param(b"Bearer a.b", id="two-segments"),
            pytest.param(b"Bearer ..", id="empty-segments"),
            pytest.param(b"Bearer x y z", id="spaces"),
            pytest.param(b"Bearer " + b"A" * 1_000_000, id="a-megabyte"),
            pytest.param(
                b"Bearer " + base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=") + b".e30.c2ln",
                id="header-too-deep-for-json",
            ),
            pytest.param(
                b"Bearer " + base64.urlsafe_b64encode(b'{"alg": "none"}').rstrip(b"=") + b".e30.",
                id="alg-none",
            ),
        ],
    )
    async def test_a_malformed_authorization_is_401_without_echoing_it(
        self,
        http: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture,
        authorization: bytes,
    ) -> None:
        response = await http.get("sync/sessions", headers=[(b"authorization", authorization)])
        body = api_error(response, 401)
        assert body["error"] == "invalid_token"
        assert body["message"] in {"Missing bearer token", "Invalid access token"}
        assert tracebacks(caplog) == []

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "", 404),
            ("GET", "sync", 404),
            ("GET", "sync/%ED%A0%80", 404),
            ("GET", "%ff%fe", 404),
            ("POST", "x" * 60_000, 404),
            ("BREW", "auth/token", 405),
            ("PUT", "auth/token", 405),
            ("PATCH", "sync/sessions", 405),
            ("OPTIONS", "sync/sessions", 405),
        ],
    )
    async def test_unknown_paths_and_odd_methods_get_an_error_body(
        self, http: httpx.AsyncClient, method: str, path: str, status: int
    ) -> None:
        response = await http.request(method, path, content=TOO_DEEP_FOR_PYTHON)
        api_error(response, status)

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        endpoint=st.sampled_from(
            [
                ("POST", "auth/token"),
                ("GET", "sync/sessions"),
                ("POST", "sync/sessions"),
                ("POST", "sync/conflicts"),
                ("DELETE", "auth/token"),
            ]
        ),
        content=ANY_BODY,
        content_type=st.sampled_from([None, b"application/json", b"text/plain"]) | st.binary(),
    )
    # The two bodies reported from the field, always tried first.
    @example(endpoint=("POST", "auth/token"), content=TOO_DEEP_FOR_PYTHON, content_type=None)
    @example(endpoint=("POST", "auth/token"), content=LONE_SURROGATE_SECRET, content_type=None)
    async def test_any_body_on_any_endpoint_is_answered_in_strict_json(
        self,
        anyio_backend: str,
        endpoint: tuple[str, str],
        content: bytes,
        content_type: bytes | None,
    ) -> None:
        method, path = endpoint
        headers = [] if content_type is None else [(b"content-type", content_type)]
        async with raw(Emulator()) as http:
            token = await token_for(http)
            if path != "auth/token":
                headers.append((b"authorization", f"Bearer {token}".encode()))
            response = await http.request(method, path, content=content, headers=headers)
            # What was accepted is served back as JSON too.
            listing = await http.get("sync/sessions", headers=bearer(token))
        assert response.status_code < 500
        body = strict_json(response.content)
        if response.status_code >= 400:
            assert api_error(response, response.status_code) == body
            assert DEFAULT_API_SECRET not in body["message"]
            assert token not in body["message"]
        assert listing.status_code == 200
        strict_json(listing.content)


async def exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to the server at `url`; its answer, read until it closes."""
    address = httpx.URL(url)
    assert address.host
    assert address.port
    async with await anyio.connect_tcp(address.host, address.port) as stream:
        await stream.send(request)
        received = b""
        try:
            while True:
                received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def http_request(body: bytes, *, head: bytes = b"POST /v1/auth/token HTTP/1.1") -> bytes:
    return (
        head
        + b"\r\nHost: emulator\r\nConnection: close\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
class TestHostileInputOverASocket:
    """Served by uvicorn (h11), the app answers whatever reaches it as it does
    in-process. HTTP that h11 cannot parse is answered by uvicorn itself, a plain-text
    400 that closes the connection: the app never sees the request, or (a broken body)
    sees the client go away."""

    @pytest.mark.parametrize(
        "content", [TOO_DEEP_FOR_PYTHON, LONE_SURROGATE_SECRET], ids=["100k-[", "surrogate"]
    )
    async def test_a_malformed_body_is_a_json_400(
        self, anyio_backend: str, caplog: pytest.LogCaptureFixture, content: bytes
    ) -> None:
        emulator = Emulator()
        with anyio.fail_after(20):
            async with serve_emulator(emulator) as url:
                status, headers, body = await exchange(url, http_request(content))
        assert (status, headers["content-type"]) == (400, "application/json")
        assert json.loads(body)["error"] == "invalid_request"
        assert emulator.stats.token_requests_by_status == {400: 1}
        assert tracebacks(caplog) == []

    @pytest.mark.parametrize(
        "request_bytes",
        [
            pytest.param(
                b"POST /v1/auth/token HTTP/1.1\r\nHost: e\r\nContent-Length: x\r\n\r\n", id="length"
            ),
            pytest.param(b"NOT HTTP AT ALL\r\n\r\n", id="request-line"),
            pytest.param(b"GET /v1/\xff HTTP/1.1\r\nHost: e\r\n\r\n", id="non-ascii-target"),
            pytest.param(b"GET /v1/sync/sessions HTTP/1.1\r\n\r\n", id="no-host"),
            pytest.param(
                b"POST /v1/auth/token HTTP/1.1\r\nHost: e\r\n"
                b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
                id="two-lengths",
            ),
            pytest.param(b"GET /v1/sync/sessions HTTP/1.1\r\nHost : e\r\n\r\n", id="space-colon"),
            pytest.param(
                b"POST /v1/auth/token HTTP/1.1\r\nHost: e\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
                id="bad-chunk",
            ),
        ],
    )
    async def test_malformed_http_is_a_400_from_uvicorn_before_the_app(
        self, anyio_backend: str, caplog: pytest.LogCaptureFixture, request_bytes: bytes
    ) -> None:
        emulator = Emulator()
        with anyio.fail_after(20):
            async with serve_emulator(emulator) as url:
                status, headers, _ = await exchange(url, request_bytes)
        assert status == 400
        assert headers["content-type"].startswith("text/plain")  # uvicorn's, not ours
        assert headers["connection"] == "close"
        assert 500 not in emulator.stats.token_requests_by_status
        assert 500 not in emulator.stats.api_requests_by_status
        assert tracebacks(caplog) == []


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
