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
    return build()


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
    build = functools.partial(AiohttpTransport, proxy=proxy, **options)
    return functools.partial(_require_asyncio, build)
