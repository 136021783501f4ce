"""Secrets never leak: not in a repr or str, not in an exception, not in any log record.

"Secrets" are the API secret and every access token the client ever held. The log
checks capture the root logger at DEBUG, so they see our logger, httpx's and
httpcore's (the last one over a real loopback HTTP connection, since a mock
transport bypasses httpcore). Error paths are covered too: a token endpoint that
echoes the secret, payloads whose `access_token` is present but wrong elsewhere,
and early refreshes that fail.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import httpx
import pytest
from fakes import (
    API_KEY,
    API_SECRET,
    BASE_URL,
    T0,
    FakeClock,
    invalid_token_payloads,
    make_client,
    make_jwt,
    not_a_payload_bodies,
    token_body,
)
from pydantic import SecretStr

from pinkcloudsync_async import (
    APIError,
    AsyncPinkCloudSyncClient,
    AuthenticationError,
    ConfigurationError,
    InvalidResponseError,
    PinkCloudSyncError,
    TokenResponse,
    raise_for_api_error,
)

LOGGER = "pinkcloudsync_async"
TIMEOUT = 10


def issued_token(n: int) -> str:
    """A distinctive JWT: long enough that finding it in a text is never a coincidence."""
    return make_jwt(sub=f"user_{n}", jti=f"secret-jti-{n}-never-printed")


class FakeAPI:
    """Numbered JWT tokens; `on_token` / `on_api` may override the replies."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.token_calls = 0
        self.on_token: Callable[[int], httpx.Response] | None = None
        self.on_api: Callable[[httpx.Request], httpx.Response] | None = None

    def token_ok(self, n: int) -> httpx.Response:
        raw = issued_token(n)
        self.issued.append(raw)
        return httpx.Response(200, json=token_body(raw))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            self.token_calls += 1
            if self.on_token is not None:
                return self.on_token(self.token_calls)
            return self.token_ok(self.token_calls)
        if self.on_api is not None:
            return self.on_api(request)
        return httpx.Response(200, json={"sessions": []})

    @property
    def secrets(self) -> list[str]:
        return [API_SECRET, *self.issued]


async def no_sleep(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def assert_no_secret(texts: Iterable[str], secrets: Iterable[str]) -> None:
    secrets = [s for s in secrets if s]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:300]!r}"


