"""Reading a token response: claims, timing, and the typed errors for everything else."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from fakes import (
    API_SECRET,
    TOKEN_URL,
    invalid_token_payloads,
    make_jwt,
    not_json_bodies,
    not_object_bodies,
    token_body,
)
from pydantic import ValidationError

from pinkcloudsync_async import (
    AccessToken,
    APIError,
    AuthenticationError,
    InvalidResponseError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TokenResponse,
)
from pinkcloudsync_async._constants import ATTEMPTS_EXTENSION
from pinkcloudsync_async._redaction import Redactor
from pinkcloudsync_async._token_exchange import (
    decode_claims,
    describe_validation_error,
    token_from_response,
)

SENT_AT = 1000.0


def response(
    status: int = 200,
    *,
    json_body: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> httpx.Response:
    request = httpx.Request("POST", TOKEN_URL)
    if json_body is not None:
        result = httpx.Response(status, json=json_body, headers=headers, request=request)
    else:
        result = httpx.Response(status, content=content or b"", headers=headers, request=request)
    if extensions:
        result.extensions.update(extensions)
    return result


def read(resp: httpx.Response, *, margin: float = 300.0, secrets: tuple[str, ...] = ()):
    return token_from_response(
        resp, sent_at=SENT_AT, refresh_margin=margin, secrets=Redactor(API_SECRET, *secrets)
    )


def raw_jwt(payload_json: bytes) -> str:
    """A JWT-shaped string whose payload is exactly these JSON bytes."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256"}).encode())
    return f"{header}.{part(payload_json)}.{part(b'sig')}"


def unsigned_jwt(payload: Any) -> str:
    """A JWT-shaped string with an arbitrary (even non-object) JSON payload."""
    return raw_jwt(json.dumps(payload).encode())


# --- decode_claims ------------------------------------------------------------------------


def test_decode_claims_reads_a_valid_jwt() -> None:
    raw = make_jwt(
        sub="user_9", permissions=("sync:read", "admin"), lifetime=600, iat=1_700_000_000
    )
    claims = decode_claims(raw)
    assert claims.sub == "user_9"
    assert claims.permissions == ("sync:read", "admin")
    assert claims.iat == 1_700_000_000
    assert claims.exp == 1_700_000_600


def test_decode_claims_does_not_verify_anything() -> None:
    """The client holds no key: a foreign signature, a long-expired exp, a future nbf,
    an audience: the claims are still read."""
    not_before = int(time.time()) + 10**6
    raw = jwt.encode(
        {
            "sub": "u",
            "iat": 1_000,
            "exp": 2_000,  # 1970: long expired on any local clock
            "nbf": not_before,
            "aud": "someone-else",
            "iss": "elsewhere",
        },
        "a-key-nobody-in-this-process-knows-at-all",
        algorithm="HS256",
    )
    claims = decode_claims(raw)
    assert claims.sub == "u"
    assert (claims.iat, claims.exp) == (1_000, 2_000)
    assert claims.model_extra == {"nbf": not_before, "aud": "someone-else", "iss": "elsewhere"}


def test_decode_claims_unsigned_alg_none() -> None:
    raw = jwt.encode({"sub": "u", "permissions": ["sync:read"]}, None, algorithm="none")
    claims = decode_claims(raw)
    assert claims.sub == "u"
    assert claims.permissions == ("sync:read",)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "opaque-token-not-a-jwt",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJIUzI1NiJ9.!!!not-base64!!!.sig",
        unsigned_jwt([1, 2, 3]),  # JSON, but not an object
        unsigned_jwt("a string"),
        unsigned_jwt(None),
    ],
)
def test_decode_claims_garbage_gives_empty_claims(raw: str) -> None:
    claims = decode_claims(raw)
    assert claims.sub is None
    assert claims.permissions == ()
    assert claims.iat is None
    assert claims.exp is None
    assert not claims.model_extra


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 123),
        ("sub", None),
        ("sub", ["u"]),
        ("permissions", "sync:read"),
        ("permissions", ["sync:read", 7]),
        ("permissions", {"sync:read": True}),
        ("iat", "1700000000"),
        ("iat", True),
        ("exp", "soon"),
        ("exp", False),
        ("exp", None),
    ],
)
def test_decode_claims_drops_wrong_typed_claims_and_keeps_the_rest(claim: str, value: Any) -> None:
    payload = {
        "sub": "user_1",
        "permissions": ["sync:read"],
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
        "org": "acme",
    }
    payload[claim] = value
    claims = decode_claims(unsigned_jwt(payload))
    expected_defaults = {"sub": None, "permissions": (), "iat": None, "exp": None}
    assert getattr(claims, claim) == expected_defaults[claim]
    kept = {"sub": "user_1", "permissions": ("sync:read",), "iat": 1_700_000_000}
    kept["exp"] = 1_700_003_600
    for name, expected in kept.items():
        if name != claim:
            assert getattr(claims, name) == expected
    assert claims.model_extra == {"org": "acme"}  # the dropped claim is not smuggled in


