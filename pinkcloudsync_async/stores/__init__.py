"""Token stores: where a client's token lives, so that a fleet of processes shares one.

    from pinkcloudsync_async.stores import RedisTokenStore

    store = RedisTokenStore.from_url("redis://cache:6379/0", encryption_key=KEY)
    async with AsyncPinkCloudSyncClient(token_store=store) as client:
        ...

`InProcessTokenStore` is the default (the token in the client's memory only).
`RedisTokenStore` (the `[redis]` extra) shares it across processes and hosts:
encrypted at rest (AES-256-GCM), one token request per refresh fleet-wide (a lock
with a fenced write), a 401 forgotten fleet-wide, a failed token request shared;
when Redis fails, each process falls back to its own single flight.
"""

from __future__ import annotations

from ._base import InProcessTokenStore, TokenStore
from ._redis import RedisTokenStore

__all__ = ["InProcessTokenStore", "RedisTokenStore", "TokenStore"]
