"""The four ways to call the API that every scenario compares.

(a) raw `httpx.AsyncClient` with a static Authorization header: the floor;
(b) `AsyncPinkCloudSyncClient`;
(c) Authlib's `AsyncOAuth2Client`, client-credentials grant;
(d) the textbook lock-every-request `httpx.Auth` (the pattern of httpx's own docs:
    an `asyncio.Lock` around the token check, taken on every request).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncGenerator
from typing import Any

import httpx

from pinkcloudsync_async import AsyncPinkCloudSyncClient

from ._mock import API_KEY, API_SECRET, BASE_URL, TOKEN_URL

RAW = "raw httpx (floor)"
OURS = "pinkcloudsync-async"
AUTHLIB = "Authlib AsyncOAuth2Client"
NAIVE = "lock-every-request Auth"

FLOWS = (RAW, OURS, AUTHLIB, NAIVE)


class TokenRefused(Exception):
    """The naive flow's token request failed."""


class LockEveryRequestAuth(httpx.Auth):
    """Refreshes `margin` seconds before expiry, checking under a lock on every request.

    Its lock is released before the `yield` (holding it there is the known trap);
    while one caller fetches, every other request waits on the lock.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport,
        token_url: str,
        api_key: str,
        api_secret: str,
        margin: float,
    ) -> None:
        self._lock = asyncio.Lock()
        self._token_client = httpx.AsyncClient(transport=transport, timeout=30.0)
        self._token_url = token_url
        self._credentials = {"api_key": api_key, "api_secret": api_secret}
        self._margin = margin
        self._header: str | None = None
        self._expires_at = 0.0
        self.expire_now = False  # the expiry storm's way of ageing the token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        async with self._lock:
            if self._header is None or self.expire_now or self._due():
                await self._fetch()
        assert self._header is not None
        request.headers["Authorization"] = self._header
        yield request

    def _due(self) -> bool:
        return time.monotonic() >= self._expires_at - self._margin

    async def _fetch(self) -> None:
        sent_at = time.monotonic()
        response = await self._token_client.post(self._token_url, json=self._credentials)
        if response.status_code != 200:
            raise TokenRefused(f"token endpoint answered {response.status_code}")
        payload = response.json()
        self._header = f"Bearer {payload['access_token']}"
        self._expires_at = sent_at + payload["expires_in"]
        self.expire_now = False

    async def aclose(self) -> None:
        await self._token_client.aclose()


def build(
    flow: str,
    transport: httpx.AsyncBaseTransport,
    *,
    base_url: str = BASE_URL,
    token_url: str = TOKEN_URL,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
    static_token: str = "",
    margin: float = 300.0,
    **ours: Any,
) -> httpx.AsyncClient:
    """A client for `flow`; enter it with `async with` (and `close()` it after)."""
    if flow == RAW:
        return httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers={"Authorization": f"Bearer {static_token}"},
            timeout=30.0,
        )
    if flow == OURS:
        return AsyncPinkCloudSyncClient(
            api_key,
            api_secret,
            base_url=base_url,
            transport=transport,
            refresh_margin=margin,
            **ours,
        )
    if flow == AUTHLIB:
        from authlib.deprecate import AuthlibDeprecationWarning

        # Its import installs an "always" filter, hence the two steps. The warning
        # says "please use httpx2": this benchmark measures Authlib on httpx.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.integrations.httpx_client import AsyncOAuth2Client
        return AsyncOAuth2Client(
            client_id=api_key,
            client_secret=api_secret,
            grant_type="client_credentials",
            token_endpoint=token_url,
            leeway=int(margin),
            base_url=base_url,
            transport=transport,
            timeout=30.0,
        )
    if flow == NAIVE:
        auth = LockEveryRequestAuth(
            transport=transport,
            token_url=token_url,
            api_key=api_key,
            api_secret=api_secret,
            margin=margin,
        )
        return httpx.AsyncClient(base_url=base_url, transport=transport, auth=auth, timeout=30.0)
    raise ValueError(flow)


async def close(client: httpx.AsyncClient) -> None:
    """Close what `build` made beyond the client itself (the naive flow's token client)."""
    if isinstance(client.auth, LockEveryRequestAuth):
        await client.auth.aclose()


async def warm(flow: str, client: httpx.AsyncClient) -> None:
    """Give the client its first token the way its users would."""
    if flow == AUTHLIB:
        await client.fetch_token()  # type: ignore[attr-defined]
    elif flow == OURS:
        await client.get_token()  # type: ignore[attr-defined]
    elif flow == NAIVE:
        await client.get("sync/sessions")
