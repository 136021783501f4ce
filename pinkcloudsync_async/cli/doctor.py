"""`pinkcloudsync doctor`: what is wrong, as a checklist with a verdict per line.

    [ ok ] api key        pk_live_... (from PINKCLOUDSYNC_API_KEY in the environment)
    [FAIL] token          401 invalid_credentials: Invalid API key or secret; check ...

Each line is `ok`, `warn`, `FAIL` or `skip` (a check that cannot run because an
earlier one failed, or that does not apply). The exit status is 0 when no line
failed (warnings included), 1 when one did, 2 for a usage error. Secrets and tokens
are never printed; proxy passwords are masked.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TextIO

import httpx

from .._async_client import AsyncPinkCloudSyncClient
from .._config import is_loopback_host, resolve_token_store
from .._credentials import SettingCredentials
from .._exceptions import APIError, ConfigurationError, PinkCloudSyncError
from ..stores import InProcessTokenStore
from ._common import PROG, CLIError, Connection, client_options, connection, run_coroutine

if TYPE_CHECKING:
    from ._common import Commands

__all__ = ["CLOCK_FAIL", "CLOCK_WARN", "REDIS_URL_ENV", "Report", "add_parser", "run"]

# A clock this far from the server's is worth a warning (logs and certificates
# disagree); past the API's 5-minute refresh margin it is a failure.
CLOCK_WARN = 5.0
CLOCK_FAIL = 300.0
REDIS_URL_ENV = "PINKCLOUDSYNC_REDIS_URL"
_WIDTH = 13


@dataclass
class Report:
    """The checklist as it is written: one line per check, and the failures seen."""

    out: TextIO
    failed: list[str] = field(default_factory=list)
    redact: Callable[[str], str] = lambda text: text

    def line(self, verdict: str, check: str, detail: str) -> None:
        if verdict == "FAIL":
            self.failed.append(check)
        self.out.write(f"[{verdict:^4}] {check:<{_WIDTH}} {self.redact(detail)}\n")
        self.out.flush()


def add_parser(commands: Commands) -> None:
    """Add the `doctor` command to the CLI's subparsers."""
    parser = commands.add_parser(
        "doctor",
        parents=[client_options()],
        help="check the configuration, the network and the API, one verdict per line",
    )
    parser.add_argument(
        "--redis-url", help=f"the Redis token store to check (default: ${REDIS_URL_ENV})"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The `doctor` command."""
    report = Report(sys.stdout)
    try:
        target = connection(args, os.environ)
    except CLIError as exc:
        report.line("FAIL", "credentials", str(exc))
        target = None
    if target is not None:
        report.redact = _redactor(target)
        _credentials(report, target)
    base_url = target.base_url if target else _fallback_base_url(args)
    try:
        url: httpx.URL | None = httpx.URL(base_url.strip())
    except httpx.InvalidURL as exc:
        report.line("FAIL", "base url", f"not a valid URL: {exc}")
        url = None
    usable = url is not None and _base_url(report, url, target, args.allow_insecure_http)
    reachable = False
    if url is not None and url.host:
        proxy = _proxy(report, url)
        reachable = _tcp(report, url, proxy, args.timeout)
        _tls(report, url, proxy, reachable, args.timeout)
    else:
        for check in ("proxy", "tcp", "tls"):
            report.line("skip", check, "no usable base URL")
    if target is not None and usable and reachable:
        run_coroutine(_api(report, target, args))
    else:
        for check in ("token", "api call", "clock"):
            report.line("skip", check, "needs the checks above to pass")
    _store(report, args.redis_url or os.environ.get(REDIS_URL_ENV), args.timeout)
    verdict = "healthy" if not report.failed else f"{len(report.failed)} failed"
    report.out.write(f"{PROG} doctor: {verdict}\n")
    return 1 if report.failed else 0


def _redactor(target: Connection) -> Callable[[str], str]:
    def redact(text: str) -> str:
        try:
            secret = target.credentials.read().api_secret.get_secret_value()
        except ConfigurationError:
            return text
        return text.replace(secret, "[secret]") if secret else text

    return redact


def _fallback_base_url(args: argparse.Namespace) -> str:
    from .._constants import BASE_URL_ENV, DEFAULT_BASE_URL

    return str(args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL)


def _credentials(report: Report, target: Connection) -> None:
    provider = target.credentials
    try:
        credentials = provider.read()
    except ConfigurationError as exc:
        report.line("FAIL", "credentials", str(exc))
        return
    if isinstance(provider, SettingCredentials):
        key_origin, secret_origin = provider.api_key.origin, provider.api_secret.origin
    else:
        key_origin = secret_origin = provider.description
    report.line("ok", "api key", f"{credentials.api_key} (from {key_origin})")
    report.line("ok", "api secret", f"set, never shown (from {secret_origin})")


def _base_url(
    report: Report, url: httpx.URL, target: Connection | None, allow_insecure: bool
) -> bool:
    origin = f" (from {target.base_url_origin})" if target else ""
    if url.scheme not in {"http", "https"} or not url.host:
        report.line("FAIL", "base url", f"{url} is not an absolute http(s) URL{origin}")
        return False
    report.line("ok", "base url", f"{url}{origin}")
    if url.scheme == "https":
        report.line("ok", "plain http", "not used (https)")
        return True
    if is_loopback_host(url.host):
        report.line("ok", "plain http", f"allowed: {url.host} is a loopback host")
        return True
    if allow_insecure:
        report.line("warn", "plain http", f"allowed to {url.host} by --allow-insecure-http")
        return True
    report.line(
        "FAIL",
        "plain http",
        f"refused: credentials would cross the network in clear to {url.host}; "
        "use https (or --allow-insecure-http)",
    )
    return False


def _proxy(report: Report, url: httpx.URL) -> httpx.URL | None:
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(url.scheme) or proxies.get("all")
    if not chosen:
        report.line("ok", "proxy", "none set")
        return None
    if urllib.request.proxy_bypass(url.host):  # NO_PROXY, as httpx reads it
        report.line("ok", "proxy", f"set, but NO_PROXY bypasses it for {url.host}")
        return None
    proxy = httpx.URL(chosen if "://" in chosen else f"http://{chosen}")
    report.line("ok", "proxy", f"{_masked(proxy)} for {url.scheme}:// (from the environment)")
    return proxy


def _masked(url: httpx.URL) -> httpx.URL:
    """`url` with its password, if any, as `***`."""
    if not url.password:
        return url
    return url.copy_with(username=url.username, password="***")  # noqa: S106


def _tcp(report: Report, url: httpx.URL, proxy: httpx.URL | None, timeout: float) -> bool:
    target = proxy or url
    host = target.host
    port = target.port or (443 if target.scheme == "https" else 80)
    via = " (the proxy)" if proxy else ""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        report.line("FAIL", "tcp", f"cannot connect to {host}:{port}{via}: {reason}")
        return False
    elapsed = (time.perf_counter() - started) * 1000
    report.line("ok", "tcp", f"connected to {host}:{port}{via} in {elapsed:.1f} ms")
    return True


def _tls(
    report: Report, url: httpx.URL, proxy: httpx.URL | None, reachable: bool, timeout: float
) -> None:
    if url.scheme != "https":
        report.line("skip", "tls", "plain http")
        return
    if proxy is not None or not reachable:
        why = "through a proxy: the token request tests it" if reachable else "host not reachable"
        report.line("skip", "tls", why)
        return
    context = httpx.create_ssl_context()
    port = url.port or 443
    try:
        with (
            socket.create_connection((url.host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=url.host) as tls,
        ):
            version, cert = tls.version(), tls.getpeercert()
    except (OSError, ssl.SSLError) as exc:
        report.line("FAIL", "tls", f"handshake with {url.host}:{port} failed: {exc}")
        return
    expiry = (cert or {}).get("notAfter")
    until = f", certificate valid until {expiry}" if isinstance(expiry, str) else ""
    report.line("ok", "tls", f"{version}{until}")


async def _api(report: Report, target: Connection, args: argparse.Namespace) -> int:
    seen: list[tuple[httpx.Response, float]] = []

    async def record(response: httpx.Response) -> None:
        seen.append((response, time.time()))

    client = AsyncPinkCloudSyncClient(
        credentials=target.credentials,
        base_url=target.base_url,
        allow_insecure_http=args.allow_insecure_http,
        timeout=args.timeout,
        max_retries=0,  # a diagnosis shows the first answer, not a retried one
        event_hooks={"response": [record]},
        # The token request is checked against the API itself; the Redis store has a
        # line of its own (a fleet's stored token would hide what the API answers).
        token_store=InProcessTokenStore(),
    )
    async with client:
        started = time.perf_counter()
        try:
            token = await client.get_token()
        except (PinkCloudSyncError, httpx.HTTPError) as exc:
            report.line("FAIL", "token", _describe(exc, target))
            token = None
        if token is not None:
            took = (time.perf_counter() - started) * 1000
            claims = token.claims
            report.line(
                "ok",
                "token",
                f"200 in {took:.0f} ms: subject {claims.sub or '(none)'}, lifetime "
                f"{token.lifetime:.0f} s, permissions {', '.join(claims.permissions) or '(none)'}",
            )
            await _call(report, client)
        else:
            report.line("skip", "api call", "no token")
    _clock(report, seen)
    return 0


async def _call(report: Report, client: AsyncPinkCloudSyncClient) -> None:
    started = time.perf_counter()
    try:
        response = await client.get("sync/sessions")
    except httpx.HTTPError as exc:
        report.line("FAIL", "api call", f"GET sync/sessions: {type(exc).__name__}")
        return
    took = (time.perf_counter() - started) * 1000
    if response.status_code == 403:
        report.line("warn", "api call", "GET sync/sessions: 403, the key lacks sync:read")
    elif response.status_code >= 400:
        report.line("FAIL", "api call", f"GET sync/sessions: {response.status_code}")
    else:
        report.line("ok", "api call", f"GET sync/sessions: {response.status_code} in {took:.0f} ms")


def _clock(report: Report, seen: list[tuple[httpx.Response, float]]) -> None:
    for response, received in seen:
        date = response.headers.get("date")
        try:
            server = parsedate_to_datetime(date).timestamp() if date else None
        except (TypeError, ValueError):
            server = None
        if server is None:
            continue
        # Date has whole seconds: up to 1 s of difference is rounding.
        skew = server - received
        local = datetime.fromtimestamp(received, UTC).isoformat(timespec="seconds")
        ahead = "ahead of" if skew > 0 else "behind"
        text = f"the server's clock is {abs(skew):.0f} s {ahead} this machine's ({local})"
        if abs(skew) <= CLOCK_WARN:
            report.line("ok", "clock", f"within {CLOCK_WARN:g} s of the server's (Date header)")
        elif abs(skew) <= CLOCK_FAIL:
            report.line("warn", "clock", text)
        else:
            report.line("FAIL", "clock", f"{text}: set this machine's time (NTP)")
        return
    report.line("skip", "clock", "no answer carried a Date header")


def _describe(exc: BaseException, target: Connection) -> str:
    if isinstance(exc, APIError):
        text = f"{exc.status_code} {exc.error}: {exc.message}"
        if exc.status_code == 401:
            text += f"; check {target.credentials.description}"
        return text
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def _store(report: Report, redis_url: str | None, timeout: float) -> None:
    if not redis_url:
        report.line("skip", "token store", "in-process (no Redis token store configured)")
        return
    try:
        url = httpx.URL(redis_url.strip())
    except httpx.InvalidURL as exc:
        report.line("FAIL", "token store", f"the Redis URL is not valid: {exc}")
        return
    if url.scheme not in {"redis", "rediss"}:
        report.line("FAIL", "token store", f"not a redis:// URL (scheme {url.scheme!r})")
        return
    if url.scheme == "rediss":
        report.line("skip", "token store", f"{_masked(url)}: TLS to Redis is not checked here")
        return
    try:  # the configuration as the clients will read it: a key, or unencrypted by name
        store, _ = resolve_token_store(None, {**os.environ, REDIS_URL_ENV: redis_url})
    except ConfigurationError as exc:
        report.line("FAIL", "token store", str(exc))
        return
    if store is not None:
        store.close()
    host, port = url.host or "localhost", url.port or 6379
    shown = _masked(url)
    command = b"*1\r\n$4\r\nPING\r\n"
    if url.password:
        auth = [url.username, url.password] if url.username else [url.password]
        parts = [b"AUTH", *(part.encode() for part in auth)]
        command = b"*%d\r\n" % len(parts)
        command += b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        command += b"*1\r\n$4\r\nPING\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(command)
            answer = sock.recv(256)
    except OSError as exc:
        report.line("FAIL", "token store", f"cannot reach {shown}: {exc.strerror or exc}")
        return
    if b"+PONG" in answer:
        report.line("ok", "token store", f"{shown} answers PING")
    else:
        first = answer.split(b"\r\n", 1)[0].decode("latin-1")[:80]
        report.line("FAIL", "token store", f"{shown} answered {first!r}, not PONG")
