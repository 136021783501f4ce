"""`pinkcloudsync doctor` against the emulator (a real process on loopback): a healthy
setup, and each failure it diagnoses, exit codes included; never a secret printed."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import EmulatorProcess

from pinkcloudsync_async.cli import main

SECRET = "sk_doctor_SECRET_never_printed"
WRONG = "sk_doctor_WRONG_never_printed"
ENV_NAMES = (
    "PINKCLOUDSYNC_API_KEY",
    "PINKCLOUDSYNC_API_SECRET",
    "PINKCLOUDSYNC_API_KEY_FILE",
    "PINKCLOUDSYNC_API_SECRET_FILE",
    "PINKCLOUDSYNC_BASE_URL",
    "PINKCLOUDSYNC_REDIS_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
)


def serve(*args: str) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess("--key", f"pk_doctor:{SECRET}:sync:read", *args)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorProcess]:
    yield from serve()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str], str]:
    """Run it; (exit status, verdict by check, the whole output)."""
    status = main(["doctor", "--timeout", "5", *args])
    out, err = capsys.readouterr()
    text = out + err
    assert SECRET not in text
    assert WRONG not in text
    assert "eyJ" not in text  # no token
    verdicts = {
        line[7:20].strip(): line[1:5].strip() for line in out.splitlines() if line.startswith("[")
    }
    return status, verdicts, text


def configure(monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess, secret: str = SECRET):
    monkeypatch.setenv("PINKCLOUDSYNC_API_KEY", "pk_doctor")
    monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", secret)
    monkeypatch.setenv("PINKCLOUDSYNC_BASE_URL", server.url)


def test_a_healthy_setup_is_all_ok_and_exit_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess
) -> None:
    configure(monkeypatch, server)
    status, verdicts, text = doctor(capsys)
    assert status == 0
    assert verdicts == {
        "api key": "ok",
        "api secret": "ok",
        "base url": "ok",
        "plain http": "ok",
        "proxy": "ok",
        "tcp": "ok",
        "tls": "skip",
        "token": "ok",
        "api call": "ok",
        "clock": "ok",
        "token store": "skip",
    }
    assert "pk_doctor (from PINKCLOUDSYNC_API_KEY in the environment)" in text
    assert f"{server.url} (from PINKCLOUDSYNC_BASE_URL in the environment)" in text
    assert "lifetime 3600 s, permissions sync:read" in text
    assert text.rstrip().endswith("pinkcloudsync doctor: healthy")


def test_a_wrong_secret_fails_the_token_line_naming_where_it_came_from(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: EmulatorProcess,
    tmp_path: Path,
) -> None:
    configure(monkeypatch, server)
    monkeypatch.delenv("PINKCLOUDSYNC_API_SECRET")
    (tmp_path / "secret").write_text(WRONG)
    monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET_FILE", str(tmp_path / "secret"))
    status, verdicts, text = doctor(capsys)
    assert status == 1
    assert verdicts["token"] == "FAIL"
    assert verdicts["api call"] == "skip"
    assert "401 invalid_credentials" in text
    assert f"PINKCLOUDSYNC_API_SECRET_FILE ({tmp_path / 'secret'})" in text
    assert "1 failed" in text


def test_an_unreachable_host_fails_tcp_and_skips_the_rest(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess
) -> None:
    configure(monkeypatch, server)
    with socket.socket() as placeholder:  # a port nobody listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    status, verdicts, text = doctor(capsys, "--base-url", f"http://127.0.0.1:{port}/v1")
    assert status == 1
    assert verdicts["tcp"] == "FAIL"
    assert verdicts["token"] == verdicts["api call"] == "skip"
    assert f"cannot connect to 127.0.0.1:{port}" in text


def test_plain_http_to_a_remote_host_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess
) -> None:
    configure(monkeypatch, server)
    status, verdicts, text = doctor(capsys, "--base-url", "http://pinkcloudsync.invalid/v1")
    assert status == 1
    assert verdicts["plain http"] == "FAIL"
    assert "use https (or --allow-insecure-http)" in text
    assert verdicts["token"] == "skip"


@pytest.mark.parametrize(("skew", "verdict", "exit_status"), [(3600, "FAIL", 1), (30, "warn", 0)])
def test_a_skewed_server_clock_is_diagnosed(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    skew: int,
    verdict: str,
    exit_status: int,
) -> None:
    for skewed in serve("--clock-skew", str(skew)):
        configure(monkeypatch, skewed)
        status, verdicts, text = doctor(capsys)
    assert status == exit_status
    assert verdicts["clock"] == verdict
    assert verdicts["token"] == "ok"  # the library reads lifetimes on the server's clock
    # The Date header has whole seconds: one more or less is rounding.
    assert any(
        f"the server's clock is {seconds} s ahead of this machine's" in text
        for seconds in (skew - 1, skew, skew + 1)
    )


def test_missing_credentials_fail_the_first_line(
    capsys: pytest.CaptureFixture[str], server: EmulatorProcess
) -> None:
    status, verdicts, text = doctor(capsys, "--base-url", server.url)
    assert status == 1
    assert verdicts["credentials"] == "FAIL"
    assert "PINKCLOUDSYNC_API_KEY and PINKCLOUDSYNC_API_SECRET" in text
    assert verdicts["tcp"] == "ok"  # the network is still checked


def test_a_proxy_in_effect_is_shown_without_its_password_and_checked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://proxyuser:proxy-PASSWORD@127.0.0.1:{port}")
    status, verdicts, text = doctor(capsys, "--api-key", "pk_doctor", "--api-secret", SECRET)
    assert status == 1
    assert f"http://proxyuser:***@127.0.0.1:{port} for https://" in text
    assert "proxy-PASSWORD" not in text
    assert verdicts["tcp"] == "FAIL"
    assert "(the proxy)" in text


def test_no_proxy_bypass_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess
) -> None:
    configure(monkeypatch, server)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    status, verdicts, text = doctor(capsys)
    assert verdicts["proxy"] == "ok"
    assert "NO_PROXY bypasses it for 127.0.0.1" in text
    assert status == 0


STORE_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


def test_a_redis_store_without_its_key_is_a_failed_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, server: EmulatorProcess
) -> None:
    configure(monkeypatch, server)
    monkeypatch.setenv("PINKCLOUDSYNC_REDIS_URL", "redis://127.0.0.1:9/0")
    monkeypatch.delenv("PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY", raising=False)
    status, verdicts, text = doctor(capsys)
    assert verdicts["token store"] == "FAIL"
    assert "encryption key" in text
    assert verdicts["token"] == "ok"  # the API is checked all the same
    assert status == 1


class FakeRedis:
    """A socket that answers every command with `answer` (RESP), in a thread."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://:store-PASSWORD@127.0.0.1:{self.sock.getsockname()[1]}/0"
        self.received = b""
        self.thread = threading.Thread(target=self._serve, args=(answer,), daemon=True)
        self.thread.start()

    def _serve(self, answer: bytes) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.received = conn.recv(1024)
            conn.sendall(answer)

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


