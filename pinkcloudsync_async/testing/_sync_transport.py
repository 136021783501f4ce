"""`SyncASGITransport`: what httpx lacks, a sync transport that calls an ASGI app.

Each request runs the app to completion on a short-lived asyncio event loop, in the
calling thread, or in a helper thread when the caller already runs an event loop
(a sync client used inside async code). Nothing outlives the request: no thread,
no loop, nothing to close.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx
from anyio.lowlevel import current_token

__all__ = ["SyncASGITransport"]

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


def _in_event_loop() -> bool:
    # Any event loop, asyncio's or trio's: anyio.run() cannot nest in either.
    try:
        current_token()
    except anyio.NoEventLoopError:
        return False
    return True


class SyncASGITransport(httpx.BaseTransport):
    """Send a sync client's requests to an ASGI app in-process."""

    def __init__(self, app: ASGIApp) -> None:
        self._transport = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a replayable byte stream, readable from the app's loop

        async def call() -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
            response = await self._transport.handle_async_request(request)
            content = await response.aread()
            return response.status_code, response.headers, content, dict(response.extensions)

        def run() -> tuple[int, httpx.Headers, bytes, dict[str, Any]]:
            return anyio.run(call, backend="asyncio")

        if _in_event_loop():
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                status, headers, content, extensions = pool.submit(run).result()
        else:
            status, headers, content, extensions = run()
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions=extensions,
            request=request,
        )
