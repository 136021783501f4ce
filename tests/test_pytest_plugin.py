"""The pytest plugin: registered by entry point, cheap to load, fixtures that work."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
from pinkcloudsync_async.testing import Emulator

SUBPROCESS_TIMEOUT = 60


def run_python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter, our own code
        [sys.executable, *args, "-c", code] if code else [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        cwd=cwd,
        check=False,
    )


def test_the_emulator_fixture_is_a_fresh_emulator(pinkcloudsync_emulator: Emulator) -> None:
    assert isinstance(pinkcloudsync_emulator, Emulator)
    assert pinkcloudsync_emulator.stats.token_requests == 0
    assert pinkcloudsync_emulator.sessions == []


@pytest.mark.anyio
async def test_the_client_fixture_talks_to_the_emulator_fixture(
    pinkcloudsync_client: AsyncPinkCloudSyncClient, pinkcloudsync_emulator: Emulator
) -> None:
    pinkcloudsync_emulator.add_session(name="seeded")
    sessions = (await pinkcloudsync_client.list_sessions()).sessions
    assert [s.model_extra["name"] for s in sessions if s.model_extra] == ["seeded"]
    assert pinkcloudsync_emulator.stats.token_requests == 1


def test_the_sync_client_fixture_talks_to_the_emulator_fixture(
    pinkcloudsync_sync_client: PinkCloudSyncClient, pinkcloudsync_emulator: Emulator
) -> None:
    assert isinstance(pinkcloudsync_sync_client, PinkCloudSyncClient)
    pinkcloudsync_sync_client.post("sync/sessions", json={"name": "made"})
    assert [s["name"] for s in pinkcloudsync_emulator.sessions] == ["made"]


def test_loading_the_plugin_imports_no_server() -> None:
    result = run_python(
        "import sys, pinkcloudsync_async.testing.pytest_plugin\n"
        "print(sorted(m for m in ('uvicorn', 'dotenv') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_uvicorn_the_plugin_and_emulator_work_and_serving_says_why() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["uvicorn"] = None  # as if it were not installed
        import anyio
        from pinkcloudsync_async.testing import Emulator, serve_emulator
        import pinkcloudsync_async.testing.pytest_plugin

        async def main():
            emulator = Emulator()
            async with emulator.client() as client:
                await client.list_sessions()
            try:
                async with serve_emulator(emulator):
                    pass
            except ImportError as exc:
                print("ImportError:", exc)

        anyio.run(main)
        """
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert 'pip install "pinkcloudsync-async[emulator]"' in result.stdout


def test_a_user_test_suite_gets_the_fixtures_from_the_entry_point(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from pinkcloudsync_async.testing import Emulator, EmulatorKey

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.fixture
            def pinkcloudsync_emulator():
                # Overridden by the user: a read-only key.
                return Emulator(keys=[EmulatorKey("pk_test_ro", "sk_test_ro", ("sync:read",))])
            """
        )
    )
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from pinkcloudsync_async import PermissionDeniedError, raise_for_api_error

            @pytest.mark.anyio
            async def test_async(pinkcloudsync_client, pinkcloudsync_emulator):
                assert (await pinkcloudsync_client.list_sessions()).sessions == []
                response = await pinkcloudsync_client.post("sync/sessions", json={})
                with pytest.raises(PermissionDeniedError):
                    raise_for_api_error(response)

            def test_sync(pinkcloudsync_sync_client):
                assert pinkcloudsync_sync_client.get_token().claims.permissions == ("sync:read",)
            """
        )
    )
    result = run_python(
        "",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",  # the anyio plugin alone runs the async fixture
        "-W",
        "error",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
