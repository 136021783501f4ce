"""`Fleet`: P real worker processes sharing a token through Redis, driven in rounds.

For the fleet's tests, its benchmark and `pinkcloudsync demo --fleet`:

    with serve_in_thread(emulator) as url, Fleet(8, env=fleet_env(url, redis_url, key)) as fleet:
        fleet.start()
        outcomes = fleet.round()        # every worker runs one round at once
    emulator.stats.token_requests       # counted fleet-wide by the one emulator

Each worker (`_fleet_worker`) builds its client, says `ready`, and runs a round
for each `go`; `Fleet.round` sends `go` to all of them together, so a cold start
really is P processes asking at once. Every process started is ended on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import anyio.from_thread

from ._emulator import Emulator
from ._server import serve_emulator

__all__ = ["Fleet", "RedisServer", "fleet_env", "serve_in_thread"]

_WORKER = "pinkcloudsync_async.testing._fleet_worker"
_REDIS_START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A `redis-server` process of our own on 127.0.0.1:`port`, without persistence
    (`--save "" --appendonly no`). `binary` is its path (see `shutil.which`)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and return once it answers PING; raises RuntimeError if it won't."""
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(  # noqa: S603 - the redis-server binary, fixed args
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _REDIS_START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)  # a process starting up: nothing to wait on but its port

    def answers(self) -> bool:
        """Does it answer PING now?"""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it (SIGKILL after 5 s) and reap it; it may be started again."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen server cannot exit
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections open, nothing answers, as a stuck Redis."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze it (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def serve_in_thread(emulator: Emulator) -> Iterator[str]:
    """Serve `emulator` on loopback from a thread of its own; yields its base URL."""
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(serve_emulator(emulator)) as url,
    ):
        yield url


def fleet_env(
    base_url: str, redis_url: str | None, encryption_key: str | None, *, api_key: str, secret: str
) -> dict[str, str]:
    """The environment of a fleet's worker: the twelve-factor configuration."""
    env = {
        "PINKCLOUDSYNC_BASE_URL": base_url,
        "PINKCLOUDSYNC_API_KEY": api_key,
        "PINKCLOUDSYNC_API_SECRET": secret,
    }
    if redis_url is not None:
        env["PINKCLOUDSYNC_REDIS_URL"] = redis_url
    if encryption_key is not None:
        env["PINKCLOUDSYNC_TOKEN_ENCRYPTION_KEY"] = encryption_key
    return env


class _Worker:
    """One worker process and a thread reading its stdout lines into a queue."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", _WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def next_line(self, timeout: float) -> str:
        try:
            line = self.lines.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise TimeoutError("a fleet worker said nothing in time") from None
        if line is None:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"a fleet worker exited: {stderr[-2000:]}")
        return line

    def end(self) -> None:
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send("exit")
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._reader.join(5)


class Fleet:
    """`size` worker processes; `args` are the worker's options (`--mode`, `--tasks`,
    `--calls`, `--duration`, ...), `env` their configuration (see `fleet_env`)."""

    def __init__(
        self,
        size: int,
        *,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        self.size = size
        self.env = dict(env)
        self.args = list(args)
        self.timeout = timeout
        self.workers: list[_Worker] = []

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, size: int | None = None) -> list[_Worker]:
        """Start `size` more workers (default: the fleet's size); return when all are ready."""
        started = [_Worker(self.args, self.env) for _ in range(self.size if size is None else size)]
        self.workers.extend(started)
        deadline = time.monotonic() + self.timeout
        for worker in started:
            line = worker.next_line(deadline - time.monotonic())
            if line != "ready":
                raise RuntimeError(f"a fleet worker said {line!r} instead of 'ready'")
        return started

    def round(self, workers: Sequence[_Worker] | None = None) -> list[dict[str, Any]]:
        """One round on every worker (or on `workers`) at once; their outcomes:
        `{"ok": calls, "errors": {type: count}, "first_call_max_s": seconds}`."""
        chosen = list(self.workers if workers is None else workers)
        for worker in chosen:
            worker.send("go")
        deadline = time.monotonic() + self.timeout
        outcomes: list[dict[str, Any]] = []
        for worker in chosen:
            outcomes.append(json.loads(worker.next_line(deadline - time.monotonic())))
        return outcomes

    def stop(self) -> None:
        """End every worker (asked to exit, killed if it does not) and reap it."""
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.end()
