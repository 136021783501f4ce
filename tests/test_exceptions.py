"""The error hierarchy and `raise_for_api_error`, for every kind of error body."""

from __future__ import annotations

import copy
import email.utils
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import pinkcloudsync_async
from pinkcloudsync_async import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CredentialsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    PinkCloudSyncError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    _exceptions,
    raise_for_api_error,
)

URL = "https://api.pinkcloudsync.example/v1/sync/sessions"


def make_response(
    status: int,
    *,
    json_body: Any = None,
    content: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request = httpx.Request("GET", URL)
    if json_body is not None:
        return httpx.Response(status, json=json_body, headers=headers, request=request)
    return httpx.Response(status, content=content, headers=headers, request=request)


def raised(response: httpx.Response, **kwargs: Any) -> APIError:
    with pytest.raises(APIError) as info:
        raise_for_api_error(response, **kwargs)
    return info.value


# --- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 206, 300, 301, 302, 304, 307, 308, 399])
def test_success_and_redirects_raise_nothing(status: int) -> None:
    assert raise_for_api_error(make_response(status, content=b"<html>whatever</html>")) is None


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, APIError),
        (418, APIError),
        (422, APIError),
        (429, RateLimitError),
        (500, ServerError),
        (501, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, ServerError),
        (599, ServerError),
    ],
)
def test_each_status_raises_its_class(status: int, cls: type[APIError]) -> None:
    response = make_response(status, json_body={"error": "the_code", "message": "The text."})
    error = raised(response)
    assert type(error) is cls
    assert error.status_code == status
    assert error.error == "the_code"
    assert error.message == "The text."
    # A detached, redacted copy of the response: same status, headers and body.
    assert error.response is not response
    assert error.response.status_code == status
    assert error.response.content == response.content
    assert error.attempts == 1
    assert str(error) == f"{status} the_code: The text."


def test_documented_403_body() -> None:
    body = {
        "error": "insufficient_permissions",
        "message": "API key does not have 'sync:write' permission",
    }
    error = raised(make_response(403, json_body=body))
    assert isinstance(error, PermissionDeniedError)
    assert error.error == "insufficient_permissions"
    assert error.message == "API key does not have 'sync:write' permission"


# --- bodies -------------------------------------------------------------------------------


def test_html_page_is_described_not_echoed() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx SECRETISH</body></html>"
    error = raised(make_response(502, content=page, headers={"content-type": "text/html"}))
    assert isinstance(error, ServerError)
    assert error.error == "http_502"
    assert "Bad Gateway" in error.message  # the reason phrase
    assert "text/html" in error.message
    assert f"{len(page)} bytes" in error.message
    assert "SECRETISH" not in str(error)
    assert "<html>" not in str(error)


@pytest.mark.parametrize("content", [b"", b"   \n"])
def test_empty_body(content: bytes) -> None:
    error = raised(make_response(503, content=content))
    assert isinstance(error, ServerError)
    assert error.error == "http_503"
    assert "Service Unavailable" in error.message
    assert "empty body" in error.message


def test_truncated_json() -> None:
    content = b'{"error": "rate_limited", "message": "Too many req'
    error = raised(
        make_response(429, content=content, headers={"content-type": "application/json"})
    )
    assert isinstance(error, RateLimitError)
    assert error.error == "http_429"
    assert "application/json" in error.message
    assert f"{len(content)} bytes" in error.message
    assert "Too many req" not in str(error)


def test_json_with_only_error() -> None:
    error = raised(make_response(400, json_body={"error": "bad_thing"}))
    assert error.error == "bad_thing"
    assert error.message == "Bad Request"


def test_json_with_only_message() -> None:
    error = raised(make_response(404, json_body={"message": "No such session"}))
    assert error.error == "http_404"
    assert error.message == "No such session"


