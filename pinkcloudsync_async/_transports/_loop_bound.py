"""`LoopBoundTransport`: one inner transport per event loop.

A connection pool's sockets belong to the event loop that opened them. A client
that outlives its loop (two `asyncio.run()` calls in a REPL, a worker restarting
its loop) must not hand a request a connection from a dead loop, nor try to close
one from there. This transport builds its inner transport with `factory` for each
event loop it is used on, and closes only what the current loop can close.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import httpx
from anyio.lowlevel import EventLoopToken, current_token

__all__ = ["LoopBoundTransport"]


class LoopBoundTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` whose inner transport follows the event loop.

    `factory` builds the inner transport (an `httpx.AsyncHTTPTransport` with the
    client's options, a proxy's, or an aiohttp one); it is called now when `eager`
    (else at first use, on the event loop), and again whenever a request or
    `aclose()` arrives on an event loop other than the last one. The old loop's
    transport is let go, not closed: its loop is gone, and so is any way to close its
    sockets cleanly (the garbage collector does).
    """

    def __init__(self, factory: Callable[[], httpx.AsyncBaseTransport], eager: bool = True) -> None:
        self._factory = factory
        self.inner: httpx.AsyncBaseTransport | None = factory() if eager else None
        self._loop: EventLoopToken | None = None

    def _follow(self) -> httpx.AsyncBaseTransport:
        loop = current_token()
        inner = self.inner
        if loop != self._loop or inner is None:
            if self._loop is not None or inner is None:
                inner = self.inner = self._factory()
            self._loop = loop
        return inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._follow().handle_async_request(request)

    async def __aenter__(self) -> LoopBoundTransport:
        await self._follow().__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._follow().__aexit__(exc_type, exc_value, traceback)

    async def aclose(self) -> None:
        if self.inner is not None:  # nothing was ever built: nothing to close
            await self._follow().aclose()
