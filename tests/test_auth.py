"""The token lifecycle end to end: `PinkCloudSyncAuth` driven through the async client.

Every test talks to a tiny fake API (`FakeAPI`) through `httpx.MockTransport`: tokens
are numbered (`tok-1`, `tok-2`, ...) so a test can tell which one a request carried,
and the handler counts what it sees. Concurrency is real (thousands of tasks, on
asyncio and trio); tasks are synchronised with `anyio.Event` gates and
`anyio.wait_all_tasks_blocked()`, never with sleeps. Time is a `FakeClock` injected
with `_clock=`, shared by the auth and the retry loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from fakes import (
    API_KEY,
    API_SECRET,
    BASE_URL,
    T0,
    TOKEN_URL,
    FakeClock,
    invalid_token_bodies,
    make_client,
    make_jwt,
    token_body,
)
from pydantic import ValidationError

from pinkcloudsync_async import (
    AccessToken,
    APIConnectionError,
    AsyncPinkCloudSyncClient,
    AuthenticationError,
    InvalidResponseError,
    PermissionDeniedError,
    PinkCloudSyncAuth,
    PinkCloudSyncError,
    RequestTimeoutError,
    ServerError,
)

SESSIONS = {"sessions": [{"id": "s1"}]}
LOGGER = "pinkcloudsync_async"
TIMEOUT = 20  # every async test is bounded: a hang is a failure, not a stuck CI job

Reply = httpx.Response | Awaitable[httpx.Response]


class FakeAPI:
    """The PinkCloudSync API in a few lines: numbered tokens, counters, optional hooks.

    `on_token(n, request)` / `on_api(request)` may replace the default replies (plain or
    async); `n` is the 1-based number of the token request.
    """

    def __init__(self, *, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        # Recorded on arrival: a replayed request is the same object, re-headed.
        self.api_bearers: list[str | None] = []
        self.on_token: Callable[[int, httpx.Request], Reply] | None = None
        self.on_api: Callable[[httpx.Request], Reply] | None = None

    @property
    def token_calls(self) -> int:
        return len(self.token_requests)

    @property
    def api_calls(self) -> int:
        return len(self.api_requests)

    def token_ok(self, n: int) -> httpx.Response:
        return httpx.Response(200, json=token_body(f"tok-{n}", expires_in=self.expires_in))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        reply: Reply
        if request.url.path.endswith("/auth/token"):
            self.token_requests.append(request)
            n = self.token_calls
            reply = self.token_ok(n) if self.on_token is None else self.on_token(n, request)
        else:
            self.api_requests.append(request)
            self.api_bearers.append(request.headers.get("authorization"))
            reply = (
                httpx.Response(200, json=SESSIONS) if self.on_api is None else self.on_api(request)
            )
        if inspect.isawaitable(reply):
            return await reply
        return reply


def bearer(response: httpx.Response) -> str | None:
    """The Authorization header the (final) request of this response carried."""
    return response.request.headers.get("authorization")


async def get_bearer(client: AsyncPinkCloudSyncClient) -> str | None:
    response = await client.get("sync/sessions")
    assert response.status_code == 200
    return bearer(response)


async def capture(call: Callable[[], Awaitable[Any]]) -> Any:
    """The call's result, or the exception it raised (to collect errors from many tasks)."""
    try:
        return await call()
    except Exception as exc:
        return exc


async def run_concurrently(n: int, call: Callable[[], Awaitable[Any]]) -> list[Any]:
    results: list[Any] = []

    async def one() -> None:
        results.append(await capture(call))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


def token_401() -> httpx.Response:
    return httpx.Response(
        401, json={"error": "invalid_credentials", "message": "Invalid API key or secret"}
    )


# --------------------------------------------------------------------------- 1. lazy


class TestLazyFetch:
    def test_constructing_a_client_requests_no_token(self) -> None:
        api = FakeAPI()
        client = make_client(api)
        assert api.token_calls == 0
        assert client.auth.token is None

    @pytest.mark.anyio
    async def test_first_request_fetches_the_token_later_ones_reuse_it(self) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                assert api.token_calls == 0
                assert await get_bearer(client) == "Bearer tok-1"
                assert api.token_calls == 1
                for _ in range(5):
                    assert await get_bearer(client) == "Bearer tok-1"
                assert api.token_calls == 1
                assert api.api_calls == 6

    @pytest.mark.anyio
    async def test_get_token_fetches_once_and_returns_the_access_token(self) -> None:
        api = FakeAPI()
        raw = make_jwt(sub="user_9", permissions=("sync:read",))
        api.on_token = lambda n, request: httpx.Response(200, json=token_body(raw))
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                token = await client.get_token()
                assert isinstance(token, AccessToken)
                assert token.access_token.get_secret_value() == raw
                assert token.claims.sub == "user_9"
                assert token.claims.permissions == ("sync:read",)
                assert await client.get_token() is token
                assert client.auth.token is token
                assert api.token_calls == 1
                assert api.api_calls == 0
                assert await get_bearer(client) == f"Bearer {raw}"
                assert api.token_calls == 1


# ------------------------------------------------------------------ 2. token request


