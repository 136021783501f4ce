"""`AsyncPinkCloudSyncClient`: construction, configuration, httpx pass-through, the typed call.

Configuration is read from monkeypatched environment variables (every test starts
with none of ours set). Requests are served by `httpx.MockTransport` handlers or by
respx routes; nothing touches the network.
"""

from __future__ import annotations

import asyncio
import json
import math
import ssl
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx
from fakes import API_KEY, API_SECRET, token_body
from pydantic import SecretStr, ValidationError

from pinkcloudsync_async import (
    APIError,
    AsyncPinkCloudSyncClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PinkCloudSyncAuth,
    PinkCloudSyncError,
    RateLimitError,
    ServerError,
    SessionList,
    SyncSession,
)

DEFAULT_BASE = "https://api.pinkcloudsync.example/v1"
KEY_ENV = "PINKCLOUDSYNC_API_KEY"
SECRET_ENV = "PINKCLOUDSYNC_API_SECRET"
URL_ENV = "PINKCLOUDSYNC_BASE_URL"
TIMEOUT = 10


@pytest.fixture(autouse=True)
def no_config_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_ENV, SECRET_ENV, URL_ENV):
        monkeypatch.delenv(name, raising=False)


class Recorder:
    """A MockTransport handler: a token for `/auth/token`, sessions for anything else."""

    def __init__(self, api_reply: httpx.Response | None = None) -> None:
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.api_reply = api_reply

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            self.token_requests.append(request)
            return httpx.Response(200, json=token_body(f"tok-{len(self.token_requests)}"))
        self.api_requests.append(request)
        if self.api_reply is not None:
            return self.api_reply
        return httpx.Response(200, json={"sessions": []})

    def token_body_sent(self) -> dict[str, Any]:
        [request] = self.token_requests
        body: dict[str, Any] = json.loads(request.content)
        return body


def mock_client(handler: Any = None, **kwargs: Any) -> AsyncPinkCloudSyncClient:
    return AsyncPinkCloudSyncClient(transport=httpx.MockTransport(handler or Recorder()), **kwargs)


# ------------------------------------------------------------------- construction


class TestConstruction:
    def test_is_an_httpx_async_client_with_its_own_auth(self) -> None:
        client = mock_client(api_key=API_KEY, api_secret=API_SECRET)
        assert isinstance(client, httpx.AsyncClient)
        assert isinstance(client.auth, PinkCloudSyncAuth)
        assert str(client.base_url).rstrip("/") == DEFAULT_BASE

    def test_key_and_secret_may_be_positional_and_the_secret_a_secret_str(self) -> None:
        recorder = Recorder()
        client = AsyncPinkCloudSyncClient(
            API_KEY, SecretStr(API_SECRET), transport=httpx.MockTransport(recorder)
        )
        anyio.run(client.get_token)
        assert recorder.token_body_sent() == {"api_key": API_KEY, "api_secret": API_SECRET}

    def test_auth_cannot_be_given_or_replaced(self) -> None:
        with pytest.raises(ConfigurationError):
            mock_client(api_key=API_KEY, api_secret=API_SECRET, auth=("user", "pass"))
        client = mock_client(api_key=API_KEY, api_secret=API_SECRET)
        with pytest.raises(AttributeError):
            client.auth = httpx.BasicAuth("user", "pass")  # type: ignore[assignment]


