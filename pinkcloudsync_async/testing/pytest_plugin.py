"""pytest fixtures giving a test an emulator and a client wired to it (see the README).

Loaded automatically (a `pytest11` entry point) in every pytest run wherever this
package is installed, so loading it must stay cheap and never fail: the emulator is
imported when a fixture is first used, and uvicorn never (these fixtures need no
socket).

- `pinkcloudsync_emulator`: a fresh `Emulator` per test.
- `pinkcloudsync_client`: an `AsyncPinkCloudSyncClient` wired to it in-process,
  already entered (`async with`). An async fixture: mark the test
  `@pytest.mark.anyio` (or use pytest-asyncio in auto mode).
- `pinkcloudsync_sync_client`: the same for `PinkCloudSyncClient`; a plain fixture.

Override `pinkcloudsync_emulator` in your conftest.py to change the keys, token
lifetime or latency for a whole module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
    from pinkcloudsync_async.testing import Emulator

__all__ = ["pinkcloudsync_client", "pinkcloudsync_emulator", "pinkcloudsync_sync_client"]


@pytest.fixture
def pinkcloudsync_emulator() -> Emulator:
    """A fresh PinkCloudSync `Emulator` (default key pair, 1-hour tokens)."""
    from pinkcloudsync_async.testing import Emulator

    return Emulator()


@pytest.fixture
async def pinkcloudsync_client(
    pinkcloudsync_emulator: Emulator,
) -> AsyncIterator[AsyncPinkCloudSyncClient]:
    """An entered `AsyncPinkCloudSyncClient` talking to `pinkcloudsync_emulator`."""
    async with pinkcloudsync_emulator.client() as client:
        yield client


@pytest.fixture
def pinkcloudsync_sync_client(
    pinkcloudsync_emulator: Emulator,
) -> Iterator[PinkCloudSyncClient]:
    """A `PinkCloudSyncClient` talking to `pinkcloudsync_emulator`, closed afterwards."""
    with pinkcloudsync_emulator.sync_client() as client:
        yield client
