"""The emulator at run time: keys added and removed, one key's tokens revoked, and
a server clock that is off (its `Date` header and its tokens read the skewed clock)."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx
import jwt
import pytest
from fakes import WALL_T0, FakeClock

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
