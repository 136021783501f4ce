"""The aiohttp backend: httpx requests carried by aiohttp's connector (asyncio only).

httpcore scans its whole pool for every request, so its cost per request grows with
concurrency; aiohttp's connector does not. We use the `httpx-aiohttp` package's
`AiohttpTransport` (a maintained transport, the one openai-python's
`DefaultAioHttpClient` uses) and only map the client's options onto it, refusing
with a `ConfigurationError` those aiohttp cannot honour.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx

from .._exceptions import ConfigurationError

__all__ = ["aiohttp_transport_factory"]

_INSTALL = 'pip install "pinkcloudsync-async[aiohttp]"'


def _require_asyncio(build: Callable[[], httpx.AsyncBaseTransport]) -> httpx.AsyncBaseTransport:
    import sniffio

    if sniffio.current_async_library() != "asyncio":
        raise ConfigurationError(
            'http_backend="aiohttp" runs on asyncio only; on trio use http_backend="httpx" '
            "(the default) or unset PINKCLOUDSYNC_HTTP_BACKEND."
        )
    return _ConnectionErrorsMapped(build())


class _ConnectionErrorsMapped(httpx.AsyncBaseTransport):
    """Raises for aiohttp's connection errors the httpx error httpcore would.

    httpx-aiohttp maps every `aiohttp.ClientConnectionError` to `httpx.ConnectTimeout`,
    including a server that hung up after the request was sent. The retry policy
    reads ConnectTimeout as "nothing left us" and would repeat a POST the server may
    have acted on: after the connection was made, it is a RemoteProtocolError (hung
    up) or a ReadError (reset), as with httpx; before, a ConnectError.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner  # the AiohttpTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            raise _remapped(exc, request) from exc.__cause__

    async def aclose(self) -> None:
        await self.inner.aclose()


def _remapped(exc: httpx.ConnectTimeout, request: httpx.Request) -> httpx.TransportError:
    import aiohttp

    cause = exc.__cause__
    if not isinstance(cause, aiohttp.ClientConnectionError) or isinstance(
        cause, aiohttp.ServerTimeoutError
    ):
        return exc  # a timeout really (connect, or the pool's wait)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(str(exc), request=request)
    return httpx.ReadError(str(exc), request=request)


def _session_factory(options: dict[str, Any]) -> Callable[[], Any]:
    """aiohttp sessions that put on the wire what httpx would.

    httpx-aiohttp's own session maps an unbounded pool to aiohttp's default of 100
    and lets aiohttp add a `Content-Type: application/octet-stream` that httpx never
    sends; ours keeps the pool as configured and sends httpx's headers only.
    """
    import aiohttp

    limits: httpx.Limits = options.get("limits") or httpx.Limits(
        max_connections=100, max_keepalive_connections=20
    )
    tls = {k: options[k] for k in ("verify", "cert", "trust_env") if k in options}

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,  # 0: no limit, as None is in httpx
            keepalive_timeout=limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(**tls),
        )
        return aiohttp.ClientSession(connector=connector, skip_auto_headers=("Content-Type",))

    return session


def aiohttp_transport_factory(
    options: dict[str, Any], *, proxy: Any = None
) -> Callable[[], httpx.AsyncBaseTransport]:
    """A factory of `AiohttpTransport`s for `LoopBoundTransport`, from httpx's client
    options (`verify`, `cert`, `trust_env`, `http1`, `http2`, `limits`) and a proxy.

    Raises ConfigurationError without the `[aiohttp]` extra, for `http2=True` (aiohttp
    speaks HTTP/1.1 only) and for a SOCKS proxy. The factory itself raises it when
    called outside asyncio.
    """
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        raise ConfigurationError(
            f'http_backend="aiohttp" needs the aiohttp extra: {_INSTALL}'
        ) from None
    if options.get("http2"):
        raise ConfigurationError(
            'http_backend="aiohttp" speaks HTTP/1.1 only: drop http2=True, or use '
            'http_backend="httpx" for HTTP/2.'
        )
    if proxy is not None:
        proxy = proxy if isinstance(proxy, httpx.Proxy) else httpx.Proxy(url=proxy)
        if proxy.url.scheme not in ("http", "https"):
            raise ConfigurationError(
                f'http_backend="aiohttp" supports HTTP proxies only, not {proxy.url.scheme}://.'
            )
    build = functools.partial(
        AiohttpTransport, proxy=proxy, client=_session_factory(options), **options
    )
    return functools.partial(_require_asyncio, build)
