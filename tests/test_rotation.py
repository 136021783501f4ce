"""Key rotation under a running client, on both twins against the emulator.

The credentials are read again for each token request: from the files named by
`PINKCLOUDSYNC_API_KEY_FILE` / `PINKCLOUDSYNC_API_SECRET_FILE`, or from a
`credentials=` callable. A rotation (new key added, files or vault updated, old
key removed and its tokens revoked) costs zero failed calls and one token request.
When the token endpoint refuses credentials that changed since they were read, the
token request is made once more at once, inside the same single flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import twins
from twins import HoldFirstTokenRequest, Twin, WaitSpy

from pinkcloudsync_async import AuthenticationError, CredentialsError, PinkCloudSyncClient
from pinkcloudsync_async.telemetry import CredentialsRejected, TokenHooks
from pinkcloudsync_async.testing import Emulator, EmulatorKey

twin = twins.twin
anyio_backend = twins.anyio_backend

OLD = EmulatorKey("pk_test_old", "sk_test_old_SECRET")
NEW = EmulatorKey("pk_test_new", "sk_test_new_SECRET")
KEY_FILE_ENV = "PINKCLOUDSYNC_API_KEY_FILE"
SECRET_FILE_ENV = "PINKCLOUDSYNC_API_SECRET_FILE"

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _no_plain_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PINKCLOUDSYNC_API_KEY", "PINKCLOUDSYNC_API_SECRET", KEY_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(SECRET_FILE_ENV, raising=False)


def replace_file(path: Path, text: str) -> None:
    """Replace a file's content atomically, as Kubernetes swaps a mounted secret."""
    staged = path.with_suffix(".new")
    staged.write_text(text + "\n")
    os.replace(staged, path)


class SecretFiles:
    """The key and secret files, named in the environment."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch, key: EmulatorKey):
        self.key_file = directory / "api_key"
        self.secret_file = directory / "api_secret"
        self.write(key)
        monkeypatch.setenv(KEY_FILE_ENV, str(self.key_file))
        monkeypatch.setenv(SECRET_FILE_ENV, str(self.secret_file))

    def write(self, key: EmulatorKey) -> None:
        replace_file(self.key_file, key.api_key)
        replace_file(self.secret_file, key.api_secret)


class Vault:
    """A `credentials=` callable's backing store; counts how often it is read."""

    def __init__(self, key: EmulatorKey) -> None:
        self.key = key
        self.reads = 0

    def read(self) -> tuple[str, str]:
        self.reads += 1
        return self.key.api_key, self.key.api_secret

    async def aread(self) -> tuple[str, str]:
        await anyio.lowlevel.checkpoint()
        return self.read()

    def callable_for(self, twin: Twin, flavour: str) -> Callable[[], Any]:
        return self.aread if twin.is_async and flavour == "async" else self.read


def rotate(emulator: Emulator, update: Callable[[EmulatorKey], None]) -> None:
    """The operator's rotation: new key first, then the secret store, then the old
    key removed and every token it got revoked."""
    emulator.add_key(NEW)
    update(NEW)
    emulator.remove_key(OLD.api_key)
    emulator.revoke_tokens(OLD.api_key)


def assert_all_sessions(outcomes: list[Any]) -> None:
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == []


# ------------------------------------------------------------ the rotation itself


