"""`serve_emulator`: the emulator on a real loopback socket, served by uvicorn.

uvicorn runs on the caller's own event loop, not in a thread: a server thread in
the same process fights the client for the GIL and roughly halves throughput.
uvicorn is imported here, lazily, so the emulator itself needs only the core deps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import anyio

from ._emulator import Emulator

if TYPE_CHECKING:
    import uvicorn

__all__ = ["serve_emulator"]

# How long a stopping server waits for open requests before dropping them.
_GRACEFUL_SHUTDOWN = 5.0
_STOP_TIMEOUT = 10.0


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; binding here (not in uvicorn) tells us the port at once."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # proto must say IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections
    # only then, and without it Nagle and delayed ACKs add 40 ms to every response.
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def _make_server(app: Emulator, started: anyio.Event, log_level: str) -> uvicorn.Server:
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            'Serving the emulator needs uvicorn: pip install "pinkcloudsync-async[emulator]"'
        ) from None

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # Signals belong to whoever runs us (the CLI handles SIGINT/SIGTERM);
            # uvicorn's own capture would re-raise them after shutdown.
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            started.set()

    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="none",  # no websockets (and no websockets deprecation warnings)
        log_config=None,
        log_level=log_level,
        access_log=False,
        date_header=False,  # the emulator sends its own, from its own clock
        timeout_graceful_shutdown=int(_GRACEFUL_SHUTDOWN),
    )
    return _Server(config)


@contextlib.asynccontextmanager
async def serve_emulator(
    emulator: Emulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
) -> AsyncIterator[str]:
    """Serve `emulator` on `host:port` while the block runs; yields its base URL.

    `port=0` picks a free port. Runs uvicorn on the current event loop, which
    must be asyncio. The server stops (gracefully, then forcibly) on exit.

        async with serve_emulator(Emulator()) as url:   # "http://127.0.0.1:54321/v1"
            ...
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "serve_emulator needs the asyncio event loop (uvicorn does not run on trio); "
            "on trio, use Emulator.client() in-process instead."
        ) from None
    sock = _listen(host, port)
    try:
        started = anyio.Event()
        server = _make_server(emulator, started, log_level)

        async def serve() -> None:
            try:
                await server.serve(sockets=[sock])
            finally:
                started.set()  # stopped before it started: nobody waits forever

        # A plain asyncio task, not a task group: uvicorn is asyncio-only anyway, and
        # a task group around the `yield` would wrap the block's own errors in an
        # ExceptionGroup.
        task = loop.create_task(serve())
        try:
            await started.wait()
            if not server.started:
                await task  # raises what stopped it
                raise RuntimeError("The emulator's server stopped before it started")
            yield _url(sock)
        finally:
            await _stop(server, task)
    finally:
        sock.close()


async def _stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    # Shielded: the block may be exiting because it was cancelled.
    with anyio.CancelScope(shield=True):
        await asyncio.wait({task}, timeout=_GRACEFUL_SHUTDOWN + 1.0)
        if not task.done():
            server.force_exit = True
            await asyncio.wait({task}, timeout=1.0)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        raise RuntimeError("The emulator's server failed") from task.exception()
