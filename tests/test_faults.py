"""Faults from the field (issue 12): hostile servers get typed errors, on both twins.

Each section is one kind of fault: numbers out of range, bodies that break the
parser, raw httpx errors escaping typed calls, a token that is no legal header
value, a 401 from another origin, and the places where the client must behave as
httpx does. Every input listed in the issue is a row here, with variants beside it.
The secret and token checks are in test_secrets_reachable.py; the time budget over
real sockets in test_deadline_body.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import twins
from fakes import BASE_URL, HTTPX_TRIO_DECODING_WARNINGS, TOKEN_URL, make_jwt
from twins import SESSIONS, Server, Twin, fail, reply, token_reply

from pinkcloudsync_async import (
    APIConnectionError,
    BadRequestError,
    ConfigurationError,
    InvalidResponseError,
    PinkCloudSyncError,
    RequestTimeoutError,
    ServerError,
    raise_for_api_error,
)
from pinkcloudsync_async._retry_policy import IDEMPOTENT_METHODS

twin = twins.twin
anyio_backend = twins.anyio_backend

pytestmark = [
    pytest.mark.anyio,
    *(pytest.mark.filterwarnings(w) for w in HTTPX_TRIO_DECODING_WARNINGS),
]

DEEP = b"[" * 100_000
OTHER = "https://other.example"


def raw_reply(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    """A reply with this exact body (numbers httpx's json= could not write)."""
    return reply(
        status, content=body, headers={"content-type": "application/json", **(headers or {})}
    )


def token_bytes(expires_in: bytes = b"3600", token: str | None = None) -> bytes:
    raw = token if token is not None else make_jwt()
    return b'{"access_token": "%s", "token_type": "Bearer", "expires_in": %s}' % (
        raw.encode(),
        expires_in,
    )


def jwt_with_payload(payload: bytes) -> str:
    """An unsigned-looking JWT whose payload segment is exactly `payload`."""

    def segment(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = segment(b'{"alg": "HS256", "typ": "JWT"}')
    return f"{header}.{segment(payload)}.{segment(b'sig')}"


async def assert_only_typed(twin: Twin, client: Any, name: str, cls: type[Exception]) -> Exception:
    outcome = await twin.outcome(client, name)
    assert isinstance(outcome, cls), repr(outcome)
    assert isinstance(outcome, PinkCloudSyncError)
    return outcome


# -------------------------------------------------------- 1. numbers out of range


@pytest.mark.parametrize(
    "expires_in",
    [
        pytest.param(b"1" + b"0" * 400, id="1e400-as-an-integer"),
        pytest.param(str(2**63).encode(), id="2**63"),
        pytest.param(b"315360001", id="just-over-ten-years"),
    ],
)
async def test_an_expires_in_out_of_range_is_an_invalid_response(
    twin: Twin, expires_in: bytes
) -> None:
    server = Server(token=[raw_reply(token_bytes(expires_in))])
    async with twin.client(server) as client:
        error = await assert_only_typed(twin, client, "get_token", InvalidResponseError)
        await assert_only_typed(twin, client, "list_sessions", InvalidResponseError)
    assert "expires_in" in str(error)


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iat": 10**400}, id="iat-10**400"),
        pytest.param({"exp": 10**400}, id="exp-10**400"),
        pytest.param({"iat": -(10**400), "exp": 10**400}, id="both-huge"),
        pytest.param({"iat": -1e308, "exp": 1e308}, id="floats-whose-difference-overflows"),
        pytest.param({"iat": 1e300, "exp": 1e300 + 600}, id="a-date-after-year-9999"),
    ],
)
async def test_a_claim_date_out_of_range_is_ignored(twin: Twin, claims: dict[str, Any]) -> None:
    payload = json.dumps({"sub": "user_123", **claims}).encode()
    server = Server(token=[token_reply(jwt_with_payload(payload), expires_in=3600)])
    async with twin.client(server) as client:
        token = await twin.do(client, "get_token")
    assert token.lifetime == 3600.0
    assert token.claims.sub == "user_123"
    assert token.claims.iat is None
    assert token.claims.exp is None


