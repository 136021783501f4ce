"""The `pinkcloudsync` command line: exit codes, output, and no secret or token printed.

The emulator command runs as a real subprocess (signals, exit status); the client
commands run in-process (`main([...])`) against it, and once through `python -m`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from fakes import TIMEOUT, EmulatorProcess

from pinkcloudsync_async.cli import main

SECRET = "sk_cli_SECRET_never_printed"
RO_SECRET = "sk_ro_SECRET_never_printed"
WO_SECRET = "sk_wo_SECRET_never_printed"
WRONG_SECRET = "sk_wrong_SECRET_value"
ENV_SECRET = "sk_env_wrong_SECRET"
ALL_SECRETS = (SECRET, RO_SECRET, WO_SECRET, WRONG_SECRET, ENV_SECRET)
KEYS = [
    f"pk_cli:{SECRET}",
    f"pk_ro:{RO_SECRET}:sync:read",
    f"pk_wo:{WO_SECRET}:sync:write",
]
ENV_NAMES = ("PINKCLOUDSYNC_API_KEY", "PINKCLOUDSYNC_API_SECRET", "PINKCLOUDSYNC_BASE_URL")


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(*(arg for key in KEYS for arg in ("--key", key)))
    try:
        yield process
    finally:
        process.stop(signal.SIGTERM)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess) -> EmulatorProcess:
    monkeypatch.setenv("PINKCLOUDSYNC_API_KEY", "pk_cli")
    monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", SECRET)
    monkeypatch.setenv("PINKCLOUDSYNC_BASE_URL", server.url)
    return server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for secret in ALL_SECRETS:  # never printed, whatever happened
        assert secret not in out + err
    return status, out, err


class TestEmulatorCommand:
    def test_prints_the_exports_and_exits_0_on_sigint(self) -> None:
        process = EmulatorProcess()
        assert process.url.startswith("http://127.0.0.1:")
        assert f"export PINKCLOUDSYNC_BASE_URL={process.url}" in process.stdout_lines
        assert "export PINKCLOUDSYNC_API_KEY=pk_test_emulator" in process.stdout_lines
        # The well-known test secret may be shown: it only opens the emulator.
        assert "export PINKCLOUDSYNC_API_SECRET=sk_test_emulator" in process.stdout_lines
        assert process.stop(signal.SIGINT) == 0
        assert "Traceback" not in process.output
        assert "SIGINT: stopping" in process.stderr

    def test_exits_0_on_sigterm_and_never_echoes_a_given_secret(self) -> None:
        process = EmulatorProcess("--key", f"pk_mine:{SECRET}:sync:read", "--token-lifetime", "5")
        assert "export PINKCLOUDSYNC_API_KEY=pk_mine" in process.stdout_lines
        assert process.stop(signal.SIGTERM) == 0
        assert SECRET not in process.output
        assert "Traceback" not in process.output
        assert "emulator stopped after 0 token requests and 0 API requests" in process.stderr

    def test_a_port_in_use_is_one_line_and_exit_1(self, server: EmulatorProcess) -> None:
        port = server.url.rsplit(":", 1)[1].split("/")[0]
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pinkcloudsync_async", "emulator", "--port", port],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr.startswith(f"pinkcloudsync: error: cannot listen on 127.0.0.1:{port}")
        assert len(result.stderr.strip().splitlines()) == 1

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            (f"pk_x:{SECRET}:sync:fly", "unknown permission(s) sync:fly"),
            ("pk_x", "--key wants KEY:SECRET"),
            (f":{SECRET}", "--key wants KEY:SECRET"),
        ],
    )
    def test_a_bad_key_is_exit_2_without_echoing_it(
        self, capsys: pytest.CaptureFixture[str], spec: str, message: str
    ) -> None:
        status, _, err = run(capsys, "emulator", "--key", spec)
        assert status == 2
        assert message in err


class TestTokenCommand:
    def test_shows_subject_permissions_and_lifetime_not_the_token(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, out, err = run(capsys, "token")
        assert status == 0
        assert "subject:      user_" in out
        assert "permissions:  sync:read, sync:write, conflicts:read, conflicts:write" in out
        assert "expires in:   3600 s" in out or "expires in:   3599 s" in out
        assert "eyJ" not in out + err  # no JWT (they all start with eyJ)

    def test_show_token_prints_it(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, out, _ = run(capsys, "token", "--show-token")
        assert status == 0
        token = out.split("access token: ")[1].strip()
        assert jwt.decode(token, options={"verify_signature": False})["permissions"]

    def test_bad_credentials_say_so_without_the_secret(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, out, err = run(capsys, "token", "--api-secret", WRONG_SECRET)
        assert status == 1
        assert out == ""
        assert err.startswith("pinkcloudsync: error: authentication failed")
        assert "Invalid API key or secret" in err
        assert len(err.strip().splitlines()) == 1

    def test_missing_configuration_names_the_variables(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        status, _, err = run(capsys, "token")
        assert status == 2
        assert "PINKCLOUDSYNC_API_KEY and PINKCLOUDSYNC_API_SECRET" in err
        assert len(err.strip().splitlines()) == 1

    def test_an_unreachable_api_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        status, _, err = run(
            capsys,
            "token",
            "--api-key=pk_cli",
            f"--api-secret={SECRET}",
            "--base-url=http://127.0.0.1:9/v1",
        )
        assert status == 1
        assert err.startswith("pinkcloudsync: error: cannot reach http://127.0.0.1:9/v1")

    def test_plain_http_to_a_remote_host_is_a_configuration_error(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, _, err = run(capsys, "token", "--base-url", "http://api.invalid/v1")
        assert status == 2
        assert "plain HTTP" in err
        assert "--allow-insecure-http" in err  # the flag to use here, not the argument

    @pytest.mark.parametrize("command", [["emulator", "--port", "0"], ["demo"]])
    def test_without_the_emulator_extra_it_is_one_line_exit_2(
        self,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        command: list[str],
    ) -> None:
        monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
        status, _, err = run(capsys, *command)
        assert status == 2
        assert err.strip() == (
            "pinkcloudsync: error: Serving the emulator needs uvicorn: "
            'pip install "pinkcloudsync-async[emulator]"'
        )


class TestSessionsAndRequest:
    def test_sessions_prints_json(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, out, err = run(capsys, "request", "POST", "sync/sessions", "--json", '{"n": 1}')
        assert status == 0
        assert err == "201 Created\n"
        assert {"n": 1}.items() <= json.loads(out).items()  # stdout is the body alone
        status, out, _ = run(capsys, "sessions")
        assert status == 0
        sessions = json.loads(out)["sessions"]
        assert {"n": 1}.items() <= sessions[-1].items()

    def test_a_missing_permission_is_one_line_exit_1(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, _, err = run(capsys, "sessions", "--api-key", "pk_wo", "--api-secret", WO_SECRET)
        assert status == 1
        assert err.strip() == (
            "pinkcloudsync: error: permission denied: API key does not have 'sync:read' permission"
        )

    def test_request_prints_status_and_body_and_fails_on_errors(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        status, out, err = run(capsys, "request", "GET", "/sync/nothing")
        assert status == 1
        assert err == "404 Not Found\n"
        assert json.loads(out)["error"] == "not_found"
        status, out, err = run(
            capsys,
            "request",
            "post",
            "sync/sessions",
            "--json",
            "{}",
            "--api-key=pk_ro",
            f"--api-secret={RO_SECRET}",
        )
        assert status == 1
        assert err == "403 Forbidden\n"
        assert json.loads(out)["error"] == "insufficient_permissions"

    def test_request_never_prints_an_access_token(
        self, capsys: pytest.CaptureFixture[str], configured: EmulatorProcess
    ) -> None:
        body = f'{{"api_key": "pk_cli", "api_secret": "{SECRET}"}}'
        status, out, _ = run(capsys, "request", "POST", "auth/token", "--json", body)
        assert status == 0
        assert '"access_token": "[hidden' in out
        assert "eyJ" not in out

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["GET", "sync/sessions", "--json", "{bad"], "--json is not valid JSON"),
            (["GET", "https://elsewhere.example/x"], "PATH is relative to the base URL"),
        ],
    )
    def test_request_usage_errors_are_exit_2(
        self,
        capsys: pytest.CaptureFixture[str],
        configured: EmulatorProcess,
        args: list[str],
        message: str,
    ) -> None:
        status, _, err = run(capsys, "request", *args)
        assert status == 2
        assert message in err


class TestConfiguration:
    def write_env(self, path: Path, server: EmulatorProcess, secret: str = SECRET) -> None:
        path.write_text(
            f"PINKCLOUDSYNC_API_KEY=pk_cli\nPINKCLOUDSYNC_API_SECRET={secret}\n"
            f"PINKCLOUDSYNC_BASE_URL={server.url}\n"
        )

    def test_a_dot_env_in_the_working_directory_is_read(
        self, capsys: pytest.CaptureFixture[str], server: EmulatorProcess, tmp_path: Path
    ) -> None:
        self.write_env(tmp_path / ".env", server)
        status, out, _ = run(capsys, "token")
        assert status == 0
        assert "subject:" in out
        assert "PINKCLOUDSYNC_API_KEY" not in os.environ  # read, not exported

    def test_the_environment_beats_dot_env_and_flags_beat_both(
        self,
        capsys: pytest.CaptureFixture[str],
        server: EmulatorProcess,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.write_env(tmp_path / ".env", server)
        monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", ENV_SECRET)
        status, _, err = run(capsys, "token")
        assert status == 1
        assert "authentication failed" in err
        status, _, _ = run(capsys, "token", "--api-secret", SECRET)
        assert status == 0

    def test_without_python_dotenv_a_dot_env_is_skipped_with_a_note(
        self,
        capsys: pytest.CaptureFixture[str],
        server: EmulatorProcess,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.write_env(tmp_path / ".env", server)
        monkeypatch.setitem(sys.modules, "dotenv", None)  # as if not installed
        status, _, err = run(capsys, "token")
        assert status == 2
        assert "ignoring .env: python-dotenv is not installed" in err
        assert "PINKCLOUDSYNC_API_KEY and PINKCLOUDSYNC_API_SECRET" in err


class TestEntryPoints:
    def test_python_m_runs_a_command(self, server: EmulatorProcess) -> None:
        env = {
            **os.environ,
            "PINKCLOUDSYNC_API_KEY": "pk_cli",
            "PINKCLOUDSYNC_API_SECRET": SECRET,
            "PINKCLOUDSYNC_BASE_URL": server.url,
        }
        result = subprocess.run(
            [sys.executable, "-m", "pinkcloudsync_async", "token"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "subject:" in result.stdout
        assert SECRET not in result.stdout + result.stderr

    def test_no_command_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main([])
        assert exited.value.code == 2
        assert "usage: pinkcloudsync" in capsys.readouterr().err

    def test_help_lists_every_command(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        for command in ("emulator", "token", "sessions", "request", "demo"):
            assert command in out


class TestOptionsAndMessages:
    def test_connection_flags_work_before_the_command_too(
        self, capsys: pytest.CaptureFixture[str], server: EmulatorProcess
    ) -> None:
        status, out, _ = run(
            capsys,
            "--api-key",
            "pk_cli",
            f"--api-secret={SECRET}",
            "--base-url",
            server.url,
            "token",
        )
        assert status == 0
        assert "subject:" in out
        # After the command wins over before it.
        status, _, err = run(
            capsys,
            "--api-secret",
            WRONG_SECRET,
            "--base-url",
            server.url,
            "token",
            "--api-key=pk_cli",
            f"--api-secret={SECRET}",
        )
        assert status == 0, err

    @pytest.mark.parametrize("where", ["flag", "environment", "dotenv", "file"])
    def test_a_refused_secret_names_where_it_came_from(
        self,
        capsys: pytest.CaptureFixture[str],
        server: EmulatorProcess,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        where: str,
    ) -> None:
        monkeypatch.setenv("PINKCLOUDSYNC_BASE_URL", server.url)
        monkeypatch.setenv("PINKCLOUDSYNC_API_KEY", "pk_cli")
        args = ["token"]
        expected = {
            "flag": "the secret from --api-secret",
            "environment": "the secret from PINKCLOUDSYNC_API_SECRET in the environment",
            "dotenv": "the secret from PINKCLOUDSYNC_API_SECRET in .env",
            "file": "the secret from the file named by PINKCLOUDSYNC_API_SECRET_FILE",
        }[where]
        if where == "flag":
            args.append(f"--api-secret={WRONG_SECRET}")
        elif where == "environment":
            monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", WRONG_SECRET)
        elif where == "dotenv":
            (tmp_path / ".env").write_text(f"PINKCLOUDSYNC_API_SECRET={WRONG_SECRET}\n")
        else:
            (tmp_path / "secret").write_text(WRONG_SECRET)
            monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET_FILE", str(tmp_path / "secret"))
        status, _, err = run(capsys, *args)
        assert status == 1
        assert "authentication failed" in err
        assert expected in err
        assert "the API key from PINKCLOUDSYNC_API_KEY in the environment" in err
        assert len(err.strip().splitlines()) == 1

    def test_a_secret_file_is_read(
        self,
        capsys: pytest.CaptureFixture[str],
        server: EmulatorProcess,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        (tmp_path / "secret").write_text(SECRET + "\n")
        monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET_FILE", str(tmp_path / "secret"))
        status, out, _ = run(capsys, "--base-url", server.url, "--api-key", "pk_cli", "token")
        assert status == 0
        assert "subject:" in out

    def test_a_variable_and_its_file_together_are_exit_2(
        self, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "secret").write_text(SECRET)
        monkeypatch.setenv("PINKCLOUDSYNC_API_KEY", "pk_cli")
        monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", SECRET)
        monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET_FILE", str(tmp_path / "secret"))
        status, _, err = run(capsys, "token")
        assert status == 2
        assert "PINKCLOUDSYNC_API_SECRET and PINKCLOUDSYNC_API_SECRET_FILE" in err

    def test_demo_help_shows_the_defaults(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--help"])
        assert exited.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        for default in (
            "(default: 15.0)",
            "(default: 256)",
            "(default: 32)",
            "(default: 4)",
            "(default: 2)",
        ):
            assert default in out
