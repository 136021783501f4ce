"""`PinkCloudSyncAuth`: the httpx.Auth flow over the token lifecycle, async and sync.

The decisions (fresh, due or expired; who fetches, who waits) are made by
`TokenLifecycle`; this module only does what it says. Three rules keep it correct
under concurrency and cancellation:

- Nothing is held across a `yield`: httpx may `aclose()` a flow at any yield when
  its caller is cancelled, and a lock held there would stay held.
- A token request is a *flight* that any number of callers share. Its outcome,
  token or error, is delivered to every waiter; if its own caller is cancelled the
  flight is abandoned and one waiter takes over.
- The async flow never blocks the event loop (no thread lock, no sync I/O); the
  sync flow takes a thread lock only around the lifecycle's quick, non-blocking steps.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ._auth_base import is_replayable, put_authorization
from ._token_flights_async import AsyncTokenFlights
from ._token_flights_sync import SyncTokenFlights

__all__ = ["PinkCloudSyncAuth", "is_replayable", "put_authorization"]


class PinkCloudSyncAuth(AsyncTokenFlights, SyncTokenFlights, httpx.Auth):
    """Attaches a shared, automatically refreshed bearer token to API requests.

    Built by the clients, which bind it to their own `send` so that token requests
    use the client's transport, timeouts and retry policy. Requests to any origin
    other than the base URL's get no token and trigger no token request.
    """

    requires_request_body = False
    requires_response_body = False

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._is_for_api(request):
            yield request
            return
        token = self._lifecycle.token
        started = self._clock()
        if token is None or started >= token.refresh_at:
            deadline = self._deadline(request, started)
            token = await self._async_acquire(deadline)
            self._fit(request, deadline)
        replayable = is_replayable(request)
        put_authorization(request.headers, self._header_for(token))
        response = yield request
        if response.status_code == 401 and replayable:
            # Refused: drop the token unless a newer one already replaced it, then
            # replay once. A second 401 goes back to the caller.
            # Read the refusal first: until then it holds its pool connection, and
            # the token request may need that very connection (a full pool deadlocks).
            await response.aread()
            self._lifecycle.invalidate(token)
            deadline = self._deadline(request, started)
            token = await self._async_acquire(deadline)
            self._fit(request, deadline)
            put_authorization(request.headers, self._header_for(token))
            yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        if not self._is_for_api(request):
            yield request
            return
        token = self._lifecycle.token
        started = self._clock()
        if token is None or started >= token.refresh_at:
            deadline = self._deadline(request, started)
            token = self._sync_acquire(deadline)
            self._fit(request, deadline)
        replayable = is_replayable(request)
        put_authorization(request.headers, self._header_for(token))
        response = yield request
        if response.status_code == 401 and replayable:
            response.read()  # frees its pool connection for the token request
            with self._thread_lock:
                self._lifecycle.invalidate(token)
            deadline = self._deadline(request, started)
            token = self._sync_acquire(deadline)
            self._fit(request, deadline)
            put_authorization(request.headers, self._header_for(token))
            yield request
