"""The `TokenStore` interface, and the in-process store that is the default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .._token_source import TokenFetcher, TokenSource

__all__ = ["InProcessTokenStore", "TokenStore"]


@runtime_checkable
class TokenStore(Protocol):
    """Where a client's token lives beyond the client's own memory.

    `bind` is called once per client, at construction, with the client's own token
    source; it returns the source the client's token flights will call (same
    `afetch` / `fetch` / `refused` interface). `base_url` and `api_key` name whose
    token it is; `lock_ttl` (seconds) is how long one token request may take, with
    its retries; `clock` is the client's monotonic clock. `close` / `aclose` free
    what the store holds (a client closes only a store it built itself).
    """

    def bind(
        self,
        source: TokenSource,
        *,
        base_url: str,
        api_key: str,
        lock_ttl: float,
        clock: Callable[[], float],
    ) -> TokenFetcher: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class InProcessTokenStore:
    """The default: each client keeps its token in its own memory, as without a store.

    `bind` hands the client's token source back untouched, so it costs nothing.
    Pass it as `token_store=` to ignore `PINKCLOUDSYNC_REDIS_URL` in one client.
    """

    def __repr__(self) -> str:
        return "InProcessTokenStore()"

    def bind(
        self,
        source: TokenSource,
        *,
        base_url: str,
        api_key: str,
        lock_ttl: float,
        clock: Callable[[], float],
    ) -> TokenFetcher:
        """`source` itself."""
        return source

    def close(self) -> None:
        """Nothing to free."""

    async def aclose(self) -> None:
        """Nothing to free."""