def exception_texts(error: BaseException) -> list[str]:
    """Everything a user or an error tracker would print for this exception."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    texts += [str(arg) for arg in error.args]
    for attribute in ("message", "error"):
        value = getattr(error, attribute, None)
        if isinstance(value, str):
            texts.append(value)
    response = getattr(error, "response", None)
    if response is not None:
        texts += [repr(response), repr(response.request)]
    return texts


def log_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    texts = [caplog.text]
    for record in caplog.records:
        texts += [record.getMessage(), repr(record.args), formatter.format(record)]
    return texts


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger at every level (ours, httpx's, httpcore's...)."""
    caplog.set_level(logging.DEBUG)
    for name in (LOGGER, "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# ------------------------------------------------------------------- repr and str


class TestReprAndStr:
    @pytest.mark.anyio
    async def test_client_auth_and_token_never_show_secrets(self) -> None:
        api = FakeAPI()
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.get("sync/sessions")
                token = await client.get_token()
        auth = client.auth
        objects: list[Any] = [
            client,
            auth,
            token,
            token.access_token,
            token.authorization,
            token.claims,
            response.request,
            response.request.headers,
        ]
        texts = [f(o) for o in objects for f in (repr, str)]
        texts += [str(token.model_dump()), token.model_dump_json(), str(vars(token))]
        assert_no_secret(texts, api.secrets)
        assert len(api.issued) == 1

    def test_token_response_never_shows_the_token(self) -> None:
        raw = issued_token(1)
        payload = TokenResponse.model_validate(token_body(raw))
        texts = [repr(payload), str(payload), str(payload.model_dump()), payload.model_dump_json()]
        assert_no_secret(texts, [raw])

    def test_a_secret_given_as_secret_str_stays_hidden(self) -> None:
        client = AsyncPinkCloudSyncClient(
            API_KEY,
            SecretStr(API_SECRET),
            base_url=BASE_URL,
            transport=httpx.MockTransport(FakeAPI()),
        )
        assert_no_secret(
            [repr(client), str(client), repr(client.auth), str(client.auth)], [API_SECRET]
        )

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"api_key": API_KEY, "api_secret": API_SECRET, "base_url": "http://remote.example"},
            {"api_key": API_KEY, "api_secret": API_SECRET, "base_url": "ftp://x.example"},
            {"api_key": API_KEY, "api_secret": API_SECRET, "refresh_margin": -1},
            {"api_key": API_KEY, "api_secret": API_SECRET, "max_retries": -1},
            {"api_secret": API_SECRET},
            {"api_key": API_KEY, "api_secret": API_SECRET, "auth": ("u", API_SECRET)},
        ],
    )
    def test_configuration_errors_never_show_the_secret(
        self, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in ("PINKCLOUDSYNC_API_KEY", "PINKCLOUDSYNC_API_SECRET", "PINKCLOUDSYNC_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ConfigurationError) as caught:
            AsyncPinkCloudSyncClient(**kwargs)
        assert_no_secret(exception_texts(caught.value), [API_SECRET])


# --------------------------------------------------------- token endpoint errors

ECHOING_ERRORS = {
    "message-echoes-secret": lambda: httpx.Response(
        401,
        json={"error": "invalid_credentials", "message": f"Invalid API secret {API_SECRET!r}"},
    ),
    "code-echoes-secret": lambda: httpx.Response(
        401, json={"error": f"bad_secret_{API_SECRET}", "message": "Invalid API key or secret"}
    ),
    "extra-field-echoes-body": lambda: httpx.Response(
        401,
        json={
            "error": "invalid_credentials",
            "message": "Invalid API key or secret",
            "received": {"api_key": API_KEY, "api_secret": API_SECRET},
        },
    ),
    "text-body-echoes-secret": lambda: httpx.Response(
        401, text=f"denied for api_secret={API_SECRET}", headers={"content-type": "text/plain"}
    ),
    "html-echoes-secret": lambda: httpx.Response(
        500, text=f"<html><pre>{API_SECRET}</pre></html>", headers={"content-type": "text/html"}
    ),
    "json-without-error-shape": lambda: httpx.Response(
        401, json={"detail": f"secret {API_SECRET} rejected"}
    ),
    "only-message-echoes": lambda: httpx.Response(403, json={"message": API_SECRET}),
}


class TestTokenEndpointErrors:
    @pytest.mark.anyio
    @pytest.mark.parametrize("reply", ECHOING_ERRORS.values(), ids=ECHOING_ERRORS)
    async def test_an_error_echoing_the_secret_never_repeats_it(
        self, reply: Callable[[], httpx.Response], all_logs: pytest.LogCaptureFixture
    ) -> None:
        api = FakeAPI()
        api.on_token = lambda n: reply()
        errors: list[BaseException] = []

        async def one(client: AsyncPinkCloudSyncClient) -> None:
            try:
                await client.get("sync/sessions")
            except PinkCloudSyncError as exc:
                errors.append(exc)

        with anyio.fail_after(TIMEOUT):
            async with make_client(api, max_retries=0) as client:
                async with anyio.create_task_group() as tg:
                    for _ in range(20):  # waiters get copies of the error: check them all
                        tg.start_soon(one, client)
                with pytest.raises(APIError) as via_get_token:
                    await client.get_token()
        errors.append(via_get_token.value)
        assert len(errors) == 21
        for error in errors:
            assert_no_secret(exception_texts(error), [API_SECRET])
        assert_no_secret(log_texts(all_logs), [API_SECRET])

    @pytest.mark.anyio
    async def test_the_error_code_and_message_are_kept_otherwise(self) -> None:
        api = FakeAPI()
        api.on_token = lambda n: httpx.Response(
            401, json={"error": "invalid_credentials", "message": "Invalid API key or secret"}
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(AuthenticationError) as caught:
                    await client.get_token()
        assert caught.value.error == "invalid_credentials"
        assert caught.value.message == "Invalid API key or secret"

    @pytest.mark.anyio
    async def test_a_transport_error_mentioning_the_secret_is_not_repeated(
        self, all_logs: pytest.LogCaptureFixture
    ) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError(f"could not send {request.content.decode()}")

        with anyio.fail_after(TIMEOUT):
            async with make_client(handler, max_retries=1, _sleep=no_sleep) as c:
                with pytest.raises(httpx.TransportError) as caught:
                    await c.get_token()
        assert isinstance(caught.value, PinkCloudSyncError)
        assert_no_secret([str(caught.value), repr(caught.value)], [API_SECRET])
        assert_no_secret(log_texts(all_logs), [API_SECRET])


# ----------------------------------------------------------------- invalid payloads

TOKEN = issued_token(99)

# The shared tables, around a JWT: long and distinctive, so any echo of it is found.
INVALID_WITH_TOKEN = {name: payload for name, (payload, _) in invalid_token_payloads(TOKEN).items()}
NOT_A_PAYLOAD = not_a_payload_bodies(TOKEN)


class TestInvalidPayloads:
    @pytest.mark.anyio
    @pytest.mark.parametrize("payload", INVALID_WITH_TOKEN.values(), ids=INVALID_WITH_TOKEN)
    async def test_an_invalid_payload_never_repeats_its_token(
        self, payload: dict[str, Any], all_logs: pytest.LogCaptureFixture
    ) -> None:
        api = FakeAPI()
        api.on_token = lambda n: httpx.Response(200, json=payload)
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(InvalidResponseError) as via_request:
                    await client.get("sync/sessions")
                with pytest.raises(InvalidResponseError) as via_get_token:
                    await client.get_token()
        for caught in (via_request, via_get_token):
            assert_no_secret(exception_texts(caught.value), [TOKEN, API_SECRET])
        assert_no_secret(log_texts(all_logs), [TOKEN, API_SECRET])

    @pytest.mark.anyio
    @pytest.mark.parametrize(("body", "content_type"), NOT_A_PAYLOAD.values(), ids=NOT_A_PAYLOAD)
    async def test_a_body_that_is_not_a_payload_never_repeats_the_token(
        self, body: bytes, content_type: str, all_logs: pytest.LogCaptureFixture
    ) -> None:
        api = FakeAPI()
        api.on_token = lambda n: httpx.Response(
            200, content=body, headers={"content-type": content_type}
        )
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(InvalidResponseError) as caught:
                    await client.get_token()
        assert_no_secret(exception_texts(caught.value), [TOKEN])
        assert_no_secret(log_texts(all_logs), [TOKEN])


# ------------------------------------------------------------ failing early refresh

REFRESH_FAILURES: dict[str, Callable[[FakeAPI], httpx.Response]] = {
    "401-echoing-secret-and-token": lambda api: httpx.Response(
        401,
        json={
            "error": "invalid_credentials",
            "message": f"secret {API_SECRET} / token {api.issued[0]} refused",
        },
    ),
    "500-html-echoing": lambda api: httpx.Response(
        500,
        text=f"<html>{API_SECRET} {api.issued[0]}</html>",
        headers={"content-type": "text/html"},
    ),
    "invalid-payload-with-new-token": lambda api: httpx.Response(
        200, json={"access_token": TOKEN, "token_type": "Bearer", "expires_in": "3600"}
    ),
    "403-code-echoing": lambda api: httpx.Response(
        403, json={"error": api.issued[0], "message": API_SECRET}
    ),
}


class TestFailingEarlyRefresh:
    @pytest.mark.anyio
    @pytest.mark.parametrize("background", [True, False], ids=["async-with", "plain"])
    @pytest.mark.parametrize("failure", REFRESH_FAILURES.values(), ids=REFRESH_FAILURES)
    async def test_the_warning_never_shows_secrets(
        self,
        failure: Callable[[FakeAPI], httpx.Response],
        background: bool,
        all_logs: pytest.LogCaptureFixture,
    ) -> None:
        clock = FakeClock()
        api = FakeAPI()
        api.on_token = lambda n: api.token_ok(n) if n == 1 else failure(api)
        client = make_client(api, _clock=clock, max_retries=0)
        with anyio.fail_after(TIMEOUT):
            if background:
                await client.__aenter__()
            try:
                await client.get("sync/sessions")
                clock.now = T0 + 3400  # due
                response = await client.get("sync/sessions")
                await anyio.wait_all_tasks_blocked()
            finally:
                if background:
                    await client.__aexit__(None, None, None)
                else:
                    await client.aclose()
        assert response.request.headers["authorization"] == f"Bearer {api.issued[0]}"
        assert api.token_calls == 2
        warnings = [
            r for r in all_logs.records if r.name == LOGGER and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1
        assert_no_secret(log_texts(all_logs), [*api.secrets, TOKEN])


# ------------------------------------------------------------- the whole lifecycle


class TestLogsOverTheLifecycle:
    @pytest.mark.anyio
    async def test_no_record_at_any_level_carries_a_secret(
        self, all_logs: pytest.LogCaptureFixture
    ) -> None:
        clock = FakeClock()
        api = FakeAPI()
        attempts = 0

        def on_api(request: httpx.Request) -> httpx.Response:
            nonlocal attempts
            attempts += 1
            if attempts == 2:
                return httpx.Response(401, json={"error": "invalid_token", "message": "revoked"})
            if attempts in (4, 5):
                return httpx.Response(503, headers={"Retry-After": "0"})
            return httpx.Response(200, json={"sessions": [{"id": "s"}]})

        api.on_api = on_api
        with anyio.fail_after(TIMEOUT):
            async with make_client(api, _clock=clock, _sleep=no_sleep) as client:
                await client.list_sessions()  # fetch
                await client.list_sessions()  # 401 -> refresh -> replay
                await client.list_sessions()  # 503, 503, 200 (retries)
                clock.now = T0 + 3400
                await client.list_sessions()  # early refresh in the background
                await anyio.wait_all_tasks_blocked()
                clock.now = T0 + 10_000
                await client.list_sessions()  # expired: a new fetch
                await client.get("https://elsewhere.example/x")  # another origin
        assert api.token_calls == 4
        names = {record.name for record in all_logs.records}
        assert LOGGER in names
        assert "httpx" in names
        assert_no_secret(log_texts(all_logs), api.secrets)


def echo_refused_token(request: httpx.Request) -> httpx.Response:
    """A server that repeats the bearer it refuses in its error message."""
    sent = request.headers["authorization"].removeprefix("Bearer ")
    status = 403 if request.method == "POST" else 401
    return httpx.Response(
        status, json={"error": "invalid_token", "message": f"token {sent} is not valid"}
    )


class TestApiCallErrors:
    """An API (not token endpoint) error echoing the bearer it refused: our typed error
    must not repeat the access token."""

    @pytest.mark.anyio
    async def test_list_sessions_error_never_repeats_the_access_token(self) -> None:
        api = FakeAPI()
        api.on_api = echo_refused_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                with pytest.raises(AuthenticationError) as caught:
                    await client.list_sessions()
        assert len(api.issued) == 2  # refused, refreshed, replayed, refused again
        assert caught.value.error == "invalid_token"
        assert_no_secret(exception_texts(caught.value), api.secrets)

    @pytest.mark.anyio
    async def test_raise_for_api_error_never_repeats_the_access_token(self) -> None:
        api = FakeAPI()
        api.on_api = echo_refused_token
        with anyio.fail_after(TIMEOUT):
            async with make_client(api) as client:
                response = await client.post("sync/sessions", json={})
        assert response.status_code == 403
        with pytest.raises(APIError) as caught:
            raise_for_api_error(response)
        assert_no_secret(exception_texts(caught.value), api.secrets)


# ------------------------------------------------- a real connection, with httpcore


class LoopbackAPI:
    """A minimal HTTP/1.1 server on 127.0.0.1, so httpcore (and its logging) is used."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.refused_first = False

    def reply(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        if path.endswith("/auth/token"):
            if json.loads(body) != {"api_key": API_KEY, "api_secret": API_SECRET}:
                return 401, {"error": "invalid_credentials", "message": "no"}
            raw = issued_token(len(self.issued) + 1)
            self.issued.append(raw)
            return 200, token_body(raw)
        if headers.get("authorization") != f"Bearer {self.issued[-1]}":
            return 401, {"error": "invalid_token", "message": "unknown token"}
        if not self.refused_first:  # revoke the first token once: a refresh and a replay
            self.refused_first = True
            return 401, {"error": "invalid_token", "message": "revoked"}
        return 200, {"sessions": [{"id": "s1"}]}

    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            buffer = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    request_line, *header_lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = request_line.split(" ", 2)
                    headers = {}
                    for line in header_lines:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                    length = int(headers.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    body, buffer = buffer[:length], buffer[length:]
                    status, payload = self.reply(method, target, headers, body)
                    data = json.dumps(payload).encode()
                    await stream.send(
                        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(data)}\r\n\r\n".encode()
                        + data
                    )
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return


class TestRealConnection:
    @pytest.mark.anyio
    async def test_httpx_and_httpcore_records_carry_no_secret(
        self, all_logs: pytest.LogCaptureFixture
    ) -> None:
        server = LoopbackAPI()
        with anyio.fail_after(TIMEOUT):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, server.handle)
                async with AsyncPinkCloudSyncClient(
                    API_KEY, API_SECRET, base_url=f"http://127.0.0.1:{port}/v1"
                ) as client:
                    sessions = await client.list_sessions()  # fetch, 401, refresh, replay
                    token = await client.get_token()
                tg.cancel_scope.cancel()
        assert [s.id for s in sessions.sessions] == ["s1"]
        assert len(server.issued) == 2
        assert token.access_token.get_secret_value() == server.issued[-1]
        names = {record.name.split(".")[0] for record in all_logs.records}
        assert {"httpcore", "httpx", LOGGER} <= names
        assert_no_secret(log_texts(all_logs), [API_SECRET, *server.issued])