@pytest.mark.parametrize(
    "timeout", [10**400, httpx.Timeout(5.0, connect=10**400), -1, "soon"], ids=repr
)
def test_a_timeout_out_of_range_is_a_configuration_error(twin: Twin, timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        twin.make_client(Server(), timeout=timeout)


async def test_a_request_timeout_out_of_range_means_no_bound(twin: Twin) -> None:
    async with twin.client(Server(), timeout=5.0) as client:
        response = await twin.request(client, "GET", "sync/sessions", timeout=10**400)
    assert response.status_code == 200


# ------------------------------------------------------ 2. bodies that break the parser


@pytest.mark.parametrize(
    "body", [pytest.param(DEEP, id="100k-brackets"), pytest.param(b'{"a":' * 50_000, id="objects")]
)
async def test_a_deep_token_response_is_an_invalid_response(twin: Twin, body: bytes) -> None:
    async with twin.client(Server(token=[raw_reply(body)])) as client:
        await assert_only_typed(twin, client, "get_token", InvalidResponseError)


@pytest.mark.parametrize(
    ("status", "cls"), [(400, BadRequestError), (401, PinkCloudSyncError), (503, ServerError)]
)
@pytest.mark.parametrize("body", [DEEP, b'{"error": ' * 50_000])
def test_raise_for_api_error_on_a_deep_body(status: int, cls: type[Exception], body: bytes) -> None:
    response = httpx.Response(status, content=body, headers={"content-type": "application/json"})
    with pytest.raises(cls) as caught:
        raise_for_api_error(response)
    assert caught.value.error == f"http_{status}"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "cls"), [(200, InvalidResponseError), (503, ServerError), (400, BadRequestError)]
)
async def test_a_deep_sessions_response_is_typed(
    twin: Twin, status: int, cls: type[Exception]
) -> None:
    server = Server(api=[raw_reply(DEEP, status=status)])
    async with twin.client(server, max_retries=0) as client:
        await assert_only_typed(twin, client, "list_sessions", cls)


async def test_a_jwt_whose_payload_is_deep_still_serves(twin: Twin) -> None:
    token = jwt_with_payload(DEEP)
    async with twin.client(Server(token=[token_reply(token)])) as client:
        got = await twin.do(client, "get_token")
        sessions = await twin.do(client, "list_sessions")
    assert got.claims.sub is None
    assert len(sessions.sessions) == 2


# ------------------------------------------------ 3. raw httpx errors from typed calls

NOT_GZIP = {"content-encoding": "gzip"}


async def test_a_token_response_that_is_not_the_gzip_it_claims(twin: Twin) -> None:
    server = Server(token=[raw_reply(token_bytes(), headers=NOT_GZIP)])
    async with twin.client(server) as client:
        await assert_only_typed(twin, client, "get_token", InvalidResponseError)
        # A raw call's token trouble is typed too: there is no response to return.
        with pytest.raises(InvalidResponseError):
            await twin.request(client, "GET", "sync/sessions")


async def test_a_token_response_really_gzipped_is_read(twin: Twin) -> None:
    server = Server(token=[raw_reply(gzip.compress(token_bytes()), headers=NOT_GZIP)])
    async with twin.client(server) as client:
        assert (await twin.do(client, "get_token")).lifetime == 3600.0


@pytest.mark.parametrize(
    ("api", "cls"),
    [
        pytest.param(fail(httpx.ConnectError), APIConnectionError, id="refused"),
        pytest.param(fail(httpx.ReadTimeout), RequestTimeoutError, id="read-timeout"),
        pytest.param(fail(httpx.RemoteProtocolError), APIConnectionError, id="protocol"),
        pytest.param(
            raw_reply(json.dumps(SESSIONS).encode(), headers=NOT_GZIP),
            InvalidResponseError,
            id="not-gzip",
        ),
    ],
)
async def test_list_sessions_raises_only_typed_errors(
    twin: Twin, api: Any, cls: type[Exception]
) -> None:
    async with twin.client(Server(api=[api]), max_retries=0) as client:
        error = await assert_only_typed(twin, client, "list_sessions", cls)
    if cls is RequestTimeoutError:
        assert isinstance(error, httpx.TimeoutException)
    if cls is APIConnectionError:
        assert isinstance(error, httpx.TransportError)


async def test_list_sessions_redirected_in_a_loop_is_an_invalid_response(twin: Twin) -> None:
    loop = reply(302, headers={"location": f"{BASE_URL}/sync/sessions"})
    async with twin.client(Server(api=[loop]), follow_redirects=True, max_redirects=3) as client:
        await assert_only_typed(twin, client, "list_sessions", InvalidResponseError)


# ------------------------------------------------- 5. a token that is no header value


@pytest.mark.parametrize(
    "suffix",
    [
        pytest.param(" ", id="trailing-space"),
        pytest.param("\r\nX-Evil: 1", id="crlf"),
        pytest.param("\x00", id="nul"),
        pytest.param("\u00e9", id="non-ascii"),
        pytest.param(" inner", id="inner-space"),
        pytest.param("\t", id="tab"),
        pytest.param("\x7f", id="del"),
    ],
)
async def test_a_token_that_is_no_header_value_is_refused(twin: Twin, suffix: str) -> None:
    token = make_jwt(jti="bad-header-token-never-shown") + suffix
    async with twin.client(Server(token=[token_reply(token)])) as client:
        error = await assert_only_typed(twin, client, "get_token", InvalidResponseError)
        raw_error = await twin.outcome(client, "request", "GET", "sync/sessions")
    assert isinstance(raw_error, InvalidResponseError)
    for text in (str(error), repr(error), str(raw_error)):
        assert token.strip() not in text
        assert "access_token" in text