class TestConfigurationPrecedence:
    """argument > environment variable > default, for every setting."""

    def test_arguments_win_over_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(KEY_ENV, "pk_test_from_env")
        monkeypatch.setenv(SECRET_ENV, "sk_test_from_env")
        monkeypatch.setenv(URL_ENV, "https://env.pinkcloudsync.example/v9")
        recorder = Recorder()
        client = mock_client(
            recorder,
            api_key=API_KEY,
            api_secret=API_SECRET,
            base_url="https://arg.pinkcloudsync.example/v2",
        )
        anyio.run(client.get_token)
        assert recorder.token_body_sent() == {"api_key": API_KEY, "api_secret": API_SECRET}
        assert str(recorder.token_requests[0].url) == (
            "https://arg.pinkcloudsync.example/v2/auth/token"
        )

    def test_the_environment_wins_over_the_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(KEY_ENV, "pk_test_from_env")
        monkeypatch.setenv(SECRET_ENV, "sk_test_from_env")
        monkeypatch.setenv(URL_ENV, "https://env.pinkcloudsync.example/v9")
        recorder = Recorder()
        client = mock_client(recorder)
        anyio.run(client.get_token)
        assert recorder.token_body_sent() == {
            "api_key": "pk_test_from_env",
            "api_secret": "sk_test_from_env",
        }
        assert str(recorder.token_requests[0].url) == (
            "https://env.pinkcloudsync.example/v9/auth/token"
        )

    def test_settings_mix_sources_independently(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(SECRET_ENV, "sk_test_from_env")
        recorder = Recorder()
        client = mock_client(recorder, api_key=API_KEY)
        anyio.run(client.get_token)
        assert recorder.token_body_sent() == {"api_key": API_KEY, "api_secret": "sk_test_from_env"}
        assert str(recorder.token_requests[0].url) == f"{DEFAULT_BASE}/auth/token"

    def test_the_default_base_url(self) -> None:
        client = mock_client(api_key=API_KEY, api_secret=API_SECRET)
        assert str(client.base_url).rstrip("/") == DEFAULT_BASE


class TestMissingCredentials:
    @pytest.mark.parametrize(
        ("kwargs", "env", "named"),
        [
            ({"api_secret": API_SECRET}, {}, KEY_ENV),
            ({"api_key": API_KEY}, {}, SECRET_ENV),
            ({}, {SECRET_ENV: API_SECRET}, KEY_ENV),
            ({}, {KEY_ENV: API_KEY}, SECRET_ENV),
            ({"api_secret": API_SECRET}, {KEY_ENV: ""}, KEY_ENV),
            ({"api_key": API_KEY}, {SECRET_ENV: "   "}, SECRET_ENV),
            ({"api_key": "", "api_secret": API_SECRET}, {}, KEY_ENV),
        ],
    )
    def test_a_missing_credential_raises_at_construction_naming_its_variable(
        self,
        kwargs: dict[str, str],
        env: dict[str, str],
        named: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ConfigurationError) as caught:
            mock_client(**kwargs)
        assert named in str(caught.value)
        assert isinstance(caught.value, PinkCloudSyncError)

    def test_with_nothing_configured_both_variables_are_named(self) -> None:
        with pytest.raises(ConfigurationError) as caught:
            AsyncPinkCloudSyncClient()
        assert KEY_ENV in str(caught.value)
        assert SECRET_ENV in str(caught.value)


class TestInsecureHTTP:
    @pytest.mark.parametrize(
        "base_url",
        [
            "http://api.pinkcloudsync.example/v1",
            "http://10.0.0.5:8000",
            "http://128.0.0.1",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://[::2]:8080",
            "http://[::ffff:8.8.8.8]",
        ],
    )
    def test_plain_http_to_a_remote_host_is_refused(
        self, base_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with pytest.raises(ConfigurationError):
            mock_client(api_key=API_KEY, api_secret=API_SECRET, base_url=base_url)
        monkeypatch.setenv(URL_ENV, base_url)
        with pytest.raises(ConfigurationError):
            mock_client(api_key=API_KEY, api_secret=API_SECRET)

    @pytest.mark.parametrize(
        "base_url",
        [
            "http://localhost:8000",
            "http://LOCALHOST/v1",
            "http://127.0.0.1",
            "http://127.45.6.7:9000/v1",
            "http://127.255.255.254",
            "http://[::1]:8080/api",
        ],
    )
    def test_plain_http_to_a_loopback_host_is_allowed(self, base_url: str) -> None:
        recorder = Recorder()
        client = mock_client(recorder, api_key=API_KEY, api_secret=API_SECRET, base_url=base_url)
        response = anyio.run(client.get, "sync/sessions")
        assert response.request.headers["authorization"] == "Bearer tok-1"
        assert recorder.token_requests[0].url.scheme == "http"

    def test_allow_insecure_http_opts_in_for_a_remote_host(self) -> None:
        recorder = Recorder()
        client = mock_client(
            recorder,
            api_key=API_KEY,
            api_secret=API_SECRET,
            base_url="http://api.internal.example/v1",
            allow_insecure_http=True,
        )
        response = anyio.run(client.get, "sync/sessions")
        assert response.request.headers["authorization"] == "Bearer tok-1"
        assert str(recorder.token_requests[0].url) == "http://api.internal.example/v1/auth/token"


# -------------------------------------------------------------- httpx pass-through


class TestHttpxOptions:
    def test_transport_serves_api_and_token_requests(self) -> None:
        recorder = Recorder()
        client = mock_client(recorder, api_key=API_KEY, api_secret=API_SECRET)
        anyio.run(client.get, "sync/sessions")
        assert len(recorder.token_requests) == 1
        assert len(recorder.api_requests) == 1

    @pytest.mark.anyio
    async def test_an_asgi_transport_serves_token_requests_too(self) -> None:
        seen: list[tuple[str, str, str | None]] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization")
            seen.append((scope["method"], scope["path"], auth.decode() if auth else None))
            if scope["path"].endswith("/auth/token"):
                body = json.dumps(token_body("tok-asgi")).encode()
            else:
                body = json.dumps({"sessions": [{"id": "asgi"}]}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})

        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(
                api_key=API_KEY, api_secret=API_SECRET, transport=httpx.ASGITransport(app=app)
            ) as client:
                result = await client.list_sessions()
        assert [s.id for s in result.sessions] == ["asgi"]
        assert seen == [
            ("POST", "/v1/auth/token", None),
            ("GET", "/v1/sync/sessions", "Bearer tok-asgi"),
        ]

    def test_timeout_passes_through(self) -> None:
        recorder = Recorder()
        client = mock_client(
            recorder, api_key=API_KEY, api_secret=API_SECRET, timeout=httpx.Timeout(3.0)
        )
        assert client.timeout == httpx.Timeout(3.0)
        anyio.run(client.get, "sync/sessions")
        assert recorder.api_requests[0].extensions["timeout"] == httpx.Timeout(3.0).as_dict()
        token_timeout = recorder.token_requests[0].extensions["timeout"]
        assert all(0 < value <= 3.0 for value in token_timeout.values())

    def test_a_finite_timeout_is_set_by_default(self) -> None:
        recorder = Recorder()
        client = mock_client(recorder, api_key=API_KEY, api_secret=API_SECRET)
        assert client.timeout == httpx.Timeout(30.0, connect=10.0)  # the README's default
        for value in client.timeout.as_dict().values():
            assert value is not None
            assert math.isfinite(value)
        anyio.run(client.get, "sync/sessions")
        for request in (*recorder.token_requests, *recorder.api_requests):
            for value in request.extensions["timeout"].values():
                assert value is not None
                assert math.isfinite(value)

    def test_headers_pass_through(self) -> None:
        recorder = Recorder()
        client = mock_client(
            recorder, api_key=API_KEY, api_secret=API_SECRET, headers={"X-Tenant": "acme"}
        )
        anyio.run(client.get, "sync/sessions")
        [api_request] = recorder.api_requests
        assert api_request.headers["x-tenant"] == "acme"
        assert api_request.headers["authorization"] == "Bearer tok-1"
        assert recorder.token_requests[0].headers["x-tenant"] == "acme"

    def test_event_hooks_pass_through_and_see_the_token_request(self) -> None:
        requests: list[str] = []
        responses: list[tuple[str, int]] = []

        async def on_request(request: httpx.Request) -> None:
            requests.append(f"{request.method} {request.url.path}")

        async def on_response(response: httpx.Response) -> None:
            responses.append((response.request.url.path, response.status_code))

        client = mock_client(
            api_key=API_KEY,
            api_secret=API_SECRET,
            event_hooks={"request": [on_request], "response": [on_response]},
        )
        anyio.run(client.get, "sync/sessions")
        assert requests == ["POST /v1/auth/token", "GET /v1/sync/sessions"]
        assert responses == [("/v1/auth/token", 200), ("/v1/sync/sessions", 200)]

    def test_limits_and_verify_reach_the_clients_own_transport(self) -> None:
        client = AsyncPinkCloudSyncClient(
            api_key=API_KEY,
            api_secret=API_SECRET,
            limits=httpx.Limits(max_connections=7, max_keepalive_connections=3),
            verify=False,
        )
        pool = client._transport.inner._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7
        assert pool._max_keepalive_connections == 3
        assert pool._ssl_context.verify_mode == ssl.CERT_NONE

    def test_limits_survive_a_new_event_loop(self) -> None:
        """The client rebuilds its own pool per loop; the options must come along."""
        with respx.mock(base_url=DEFAULT_BASE) as router:
            router.post("/auth/token").respond(json=token_body("tok-1"))
            router.get("/sync/sessions").respond(json={"sessions": []})
            client = AsyncPinkCloudSyncClient(
                api_key=API_KEY,
                api_secret=API_SECRET,
                limits=httpx.Limits(max_connections=7),
            )
            assert asyncio.run(client.get("sync/sessions")).status_code == 200
            assert asyncio.run(client.get("sync/sessions")).status_code == 200
        pool = client._transport.inner._pool  # type: ignore[attr-defined]
        assert pool._max_connections == 7

    def test_follow_redirects_passes_through(self) -> None:
        client = mock_client(api_key=API_KEY, api_secret=API_SECRET, follow_redirects=True)
        assert client.follow_redirects is True


class TestAsyncWith:
    @pytest.mark.anyio
    async def test_async_with_returns_the_client_and_closes_it(self) -> None:
        with anyio.fail_after(TIMEOUT):
            client = mock_client(api_key=API_KEY, api_secret=API_SECRET)
            async with client as entered:
                assert entered is client
                assert not client.is_closed
                response = await client.get("sync/sessions")
                assert response.status_code == 200
            assert client.is_closed
            with pytest.raises(RuntimeError):
                await client.get("sync/sessions")

    @pytest.mark.anyio
    async def test_the_client_works_without_async_with(self) -> None:
        with anyio.fail_after(TIMEOUT):
            client = mock_client(api_key=API_KEY, api_secret=API_SECRET)
            try:
                assert (await client.list_sessions()).sessions == []
            finally:
                await client.aclose()
            assert client.is_closed


# ------------------------------------------------------------------ list_sessions


@pytest.fixture
def api() -> Any:
    """respx routes for the API, with a token endpoint that always succeeds."""
    with respx.mock(base_url=DEFAULT_BASE, assert_all_called=False) as router:
        router.post("/auth/token", name="token").respond(json=token_body("tok-1"))
        yield router


class TestListSessions:
    @pytest.mark.anyio
    async def test_returns_typed_sessions_keeping_unknown_fields(self, api: Any) -> None:
        route = api.get("/sync/sessions").respond(
            json={
                "sessions": [
                    {"id": "s1", "status": "active", "files": 3},
                    {"id": "s2", "device": {"name": "laptop"}},
                    {"status": "no-id"},
                ],
                "next_cursor": None,
            }
        )
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                result = await c.list_sessions()
        assert isinstance(result, SessionList)
        assert all(isinstance(s, SyncSession) for s in result.sessions)
        assert [s.id for s in result.sessions] == ["s1", "s2", None]
        assert result.sessions[0].model_extra == {"status": "active", "files": 3}
        assert result.sessions[1].model_extra == {"device": {"name": "laptop"}}
        [call] = route.calls
        assert call.request.method == "GET"
        assert call.request.url == f"{DEFAULT_BASE}/sync/sessions"
        assert call.request.headers["authorization"] == "Bearer tok-1"

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("response", "expected", "code"),
        [
            pytest.param(
                httpx.Response(401, json={"error": "invalid_token", "message": "Token expired"}),
                AuthenticationError,
                "invalid_token",
                id="401",
            ),
            pytest.param(
                httpx.Response(
                    403,
                    json={
                        "error": "insufficient_permissions",
                        "message": "API key does not have 'sync:read' permission",
                    },
                ),
                PermissionDeniedError,
                "insufficient_permissions",
                id="403",
            ),
            pytest.param(
                httpx.Response(404, json={"error": "not_found", "message": "nope"}),
                NotFoundError,
                "not_found",
                id="404",
            ),
            pytest.param(
                httpx.Response(
                    400, text='{"error": "bad', headers={"content-type": "application/json"}
                ),
                BadRequestError,
                "http_400",
                id="400-truncated",
            ),
            pytest.param(
                httpx.Response(429, json={"error": "rate_limited", "message": "slow down"}),
                RateLimitError,
                "rate_limited",
                id="429",
            ),
            pytest.param(
                httpx.Response(500, json={"error": "internal", "message": "oops"}),
                ServerError,
                "internal",
                id="500",
            ),
            pytest.param(
                httpx.Response(
                    502, text="<html>Bad Gateway</html>", headers={"content-type": "text/html"}
                ),
                ServerError,
                "http_502",
                id="502-html",
            ),
            pytest.param(httpx.Response(503), ServerError, "http_503", id="503-empty"),
        ],
    )
    async def test_error_statuses_raise_typed_errors(
        self, api: Any, response: httpx.Response, expected: type[APIError], code: str
    ) -> None:
        api.get("/sync/sessions").mock(return_value=response)
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(
                api_key=API_KEY, api_secret=API_SECRET, max_retries=0
            ) as client:
                with pytest.raises(APIError) as caught:
                    await client.list_sessions()
        error = caught.value
        assert type(error) is expected
        assert isinstance(error, PinkCloudSyncError)
        assert error.status_code == response.status_code
        assert error.error == code
        assert isinstance(error.message, str)
        assert error.message
        assert isinstance(error.response, httpx.Response)
        assert error.response.status_code == response.status_code
        assert "<html>" not in str(error)

    @pytest.mark.anyio
    async def test_rate_limit_error_carries_retry_after(self, api: Any) -> None:
        api.get("/sync/sessions").respond(429, headers={"Retry-After": "7"})
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(
                api_key=API_KEY, api_secret=API_SECRET, max_retries=0
            ) as client:
                with pytest.raises(RateLimitError) as caught:
                    await client.list_sessions()
        assert caught.value.retry_after == 7.0

    @pytest.mark.anyio
    async def test_a_401_is_raised_only_after_one_refresh_and_replay(self, api: Any) -> None:
        route = api.get("/sync/sessions").respond(
            401, json={"error": "invalid_token", "message": "revoked"}
        )
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                with pytest.raises(AuthenticationError) as caught:
                    await c.list_sessions()
        assert caught.value.error == "invalid_token"
        assert caught.value.message == "revoked"
        assert route.call_count == 2
        assert api["token"].call_count == 2

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "response",
        [
            pytest.param(httpx.Response(200, text="<html>hi</html>"), id="html"),
            pytest.param(httpx.Response(200), id="empty"),
            pytest.param(httpx.Response(200, json=[]), id="list"),
            pytest.param(httpx.Response(200, json={}), id="no-sessions"),
            pytest.param(httpx.Response(200, json={"sessions": "nope"}), id="sessions-not-list"),
            pytest.param(httpx.Response(200, json={"sessions": [1, 2]}), id="session-not-object"),
        ],
    )
    async def test_an_invalid_body_raises_invalid_response_error(
        self, api: Any, response: httpx.Response
    ) -> None:
        api.get("/sync/sessions").mock(return_value=response)
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                with pytest.raises(InvalidResponseError) as caught:
                    await c.list_sessions()
        assert not isinstance(caught.value, ValidationError)
        assert isinstance(caught.value, PinkCloudSyncError)

    @pytest.mark.anyio
    async def test_a_failed_token_request_surfaces_as_its_typed_error(self) -> None:
        with respx.mock(base_url=DEFAULT_BASE, assert_all_called=False) as router:
            router.post("/auth/token").respond(
                401, json={"error": "invalid_credentials", "message": "Invalid API key or secret"}
            )
            sessions = router.get("/sync/sessions")
            with anyio.fail_after(TIMEOUT):
                async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                    with pytest.raises(AuthenticationError) as caught:
                        await c.list_sessions()
        assert caught.value.error == "invalid_credentials"
        assert caught.value.message == "Invalid API key or secret"
        assert not sessions.called