def test_decode_claims_numeric_dates_become_ints() -> None:
    claims = decode_claims(unsigned_jwt({"iat": 1_700_000_000.7, "exp": 1_700_003_600.2}))
    assert claims.iat == 1_700_000_000
    assert claims.exp == 1_700_003_600


@pytest.mark.parametrize(
    ("claim", "number"),
    [("iat", b"NaN"), ("exp", b"Infinity"), ("exp", b"-Infinity"), ("iat", b"1e400")],
)
def test_decode_claims_drops_non_finite_dates(claim: str, number: bytes) -> None:
    """Python's JSON (used by PyJWT) reads NaN/Infinity: such a date is wrong-typed,
    dropped like any other, and the rest of the claims survive."""
    payload = b'{"sub": "user_1", "%s": %s}' % (claim.encode(), number)
    claims = decode_claims(raw_jwt(payload))
    assert claims.sub == "user_1"
    assert getattr(claims, claim) is None


def test_token_with_non_finite_claims_is_still_used() -> None:
    raw = raw_jwt(b'{"sub": "user_1", "iat": 1700000000, "exp": Infinity}')
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert token.access_token.get_secret_value() == raw
    assert token.lifetime == 3600.0


@pytest.mark.parametrize(
    "name", ["__init__", "__class__", "__dict__", "model_fields", "model_extra", "_x", "", "self"]
)
def test_decode_claims_survives_odd_claim_names(name: str) -> None:
    claims = decode_claims(unsigned_jwt({"sub": "user_1", name: 1}))
    assert claims.sub == "user_1"
    assert claims.model_extra == {name: 1}


def test_decode_claims_keeps_unknown_claims() -> None:
    raw = make_jwt(org="acme", **{"https://pinkcloudsync.example/tier": "gold"})
    claims = decode_claims(raw)
    assert claims.model_extra is not None
    assert claims.model_extra["org"] == "acme"
    assert claims.model_extra["https://pinkcloudsync.example/tier"] == "gold"


# --- token_from_response: timing ----------------------------------------------------------


def test_token_timing_is_measured_from_when_the_request_was_sent() -> None:
    raw = make_jwt(lifetime=3600)
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert isinstance(token, AccessToken)
    assert token.access_token.get_secret_value() == raw
    assert token.authorization.get_secret_value() == f"Bearer {raw}"
    assert token.token_type == "Bearer"
    assert token.expires_in == 3600
    assert token.lifetime == 3600.0
    assert token.obtained_at == SENT_AT
    assert token.expires_at == SENT_AT + 3600
    assert token.refresh_at == SENT_AT + 3600 - 300
    assert token.claims.sub == "user_123"


def test_token_refresh_margin_is_capped_at_half_the_lifetime() -> None:
    token = read(response(json_body=token_body(make_jwt(lifetime=60), expires_in=60)))
    assert token.expires_at == SENT_AT + 60
    assert token.refresh_at == SENT_AT + 30


def test_token_custom_margin() -> None:
    token = read(response(json_body=token_body(expires_in=3600)), margin=10.0)
    assert token.refresh_at == SENT_AT + 3590


@pytest.mark.parametrize("token_type", ["bearer", "BEARER"])
def test_token_type_case_is_accepted(token_type: str) -> None:
    body = token_body() | {"token_type": token_type}
    assert read(response(json_body=body)).expires_at == SENT_AT + 3600