class TestTokenRequest:
    @pytest.mark.anyio
    async def test_token_request_is_a_json_post_without_authorization(self) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                await client.get("sync/sessions")
        [request] = api.token_requests
        assert request.method == "POST"
        assert str(request.url) == TOKEN_URL
        assert request.headers["content-type"] == "application/json"
        assert json.loads(request.content) == {"api_key": API_KEY, "api_secret": API_SECRET}
        assert "authorization" not in request.headers

    @pytest.mark.anyio
    async def test_a_default_authorization_header_is_not_sent_to_the_token_endpoint(
        self,
    ) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, headers={"Authorization": "Basic c29tZTp0aGluZw=="}) as c:
                assert await get_bearer(c) == "Bearer tok-1"
        assert "authorization" not in api.token_requests[0].headers

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("base_url", "token_url"),
        [
            (BASE_URL, TOKEN_URL),
            (f"{BASE_URL}/", TOKEN_URL),
            (
                "https://eu.pinkcloudsync.example/api/v2",
                "https://eu.pinkcloudsync.example/api/v2/auth/token",
            ),
            ("https://eu.pinkcloudsync.example", "https://eu.pinkcloudsync.example/auth/token"),
        ],
    )
    async def test_token_url_is_under_the_base_url(self, base_url: str, token_url: str) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, base_url=base_url) as client:
                await client.get_token()
        assert [str(r.url) for r in api.token_requests] == [token_url]

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    async def test_a_redirect_from_the_token_endpoint_is_never_followed(self, status: int) -> None:
        """Even on a client that follows redirects: the secret never goes elsewhere."""
        seen: list[httpx.Request] = []
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(
            status, headers={"Location": "https://collector.example/steal"}
        )

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if request.url.host != "api.pinkcloudsync.example":
                return httpx.Response(200, json=token_body("tok-stolen"))
            return await api(request)

        with anyio.fail_after(TIMEOUT):
            async with make_client(handler, follow_redirects=True) as client:
                with pytest.raises(PinkCloudSyncError) as caught:
                    await client.get("sync/sessions")
                with pytest.raises(InvalidResponseError):
                    await client.get_token()
        assert isinstance(caught.value, InvalidResponseError)
        assert [r.url.host for r in seen] == ["api.pinkcloudsync.example"] * 2
        assert api.token_calls == 2
        assert api.api_calls == 0

    @pytest.mark.anyio
    async def test_token_request_goes_through_the_clients_transport_and_settings(self) -> None:
        api = FakeAPI()
        hooked: list[str] = []

        async def hook(request: httpx.Request) -> None:
            hooked.append(request.url.path)

        with anyio.fail_after(TIMEOUT):
            async with make_client(
                api,
                headers={"X-Tenant": "acme", "User-Agent": "tests/1.0"},
                event_hooks={"request": [hook]},
                timeout=httpx.Timeout(7.0),
            ) as client:
                await client.get("sync/sessions")
        [request] = api.token_requests  # served by the mock transport given to the client
        assert request.headers["x-tenant"] == "acme"
        assert request.headers["user-agent"] == "tests/1.0"
        assert request.extensions["timeout"]["read"] <= 7.0
        assert hooked == ["/v1/auth/token", "/v1/sync/sessions"]


# ------------------------------------------------------------------- 3. single flight


class TestSingleFlight:
    @pytest.mark.anyio
    async def test_10000_concurrent_requests_on_a_cold_client_make_one_token_request(
        self,
    ) -> None:
        n = 10_000
        api = FakeAPI()
        gate = anyio.Event()

        async def on_token(number: int, request: httpx.Request) -> httpx.Response:
            await gate.wait()
            return api.token_ok(number)

        api.on_token = on_token
        started = 0
        bearers: list[str | None] = []

        async def one(client: AsyncPinkCloudSyncClient) -> None:
            nonlocal started
            started += 1
            bearers.append(await get_bearer(client))

        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client, anyio.create_task_group() as tg:
                for _ in range(n):
                    tg.start_soon(one, client)
                await anyio.wait_all_tasks_blocked()
                # Every request is in flight and blocked on the one token request.
                assert started == n
                assert api.token_calls == 1
                assert api.api_calls == 0
                assert bearers == []
                gate.set()
        assert api.token_calls == 1
        assert api.api_calls == n
        assert bearers == ["Bearer tok-1"] * n

    @pytest.mark.anyio
    async def test_get_token_and_requests_share_the_same_flight(self) -> None:
        api = FakeAPI()
        gate = anyio.Event()

        async def on_token(number: int, request: httpx.Request) -> httpx.Response:
            await gate.wait()
            return api.token_ok(number)

        api.on_token = on_token
        tokens: list[AccessToken] = []
        bearers: list[str | None] = []

        async def via_get_token(client: AsyncPinkCloudSyncClient) -> None:
            tokens.append(await client.get_token())

        async def via_request(client: AsyncPinkCloudSyncClient) -> None:
            bearers.append(await get_bearer(client))

        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client, anyio.create_task_group() as tg:
                for _ in range(500):
                    tg.start_soon(via_get_token, client)
                    tg.start_soon(via_request, client)
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 1
                gate.set()
        assert api.token_calls == 1
        assert len({id(t) for t in tokens}) == 1
        assert tokens[0].access_token.get_secret_value() == "tok-1"
        assert bearers == ["Bearer tok-1"] * 500


# ----------------------------------------------------------------- 4. failure fan-out


def raise_connect_error() -> httpx.Response:
    raise httpx.ConnectError("connection refused")


class TestFailureFanOut:
    @pytest.mark.anyio
    async def test_invalid_credentials_reach_every_waiter_from_one_attempt(self) -> None:
        n = 1000
        api = FakeAPI()
        gate = anyio.Event()

        async def on_token(number: int, request: httpx.Request) -> httpx.Response:
            await gate.wait()
            return token_401()

        api.on_token = on_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                results: list[Any] = []

                async def one() -> None:
                    results.append(await capture(lambda: client.get("sync/sessions")))

                async with anyio.create_task_group() as tg:
                    for _ in range(n):
                        tg.start_soon(one)
                    await anyio.wait_all_tasks_blocked()
                    assert api.token_calls == 1
                    gate.set()
        assert len(results) == n
        for error in results:
            assert isinstance(error, AuthenticationError)
            assert error.status_code == 401
            assert error.error == "invalid_credentials"
            assert error.message == "Invalid API key or secret"
        assert api.token_calls == 1  # no waiter re-hit the endpoint in turn
        assert api.api_calls == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("reply", "expected"),
        [
            pytest.param(
                lambda: httpx.Response(500, json={"error": "boom", "message": "down"}),
                ServerError,
                id="500",
            ),
            pytest.param(
                lambda: httpx.Response(
                    403, json={"error": "insufficient_permissions", "message": "no"}
                ),
                PermissionDeniedError,
                id="403",
            ),
            pytest.param(
                lambda: httpx.Response(200, json={"access_token": "tok-x", "expires_in": 60}),
                InvalidResponseError,
                id="invalid-payload",
            ),
            pytest.param(
                lambda: httpx.Response(
                    200, text="<html>gateway</html>", headers={"content-type": "text/html"}
                ),
                InvalidResponseError,
                id="html",
            ),
            pytest.param(raise_connect_error, APIConnectionError, id="connect-error"),
        ],
    )
    async def test_every_failure_kind_fans_out_from_one_attempt(
        self, reply: Callable[[], httpx.Response], expected: type[Exception]
    ) -> None:
        n = 300
        api = FakeAPI()
        gate = anyio.Event()

        async def on_token(number: int, request: httpx.Request) -> httpx.Response:
            await gate.wait()
            return reply()

        api.on_token = on_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, max_retries=0) as client:
                results: list[Any] = []

                async def one() -> None:
                    results.append(await capture(lambda: client.get("sync/sessions")))

                async with anyio.create_task_group() as tg:
                    for _ in range(n):
                        tg.start_soon(one)
                    await anyio.wait_all_tasks_blocked()
                    gate.set()
        assert len(results) == n
        assert all(type(error) is expected for error in results), {type(e) for e in results}
        assert api.token_calls == 1
        assert api.api_calls == 0

    @pytest.mark.anyio
    async def test_a_retried_token_request_fans_out_after_its_own_retries_only(self) -> None:
        """With retries on, the endpoint sees one request per *attempt*, not per waiter."""
        n = 300
        api = FakeAPI()
        gate = anyio.Event()

        async def on_token(number: int, request: httpx.Request) -> httpx.Response:
            await gate.wait()
            return httpx.Response(503, json={"error": "unavailable", "message": "later"})

        async def no_sleep(seconds: float) -> None:
            await anyio.lowlevel.checkpoint()

        api.on_token = on_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, max_retries=2, _sleep=no_sleep) as client:
                results = []

                async def one() -> None:
                    results.append(await capture(lambda: client.get("sync/sessions")))

                async with anyio.create_task_group() as tg:
                    for _ in range(n):
                        tg.start_soon(one)
                    await anyio.wait_all_tasks_blocked()
                    gate.set()
        assert len(results) == n
        assert all(isinstance(error, ServerError) for error in results)
        assert api.token_calls == 3  # one attempt + two retries, shared by all
        assert api.api_calls == 0

    @pytest.mark.anyio
    async def test_a_failed_fetch_is_not_cached_the_next_request_tries_again(self) -> None:
        api = FakeAPI()
        api.on_token = lambda n, request: token_401() if n == 1 else api.token_ok(n)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(AuthenticationError):
                    await client.get("sync/sessions")
                assert await get_bearer(client) == "Bearer tok-2"
        assert api.token_calls == 2