@pytest.mark.parametrize(
    ("answer", "verdict"), [(b"+OK\r\n+PONG\r\n", "ok"), (b"-WRONGPASS invalid\r\n", "FAIL")]
)
def test_a_configured_redis_store_is_pinged(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: EmulatorProcess,
    answer: bytes,
    verdict: str,
) -> None:
    configure(monkeypatch, server)
    redis = FakeRedis(answer)
    try:
        monkeypatch.setenv("PINKCLOUDSYNC_REDIS_URL", redis.url)
        monkeypatch.setenv("PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY", STORE_KEY)
        status, verdicts, text = doctor(capsys)
    finally:
        redis.close()
    assert verdicts["token store"] == verdict
    assert status == (0 if verdict == "ok" else 1)
    assert b"AUTH" in redis.received
    assert b"PING" in redis.received
    assert "store-PASSWORD" not in text


def test_doctor_runs_as_a_process_too(server: EmulatorProcess) -> None:
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if k not in ENV_NAMES},
        "PINKCLOUDSYNC_API_KEY": "pk_doctor",
        "PINKCLOUDSYNC_API_SECRET": SECRET,
    }
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pinkcloudsync_async", "--base-url", server.url, "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pinkcloudsync doctor: healthy" in result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "check", "says"),
    [
        (["--base-url", "http://[::1"], "base url", "not a valid URL"),
        (["--base-url", "ftp://files.example/v1"], "base url", "not an absolute http(s) URL"),
        (["--redis-url", "http://127.0.0.1:6379"], "token store", "not a redis:// URL"),
        (["--redis-url", "redis://[::1"], "token store", "not valid"),
    ],
)
def test_unusable_urls_are_failed_lines_not_tracebacks(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    server: EmulatorProcess,
    args: list[str],
    check: str,
    says: str,
) -> None:
    configure(monkeypatch, server)
    status, verdicts, text = doctor(capsys, *args)
    assert status == 1
    assert verdicts[check] == "FAIL"
    assert says in text
    assert "Traceback" not in text


class TLSServer:
    """A TLS listener on 127.0.0.1 with a certificate for `localhost` from a test CA
    (trustme): it completes handshakes and closes; it speaks no HTTP."""

    def __init__(self, ca: Any) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost").configure_cert(self.context)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: the test is over
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.mark.parametrize("trusted", [True, False])
def test_the_tls_handshake_is_checked_against_the_trusted_cas(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    trusted: bool,
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    if trusted:  # as httpx does, the check honours SSL_CERT_FILE
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server = TLSServer(ca)
    try:
        status, verdicts, text = doctor(
            capsys,
            "--api-key=pk_doctor",
            f"--api-secret={SECRET}",
            f"--base-url=https://localhost:{server.port}/v1",
        )
    finally:
        server.close()
    assert verdicts["plain http"] == "ok"
    assert verdicts["tcp"] == "ok"
    if trusted:
        assert verdicts["tls"] == "ok"
        assert "TLSv1." in text
        assert "certificate valid until" in text
    else:
        assert verdicts["tls"] == "FAIL"
        assert "CERTIFICATE_VERIFY_FAILED" in text
    assert status == 1  # it speaks no HTTP: the token request fails either way
