"""The pydantic models: strict where the API promises, open where it is silent, and
never showing a token."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from pinkcloudsync_async import (
    AccessToken,
    ErrorResponse,
    SessionList,
    SyncSession,
    TokenClaims,
    TokenResponse,
)

RAW_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyXzEyMyJ9.SECRET_TOKEN_SIGNATURE"


def token_payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "access_token": RAW_TOKEN,
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    payload.update(overrides)
    return payload


def assert_hidden(text: str) -> None:
    assert RAW_TOKEN not in text
    assert "SECRET_TOKEN_SIGNATURE" not in text


# --- TokenResponse ------------------------------------------------------------------------


def test_token_response_valid_payload() -> None:
    payload = TokenResponse.model_validate(token_payload())
    assert isinstance(payload.access_token, SecretStr)
    assert payload.access_token.get_secret_value() == RAW_TOKEN
    assert payload.token_type == "Bearer"
    assert payload.expires_in == 3600


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_token_type_bearer_in_any_case(token_type: str) -> None:
    assert TokenResponse.model_validate(token_payload(token_type=token_type)).token_type


@pytest.mark.parametrize("token_type", ["mac", "MAC", "Basic", "", " Bearer", "Bearer ", None, 1])
def test_token_type_other_than_bearer_is_refused(token_type: object) -> None:
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(token_payload(token_type=token_type))
    assert [e["loc"] for e in info.value.errors()] == [("token_type",)]


@pytest.mark.parametrize("expires_in", [1, 60, 3600, 86400 * 365])
def test_expires_in_positive_int(expires_in: int) -> None:
    assert TokenResponse.model_validate(token_payload(expires_in=expires_in)).expires_in == (
        expires_in
    )


@pytest.mark.parametrize(
    "expires_in",
    [True, False, "3600", "1", 3600.0, 3600.5, 0, -1, -3600, None, [3600], {"s": 3600}],
)
def test_expires_in_must_be_a_positive_int(expires_in: object) -> None:
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(token_payload(expires_in=expires_in))
    assert [e["loc"] for e in info.value.errors()] == [("expires_in",)]


@pytest.mark.parametrize("access_token", ["", " ", "\t\n", None, 123, ["x"], {"t": "x"}])
def test_access_token_must_be_a_non_empty_string(access_token: object) -> None:
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(token_payload(access_token=access_token))
    assert [e["loc"] for e in info.value.errors()] == [("access_token",)]


@pytest.mark.parametrize("missing", ["access_token", "token_type", "expires_in"])
def test_missing_fields_are_refused(missing: str) -> None:
    payload = token_payload()
    del payload[missing]
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(payload)
    assert [e["loc"] for e in info.value.errors()] == [(missing,)]


def test_extra_token_fields_are_allowed() -> None:
    payload = TokenResponse.model_validate(token_payload(scope="sync:read", refresh_in=100))
    assert payload.model_extra == {"scope": "sync:read", "refresh_in": 100}


def test_token_response_never_shows_the_token() -> None:
    payload = TokenResponse.model_validate(token_payload())
    assert_hidden(repr(payload))
    assert_hidden(str(payload))
    assert_hidden(repr(payload.model_dump()))
    assert_hidden(str(payload.model_dump(mode="json")))
    assert_hidden(payload.model_dump_json())
    assert_hidden(f"{payload!r} {payload!s} {payload.access_token}")


def test_validation_errors_do_not_echo_the_token_in_their_own_message() -> None:
    # A wrong token_type next to a valid token: the error names the field only.
    with pytest.raises(ValidationError) as info:
        TokenResponse.model_validate(token_payload(token_type="mac"))
    assert_hidden(str(info.value.errors(include_input=False)))
    assert "Bearer" in info.value.errors()[0]["msg"]


def test_token_response_is_frozen() -> None:
    payload = TokenResponse.model_validate(token_payload())
    with pytest.raises(ValidationError):
        payload.expires_in = 5  # type: ignore[misc]


# --- TokenClaims --------------------------------------------------------------------------


def test_token_claims_defaults_are_empty() -> None:
    claims = TokenClaims()
    assert claims.sub is None
    assert claims.permissions == ()
    assert claims.iat is None
    assert claims.exp is None


def test_token_claims_keep_unknown_claims() -> None:
    claims = TokenClaims.model_validate(
        {
            "sub": "user_123",
            "permissions": ["sync:read", "sync:write"],
            "exp": 1_640_995_200,
            "iat": 1_640_991_600,
            "org": "acme",
            "https://pinkcloudsync.example/roles": ["owner"],
        }
    )
    assert claims.sub == "user_123"
    assert claims.permissions == ("sync:read", "sync:write")
    assert claims.exp == 1_640_995_200
    assert claims.iat == 1_640_991_600
    assert claims.model_extra == {
        "org": "acme",
        "https://pinkcloudsync.example/roles": ["owner"],
    }


# --- ErrorResponse --------------------------------------------------------------------------


def test_error_response() -> None:
    parsed = ErrorResponse.model_validate(
        {"error": "invalid_credentials", "message": "Invalid API key or secret"}
    )
    assert parsed.error == "invalid_credentials"
    assert parsed.message == "Invalid API key or secret"


def test_error_response_keeps_extra_fields() -> None:
    parsed = ErrorResponse.model_validate({"error": "e", "message": "m", "request_id": "r1"})
    assert parsed.model_extra == {"request_id": "r1"}


@pytest.mark.parametrize(
    "body",
    [
        {"error": "e"},
        {"message": "m"},
        {},
        {"error": 1, "message": "m"},
        {"error": "e", "message": None},
        {"error": ["e"], "message": "m"},
    ],
)
def test_error_response_requires_two_strings(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ErrorResponse.model_validate(body)


# --- SessionList / SyncSession --------------------------------------------------------------


def test_session_list_accepts_unknown_fields() -> None:
    body = {
        "sessions": [
            {"id": "s1", "status": "running", "files": 12, "nested": {"a": [1, 2]}},
            {"name": "no id at all"},
            {},
        ],
        "next_cursor": "abc",
    }
    parsed = SessionList.model_validate(body)
    assert len(parsed.sessions) == 3
    assert all(isinstance(s, SyncSession) for s in parsed.sessions)
    first = parsed.sessions[0]
    assert first.id == "s1"
    assert first.model_extra == {"status": "running", "files": 12, "nested": {"a": [1, 2]}}
    assert parsed.sessions[1].model_extra == {"name": "no id at all"}
    assert parsed.model_extra == {"next_cursor": "abc"}
    assert parsed.model_dump()["sessions"][0]["status"] == "running"


def test_session_list_empty() -> None:
    assert SessionList.model_validate({"sessions": []}).sessions == []


@pytest.mark.parametrize("body", [{}, {"sessions": None}, {"sessions": "x"}, {"sessions": [1]}])
def test_session_list_requires_a_list_of_objects(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SessionList.model_validate(body)


@pytest.mark.parametrize("session_id", [42, 0, None])
def test_session_fields_are_undocumented_so_an_integer_id_is_accepted(session_id: object) -> None:
    """The contract documents no session field: an API using numeric ids must still parse."""
    parsed = SessionList.model_validate({"sessions": [{"id": session_id, "status": "ok"}]})
    assert parsed.sessions[0].model_dump()["id"] == session_id


# --- AccessToken ---------------------------------------------------------------------------


def make_access_token() -> AccessToken:
    return AccessToken(
        access_token=SecretStr(RAW_TOKEN),
        claims=TokenClaims(sub="user_123", permissions=("sync:read",)),
        expires_in=3600,
        lifetime=3600.0,
        obtained_at=1000.0,
        expires_at=4600.0,
        refresh_at=4300.0,
        authorization=SecretStr(f"Bearer {RAW_TOKEN}"),
    )


def test_access_token_fields() -> None:
    token = make_access_token()
    assert token.access_token.get_secret_value() == RAW_TOKEN
    assert token.authorization.get_secret_value() == f"Bearer {RAW_TOKEN}"
    assert token.token_type == "Bearer"
    assert token.claims.sub == "user_123"
    assert token.remaining(1000.0) == 3600.0
    assert token.remaining(4600.0) == 0.0
    assert token.remaining(5000.0) == -400.0


def test_access_token_never_shows_the_token_or_the_authorization() -> None:
    token = make_access_token()
    assert_hidden(repr(token))
    assert_hidden(str(token))
    assert "authorization" not in repr(token)
    assert_hidden(repr(token.model_dump()))
    assert_hidden(str(token.model_dump(mode="json")))
    assert_hidden(token.model_dump_json())
    assert_hidden(repr(token.authorization))
    assert_hidden(str(token.authorization))
    assert_hidden(repr(pickle.loads(pickle.dumps(token))))  # noqa: S301 - our own bytes


def test_access_token_is_frozen() -> None:
    token = make_access_token()
    with pytest.raises(ValidationError):
        token.expires_at = 1e12  # type: ignore[misc]


def test_an_access_token_s_repr_shows_who_what_and_until_when() -> None:
    from datetime import UTC, datetime, timedelta

    from pinkcloudsync_async import AccessToken, TokenClaims

    expiry = datetime.now(UTC) + timedelta(minutes=59, seconds=30)
    token = AccessToken(
        access_token=SecretStr("eyJ.secret.token"),
        claims=TokenClaims(sub="user_123", permissions=("sync:read",)),
        expires_in=3600,
        lifetime=3600.0,
        obtained_at=471.0,
        expires_at=4071.0,
        refresh_at=3771.0,
        expires_at_utc=expiry,
        authorization=SecretStr("Bearer eyJ.secret.token"),
    )
    text = repr(token)
    assert text.startswith("AccessToken(sub='user_123', permissions=('sync:read',), expires='")
    assert expiry.isoformat(timespec="seconds").replace("+00:00", "Z") in text
    assert "left='59m" in text
    assert "471" not in text  # no monotonic numbers
    assert "eyJ" not in text
    assert str(token) == text
    expired = token.model_copy(update={"expires_at_utc": datetime.now(UTC) - timedelta(1)})
    assert "left='expired'" in repr(expired)
