"""`require_permissions(...)`: fail at start-up, not on the first write; no API call."""

from __future__ import annotations

import pytest
import twins
from twins import Twin

from pinkcloudsync_async import AuthenticationError, ConfigurationError, PermissionDeniedError
from pinkcloudsync_async.testing import Emulator, EmulatorKey

twin = twins.twin
anyio_backend = twins.anyio_backend

pytestmark = pytest.mark.anyio

READER = EmulatorKey("pk_test_reader", "sk_test_reader_SECRET", ("sync:read", "conflicts:read"))
ADMIN = EmulatorKey("pk_test_admin", "sk_test_admin_SECRET", ("admin",))


def credentials(key: EmulatorKey) -> dict[str, str]:
    return {"api_key": key.api_key, "api_secret": key.api_secret}


async def test_granted_permissions_pass_and_return_the_token(twin: Twin) -> None:
    emulator = Emulator([READER])
    async with twin.emulated(emulator, **credentials(READER)) as client:
        token = await twin.do(client, "require_permissions", "sync:read", "conflicts:read")
        assert token.claims.sub == READER.sub
        await twin.do(client, "require_permissions")  # nothing asked: nothing missing
    assert emulator.stats.token_requests == 1
    assert emulator.stats.api_requests == 0  # no API call


async def test_missing_permissions_are_named_without_an_api_call(twin: Twin) -> None:
    emulator = Emulator([READER])
    async with twin.emulated(emulator, **credentials(READER)) as client:
        error = await twin.outcome(
            client, "require_permissions", "sync:read", "sync:write", "conflicts:write"
        )
    assert isinstance(error, PermissionDeniedError)
    assert error.status_code == 403
    assert error.error == "insufficient_permissions"
    assert "sync:write, conflicts:write" in error.message
    assert "sync:read, conflicts:read" in error.message  # what it has
    assert READER.api_secret not in str(error)
    assert emulator.stats.api_requests == 0


async def test_admin_grants_every_permission(twin: Twin) -> None:
    async with twin.emulated(Emulator([ADMIN]), **credentials(ADMIN)) as client:
        token = await twin.do(client, "require_permissions", "sync:write", "conflicts:write")
    assert token.claims.permissions == ("admin",)


async def test_the_token_request_s_own_error_comes_first(twin: Twin) -> None:
    async with twin.emulated(
        Emulator([READER]), api_key=READER.api_key, api_secret="sk_wrong"
    ) as client:
        error = await twin.outcome(client, "require_permissions", "sync:read")
    assert isinstance(error, AuthenticationError)


@pytest.mark.parametrize("bad", ["", "  ", 42])
async def test_a_permission_name_must_be_a_non_empty_string(twin: Twin, bad: object) -> None:
    async with twin.emulated(Emulator([READER]), **credentials(READER)) as client:
        error = await twin.outcome(client, "require_permissions", "sync:read", bad)
    assert isinstance(error, ConfigurationError)
