"""A process forked while a token request is in flight (issue 12, item 9).

Real `os.fork()`, real loopback sockets. The parent holds a token request open (the
token endpoint waits for a gate), forks, and the child, which has a copy of that
flight but not the thread or event loop flying it, must get its own token at once.
Every child is reaped by the test that forked it (and killed if it hangs).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from fakes import API_KEY, API_SECRET, Exchange, LoopbackServer, token_body

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

KINDS = ["async-asyncio", "async-trio", "sync"]
CHILD_LIMIT = 15.0  # seconds before a child that hangs is killed (the old behaviour)


class GatedTokenServer:
    """The first token request waits for `gate`; later ones are answered at once."""

    def __init__(self) -> None:
        self.first_arrived = threading.Event()
        self.gate = threading.Event()
        self.token_requests = 0
        self._lock = threading.Lock()
        self.server = LoopbackServer(self.respond)

    def respond(self, exchange: Exchange) -> None:
        if exchange.path.endswith("/auth/token"):
            with self._lock:
                self.token_requests += 1
                first = self.token_requests == 1
            if first:
                self.first_arrived.set()
                self.gate.wait(CHILD_LIMIT)
            exchange.answer(200, json.dumps(token_body()).encode())
            return
        exchange.answer(200, json.dumps({"sessions": []}).encode())


@pytest.fixture
def api() -> Iterator[GatedTokenServer]:
    gated = GatedTokenServer()
    with gated.server:
        try:
            yield gated
        finally:
            gated.gate.set()


def fork_and_reap(child: Callable[[], int]) -> int:
    """Run `child()` in a forked process; its exit status (-1: it hung, was killed)."""
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a multi-threaded process may deadlock:
        # that hazard is exactly what the library must survive.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 3
        try:
            status = child()
        finally:
            os._exit(status)
    deadline = time.monotonic() + CHILD_LIMIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)  # polling a child's exit: there is nothing to wait on
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def make_client(kind: str, base_url: str) -> Any:
    cls = PinkCloudSyncClient if kind == "sync" else AsyncPinkCloudSyncClient
    return cls(API_KEY, API_SECRET, base_url=base_url, timeout=5.0)


def call(kind: str, client: Any, name: str) -> Any:
    """`client.<name>()` from plain synchronous code, on the kind's own backend."""
    if kind == "sync":
        return getattr(client, name)()
    return anyio.run(getattr(client, name), backend=kind.removeprefix("async-"))


def child_gets_a_token(kind: str, client: Any) -> Callable[[], int]:
    def child() -> int:
        try:
            call(kind, client, "get_token")
            call(kind, client, "list_sessions")
        except Exception:
            return 1
        return 0

    return child


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_forked_during_a_token_request_gets_its_own(
    kind: str, api: GatedTokenServer
) -> None:
    client = make_client(kind, api.server.base_url)
    outcome: list[Any] = []
    parent = threading.Thread(target=lambda: outcome.append(call(kind, client, "get_token")))
    parent.start()
    try:
        assert api.first_arrived.wait(10), "the parent's token request never arrived"
        assert fork_and_reap(child_gets_a_token(kind, client)) == 0
        assert api.token_requests == 2  # the parent's, held open, and the child's
    finally:
        api.gate.set()
        parent.join(10)
    assert outcome  # the parent's own flight finished normally
    assert outcome[0].access_token.get_secret_value()
    if kind == "sync":
        client.close()
    else:
        anyio.run(client.aclose)


def test_a_child_forked_while_a_thread_holds_the_lock_is_not_stuck(
    api: GatedTokenServer,
) -> None:
    api.gate.set()
    client = make_client("sync", api.server.base_url)
    lock = client.auth.tokens._lock
    with lock:  # a parent thread inside the token side's critical section at the fork
        status = fork_and_reap(child_gets_a_token("sync", client))
    assert status == 0
    client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_child_keeps_a_token_that_is_still_valid(kind: str, api: GatedTokenServer) -> None:
    api.gate.set()
    client = make_client(kind, api.server.base_url)
    held = call(kind, client, "get_token")

    def child() -> int:
        return 0 if call(kind, client, "get_token") is held else 1

    assert fork_and_reap(child) == 0
    assert api.token_requests == 1
    if kind == "sync":
        client.close()
    else:
        anyio.run(client.aclose)