@pytest.mark.parametrize(
    "body",
    [
        {"detail": "FastAPI style"},
        {"error": 42, "message": ["a"]},
        [{"error": "e", "message": "m"}],
        "just a string",
        None,
    ],
)
def test_json_that_is_not_the_api_error_shape(body: Any) -> None:
    content = json.dumps(body).encode()
    error = raised(
        make_response(500, content=content, headers={"content-type": "application/json"})
    )
    assert isinstance(error, ServerError)
    assert error.error == "http_500"
    assert "Internal Server Error" in error.message
    assert content.decode() not in str(error)


def test_json_with_extra_fields() -> None:
    body = {"error": "invalid_credentials", "message": "Invalid API key or secret", "id": "r1"}
    error = raised(make_response(401, json_body=body))
    assert (error.error, error.message) == ("invalid_credentials", "Invalid API key or secret")


def test_unread_streaming_response() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"error": "x", "message": "y"}'

    response = httpx.Response(
        500, content=chunks(), request=httpx.Request("GET", URL)
    )  # a stream nobody has read
    error = raised(response)
    assert isinstance(error, ServerError)
    assert error.error == "http_500"
    assert "not read" in error.message
    assert error.response is not response  # a detached, redacted copy
    assert error.response.content == b""  # of a body nobody had read
    assert not response.is_stream_consumed  # describing it did not consume it


def test_no_content_type_header() -> None:
    error = raised(make_response(502, content=b"\x00\x01binary"))
    assert "no content-type" in error.message


# --- 429 retry_after ----------------------------------------------------------------------


def test_rate_limit_retry_after_seconds() -> None:
    error = raised(make_response(429, json_body={}, headers={"retry-after": "17"}))
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 17.0


def test_rate_limit_retry_after_http_date() -> None:
    header = email.utils.formatdate(time.time() + 120, usegmt=True)
    error = raised(make_response(429, content=b"", headers={"retry-after": header}))
    assert isinstance(error, RateLimitError)
    assert error.retry_after is not None
    assert 110.0 <= error.retry_after <= 121.0


@pytest.mark.parametrize("headers", [None, {"retry-after": "soon"}, {"retry-after": "-3"}])
def test_rate_limit_retry_after_none(headers: dict[str, str] | None) -> None:
    error = raised(make_response(429, content=b"", headers=headers))
    assert isinstance(error, RateLimitError)
    assert error.retry_after is None


def test_retry_after_header_is_not_read_for_other_statuses() -> None:
    error = raised(make_response(503, content=b"", headers={"retry-after": "5"}))
    assert not hasattr(error, "retry_after")


# --- attempts -------------------------------------------------------------------------------


def test_attempts_appear_in_the_message() -> None:
    error = raised(make_response(503, json_body={"error": "e", "message": "m"}), attempts=3)
    assert error.attempts == 3
    assert str(error) == "503 e: m (after 3 attempts)"


def test_a_single_attempt_is_not_mentioned() -> None:
    error = raised(make_response(503, json_body={"error": "e", "message": "m"}), attempts=1)
    assert "attempt" not in str(error)


# --- hierarchy ----------------------------------------------------------------------------

ALL_ERRORS = [
    PinkCloudSyncError,
    ConfigurationError,
    CredentialsError,
    InvalidResponseError,
    APIConnectionError,
    RequestTimeoutError,
    APIError,
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    RateLimitError,
    ServerError,
]
ALL_ERRORS_NAMES = [cls.__name__ for cls in ALL_ERRORS]
API_ERRORS = [
    BadRequestError,
    AuthenticationError,
    PermissionDeniedError,
    NotFoundError,
    RateLimitError,
    ServerError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_pinkcloudsync_error(cls: type[Exception]) -> None:
    assert issubclass(cls, PinkCloudSyncError)
    assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", API_ERRORS)
def test_status_errors_are_api_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, APIError)


def test_mixin_bases() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(APIConnectionError, httpx.TransportError)
    assert issubclass(RequestTimeoutError, httpx.TimeoutException)
    assert issubclass(RequestTimeoutError, httpx.TransportError)
    assert not issubclass(APIError, httpx.HTTPError)
    assert not issubclass(InvalidResponseError, APIError)
    assert not issubclass(ServerError, RateLimitError)


