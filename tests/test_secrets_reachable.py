"""Secrets in every form, on every path, and nothing reachable from an error (issue 12).

Item 6: a secret echoed JSON-escaped, percent-encoded, in a reason phrase or a
content-type, is redacted in what we produce, library and CLI. Item 7: from an
error we raise, nothing holds the API secret or a token: not `exc.response.request`,
not `pickle.dumps(exc)`, not a traceback formatted with its frames' locals (what
error trackers capture), for token-endpoint errors, API errors and configuration
errors, on both twins.
"""

from __future__ import annotations

import json
import logging
import pickle
import traceback
import urllib.parse
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
import twins
from fakes import API_KEY, Exchange, LoopbackServer, assert_nowhere, make_jwt
from twins import Server, Twin, reply, token_reply

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    AuthenticationError,
    ConfigurationError,
    InvalidResponseError,
    PinkCloudSyncClient,
    PinkCloudSyncError,
)
from pinkcloudsync_async.cli import main

twin = twins.twin
anyio_backend = twins.anyio_backend

# Quotes, backslashes and non-ASCII: JSON escapes them, URLs percent-encode them.
SECRET = 'sk_test_"quoted\\back\u00e9slash_SECRET'
ASCII_SECRET = 'sk_test_"quoted\\backslash_SECRET'  # fits a reason phrase
TOKEN = make_jwt(jti='tok"en\\with-quotes-never-shown')


def reachable_texts(error: BaseException) -> list[str | bytes]:
    """What a user, a log, a pickle or an error tracker gets from an error."""
    texts: list[str | bytes] = [
        str(error),
        repr(error),
        "".join(traceback.format_exception(error)),
        "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format()),
        pickle.dumps(error),
    ]
    for attribute in ("response", "request"):
        try:
            value = getattr(error, attribute, None)
        except RuntimeError:  # an httpx error without a request
            continue
        if isinstance(value, httpx.Response):
            texts += [value.content, str(value.headers), value.reason_phrase, pickle.dumps(value)]
            value = value.request
        if isinstance(value, httpx.Request):
            texts += [value.content, str(value.headers), str(value.url), pickle.dumps(value)]
    return texts


def secret_client(twin: Twin, server: Any, secret: str = SECRET) -> Any:
    """`twin.client` with a quoting, non-ASCII API secret, and no retries."""
    return twin.client(server, api_secret=secret, max_retries=0)