async def test_rotating_the_secret_files_costs_no_failed_call(
    twin: Twin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator([OLD])
    files = SecretFiles(tmp_path, monkeypatch, OLD)
    async with twin.emulated(emulator) as client:
        assert_all_sessions(await twin.gather(twin.crowd, client, "list_sessions"))
        assert emulator.stats.token_requests == 1

        rotate(emulator, files.write)
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")

    assert_all_sessions(outcomes)
    assert emulator.stats.token_requests == 2  # one extra, for the whole crowd
    assert emulator.stats.token_requests_by_status == {200: 2}
    assert emulator.stats.api_requests_by_status[401] >= 1  # the revoked token was refused


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_rotating_through_a_credentials_callable_costs_no_failed_call(
    twin: Twin, flavour: str
) -> None:
    emulator = Emulator([OLD])
    vault = Vault(OLD)
    async with twin.emulated(emulator, credentials=vault.callable_for(twin, flavour)) as client:
        assert_all_sessions(await twin.gather(twin.crowd, client, "list_sessions"))

        def update(key: EmulatorKey) -> None:
            vault.key = key

        rotate(emulator, update)
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")

    assert_all_sessions(outcomes)
    assert emulator.stats.token_requests == 2
    # Read once per token request, never per request.
    assert vault.reads == 2


class RotateDuringFirstTokenRequest:
    """ASGI middleware: the rotation happens while the first token request is on
    its way, after the client read the old credentials and before the emulator
    checks them. The worst moment: the old key is gone when it arrives."""

    def __init__(self, emulator: Emulator, update: Callable[[EmulatorKey], None]) -> None:
        self.emulator = emulator
        self.update = update
        self.rotated = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/auth/token") and not self.rotated:
            self.rotated = True
            rotate(self.emulator, self.update)
        await self.emulator(scope, receive, send)


@pytest.mark.parametrize("store", ["files", "callable"])
async def test_credentials_refused_after_a_rotation_are_read_again_once_in_the_flight(
    twin: Twin, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator([OLD])
    events: list[CredentialsRejected] = []
    kwargs: dict[str, Any] = {"hooks": TokenHooks(on_credentials_rejected=events.append)}
    vault = Vault(OLD)
    if store == "files":
        update: Callable[[EmulatorKey], None] = SecretFiles(tmp_path, monkeypatch, OLD).write
    else:
        kwargs["credentials"] = vault.read

        def update(key: EmulatorKey) -> None:
            vault.key = key

    app = HoldFirstTokenRequest(
        RotateDuringFirstTokenRequest(emulator, update), twin, twin.crowd - 1
    )
    async with twin.emulated(app, **kwargs) as client:
        app.spy = WaitSpy(client)
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")

    assert_all_sessions(outcomes)
    # One refused, one accepted, both inside the one flight the whole crowd waited on.
    assert emulator.stats.token_requests_by_status == {401: 1, 200: 1}
    assert [(e.api_key, e.retrying) for e in events] == [(OLD.api_key, True)]
    assert OLD.api_secret not in repr(events)
    assert NEW.api_secret not in repr(events)


async def test_refused_credentials_that_did_not_change_fail_without_a_second_try(
    twin: Twin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator([NEW])  # the files hold OLD, never accepted
    SecretFiles(tmp_path, monkeypatch, OLD)
    events: list[CredentialsRejected] = []
    hooks = TokenHooks(on_credentials_rejected=events.append)
    app = HoldFirstTokenRequest(emulator, twin, twin.crowd - 1)
    async with twin.emulated(app, hooks=hooks) as client:
        app.spy = WaitSpy(client)
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")

    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    assert emulator.stats.token_requests == 1  # one flight, one refusal, no second try
    assert [e.retrying for e in events] == [False]
    # The error says where the refused credentials came from (the files, by name).
    notes = "\n".join(getattr(outcomes[0], "__notes__", []))
    assert SECRET_FILE_ENV in notes
    assert str(tmp_path / "api_secret") in notes
    assert OLD.api_secret not in notes + str(outcomes[0])


async def test_fixed_credentials_refused_are_not_read_again(twin: Twin) -> None:
    emulator = Emulator([NEW])
    events: list[CredentialsRejected] = []
    hooks = TokenHooks(on_credentials_rejected=events.append)
    async with twin.emulated(
        emulator, api_key=OLD.api_key, api_secret=OLD.api_secret, hooks=hooks
    ) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, AuthenticationError)
    assert "api_secret= argument" in "\n".join(error.__notes__)
    assert emulator.stats.token_requests == 1
    # Fixed credentials cannot have changed: the hook hears of it, nothing is re-read.
    assert [(e.api_key, e.retrying) for e in events] == [(OLD.api_key, False)]


# -------------------------------------------------------- failures of the store


async def test_a_secret_file_that_disappears_is_a_typed_error_for_every_waiter(
    twin: Twin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator([OLD])
    files = SecretFiles(tmp_path, monkeypatch, OLD)
    async with twin.emulated(emulator) as client:
        files.secret_file.unlink()
        outcomes = await twin.gather(twin.crowd, client, "list_sessions")
    assert all(isinstance(o, CredentialsError) for o in outcomes)
    assert str(files.secret_file) in str(outcomes[0])
    assert emulator.stats.token_requests == 0


@pytest.mark.parametrize(
    ("returned", "says"),
    [
        (None, "NoneType"),
        (("pk_only",), "tuple"),
        (("pk", ""), "empty string for api_secret"),
        ((42, "sk"), "int for api_key"),
    ],
)
async def test_a_credentials_callable_returning_no_pair_is_a_typed_error(
    twin: Twin, returned: Any, says: str
) -> None:
    emulator = Emulator([OLD])
    async with twin.emulated(emulator, credentials=lambda: returned) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, CredentialsError)
    assert says in str(error)
    assert emulator.stats.token_requests == 0


async def test_a_credentials_callable_that_raises_is_a_typed_error_with_its_cause(
    twin: Twin,
) -> None:
    def broken() -> tuple[str, str]:
        raise LookupError("vault sealed")

    async with twin.emulated(Emulator([OLD]), credentials=broken) as client:
        error = await twin.outcome(client, "get_token")
    assert isinstance(error, CredentialsError)
    assert "LookupError" in str(error)
    assert isinstance(error.__cause__, LookupError)


def test_the_sync_client_refuses_an_async_credentials_callable() -> None:
    async def vault() -> tuple[str, str]:
        return OLD.api_key, OLD.api_secret

    with pytest.raises(CredentialsError, match="async"):
        PinkCloudSyncClient(credentials=vault, base_url="https://x.example/v1")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_cancelling_the_leader_while_it_reads_the_new_credentials_hands_over_the_flight(
    anyio_backend: str,
) -> None:
    """The worst moment: the old credentials were refused and the leader is reading
    the new ones when it is cancelled. A waiter takes the flight over; nobody hangs,
    nobody fails."""
    emulator = Emulator([NEW])
    rereading, never = anyio.Event(), anyio.Event()
    reads = 0

    async def vault() -> tuple[str, str]:
        nonlocal reads
        reads += 1
        if reads == 1:
            return OLD.api_key, OLD.api_secret  # stale: refused
        if reads == 2:
            rereading.set()
            await never.wait()  # the leader is cancelled here
        return NEW.api_key, NEW.api_secret

    crowd = 200
    outcomes: list[Any] = []
    async with Twin("async", anyio_backend).emulated(emulator, credentials=vault) as client:
        spy = WaitSpy(client)
        async with anyio.create_task_group() as group:
            leader = anyio.CancelScope()

            async def lead() -> None:
                with leader:
                    await client.get_token()

            async def wait() -> None:
                outcomes.append(await client.list_sessions())

            group.start_soon(lead)
            with anyio.fail_after(twins.TIMEOUT):
                await rereading.wait()
            for _ in range(crowd):
                group.start_soon(wait)
            assert await anyio.to_thread.run_sync(spy.wait_for, crowd)
            leader.cancel()

    assert leader.cancelled_caught
    assert len(outcomes) == crowd
    assert_all_sessions(outcomes)
    assert reads == 3  # the leader's two, then the one waiter that took over
    assert emulator.stats.token_requests_by_status == {401: 1, 200: 1}


def test_a_sync_credentials_callable_returning_an_awaitable_is_a_typed_error() -> None:
    async def vault() -> tuple[str, str]:
        return OLD.api_key, OLD.api_secret

    emulator = Emulator([OLD])
    client = emulator.sync_client(api_key=None, api_secret=None, credentials=lambda: vault())
    with client, pytest.raises(CredentialsError, match="returned an awaitable"):
        client.get_token()
    assert emulator.stats.token_requests == 0