def test_except_httpx_timeout_catches_our_timeout() -> None:
    with pytest.raises(httpx.TimeoutException):
        raise RequestTimeoutError("budget spent")


# --- copies (the auth fans one error out as copies) ----------------------------------------


def instances() -> list[Exception]:
    response = make_response(429, json_body={"error": "rate_limited", "message": "Slow down"})
    api_kwargs = {"error": "the_code", "message": "The text", "response": response, "attempts": 3}
    made: list[Exception] = [
        PinkCloudSyncError("base"),
        ConfigurationError("No api_key configured"),
        InvalidResponseError("not JSON", response=response),
        APIConnectionError("cannot connect", request=response.request),
        RequestTimeoutError("budget spent", request=response.request),
        APIError(status_code=409, **api_kwargs),
        RateLimitError(status_code=429, retry_after=7.5, **api_kwargs),
    ]
    made += [
        cls(status_code=status, **api_kwargs)
        for cls, status in [
            (BadRequestError, 400),
            (AuthenticationError, 401),
            (PermissionDeniedError, 403),
            (NotFoundError, 404),
            (ServerError, 503),
        ]
    ]
    return made


@pytest.mark.parametrize("error", instances(), ids=lambda e: type(e).__name__)
def test_copy_keeps_type_fields_and_message(error: Exception) -> None:
    try:
        raise error
    except Exception as caught:
        original = caught
    twin = copy.copy(original)
    assert twin is not original
    assert type(twin) is type(original)
    assert str(twin) == str(original)
    assert twin.args == original.args
    assert twin.__traceback__ is None  # a fresh exception, free to be raised elsewhere
    for name in ("status_code", "error", "message", "response", "attempts", "retry_after"):
        if hasattr(original, name):
            assert getattr(twin, name) == getattr(original, name)
            if name == "response":
                assert twin.response is original.response  # type: ignore[attr-defined]
    if isinstance(original, httpx.RequestError):
        assert twin.request is original.request  # type: ignore[attr-defined]


def test_copied_rate_limit_error_keeps_retry_after_and_attempts_message() -> None:
    original = RateLimitError(
        status_code=429, error="rate_limited", message="Slow down", retry_after=3.0, attempts=2
    )
    twin = copy.copy(original)
    assert twin.retry_after == 3.0
    assert str(twin) == "429 rate_limited: Slow down (after 2 attempts)"
    with pytest.raises(RateLimitError):
        raise twin


def test_copy_of_an_error_is_independent() -> None:
    original = APIError(status_code=500, error="e", message="m")
    twin = copy.copy(original)
    twin.message = "changed"
    assert original.message == "m"


# --- the ASCII tree in the module docstring -------------------------------------------------


def parse_tree(doc: str) -> dict[str, str | None]:
    """{class name: parent name} from the indented tree at the top of the docstring."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*(?:[├└]── )?)([A-Z][A-Za-z]+Error)\b", line)
        if not match:
            continue
        depth = len(match.group(1))
        name = match.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_module_docstring_tree_names_every_exported_error() -> None:
    tree = parse_tree(_exceptions.__doc__ or "")
    exported = {
        name
        for name in pinkcloudsync_async.__all__
        if isinstance(getattr(pinkcloudsync_async, name), type)
        and issubclass(getattr(pinkcloudsync_async, name), BaseException)
    }
    assert exported == set(ALL_ERRORS_NAMES)
    assert set(tree) == exported


def test_module_docstring_tree_matches_the_real_hierarchy() -> None:
    tree = parse_tree(_exceptions.__doc__ or "")
    assert tree["PinkCloudSyncError"] is None
    for name, parent in tree.items():
        cls = getattr(_exceptions, name)
        if parent is None:
            continue
        parent_cls = getattr(_exceptions, parent)
        assert parent_cls in cls.__bases__, f"{name} is drawn under {parent}"
