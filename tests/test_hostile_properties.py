"""Property: whatever a server answers, only typed errors escape and no secret leaks.

Hypothesis throws arbitrary token responses and API responses (status, reason
phrase, headers, body: JSON of any shape, huge numbers, deep nesting, bytes, the
secret or a token in any form anywhere) at both twins. Every outcome of a typed
call is its result or a `PinkCloudSyncError`; `raise_for_api_error` on any raw
response raises nothing else; and neither the API secret nor a token the client
sent appears in any message, repr, log record, pickle, or traceback formatted with
its frames' locals (what error trackers capture).
"""

from __future__ import annotations

import json
import logging
import pickle
import string
import traceback
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from fakes import (
    API_KEY,
    BASE_URL,
    HTTPX_TRIO_DECODING_WARNINGS,
    assert_nowhere,
    make_jwt,
    secret_forms,
    token_body,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pinkcloudsync_async import (
    AsyncPinkCloudSyncClient,
    PinkCloudSyncClient,
    PinkCloudSyncError,
    raise_for_api_error,
)

SECRET = 'sk_test_"q\\u\u00e9_SECRET_never_shown'
TOKEN = make_jwt(jti="property-token-never-shown")
KINDS = ["async-asyncio", "async-trio", "sync"]
pytestmark = [pytest.mark.filterwarnings(w) for w in HTTPX_TRIO_DECODING_WARNINGS]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

SECRETISH = sorted(secret_forms(SECRET) | secret_forms(TOKEN))
ASCII_SECRETISH = [form for form in SECRETISH if form.isascii()]
TOKENISH = [TOKEN, TOKEN + " ", TOKEN + "\r\nX: 1", "t\u00f6k", "", "  ", "\x00", "a" * 5000]

texts = st.one_of(st.text(max_size=20), st.sampled_from(SECRETISH + TOKENISH))
header_texts = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " /;=-_.,", max_size=20),
    st.sampled_from(ASCII_SECRETISH),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=10,
)
token_payloads = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.sampled_from(TOKENISH) | json_values,
        "token_type": st.sampled_from(["Bearer", "bearer", "MAC"]) | json_values,
        "expires_in": numbers | json_values,
        "error": texts,
        "message": texts,
    },
)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    token_payloads.map(_json),
    json_values.map(_json),
    st.binary(max_size=100),
    st.sampled_from([b"[" * 100_000, b'{"a":' * 50_000, b"1" + b"0" * 400]),
    texts.map(lambda text: text.encode("utf-8", "surrogatepass")),
)
responses = st.fixed_dictionaries(
    {
        "status": st.sampled_from([200, 200, 201, 302, 400, 401, 403, 429, 500, 503])
        | st.integers(100, 599),
        "reason": header_texts,
        "headers": st.dictionaries(
            st.sampled_from(["content-type", "content-encoding", "retry-after", "x-echo"]),
            header_texts | st.sampled_from(["gzip", "deflate", "application/json"]),
            max_size=3,
        ),
        "body": bodies,
    }
)


def build(spec: dict[str, Any]) -> httpx.Response:
    # A stream, as a transport hands it over: httpx decodes it when it reads it.
    return httpx.Response(
        spec["status"],
        headers=spec["headers"],
        stream=httpx.ByteStream(spec["body"]),
        extensions={"reason_phrase": spec["reason"].encode("ascii")},
    )


# ------------------------------------------------------------------ the checks


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


def error_texts(error: BaseException) -> list[str | bytes]:
    return [
        str(error),
        repr(error),
        pickle.dumps(error),
        "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format()),
    ]


def run_typed(kind: str, handler: Callable[[httpx.Request], httpx.Response], name: str) -> Any:
    """`client.<name>()` on a fresh client of this kind: its result or its error."""
    transport = httpx.MockTransport(handler)
    kwargs: dict[str, Any] = {"base_url": BASE_URL, "transport": transport, "max_retries": 0}
    if kind == "sync":
        with PinkCloudSyncClient(API_KEY, SECRET, **kwargs) as client:
            try:
                return getattr(client, name)()
            except Exception as exc:
                return exc

    async def call() -> Any:
        async with AsyncPinkCloudSyncClient(API_KEY, SECRET, **kwargs) as client:
            try:
                return await getattr(client, name)()
            except Exception as exc:
                return exc

    return anyio.run(call, backend=kind.removeprefix("async-"))


def check(kind: str, handler: Callable[[httpx.Request], httpx.Response], name: str) -> None:
    sent: set[str] = set()

    def recording(request: httpx.Request) -> httpx.Response:
        bearer = request.headers.get("authorization", "")
        if bearer:
            sent.add(bearer.removeprefix("Bearer "))
        return handler(request)

    records = Records()
    loggers = [logging.getLogger(name) for name in ("pinkcloudsync_async", "httpx")]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
    try:
        outcome = run_typed(kind, recording, name)
    finally:
        for logger in loggers:
            logger.removeHandler(records)
            logger.setLevel(logging.NOTSET)
    if isinstance(outcome, BaseException):
        assert isinstance(outcome, PinkCloudSyncError), repr(outcome)
        assert_nowhere(error_texts(outcome), SECRET, *sent)
    assert_nowhere(records.texts, SECRET, *sent)


# ------------------------------------------------------------------ properties


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(spec=responses)
def test_any_token_response(kind: str, spec: dict[str, Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return build(spec)
        return httpx.Response(200, json={"sessions": []})

    check(kind, handler, "get_token")
    check(kind, handler, "list_sessions")


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(spec=responses)
def test_any_api_response(kind: str, spec: dict[str, Any]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return httpx.Response(200, json=token_body(TOKEN))
        return build(spec)

    check(kind, handler, "list_sessions")


@PROPERTY
@given(spec=responses)
def test_raise_for_api_error_on_any_response(spec: dict[str, Any]) -> None:
    request = httpx.Request("GET", f"{BASE_URL}/x", headers={"Authorization": f"Bearer {TOKEN}"})
    response = build(spec)
    response.request = request
    try:
        response.read()
    except httpx.DecodingError:
        return  # httpx's own error reading a raw response, before ours is asked
    error = raised_by(response)
    if error is not None:
        assert isinstance(error, PinkCloudSyncError), repr(error)
        assert_nowhere(error_texts(error), TOKEN)


def raised_by(response: httpx.Response) -> Exception | None:
    # The error's traceback starts in this frame, whose locals hold no secret.
    try:
        raise_for_api_error(response)
    except Exception as exc:
        return exc
    return None