# --------------------------------------------------- 8. a 401 from another origin


@pytest.mark.parametrize(
    "elsewhere", [f"{OTHER}/login", "https://api.pinkcloudsync.example:8443/x"]
)
async def test_a_401_from_another_origin_keeps_the_token(twin: Twin, elsewhere: str) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.host == "api.pinkcloudsync.example" and request.url.port is None:
            return httpx.Response(302, headers={"location": elsewhere})
        return httpx.Response(401, json={"error": "nope", "message": "not yours"})

    server = Server(api=[api])
    async with twin.client(server, follow_redirects=True) as client:
        for _ in range(10):
            response = await twin.request(client, "GET", "sync/sessions")
            assert response.status_code == 401
    assert len(server.token_requests) == 1
    ours = [r for r in server.api_requests if r.url.host == "api.pinkcloudsync.example"]
    assert len([r for r in ours if r.url.port is None]) == 10


# ------------------------------------------- 12. behave as httpx outside the API


async def test_url_credentials_are_basic_auth_for_another_origin(twin: Twin) -> None:
    server = Server()
    async with twin.client(server) as client:
        await twin.request(client, "GET", "https://user:pa%20ss@other.example/x")
        await twin.request(client, "GET", "https://user:pass@api.pinkcloudsync.example/v1/x")
    other, ours = server.api_requests
    assert other.headers["authorization"] == httpx.BasicAuth("user", "pa ss")._auth_header
    assert ours.headers["authorization"].startswith("Bearer ")
    assert len(server.token_requests) == 1


async def test_no_url_credentials_no_authorization_for_another_origin(twin: Twin) -> None:
    server = Server()
    async with twin.client(server) as client:
        await twin.request(client, "GET", f"{OTHER}/x")
    assert "authorization" not in server.api_requests[0].headers
    assert server.token_requests == []


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(reply(503), id="503"),
        pytest.param(reply(429, headers={"retry-after": "1"}), id="429"),
    ],
)
async def test_another_origin_gets_no_retries(twin: Twin, answer: Any) -> None:
    server = Server(api=[answer])
    async with twin.client(server) as client:
        response = await twin.request(client, "GET", f"{OTHER}/x")
    assert response.status_code in (503, 429)
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_another_origin_transport_error_is_httpx_own(twin: Twin) -> None:
    server = Server(api=[fail(httpx.ConnectError)])
    async with twin.client(server) as client:
        error = await twin.outcome(client, "request", "GET", f"{OTHER}/x")
    assert type(error) is httpx.ConnectError
    assert not getattr(error, "__notes__", [])
    assert len(server.api_requests) == 1


@pytest.mark.parametrize(("method", "headers"), [("GET", {}), ("POST", {"Idempotency-Key": "k1"})])
async def test_an_invalid_redirect_location_is_never_retried(
    twin: Twin, method: str, headers: dict[str, str]
) -> None:
    server = Server(api=[reply(302, headers={"location": "http://[::1/"})])
    async with twin.client(server, follow_redirects=True) as client:
        error = await twin.outcome(client, "request", method, "sync/sessions", headers=headers)
    assert isinstance(error, httpx.RemoteProtocolError)
    assert len(server.api_requests) == 1
    assert twin.sleeps == []


async def test_a_lost_connection_is_still_retried(twin: Twin) -> None:
    server = Server(api=[fail(httpx.RemoteProtocolError), reply(200, json=SESSIONS)])
    async with twin.client(server) as client:
        response = await twin.request(client, "GET", "sync/sessions")
    assert response.status_code == 200
    assert len(server.api_requests) == 2


@pytest.mark.parametrize(
    "new", [f"{OTHER}/v1/", "https://api.pinkcloudsync.example/v2/", "http://127.0.0.1:1/v1"]
)
async def test_base_url_is_fixed_after_construction(twin: Twin, new: str) -> None:
    server = Server()
    async with twin.client(server) as client:
        with pytest.raises(PinkCloudSyncError, match="base_url"):
            client.base_url = new
        client.base_url = BASE_URL  # the same origin and path: nothing moves
        await twin.request(client, "GET", "sync/sessions")
    assert str(client.base_url) == f"{BASE_URL}/"
    assert server.api_requests[0].headers["authorization"].startswith("Bearer ")
    assert str(server.token_requests[0].url) == TOKEN_URL


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS"])
async def test_trace_and_options_are_idempotent(twin: Twin, method: str) -> None:
    server = Server(api=[reply(503), reply(200)])
    async with twin.client(server) as client:
        response = await twin.request(client, method, "sync/sessions")
    assert response.status_code == 200
    assert len(server.api_requests) == 2


def test_the_readme_lists_the_idempotent_methods_the_code_uses() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    match = re.search(r"idempotent methods \(([A-Z, ]+)\)", readme)
    assert match is not None
    assert set(match.group(1).split(", ")) == IDEMPOTENT_METHODS