def echo_body(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """A token endpoint that puts the raw request body in its message (escaped)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, json={"error": "invalid_credentials", "message": request.content.decode()}
        )

    return answer


# ------------------------------------------------------------- 6. every form, every path


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 503])
async def test_a_secret_echoed_json_escaped_is_redacted(twin: Twin, status: int) -> None:
    async with secret_client(twin, Server(token=[echo_body(status)])) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, PinkCloudSyncError)
    assert "[redacted]" in str(error)
    assert API_KEY in str(error)  # the rest of the echo is kept
    assert_nowhere(reachable_texts(error), SECRET)


@pytest.mark.anyio
async def test_a_secret_echoed_percent_encoded_is_redacted(twin: Twin) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        query = urllib.parse.urlencode(json.loads(request.content))
        return httpx.Response(401, json={"error": "bad", "message": f"rejected {query}"})

    async with secret_client(twin, Server(token=[answer])) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, AuthenticationError)
    assert_nowhere(reachable_texts(error), SECRET)


def reason(phrase: str, status: int = 302, **kwargs: Any) -> Callable[..., httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, extensions={"reason_phrase": phrase.encode()}, **kwargs)

    return answer


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(reason(ASCII_SECRET), id="302-reason-phrase"),
        pytest.param(reason(ASCII_SECRET, 201), id="201-reason-phrase"),
        pytest.param(reason(ASCII_SECRET, 401), id="401-reason-phrase"),
        pytest.param(
            reply(200, content=b"<html/>", headers={"content-type": ASCII_SECRET}),
            id="200-content-type",
        ),
        pytest.param(
            reply(502, content=b"<html/>", headers={"content-type": ASCII_SECRET}),
            id="502-content-type",
        ),
    ],
)
async def test_a_secret_in_a_reason_phrase_or_content_type_is_redacted(
    twin: Twin, answer: Any
) -> None:
    async with secret_client(twin, Server(token=[answer]), ASCII_SECRET) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, PinkCloudSyncError)
    assert_nowhere(reachable_texts(error), ASCII_SECRET)


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["content-type", "reason"])
async def test_a_token_echoed_by_the_sessions_response_is_redacted(twin: Twin, where: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        bearer = request.headers["authorization"].removeprefix("Bearer ")
        if where == "reason":
            return httpx.Response(
                200, content=b"<html/>", extensions={"reason_phrase": bearer.encode()}
            )
        return httpx.Response(200, content=b"<html/>", headers={"content-type": bearer})

    async with twin.client(Server(token=[token_reply(TOKEN)], api=[answer])) as client:
        error = await twin.outcome(client, "list_sessions")
    assert isinstance(error, InvalidResponseError)
    assert_nowhere(reachable_texts(error), TOKEN)


def test_the_cli_never_prints_an_escaped_secret_or_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def respond(exchange: Exchange) -> None:
        if exchange.path.endswith("/auth/token"):
            body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600}
            exchange.answer(200, json.dumps(body).encode())
            return
        echo = {"you_sent": exchange.headers["authorization"], "note": f"secret {SECRET}"}
        exchange.answer(
            200, json.dumps(echo).encode(), headers={"content-type": "application/json"}
        )

    with LoopbackServer(respond) as server:
        flags = ["--base-url", server.base_url, "--api-key", API_KEY, f"--api-secret={SECRET}"]
        status = main(["request", "GET", "echo", *flags])
    out, err = capsys.readouterr()
    assert status == 0
    assert "[redacted]" in out
    assert_nowhere([out, err], SECRET, TOKEN)


# -------------------------------------------------- 7. nothing reachable from an error


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(echo_body(401), id="401"),
        pytest.param(reply(200, json={"access_token": TOKEN, "token_type": TOKEN}), id="invalid"),
        pytest.param(reply(200, content=b"[" * 100_000), id="deep"),
    ],
)
async def test_a_token_endpoint_error_holds_no_secret(twin: Twin, answer: Any) -> None:
    async with secret_client(twin, Server(token=[answer])) as client:
        error = await twin.outcome(client, "get_token")
        raw = await twin.outcome(client, "request", "GET", "sync/sessions")
    for caught in (error, raw):
        assert isinstance(caught, PinkCloudSyncError)
        assert caught.response.request.content == b""  # type: ignore[attr-defined]
        assert_nowhere(reachable_texts(caught), SECRET, TOKEN)


@pytest.mark.anyio
@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectError])
async def test_a_token_request_without_answer_holds_no_secret(
    twin: Twin, exc_type: type[httpx.TransportError]
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed sending {request.content.decode()}", request=request)

    async with secret_client(twin, Server(token=[answer])) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, PinkCloudSyncError)
    assert isinstance(error, httpx.TransportError)
    assert error.request.content == b""
    assert error.__cause__ is None
    assert error.__context__ is None  # httpx's error, whose request has the body, is not kept
    assert_nowhere(reachable_texts(error), SECRET)


@pytest.mark.anyio
async def test_an_api_error_holds_no_bearer_token(twin: Twin) -> None:
    refused = reply(401, json={"error": "invalid_token", "message": "Token expired"})
    server = Server(token=[token_reply(TOKEN)], api=[refused])
    async with twin.client(server) as client:
        error = await twin.outcome(client, "list_sessions")
    assert isinstance(error, AuthenticationError)
    assert error.response is not None
    assert error.response.request.headers["authorization"] == "[redacted]"
    assert_nowhere(reachable_texts(error), TOKEN)


@pytest.mark.anyio
async def test_an_api_call_without_answer_holds_no_bearer_token(twin: Twin) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['authorization']}", request=request)

    server = Server(token=[token_reply(TOKEN)], api=[down])
    async with twin.client(server, max_retries=0) as client:
        error = await twin.outcome(client, "list_sessions")
    assert isinstance(error, PinkCloudSyncError)
    assert_nowhere(reachable_texts(error), TOKEN)


@pytest.mark.parametrize("cls", [AsyncPinkCloudSyncClient, PinkCloudSyncClient])
@pytest.mark.parametrize(
    "kwargs",
    [{"base_url": "ftp://example.com"}, {"base_url": "http://example.com"}, {"max_retries": -1}],
)
def test_a_configuration_error_holds_no_secret(cls: type, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _build(cls, kwargs)
    assert_nowhere(reachable_texts(caught.value), SECRET)


def _build(cls: type, kwargs: dict[str, Any]) -> Any:
    # The error's traceback starts in the test's frames, which hold no secret locally.
    return cls(API_KEY, SECRET, **kwargs)


@pytest.mark.parametrize("cls", [AsyncPinkCloudSyncClient, PinkCloudSyncClient])
def test_httpx_and_httpcore_records_never_show_an_echoed_secret(
    cls: type, caplog: pytest.LogCaptureFixture
) -> None:
    # Over a real socket, so that httpcore logs the response headers it received.
    def respond(exchange: Exchange) -> None:
        echo = {"x-echo": ASCII_SECRET, "content-type": "text/plain"}
        exchange.answer(502, b"bad gateway", headers=echo)

    caplog.set_level(logging.DEBUG)
    with LoopbackServer(respond) as server:
        client = cls(API_KEY, ASCII_SECRET, base_url=server.base_url, max_retries=0)
        try:
            error = _outcome(client)
        finally:
            _close(client)
    assert isinstance(error, PinkCloudSyncError)
    assert {"httpx", "httpcore"} <= {r.name.split(".")[0] for r in caplog.records}
    assert_nowhere([caplog.text, *(r.getMessage() for r in caplog.records)], ASCII_SECRET)


def _outcome(client: Any) -> Any:
    try:
        if isinstance(client, AsyncPinkCloudSyncClient):
            return anyio.run(client.get_token)
        return client.get_token()
    except Exception as exc:
        return exc


def _close(client: Any) -> None:
    if isinstance(client, AsyncPinkCloudSyncClient):
        anyio.run(client.aclose)
    else:
        client.close()