class TestRawRequests:
    """Raw `get()` & co keep httpx semantics: a response, never a typed error."""

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502])
    async def test_error_statuses_return_the_response(self, api: Any, status: int) -> None:
        api.get("/sync/sessions").respond(status, json={"error": "e", "message": "m"})
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(
                api_key=API_KEY, api_secret=API_SECRET, max_retries=0
            ) as client:
                response = await client.get("sync/sessions")
        assert isinstance(response, httpx.Response)
        assert response.status_code == status
        assert response.json() == {"error": "e", "message": "m"}
        with pytest.raises(httpx.HTTPStatusError):
            response.raise_for_status()

    @pytest.mark.anyio
    async def test_get_returns_an_httpx_response(self, api: Any) -> None:
        api.get("/sync/sessions", params={"page": "2"}).respond(json={"sessions": [{"id": "x"}]})
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                response = await c.get("sync/sessions", params={"page": 2})
        assert type(response) is httpx.Response
        assert response.json() == {"sessions": [{"id": "x"}]}
        assert response.request.headers["authorization"] == "Bearer tok-1"

    @pytest.mark.anyio
    async def test_streaming_responses_work(self, api: Any) -> None:
        api.get("/sync/sessions").respond(json={"sessions": []})
        with anyio.fail_after(TIMEOUT):
            client = AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET)
            async with client, client.stream("GET", "sync/sessions") as response:
                body = await response.aread()
        assert json.loads(body) == {"sessions": []}
        assert response.request.headers["authorization"] == "Bearer tok-1"

    @pytest.mark.anyio
    async def test_get_token_returns_the_current_token(self, api: Any) -> None:
        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(api_key=API_KEY, api_secret=API_SECRET) as c:
                token = await c.get_token()
        assert token.access_token.get_secret_value() == "tok-1"
        assert api["token"].call_count == 1


