"""The PinkCloudSync emulator, for demos and for testing code that uses this library.

    from pinkcloudsync_async.testing import Emulator

    emulator = Emulator(token_lifetime=60)
    async with emulator.client() as client:        # in-process, no network
        await client.list_sessions()

`serve_emulator` serves it on loopback (needs the `[emulator]` extra, for uvicorn);
the pytest plugin in `pytest_plugin` gives tests an emulator and a client.
"""

from __future__ import annotations

from ._emulator import IN_PROCESS_BASE_URL, Emulator
from ._server import serve_emulator
from ._state import (
    ALL_PERMISSIONS,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_PERMISSIONS,
    EmulatorKey,
    EmulatorStats,
)
from ._sync_transport import SyncASGITransport

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_PERMISSIONS",
    "IN_PROCESS_BASE_URL",
    "Emulator",
    "EmulatorKey",
    "EmulatorStats",
    "SyncASGITransport",
    "serve_emulator",
]
