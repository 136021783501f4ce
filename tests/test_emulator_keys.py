"""The emulator at run time: keys added and removed, one key's tokens revoked, and
a server clock that is off (its `Date` header and its tokens read the skewed clock)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import jwt
import pytest
from fakes import WALL_T0, EmulatorProcess, FakeClock

from pinkcloudsync_async import PinkCloudSyncClient
from pinkcloudsync_async.telemetry import TokenAcquired, TokenHooks
from pinkcloudsync_async.testing import Emulator, EmulatorKey

pytestmark = pytest.mark.anyio

FIRST = EmulatorKey("pk_test_first", "sk_test_first_SECRET")
SECOND = EmulatorKey("pk_test_second", "sk_test_second_SECRET", subject="user_shared")
THIRD = EmulatorKey("pk_test_third", "sk_test_third_SECRET", subject="user_shared")


def http(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=emulator), base_url="http://emulator.test/v1/"
    )


async def token_status(client: httpx.AsyncClient, key: EmulatorKey) -> tuple[int, str | None]:
    response = await client.post(
        "auth/token", json={"api_key": key.api_key, "api_secret": key.api_secret}
    )
    token = response.json().get("access_token") if response.status_code == 200 else None
    return response.status_code, token


async def api_status(client: httpx.AsyncClient, token: str | None) -> int:
    response = await client.get("sync/sessions", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_a_key_added_at_run_time_is_accepted_at_once() -> None:
    emulator = Emulator([FIRST])
    async with http(emulator) as client:
        assert (await token_status(client, SECOND))[0] == 401
        emulator.add_key(SECOND)
        status, token = await token_status(client, SECOND)
        assert status == 200
        assert await api_status(client, token) == 200
    assert emulator.keys == (FIRST, SECOND)


async def test_a_removed_key_is_refused_but_its_tokens_live_until_revoked() -> None:
    emulator = Emulator([FIRST, SECOND])
    async with http(emulator) as client:
        _, token = await token_status(client, FIRST)
        assert emulator.remove_key(FIRST.api_key) == FIRST
        response = await client.post(
            "auth/token", json={"api_key": FIRST.api_key, "api_secret": FIRST.api_secret}
        )
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_credentials"
        assert await api_status(client, token) == 200  # as with a real API
        assert emulator.revoke_tokens(FIRST.api_key) == 1
        assert await api_status(client, token) == 401
    assert emulator.keys == (SECOND,)


async def test_revoking_one_key_leaves_the_others_tokens_valid_even_for_the_same_subject() -> None:
    emulator = Emulator([SECOND, THIRD])
    async with http(emulator) as client:
        _, second = await token_status(client, SECOND)
        _, third = await token_status(client, THIRD)
        assert emulator.revoke_tokens(SECOND.api_key) == 1
        assert await api_status(client, second) == 401
        assert await api_status(client, third) == 200
        _, after = await token_status(client, SECOND)  # a new token for it is fine
        assert await api_status(client, after) == 200
    assert emulator.stats.revocations == 1


def test_key_management_refuses_what_makes_no_sense() -> None:
    emulator = Emulator([FIRST])
    with pytest.raises(ValueError, match="pk_test_first"):
        emulator.add_key(FIRST)
    with pytest.raises(TypeError):
        emulator.add_key("pk_test_x:sk")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="pk_test_nope"):
        emulator.remove_key("pk_test_nope")
    emulator.remove_key(FIRST.api_key)
    with pytest.raises(LookupError, match="no key"):
        emulator.client()


@pytest.mark.parametrize("skew", [0.0, 3600.0, -90.5])
async def test_the_date_header_and_the_tokens_read_the_emulator_s_own_clock(skew: float) -> None:
    clock = FakeClock(WALL_T0)
    emulator = Emulator([FIRST], clock=clock, clock_skew=skew)
    async with http(emulator) as client:
        response = await client.post(
            "auth/token", json={"api_key": FIRST.api_key, "api_secret": FIRST.api_secret}
        )
    server_time = parsedate_to_datetime(response.headers["date"]).timestamp()
    assert server_time == int(WALL_T0 + skew)  # HTTP dates have whole seconds
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["iat"] == int(WALL_T0 + skew)
    assert len(response.headers.get_list("date")) == 1


def test_a_clock_skew_must_be_finite() -> None:
    with pytest.raises(ValueError, match="clock_skew"):
        Emulator(clock_skew=float("nan"))


async def test_a_served_emulator_rotates_keys_through_its_control_endpoints() -> None:
    emulator = Emulator([FIRST])
    async with http(emulator) as client:
        _, old_token = await token_status(client, FIRST)
        added = await client.post(
            "_emulator/keys",
            json={"api_key": SECOND.api_key, "api_secret": SECOND.api_secret},
        )
        assert added.status_code == 201
        assert added.json()["api_key"] == SECOND.api_key
        assert SECOND.api_secret not in added.text
        assert (await token_status(client, SECOND))[0] == 200

        removed = await client.delete(f"_emulator/keys/{FIRST.api_key}")
        assert removed.status_code == 200
        assert (await token_status(client, FIRST))[0] == 401
        revoked = await client.post(f"_emulator/keys/{FIRST.api_key}/revoke")
        assert revoked.json() == {"api_key": FIRST.api_key, "revoked": 1}
        assert await api_status(client, old_token) == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "_emulator/keys", {"api_key": "pk_test_first", "api_secret": "x"}, 409),
        ("POST", "_emulator/keys", {"api_key": "pk_x"}, 400),
        (
            "POST",
            "_emulator/keys",
            {"api_key": "pk_x", "api_secret": "s", "permissions": "a"},
            400,
        ),
        (
            "POST",
            "_emulator/keys",
            {"api_key": "pk_x", "api_secret": "s", "permissions": ["x"]},
            400,
        ),
        ("GET", "_emulator/keys", None, 405),
        ("DELETE", "_emulator/keys/pk_test_nope", None, 404),
        ("GET", "_emulator/keys/pk_test_first/revoke", None, 405),
        ("POST", "_emulator/keys/pk_test_first/other", None, 404),
        ("POST", "_emulator/other", None, 404),
    ],
)
async def test_control_requests_that_make_no_sense_get_the_api_s_error_bodies(
    method: str, path: str, body: dict[str, object] | None, status: int
) -> None:
    async with http(Emulator([FIRST])) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == status
    assert set(response.json()) == {"error", "message"}


def test_rotating_a_served_emulator_s_key_under_a_running_sync_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end, out of process: `pinkcloudsync emulator`, a secret file, a rotation
    through the control endpoints; the client never fails and makes one more token
    request."""
    process = EmulatorProcess("--key", f"{FIRST.api_key}:{FIRST.api_secret}")
    try:
        key_file, secret_file = tmp_path / "key", tmp_path / "secret"
        key_file.write_text(FIRST.api_key)
        secret_file.write_text(FIRST.api_secret)
        for name in ("PINKCLOUDSYNC_API_KEY", "PINKCLOUDSYNC_API_SECRET"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PINKCLOUDSYNC_API_KEY_FILE", str(key_file))
        monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET_FILE", str(secret_file))
        tokens: list[TokenAcquired] = []
        hooks = TokenHooks(on_token_acquired=tokens.append)
        with (
            PinkCloudSyncClient(base_url=process.url, hooks=hooks) as client,
            httpx.Client(base_url=process.url + "/") as control,
        ):
            client.list_sessions()
            control.post(
                "_emulator/keys", json={"api_key": SECOND.api_key, "api_secret": SECOND.api_secret}
            ).raise_for_status()
            key_file.write_text(SECOND.api_key)
            secret_file.write_text(SECOND.api_secret)
            control.delete(f"_emulator/keys/{FIRST.api_key}").raise_for_status()
            control.post(f"_emulator/keys/{FIRST.api_key}/revoke").raise_for_status()
            client.list_sessions()  # refused once, replayed with the new key's token
    finally:
        process.stop()
    # A key added through the endpoint has the subject derived from its api_key.
    added_sub = EmulatorKey(SECOND.api_key, SECOND.api_secret).sub
    assert [event.claims.sub for event in tokens] == [FIRST.sub, added_sub]