class TestSuccessiveEventLoopsOverARealSocket:
    """A REPL user's two `asyncio.run()` calls, against a real server: the pool's
    connections belong to the first loop, so the client must not reuse them."""

    # The first loop's pooled socket can only be left to the garbage collector
    # (its loop is gone); collected here, its ResourceWarning is expected.
    @pytest.mark.filterwarnings("ignore::ResourceWarning")
    @pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
    @pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])
    def test_requests_and_aclose_on_later_loops(self, http_backend: str) -> None:
        import gc

        from pinkcloudsync_async.testing import (
            DEFAULT_API_KEY,
            DEFAULT_API_SECRET,
            Emulator,
            serve_emulator,
        )

        emulator = Emulator()
        # The server runs on its own loop in a thread, so it outlives the client's loops.
        with (
            anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
            portal.wrap_async_context_manager(serve_emulator(emulator)) as url,
        ):
            client = AsyncPinkCloudSyncClient(
                DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=url, http_backend=http_backend
            )

            async def list_sessions() -> int:
                with anyio.fail_after(10):
                    return len((await client.list_sessions()).sessions)

            assert asyncio.run(list_sessions()) == 0
            assert asyncio.run(list_sessions()) == 0  # reused the dead loop's socket before
            asyncio.run(client.aclose())  # so did closing
            assert client.is_closed
            assert emulator.stats.token_requests == 1  # the token outlives the loop
            assert emulator.stats.api_requests_by_status[200] == 2
            gc.collect()