def test_claims_shorten_the_lifetime() -> None:
    raw = make_jwt(lifetime=600)
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert token.expires_in == 3600
    assert token.lifetime == 600.0
    assert token.expires_at == SENT_AT + 600
    assert token.refresh_at == SENT_AT + 600 - 300


def test_claims_never_lengthen_the_lifetime() -> None:
    raw = make_jwt(lifetime=7200)
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert token.lifetime == 3600.0
    assert token.expires_at == SENT_AT + 3600


@pytest.mark.parametrize("skew_hours", [-5, 5, 24 * 365])
def test_claims_are_read_on_the_servers_clock(skew_hours: int) -> None:
    """A client whose wall clock is hours off plans with `exp - iat`, not with `exp - now`."""
    iat = int(time.time()) + skew_hours * 3600
    raw = make_jwt(lifetime=1200, iat=iat)
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert token.lifetime == 1200.0
    assert token.expires_at == SENT_AT + 1200
    assert token.refresh_at == SENT_AT + 900


def test_opaque_token_is_still_used() -> None:
    token = read(response(json_body=token_body("opaque-not-a-jwt", expires_in=120)))
    assert token.access_token.get_secret_value() == "opaque-not-a-jwt"
    assert token.claims.sub is None
    assert token.expires_at == SENT_AT + 120
    assert token.refresh_at == SENT_AT + 60


def test_exp_without_iat_does_not_change_the_lifetime() -> None:
    raw = unsigned_jwt({"sub": "u", "exp": 5})  # exp in 1970, no iat
    token = read(response(json_body=token_body(raw, expires_in=3600)))
    assert token.lifetime == 3600.0


# --- token_from_response: invalid payloads ------------------------------------------------

SECRET_TOKEN = "SECRET.TOKEN.VALUE_never_in_messages"


def assert_clean(message: str) -> None:
    assert SECRET_TOKEN not in message
    assert API_SECRET not in message


NOT_JSON = not_json_bodies(SECRET_TOKEN)
NOT_AN_OBJECT = not_object_bodies(SECRET_TOKEN)
INVALID_PAYLOADS = invalid_token_payloads(SECRET_TOKEN)


@pytest.mark.parametrize(("content", "content_type"), NOT_JSON.values(), ids=NOT_JSON)
def test_non_json_bodies_raise_invalid_response(content: bytes, content_type: str) -> None:
    resp = response(content=content, headers={"content-type": content_type})
    with pytest.raises(InvalidResponseError) as info:
        read(resp)
    error = info.value
    assert error.response is not None
    assert error.response.status_code == resp.status_code
    assert error.response.content == b""  # a copy without the body: it may hold a token
    assert_clean(str(error))
    assert_clean(error.message)
    assert error.__cause__ is None  # nothing chained that could carry the body
    assert error.__context__ is None  # not even a suppressed context


def test_html_body_message_describes_it() -> None:
    resp = response(content=b"<html>oops</html>", headers={"content-type": "text/html; charset=x"})
    with pytest.raises(InvalidResponseError, match="not JSON") as info:
        read(resp)
    assert "text/html" in str(info.value)
    assert "17 bytes" in str(info.value)


@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT)
def test_non_object_json_raises_invalid_response(body: Any) -> None:
    resp = response(content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with pytest.raises(InvalidResponseError, match="not an object") as info:
        read(resp)
    assert_clean(str(info.value))


@pytest.mark.parametrize(("body", "field"), INVALID_PAYLOADS.values(), ids=INVALID_PAYLOADS)
def test_invalid_payloads_raise_invalid_response_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidResponseError) as info:
        read(response(json_body=body))
    error = info.value
    assert not isinstance(error, ValidationError)
    assert field in str(error)
    assert_clean(str(error))
    assert_clean(repr(error))
    assert error.__cause__ is None
    assert error.__context__ is None  # not even a suppressed context


def test_invalid_payload_echoing_the_secret_is_not_echoed() -> None:
    body = {"access_token": API_SECRET, "token_type": API_SECRET, "expires_in": API_SECRET}
    with pytest.raises(InvalidResponseError) as info:
        read(response(json_body=body))
    assert_clean(str(info.value))