# --------------------------------------------------------------------- 5. validation

SENTINEL = "tok-SENTINEL-must-never-be-echoed"


# Every unusable token response, as raw bodies carrying this module's sentinel.
INVALID_PAYLOADS = invalid_token_bodies(SENTINEL)


class TestValidation:
    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("body", "content_type"), INVALID_PAYLOADS.values(), ids=INVALID_PAYLOADS
    )
    async def test_an_invalid_token_payload_raises_invalid_response_error(
        self, body: bytes, content_type: str
    ) -> None:
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(
            200, content=body, headers={"content-type": content_type}
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(InvalidResponseError) as via_request:
                    await client.get("sync/sessions")
                with pytest.raises(InvalidResponseError) as via_get_token:
                    await client.get_token()
        for caught in (via_request, via_get_token):
            error = caught.value
            assert not isinstance(error, ValidationError)
            assert error.__cause__ is None
            for text in (str(error), repr(error), error.message):
                assert SENTINEL not in text
                assert API_SECRET not in text
        assert api.api_calls == 0
        assert client.auth.token is None

    @pytest.mark.anyio
    @pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "bEaReR"])
    async def test_token_type_bearer_is_accepted_in_any_case(self, token_type: str) -> None:
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(
            200, json={"access_token": "tok-1", "token_type": token_type, "expires_in": 3600}
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                assert await get_bearer(client) == "Bearer tok-1"

    @pytest.mark.anyio
    async def test_unknown_payload_fields_are_accepted(self) -> None:
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(
            200, json={**token_body("tok-1"), "scope": "sync:read", "refresh_in": 10}
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                assert await get_bearer(client) == "Bearer tok-1"


# ------------------------------------------------------------------------- 6. claims


def jwt_reply(raw: str, *, expires_in: int = 3600) -> Callable[[int, httpx.Request], Reply]:
    return lambda n, request: httpx.Response(200, json=token_body(raw, expires_in=expires_in))


class TestClaims:
    @pytest.mark.anyio
    async def test_a_token_that_is_not_a_jwt_is_still_used_with_empty_claims(self) -> None:
        api = FakeAPI()
        api.on_token = jwt_reply("opaque.not-a-jwt")
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                assert await get_bearer(client) == "Bearer opaque.not-a-jwt"
                token = await client.get_token()
        assert token.claims.sub is None
        assert token.claims.permissions == ()
        assert token.claims.exp is None
        assert token.lifetime == 3600

    @pytest.mark.anyio
    async def test_claims_are_read_without_verification_unknown_claims_kept(self) -> None:
        api = FakeAPI()
        raw = make_jwt(sub="user_7", permissions=("admin",), iat=1_600_000_000, org="acme")
        api.on_token = jwt_reply(raw)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                token = await client.get_token()
        assert token.claims.sub == "user_7"
        assert token.claims.permissions == ("admin",)
        assert token.claims.iat == 1_600_000_000
        assert token.claims.exp == 1_600_003_600
        assert token.claims.model_extra == {"org": "acme"}

    @pytest.mark.anyio
    async def test_claims_shorten_the_lifetime(self) -> None:
        clock = FakeClock()
        api = FakeAPI()
        # The server says 3600 s, the JWT (on the server's clock) 600 s: 600 s it is.
        api.on_token = jwt_reply(make_jwt(lifetime=600), expires_in=3600)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, refresh_margin=0) as client:
                token = await client.get_token()
                assert token.lifetime == 600
                assert token.expires_at == T0 + 600
                clock.advance(599)
                await get_bearer(client)
                assert api.token_calls == 1
                clock.advance(1)
                await get_bearer(client)
                assert api.token_calls == 2

    @pytest.mark.anyio
    async def test_claims_never_lengthen_the_lifetime(self) -> None:
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = jwt_reply(make_jwt(lifetime=7200), expires_in=3600)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, refresh_margin=0) as client:
                token = await client.get_token()
                assert token.lifetime == 3600
                clock.advance(3599)
                await get_bearer(client)
                assert api.token_calls == 1
                clock.advance(1)
                await get_bearer(client)
                assert api.token_calls == 2

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("iat", "exp"), [(2_000, 1_000), (1_000, 1_000)], ids=["exp-before-iat", "exp-equals-iat"]
    )
    async def test_nonsense_claims_do_not_shorten_the_lifetime(self, iat: int, exp: int) -> None:
        clock = FakeClock()
        api = FakeAPI()
        raw = make_jwt(iat=iat, exp=exp)
        api.on_token = jwt_reply(raw)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock) as client:
                token = await client.get_token()
                assert token.lifetime == 3600
                for _ in range(10):
                    await get_bearer(client)
                assert api.token_calls == 1

    @pytest.mark.anyio
    @pytest.mark.parametrize("skew_hours", [5, -5, 30])
    async def test_a_client_wall_clock_hours_off_changes_nothing(
        self, skew_hours: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Neither a refresh on every call (clock ahead) nor a dead token (clock behind)."""
        server_now = int(time.time())
        raw = make_jwt(iat=server_now, lifetime=600)  # the server's own clock
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + skew_hours * 3600)
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = jwt_reply(raw, expires_in=3600)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, refresh_margin=0) as client:
                for _ in range(60):
                    assert await get_bearer(client) == f"Bearer {raw}"
                    clock.advance(9.9)
                assert api.token_calls == 1
                clock.now = T0 + 600
                await get_bearer(client)
                assert api.token_calls == 2


# ---------------------------------------------------------------- 7. monotonic clock


class TestMonotonicClock:
    @pytest.mark.anyio
    async def test_expiry_runs_from_when_the_token_request_was_sent(self) -> None:
        clock = FakeClock()
        api = FakeAPI()

        def slow_token(n: int, request: httpx.Request) -> httpx.Response:
            clock.advance(100)  # the token endpoint takes 100 s to answer
            return api.token_ok(n)

        api.on_token = slow_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, refresh_margin=0) as client:
                token = await client.get_token()
                assert token.obtained_at == T0
                assert token.expires_at == T0 + 3600
                clock.now = T0 + 3599
                assert await get_bearer(client) == "Bearer tok-1"
                clock.now = T0 + 3600
                assert await get_bearer(client) == "Bearer tok-2"

    @pytest.mark.anyio
    async def test_wall_clock_jumps_change_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = FakeClock()
        api = FakeAPI()
        real_time = time.time
        jump = 0.0
        monkeypatch.setattr(time, "time", lambda: real_time() + jump)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock) as client:
                token = await client.get_token()
                for jump in (3 * 86400.0, -3 * 86400.0, 10**9, -(10**9)):  # noqa: B007
                    assert await get_bearer(client) == "Bearer tok-1"
                    assert client.auth.token is token
                assert api.token_calls == 1
                clock.now = T0 + 3600
                jump = 0.0
                assert await get_bearer(client) == "Bearer tok-2"

    @pytest.mark.anyio
    async def test_the_retry_loop_shares_the_injected_clock(self) -> None:
        """Retry-After 6 s within a 10 s budget: one retry on the fake clock, not five."""
        clock = FakeClock()
        api = FakeAPI()
        api.on_api = lambda request: httpx.Response(503, headers={"Retry-After": "6"})
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            clock.advance(seconds)
            await anyio.lowlevel.checkpoint()

        with anyio.fail_after(TIMEOUT):
            async with make_client(
                api, _clock=clock, _sleep=fake_sleep, max_retries=5, timeout=10.0
            ) as client:
                response = await client.get("sync/sessions")
        assert response.status_code == 503
        assert slept == [6.0]
        assert api.api_calls == 2


# ------------------------------------------------------------------ 8. early refresh


def gated_token(api: FakeAPI, number: int) -> tuple[anyio.Event, anyio.Event]:
    """Token request `number` waits for `gate`; `entered` says it has arrived."""
    entered, gate = anyio.Event(), anyio.Event()

    async def on_token(n: int, request: httpx.Request) -> httpx.Response:
        if n == number:
            entered.set()
            await gate.wait()
        return api.token_ok(n)

    api.on_token = on_token
    return entered, gate


class TestEarlyRefresh:
    @pytest.mark.anyio
    @pytest.mark.parametrize(
        ("expires_in", "margin", "due_after"),
        [(3600, 300, 3300), (400, 300, 200), (60, 300, 30), (3600, 1000, 2600), (10, 0, 10)],
    )
    async def test_a_token_is_due_once_less_than_min_margin_half_lifetime_remains(
        self, expires_in: int, margin: float, due_after: float
    ) -> None:
        clock = FakeClock()
        api = FakeAPI(expires_in=expires_in)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, refresh_margin=margin) as client:
                token = await client.get_token()
                assert token.refresh_at == T0 + due_after
                clock.now = T0 + due_after - 0.001
                for _ in range(10):
                    assert await get_bearer(client) == "Bearer tok-1"
                assert api.token_calls == 1
                clock.now = T0 + due_after
                await get_bearer(client)
                await anyio.wait_all_tasks_blocked()  # the background refresh, if any
                assert api.token_calls == 2
                assert await get_bearer(client) == "Bearer tok-2"

    @pytest.mark.anyio
    async def test_with_async_with_the_refresh_runs_in_the_background_nobody_waits(
        self,
    ) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, gate = gated_token(api, 2)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock) as client:
                assert await get_bearer(client) == "Bearer tok-1"
                clock.advance(3300)  # due, still valid for 300 s
                # 500 requests complete while the refresh is blocked: none of them,
                # not even the one that noticed, waited for it.
                results = await run_concurrently(500, lambda: get_bearer(client))
                assert results == ["Bearer tok-1"] * 500
                await entered.wait()  # the refresh runs (in the background) and is blocked
                assert api.token_calls == 2  # exactly one refresh
                assert await get_bearer(client) == "Bearer tok-1"
                gate.set()
                await anyio.wait_all_tasks_blocked()
                assert await get_bearer(client) == "Bearer tok-2"
                assert client.auth.token is not None
                assert client.auth.token.obtained_at == T0 + 3300
        assert api.token_calls == 2

    @pytest.mark.anyio
    async def test_without_async_with_one_request_carries_the_refresh_others_go_on(
        self,
    ) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, gate = gated_token(api, 2)
        client = make_client(api, _clock=clock)
        carrier_done = anyio.Event()

        async def carrier() -> None:
            await get_bearer(client)
            carrier_done.set()

        try:
            with anyio.fail_after(TIMEOUT):
                assert await get_bearer(client) == "Bearer tok-1"
                clock.advance(3300)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(carrier)
                    await entered.wait()  # the carrier is inside the refresh
                    results = await run_concurrently(300, lambda: get_bearer(client))
                    for _ in range(20):
                        results.append(await get_bearer(client))
                    assert results == ["Bearer tok-1"] * 320
                    assert api.token_calls == 2  # exactly one refresh
                    assert not carrier_done.is_set()  # it carries the refresh
                    gate.set()
                assert await get_bearer(client) == "Bearer tok-2"
                assert api.token_calls == 2
        finally:
            await client.aclose()

    @pytest.mark.anyio
    @pytest.mark.parametrize("background", [True, False], ids=["async-with", "plain"])
    async def test_a_failed_early_refresh_keeps_the_old_token_warns_and_backs_off(
        self, background: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = lambda n, request: (
            httpx.Response(503, json={"error": "unavailable", "message": "try later"})
            if n == 2
            else api.token_ok(n)
        )
        client = make_client(api, _clock=clock, max_retries=0)
        with anyio.fail_after(TIMEOUT):
            if background:
                await client.__aenter__()
            try:
                assert await get_bearer(client) == "Bearer tok-1"
                clock.advance(3300)
                assert await get_bearer(client) == "Bearer tok-1"  # noticed it; refresh fails
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 2
                warnings = [
                    r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING
                ]
                assert len(warnings) == 1
                # The old token keeps serving and the next try waits a backoff.
                for _ in range(20):
                    assert await get_bearer(client) == "Bearer tok-1"
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 2
                clock.advance(0.5)
                assert await get_bearer(client) == "Bearer tok-1"
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 2
                # After the (short) backoff, exactly one new attempt, which succeeds.
                clock.advance(60)
                await get_bearer(client)
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 3
                assert await get_bearer(client) == "Bearer tok-3"
            finally:
                if background:
                    await client.__aexit__(None, None, None)
                else:
                    await client.aclose()

    @pytest.mark.anyio
    async def test_an_expired_token_is_fetched_at_once_despite_a_refresh_backoff(self) -> None:
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(503) if n == 2 else api.token_ok(n)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, max_retries=0) as client:
                await get_bearer(client)
                clock.advance(3599.9)  # due; the refresh fails; backoff starts
                assert await get_bearer(client) == "Bearer tok-1"
                await anyio.wait_all_tasks_blocked()
                assert api.token_calls == 2
                clock.advance(0.1)  # expired, still inside the backoff
                assert await get_bearer(client) == "Bearer tok-3"
                assert api.token_calls == 3

    @pytest.mark.anyio
    @pytest.mark.parametrize("background", [True, False], ids=["async-with", "plain"])
    async def test_only_an_expired_token_makes_requests_wait(self, background: bool) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, gate = gated_token(api, 2)
        client = make_client(api, _clock=clock)
        done: list[str | None] = []

        async def one() -> None:
            done.append(await get_bearer(client))

        with anyio.fail_after(TIMEOUT):
            if background:
                await client.__aenter__()
            try:
                await get_bearer(client)
                clock.advance(3600)  # expired
                async with anyio.create_task_group() as tg:
                    for _ in range(200):
                        tg.start_soon(one)
                    await entered.wait()
                    await anyio.wait_all_tasks_blocked()
                    assert done == []  # all of them wait for the new token
                    assert api.api_calls == 1
                    gate.set()
                assert done == ["Bearer tok-2"] * 200
                assert api.token_calls == 2
            finally:
                if background:
                    await client.__aexit__(None, None, None)
                else:
                    await client.aclose()


# --------------------------------------------------------------------------- 9. 401


def refuse(*tokens: str) -> Callable[[httpx.Request], httpx.Response]:
    """An API that answers 401 to requests carrying one of `tokens`."""
    refused = {f"Bearer {t}" for t in tokens}

    def on_api(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") in refused:
            return httpx.Response(401, json={"error": "invalid_token", "message": "expired"})
        return httpx.Response(200, json=SESSIONS)

    return on_api


class StreamingTransport(httpx.AsyncBaseTransport):
    """Consumes request bodies as a network transport does: by iterating the stream once
    (unlike MockTransport, which buffers the body and so makes any request replayable)."""

    def __init__(self, handler: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        self.handler = handler
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        self.bodies.append(b"".join([chunk async for chunk in request.stream]))
        return await self.handler(request)


class TestUnauthorized:
    @pytest.mark.anyio
    async def test_401_for_the_current_token_drops_it_refreshes_once_and_replays(self) -> None:
        api = FakeAPI()
        api.on_api = refuse("tok-1")
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.post("sync/sessions", json={"name": "x"})
                assert response.status_code == 200
                assert bearer(response) == "Bearer tok-2"
                assert [r.status_code for r in response.history] == [401]
                assert api.api_bearers == ["Bearer tok-1", "Bearer tok-2"]
                assert api.token_calls == 2
                assert [json.loads(r.content) for r in api.api_requests] == [{"name": "x"}] * 2
                assert await get_bearer(client) == "Bearer tok-2"
                assert api.token_calls == 2

    @pytest.mark.anyio
    async def test_a_second_401_is_returned_to_the_caller(self) -> None:
        api = FakeAPI()
        api.on_api = refuse("tok-1", "tok-2", "tok-3")
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.get("sync/sessions")
        assert response.status_code == 401
        assert api.api_bearers == ["Bearer tok-1", "Bearer tok-2"]  # one replay
        assert api.token_calls == 2  # one refresh

    @pytest.mark.anyio
    async def test_100_requests_refused_for_the_same_token_cause_one_refresh(self) -> None:
        n = 100
        api = FakeAPI()
        all_arrived = anyio.Event()
        refused = 0

        async def on_api(request: httpx.Request) -> httpx.Response:
            nonlocal refused
            if request.headers["authorization"] == "Bearer tok-1":
                refused += 1
                if refused == n:
                    all_arrived.set()
                await all_arrived.wait()  # all 100 are in flight with tok-1 at once
                return httpx.Response(401, json={"error": "invalid_token", "message": "revoked"})
            return httpx.Response(200, json=SESSIONS)

        api.on_api = on_api
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                results = await run_concurrently(n, lambda: client.get("sync/sessions"))
        assert refused == n
        assert [r.status_code for r in results] == [200] * n
        assert {bearer(r) for r in results} == {"Bearer tok-2"}
        assert api.token_calls == 2  # the first fetch and exactly one refresh
        assert api.api_calls == 2 * n

    @pytest.mark.anyio
    async def test_a_401_for_an_already_replaced_token_keeps_the_new_one(self) -> None:
        api = FakeAPI()
        slow_arrived, slow_gate = anyio.Event(), anyio.Event()

        async def on_api(request: httpx.Request) -> httpx.Response:
            if request.headers["authorization"] == "Bearer tok-1":
                if request.headers.get("x-name") == "slow":
                    slow_arrived.set()
                    await slow_gate.wait()
                return httpx.Response(401, json={"error": "invalid_token", "message": "old"})
            return httpx.Response(200, json=SESSIONS)

        api.on_api = on_api
        slow: list[httpx.Response] = []

        async def slow_request(client: AsyncPinkCloudSyncClient) -> None:
            slow.append(await client.get("sync/sessions", headers={"X-Name": "slow"}))

        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                await client.get_token()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(slow_request, client)
                    await slow_arrived.wait()
                    fast = await client.get("sync/sessions")  # 401 -> refresh -> tok-2
                    assert bearer(fast) == "Bearer tok-2"
                    assert api.token_calls == 2
                    slow_gate.set()  # the slow one now gets its 401 for tok-1
        [response] = slow
        assert response.status_code == 200
        assert bearer(response) == "Bearer tok-2"  # replayed with the newer token
        assert api.token_calls == 2  # tok-2 was not dropped for tok-1's 401

    @pytest.mark.anyio
    @pytest.mark.parametrize("buffering", [False, True], ids=["network-like", "mock-transport"])
    async def test_a_401_for_a_streamed_body_is_returned_as_is(self, buffering: bool) -> None:
        """Judged before the first send: even a transport that buffers the generator
        (MockTransport does) does not make the request replayable after the fact."""
        api = FakeAPI()
        api.on_api = refuse("tok-1")
        transport: httpx.AsyncBaseTransport
        transport = httpx.MockTransport(api) if buffering else StreamingTransport(api)
        produced = 0

        async def body() -> AsyncIterator[bytes]:
            nonlocal produced
            produced += 1
            yield b'{"name": '
            yield b'"streamed"}'

        with anyio.fail_after(TIMEOUT):
            async with AsyncPinkCloudSyncClient(
                API_KEY, API_SECRET, base_url=BASE_URL, transport=transport
            ) as client:
                response = await client.post("sync/sessions", content=body())
        assert response.status_code == 401
        assert api.api_bearers == ["Bearer tok-1"]
        assert produced == 1
        received = (
            api.api_requests[0].content if buffering else transport.bodies[-1]  # type: ignore[attr-defined]
        )
        assert json.loads(received) == {"name": "streamed"}

    @pytest.mark.anyio
    async def test_403_is_never_retried_and_never_refreshes(self) -> None:
        api = FakeAPI()
        api.on_api = lambda request: httpx.Response(
            403,
            json={
                "error": "insufficient_permissions",
                "message": "API key does not have 'sync:write' permission",
            },
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.post("sync/sessions", json={})
                assert response.status_code == 403
                assert api.api_calls == 1
                with pytest.raises(PermissionDeniedError) as caught:
                    await client.list_sessions()
        assert caught.value.error == "insufficient_permissions"
        assert api.api_calls == 2
        assert api.token_calls == 1


# ------------------------------------------------------------------ 10. cancellation


def cancellable_token(api: FakeAPI, number: int) -> tuple[anyio.Event, list[int]]:
    """Token request `number` hangs until cancelled; `cancelled` records that it was."""
    entered = anyio.Event()
    cancelled: list[int] = []

    async def on_token(n: int, request: httpx.Request) -> httpx.Response:
        if n == number:
            entered.set()
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                cancelled.append(n)
                raise
        return api.token_ok(n)

    api.on_token = on_token
    return entered, cancelled


class TestCancellation:
    @pytest.mark.anyio
    async def test_cancelling_the_caller_sending_the_token_request_hands_it_to_a_waiter(
        self,
    ) -> None:
        n = 3000
        api = FakeAPI()
        entered, cancelled = cancellable_token(api, 1)
        leader_scope = anyio.CancelScope()
        bearers: list[str | None] = []

        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:

                async def leader() -> None:
                    with leader_scope:
                        await client.get("sync/sessions")

                async def waiter() -> None:
                    bearers.append(await get_bearer(client))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(leader)
                    await entered.wait()  # the leader's flow is sending the token request
                    for _ in range(n):
                        tg.start_soon(waiter)
                    await anyio.wait_all_tasks_blocked()
                    assert api.token_calls == 1
                    assert bearers == []
                    leader_scope.cancel()
                assert leader_scope.cancelled_caught
                assert cancelled == [1]
                assert bearers == ["Bearer tok-2"] * n
                assert api.token_calls == 2  # exactly one waiter took over
                assert await get_bearer(client) == "Bearer tok-2"
                assert api.token_calls == 2

    @pytest.mark.anyio
    async def test_cancelled_waiters_leave_the_flight_to_the_others(self) -> None:
        api = FakeAPI()
        entered, gate = gated_token(api, 1)
        bearers: list[str | None] = []

        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:

                async def one() -> None:
                    bearers.append(await get_bearer(client))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(one)
                    await entered.wait()
                    for _ in range(500):
                        tg.start_soon(one)
                    async with anyio.create_task_group() as doomed:
                        for _ in range(500):
                            doomed.start_soon(client.get, "sync/sessions")
                        await anyio.wait_all_tasks_blocked()
                        doomed.cancel_scope.cancel()
                    assert api.token_calls == 1
                    gate.set()
                assert bearers == ["Bearer tok-1"] * 501
                assert api.token_calls == 1
                assert await get_bearer(client) == "Bearer tok-1"

    @pytest.mark.anyio
    async def test_cancelling_a_lone_fetcher_leaves_nothing_behind(self) -> None:
        api = FakeAPI()
        entered, cancelled = cancellable_token(api, 1)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.get, "sync/sessions")
                    await entered.wait()
                    tg.cancel_scope.cancel()
                assert cancelled == [1]
                assert await get_bearer(client) == "Bearer tok-2"
                assert await client.get_token() is client.auth.token
                assert api.token_calls == 2

    @pytest.mark.anyio
    async def test_cancelling_the_request_carrying_an_early_refresh(self) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, cancelled = cancellable_token(api, 2)
        client = make_client(api, _clock=clock)  # no `async with`: a request carries it
        try:
            with anyio.fail_after(TIMEOUT):
                await get_bearer(client)
                clock.advance(3300)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.get, "sync/sessions")
                    await entered.wait()
                    assert await get_bearer(client) == "Bearer tok-1"
                    tg.cancel_scope.cancel()
                assert cancelled == [2]
                # The abandoned refresh does not block the next one.
                assert await get_bearer(client) == "Bearer tok-3"
                assert api.token_calls == 3
        finally:
            await client.aclose()

    @pytest.mark.anyio
    async def test_leaving_async_with_cancels_a_background_refresh(self) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, cancelled = cancellable_token(api, 2)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock) as client:
                await get_bearer(client)
                clock.advance(3300)
                assert await get_bearer(client) == "Bearer tok-1"
                await entered.wait()
            assert cancelled == [2]
            assert client.is_closed

    @pytest.mark.anyio
    async def test_cancelling_the_owner_of_async_with_during_a_background_refresh(
        self,
    ) -> None:
        clock = FakeClock()
        api = FakeAPI()
        entered, cancelled = cancellable_token(api, 2)
        reached_after = False
        with anyio.fail_after(TIMEOUT):
            with anyio.CancelScope() as outer:
                async with make_client(api, _clock=clock) as client:
                    await get_bearer(client)
                    clock.advance(3300)
                    await get_bearer(client)
                    await entered.wait()
                    outer.cancel()
                    await anyio.sleep_forever()
                reached_after = True  # pragma: no cover - the cancellation must propagate
            assert outer.cancelled_caught
            assert not reached_after
            assert cancelled == [2]
            assert client.is_closed

    @pytest.mark.anyio
    async def test_cancelled_while_waiting_for_a_refresh_after_401(self) -> None:
        api = FakeAPI()
        api.on_api = refuse("tok-1")
        entered, cancelled = cancellable_token(api, 2)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                await client.get_token()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.get, "sync/sessions")
                    await entered.wait()
                    tg.cancel_scope.cancel()
                assert cancelled == [2]
                assert await get_bearer(client) == "Bearer tok-3"


# ------------------------------------------------------------- 11. loops and backends


class TestEventLoops:
    def test_one_client_across_two_asyncio_runs(self) -> None:
        api = FakeAPI()
        client = make_client(api)
        assert asyncio.run(get_bearer(client)) == "Bearer tok-1"
        assert asyncio.run(get_bearer(client)) == "Bearer tok-1"
        assert asyncio.run(client.get_token()).access_token.get_secret_value() == "tok-1"
        assert api.token_calls == 1
        asyncio.run(client.aclose())

    def test_a_token_request_in_flight_when_the_first_loop_ended(self) -> None:
        api = FakeAPI()
        entered: list[anyio.Event] = []

        async def on_token(n: int, request: httpx.Request) -> httpx.Response:
            if n == 1:
                entered[0].set()
                await anyio.sleep_forever()
            return api.token_ok(n)

        api.on_token = on_token
        client = make_client(api)
        pending: set[asyncio.Task[Any]] = set()

        async def first_session() -> None:
            entered.append(anyio.Event())
            pending.add(asyncio.create_task(client.get("sync/sessions")))
            await entered[0].wait()
            # Leave with the token request in flight: asyncio.run cancels it.

        asyncio.run(first_session())

        async def second_session() -> str | None:
            with anyio.fail_after(TIMEOUT):
                return await get_bearer(client)

        assert asyncio.run(second_session()) == "Bearer tok-2"
        assert asyncio.run(second_session()) == "Bearer tok-2"
        assert api.token_calls == 2
        asyncio.run(client.aclose())

    def test_a_token_request_left_behind_by_a_loop_closed_without_cancelling_it(self) -> None:
        """The first loop is closed with the token request still pending (never cancelled,
        so it never reports): the next loop must not wait for it."""
        api = FakeAPI()
        entered: list[anyio.Event] = []

        async def on_token(n: int, request: httpx.Request) -> httpx.Response:
            if n == 1:
                entered[0].set()
                await anyio.sleep_forever()
            return api.token_ok(n)

        api.on_token = on_token
        client = make_client(api)

        async def first_session() -> asyncio.Task[httpx.Response]:
            entered.append(anyio.Event())
            task = asyncio.get_running_loop().create_task(client.get("sync/sessions"))
            await entered[0].wait()
            return task

        loop = asyncio.new_event_loop()
        try:
            orphan = loop.run_until_complete(first_session())
        finally:
            loop.close()

        async def second_session() -> str | None:
            with anyio.fail_after(TIMEOUT):
                return await get_bearer(client)

        assert asyncio.run(second_session()) == "Bearer tok-2"
        assert anyio.run(second_session, backend="trio") == "Bearer tok-2"
        assert api.token_calls == 2
        assert not orphan.done()

    def test_one_client_on_asyncio_then_trio(self) -> None:
        api = FakeAPI()
        client = make_client(api)
        assert anyio.run(get_bearer, client, backend="asyncio") == "Bearer tok-1"
        assert anyio.run(get_bearer, client, backend="trio") == "Bearer tok-1"
        assert api.token_calls == 1
        anyio.run(client.aclose, backend="trio")


# ----------------------------------------------------------- origin and logging


class TestOrigin:
    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "url",
        [
            "https://elsewhere.example/v1/sync/sessions",
            "https://sub.api.pinkcloudsync.example/v1/sync/sessions",
            "https://api.pinkcloudsync.example.evil.example/v1/sync/sessions",
            "http://api.pinkcloudsync.example/v1/sync/sessions",
            "https://api.pinkcloudsync.example:8443/v1/sync/sessions",
        ],
    )
    async def test_no_bearer_and_no_token_request_for_another_origin(self, url: str) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.get(url)
        assert response.status_code == 200
        assert "authorization" not in response.request.headers
        assert api.token_calls == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "url",
        [
            "https://api.pinkcloudsync.example/v1/sync/sessions",
            "https://API.PinkCloudSync.example:443/v1/sync/sessions",
            "https://api.pinkcloudsync.example/other/path",
        ],
    )
    async def test_the_bearer_goes_to_the_base_urls_origin(self, url: str) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.get(url)
        assert bearer(response) == "Bearer tok-1"

    @pytest.mark.anyio
    async def test_a_redirect_to_another_origin_does_not_carry_the_bearer(self) -> None:
        seen: list[httpx.Request] = []
        api = FakeAPI()
        api.on_api = lambda request: httpx.Response(
            302, headers={"Location": "https://elsewhere.example/landing"}
        )

        async def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            if request.url.host == "elsewhere.example":
                return httpx.Response(200)
            return await api(request)

        with anyio.fail_after(TIMEOUT):
            async with make_client(handler, follow_redirects=True) as client:
                response = await client.get("sync/sessions")
        assert response.status_code == 200
        assert seen[-1].url.host == "elsewhere.example"
        assert "authorization" not in seen[-1].headers
        assert api.token_calls == 1


class TestLogging:
    @pytest.mark.anyio
    async def test_fetch_and_refresh_are_logged_at_debug_with_subject_and_lifetime(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger=LOGGER)
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = lambda n, request: httpx.Response(
            200, json=token_body(make_jwt(sub=f"user_{n}", lifetime=1800), expires_in=1800)
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock) as client:
                await client.get_token()
                clock.advance(1600)
                await client.get_token()
                await anyio.wait_all_tasks_blocked()
        debug = [
            r.getMessage()
            for r in caplog.records
            if r.name == LOGGER and r.levelno == logging.DEBUG
        ]
        assert any("user_1" in m and "1800" in m for m in debug), debug
        assert any("user_2" in m and "1800" in m for m in debug), debug


def test_the_clients_auth_is_a_pinkcloudsync_auth() -> None:
    client = make_client(FakeAPI())
    assert isinstance(client.auth, PinkCloudSyncAuth)
    assert isinstance(client.auth, httpx.Auth)


# ------------------------------------------- deadlines meet the token lifecycle


class TestDeadlinesMeetTheTokenLifecycle:
    """A request's own `timeout` against a shared token request (second reader's cases)."""

    @pytest.mark.anyio
    async def test_a_carried_early_refresh_cut_by_its_timeout_is_an_advisory_failure(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        clock = FakeClock()
        token_calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal token_calls
            if request.url.path.endswith("/auth/token"):
                token_calls += 1
                if token_calls == 1:
                    return httpx.Response(200, json=token_body("tok-1"))
                await anyio.sleep_forever()  # the refresh never answers
            return httpx.Response(200, json=SESSIONS)

        client = AsyncPinkCloudSyncClient(
            API_KEY, API_SECRET, transport=httpx.MockTransport(handler), _clock=clock
        )
        with anyio.fail_after(TIMEOUT):
            assert (await client.get("sync/sessions")).status_code == 200
            clock.now += 3600 - 200  # due, and still valid for 200 s
            with caplog.at_level(logging.WARNING, logger=LOGGER):
                statuses = [
                    (await client.get("sync/sessions", timeout=0.2)).status_code for _ in range(3)
                ]
        # The carrier's cut-short refresh keeps the old token and backs off: no request
        # fails while a valid token is held, and nobody carries it again at once.
        assert statuses == [200, 200, 200]
        assert token_calls == 2
        assert client.auth.tokens.lifecycle.failed_refreshes == 1
        assert any(r.levelno == logging.WARNING for r in caplog.records)

    @pytest.mark.anyio
    async def test_the_leaders_timeout_is_shared_not_handed_on(self) -> None:
        token_calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal token_calls
            if request.url.path.endswith("/auth/token"):
                token_calls += 1
                await anyio.sleep_forever()  # a black hole
            return httpx.Response(200, json=SESSIONS)

        client = AsyncPinkCloudSyncClient(
            API_KEY, API_SECRET, transport=httpx.MockTransport(handler)
        )
        outcomes: list[str] = []

        async def job(budget: float) -> None:
            try:
                await client.get("sync/sessions", timeout=budget)
            except RequestTimeoutError:
                outcomes.append("timeout")

        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(50):  # each waiter has more budget than the one before
                    tg.start_soon(job, 0.2 + i * 0.01)
        # One token request: when its leader's budget ran out, the waiters got that
        # outcome instead of re-sending the token request one after another.
        assert token_calls == 1
        assert outcomes == ["timeout"] * 50

    @pytest.mark.parametrize(("token_cost", "api_cost"), [(0.6, 0.0), (0.2, 0.3)])
    @pytest.mark.anyio
    async def test_the_budget_spans_the_token_wait_and_the_401_replay(
        self, token_cost: float, api_cost: float
    ) -> None:
        clock = FakeClock()
        seen_read_timeouts: list[float] = []
        refuse_first = api_cost > 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal refuse_first
            if request.url.path.endswith("/auth/token"):
                clock.now += token_cost
                return httpx.Response(200, json=token_body(make_jwt()))
            seen_read_timeouts.append(request.extensions["timeout"]["read"])
            clock.now += api_cost
            if refuse_first:
                refuse_first = False
                return httpx.Response(401, json={"error": "invalid_token", "message": "x"})
            return httpx.Response(200, json=SESSIONS)

        client = AsyncPinkCloudSyncClient(
            API_KEY, API_SECRET, transport=httpx.MockTransport(handler), _clock=clock
        )
        request = client.build_request("GET", "sync/sessions", timeout=1.0)
        with anyio.fail_after(TIMEOUT):
            response = await client.send(request)
        assert response.status_code == 200
        # Each attempt got only what was left of the 1 s: after a 0.6 s token wait,
        # 0.4 s; the replay after token 0.2 + refused call 0.3 + token 0.2, 0.3 s.
        spent_before_each = (
            [token_cost] if api_cost == 0 else [token_cost, 2 * token_cost + api_cost]
        )
        assert seen_read_timeouts == pytest.approx([1.0 - s for s in spent_before_each])
        # ... and the request is handed back as it came, ready to be sent again.
        assert request.extensions["timeout"]["read"] == 1.0
        assert "pinkcloudsync.deadline" not in request.extensions

    @pytest.mark.anyio
    async def test_a_token_wait_that_spends_the_whole_budget_sends_nothing(self) -> None:
        clock = FakeClock()
        api_calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal api_calls
            if request.url.path.endswith("/auth/token"):
                clock.now += 1.5
                return httpx.Response(200, json=token_body(make_jwt()))
            api_calls += 1
            return httpx.Response(200, json=SESSIONS)

        client = AsyncPinkCloudSyncClient(
            API_KEY, API_SECRET, transport=httpx.MockTransport(handler), _clock=clock
        )
        with anyio.fail_after(TIMEOUT), pytest.raises(RequestTimeoutError):
            await client.get("sync/sessions", timeout=1.0)
        assert api_calls == 0

    def test_the_sync_twin_keeps_the_same_budget(self) -> None:
        from pinkcloudsync_async import PinkCloudSyncClient

        clock = FakeClock()
        seen_read_timeouts: list[float] = []

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/auth/token"):
                clock.now += 0.6
                return httpx.Response(200, json=token_body(make_jwt()))
            seen_read_timeouts.append(request.extensions["timeout"]["read"])
            return httpx.Response(200, json=SESSIONS)

        with PinkCloudSyncClient(
            API_KEY, API_SECRET, transport=httpx.MockTransport(handler), _clock=clock
        ) as client:
            assert client.get("sync/sessions", timeout=1.0).status_code == 200
            clock.now += 4000  # expired: the next token wait spends the whole budget
            clock_before = clock.now
            with pytest.raises(RequestTimeoutError):
                client.get("sync/sessions", timeout=0.5)
        assert seen_read_timeouts == pytest.approx([0.4])
        assert clock.now == pytest.approx(clock_before + 0.6)


# ------------------------------------------------------------ the origin check


class TestOriginCheck:
    """The bearer goes to the API's own origin only, as httpx's public URL reads it."""

    @pytest.mark.parametrize(
        ("base", "url", "for_api"),
        [
            ("https://api.example/v1", "https://api.example/v1/x", True),
            ("https://api.example/v1", "https://API.EXAMPLE:443/other", True),
            ("https://api.example/v1", "https://api.example:8443/v1/x", False),
            ("https://api.example/v1", "http://api.example/v1/x", False),
            ("https://api.example/v1", "https://api.example.evil/v1", False),
            ("https://bücher.example/v1", "https://xn--bcher-kva.example/v1/x", True),
            ("http://127.0.0.1:8787/v1", "http://127.0.0.1:8787/v1/x", True),
            ("http://127.0.0.1:8787/v1", "http://127.0.0.1:8788/v1/x", False),
        ],
    )
    def test_the_origin_check_matches_the_public_properties(
        self, base: str, url: str, for_api: bool
    ) -> None:
        auth = AsyncPinkCloudSyncClient(API_KEY, API_SECRET, base_url=base).auth
        request = httpx.Request("GET", url)
        assert auth.is_for_api(request) is for_api
        public = (request.url.scheme, request.url.host, request.url.port)
        assert for_api is (public == auth.origin)