class TestExitFromAnotherTask:
    """pytest-asyncio runs an async fixture's setup and teardown in different tasks;
    `async with client` inside such a fixture must still tear down cleanly."""

    @pytest.mark.asyncio
    async def test_exiting_in_another_task_cancels_the_background_refresh(self) -> None:
        clock_now = [1000.0]
        release = anyio.Event()
        token_calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal token_calls
            if request.url.path.endswith("/auth/token"):
                token_calls += 1
                if token_calls > 1:
                    await release.wait()  # the background refresh hangs
                return httpx.Response(200, json=token_body(expires_in=3600))
            return httpx.Response(200, json={"sessions": []})

        client = AsyncPinkCloudSyncClient(
            API_KEY,
            API_SECRET,
            transport=httpx.MockTransport(handler),
            _clock=lambda: clock_now[0],
        )
        with anyio.fail_after(10):
            await asyncio.create_task(client.__aenter__())  # "setup" in its own task
            assert (await client.get("sync/sessions")).status_code == 200
            clock_now[0] += 3400  # due: a background refresh starts and hangs
            assert (await client.get("sync/sessions")).status_code == 200
            await anyio.wait_all_tasks_blocked()
            assert token_calls == 2
            await asyncio.create_task(client.__aexit__(None, None, None))  # "teardown"
            await anyio.wait_all_tasks_blocked()
        assert client.is_closed
        lifecycle = client.auth.tokens.lifecycle
        assert lifecycle.flight is None  # the cancelled refresh left nothing in progress
        assert lifecycle.token is not None  # and the old token is still held


class TestSendingOneRequestTwice:
    @pytest.mark.anyio
    async def test_a_request_is_handed_back_as_it_came(self) -> None:
        clock_now = [1000.0]
        api_calls = 0

        async def no_sleep(_: float) -> None:
            await anyio.lowlevel.checkpoint()

        def handler(request: httpx.Request) -> httpx.Response:
            nonlocal api_calls
            if request.url.path.endswith("/auth/token"):
                return httpx.Response(200, json=token_body(expires_in=3600))
            api_calls += 1
            return httpx.Response(503 if api_calls == 1 else 200)

        client = AsyncPinkCloudSyncClient(
            API_KEY,
            API_SECRET,
            transport=httpx.MockTransport(handler),
            _clock=lambda: clock_now[0],
            _sleep=no_sleep,
        )
        request = client.build_request("GET", "sync/sessions", timeout=5.0)
        original = dict(request.extensions)
        with anyio.fail_after(10):
            assert (await client.send(request)).status_code == 200  # after one retry
            assert request.extensions == original
            clock_now[0] += 4000  # an hour later, the same request again
            assert (await client.send(request)).status_code == 200
