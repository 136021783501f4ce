"""The transports an async client builds for itself, each bound to the event loop.

httpx builds a pool (and a proxy transport per proxy) inside `AsyncClient.__init__`
when it is given no `transport=`; those would be tied to the first event loop. We
build the same ones, each a `LoopBoundTransport`, and hand them to httpx through its
public `transport=` and `mounts=` arguments: the pool from the transport options,
one mount for `proxy=`, or one per environment proxy (`HTTP_PROXY`, `HTTPS_PROXY`,
`ALL_PROXY`, `NO_PROXY`) when `trust_env` is on and no `transport=` was given, as
httpx itself would. A transport or mount the user gives is used as given.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx

from .._exceptions import ConfigurationError
from ._aiohttp import aiohttp_transport_factory
from ._loop_bound import LoopBoundTransport

__all__ = ["environment_proxies", "with_own_transports"]

# The httpx.AsyncClient options that shape a transport it builds itself.
_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def _is_ip(hostname: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(hostname.split("/")[0])
    except ValueError:
        return False
    return True


def environment_proxies() -> dict[str, str | None]:
    """The proxy mounts the environment asks for, as httpx reads them.

    Keys are httpx mount patterns; a value is a proxy URL, or None for a host that
    `NO_PROXY` sends direct. `NO_PROXY=*` turns every proxy off.
    """
    info = urllib.request.getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if info.get(scheme):
            url = info[scheme]
            mounts[f"{scheme}://"] = url if "://" in url else f"http://{url}"
    for hostname in (host.strip() for host in info.get("no", "").split(",")):
        if hostname == "*":
            return {}
        if not hostname:
            continue
        if "://" in hostname:
            mounts[hostname] = None
        elif _is_ip(hostname, ipaddress.IPv4Address):
            mounts[f"all://{hostname}"] = None
        elif _is_ip(hostname, ipaddress.IPv6Address):
            mounts[f"all://[{hostname}]"] = None
        elif hostname.lower() == "localhost":
            mounts[f"all://{hostname}"] = None
        else:
            mounts[f"all://*{hostname}"] = None
    return mounts


def _factory(
    backend: str, options: dict[str, Any], proxy: Any = None
) -> tuple[Callable[[], httpx.AsyncBaseTransport], bool]:
    """The inner-transport factory for `backend`, and whether to build one at once."""
    if backend == "aiohttp":
        # An aiohttp session must be made on its event loop: built at first use.
        return aiohttp_transport_factory(options, proxy=proxy), False
    if proxy is None:
        return functools.partial(httpx.AsyncHTTPTransport, **options), True
    return functools.partial(httpx.AsyncHTTPTransport, proxy=proxy, **options), True


def with_own_transports(httpx_kwargs: dict[str, Any], backend: str = "httpx") -> dict[str, Any]:
    """`httpx_kwargs` with the pool and the proxy mounts replaced by loop-bound ones
    of `backend` ("httpx" or "aiohttp").

    Consumes `proxy=`; keeps the user's own `transport=` and `mounts=` (theirs win
    over a proxy mount for the same pattern, as in httpx). Raises ConfigurationError
    for options the backend cannot honour, and for `transport=` with "aiohttp".
    """
    kwargs = dict(httpx_kwargs)
    options = {name: kwargs[name] for name in _TRANSPORT_OPTIONS if name in kwargs}
    user_transport = kwargs.get("transport")
    if backend != "httpx" and user_transport is not None:
        raise ConfigurationError(
            f'http_backend="{backend}" builds the transport: pass it or transport=, not both.'
        )
    proxy = kwargs.pop("proxy", None)
    if proxy is not None:
        proxies: dict[str, Any] = {"all://": proxy}
    elif user_transport is None and options.get("trust_env", True):
        proxies = dict(environment_proxies())
    else:
        proxies = {}
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {
        pattern: None if url is None else LoopBoundTransport(*_factory(backend, options, url))
        for pattern, url in proxies.items()
    }
    mounts.update(kwargs.get("mounts") or {})
    if mounts:
        kwargs["mounts"] = mounts
    if user_transport is None:
        kwargs["transport"] = LoopBoundTransport(*_factory(backend, options))
    return kwargs