@pytest.mark.parametrize("status", [201, 202, 204, 301, 302, 307])
def test_non_200_success_or_redirect_is_invalid(status: int) -> None:
    resp = response(status, json_body=token_body(SECRET_TOKEN))
    with pytest.raises(InvalidResponseError, match=str(status)) as info:
        read(resp)
    assert_clean(str(info.value))


# --- token_from_response: error statuses ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, APIError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_error_statuses_raise_typed_errors(status: int, cls: type[APIError]) -> None:
    resp = response(status, json_body={"error": "some_code", "message": "Some text"})
    with pytest.raises(cls) as info:
        read(resp)
    error = info.value
    assert error.status_code == status
    assert error.error == "some_code"
    assert error.message == "Some text"
    assert error.response is not None
    assert error.response.status_code == resp.status_code  # a redacted copy
    assert error.response.json() == resp.json()
    assert error.attempts == 1


def test_invalid_credentials_401() -> None:
    resp = response(
        401, json_body={"error": "invalid_credentials", "message": "Invalid API key or secret"}
    )
    with pytest.raises(AuthenticationError) as info:
        read(resp)
    assert info.value.error == "invalid_credentials"
    assert info.value.message == "Invalid API key or secret"
    assert "invalid_credentials" in str(info.value)


def test_error_carries_the_attempts_the_retry_policy_made() -> None:
    resp = response(
        503,
        json_body={"error": "unavailable", "message": "down"},
        extensions={ATTEMPTS_EXTENSION: 3},
    )
    with pytest.raises(ServerError) as info:
        read(resp)
    assert info.value.attempts == 3
    assert "3 attempts" in str(info.value)


def test_rate_limited_token_request_keeps_retry_after() -> None:
    resp = response(429, content=b"", headers={"retry-after": "42"})
    with pytest.raises(RateLimitError) as info:
        read(resp)
    assert info.value.retry_after == 42.0


def test_error_echoing_the_secret_or_token_is_redacted() -> None:
    resp = response(
        401,
        json_body={
            "error": f"bad_{API_SECRET}",
            "message": f"Secret {API_SECRET} is wrong; token {SECRET_TOKEN} too",
        },
    )
    with pytest.raises(AuthenticationError) as info:
        read(resp, secrets=(SECRET_TOKEN,))
    error = info.value
    for text in (str(error), repr(error), error.message, error.error, *map(str, error.args)):
        assert_clean(text)
    assert "[redacted]" in error.message
    assert "[redacted]" in str(error)
    assert error.status_code == 401


def test_error_with_html_body_does_not_echo_it() -> None:
    resp = response(
        502,
        content=f"<html>{API_SECRET} {SECRET_TOKEN}</html>".encode(),
        headers={"content-type": "text/html"},
    )
    with pytest.raises(ServerError) as info:
        read(resp)
    assert_clean(str(info.value))
    assert info.value.error == "http_502"


# --- redact / describe_validation_error ---------------------------------------------------


def redact(text: str, secrets: tuple[str, ...]) -> str:
    return Redactor(*secrets).text(text)


def test_redact_replaces_every_occurrence_of_every_secret() -> None:
    text = "key sk_1 and tok_2, again sk_1"
    assert redact(text, ("sk_1", "tok_2")) == "key [redacted] and [redacted], again [redacted]"


def test_redact_ignores_empty_secrets_and_leaves_clean_text() -> None:
    assert redact("nothing to hide", ("", "absent")) == "nothing to hide"
    assert redact("", ("x",)) == ""


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": SECRET_TOKEN, "token_type": SECRET_TOKEN, "expires_in": SECRET_TOKEN},
        {"access_token": [SECRET_TOKEN], "token_type": {"x": SECRET_TOKEN}, "expires_in": -1},
        {"access_token": " ", "token_type": "Bearer", "expires_in": 3600},
    ],
)
def test_describe_validation_error_never_includes_input_values(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(body)
    description = describe_validation_error(info.value)
    assert SECRET_TOKEN not in description
    assert "input_value" not in description
    assert "errors.pydantic.dev" not in description
    for item in info.value.errors():
        assert ".".join(map(str, item["loc"])) in description


def test_describe_validation_error_names_the_location_and_reason() -> None:
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate({"access_token": "x", "token_type": "Bearer"})
    assert describe_validation_error(info.value) == "expires_in: Field required"
