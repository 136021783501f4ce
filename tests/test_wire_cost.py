"""No tax in the default install: a request on a real socket imports nothing.

httpcore runs `import sniffio` on every pool operation. Without sniffio installed
(anyio 4.16 no longer brings it) each of those is a failed import: the import system
asks every `sys.meta_path` finder, which searches `sys.path` on disk, about four
times per request. We declare sniffio; this counts the finder calls.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import requires
from types import ModuleType

import anyio.from_thread
import pytest
from packaging.requirements import Requirement

from pinkcloudsync_async import AsyncPinkCloudSyncClient, PinkCloudSyncClient
from pinkcloudsync_async.testing import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    Emulator,
    serve_emulator,
)


class CountingFinder(importlib.abc.MetaPathFinder):
    """First on `sys.meta_path`: counts every lookup the import system makes."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None  # let the real finders answer


@pytest.fixture
def url() -> Iterator[str]:
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(serve_emulator(Emulator())) as served,
    ):
        yield served


def count_lookups(run_requests: object) -> list[str]:
    finder = CountingFinder()
    sys.meta_path.insert(0, finder)
    try:
        run_requests()  # type: ignore[operator]
    finally:
        sys.meta_path.remove(finder)
    return finder.names


@pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])
def test_200_async_requests_on_a_socket_import_nothing(url: str, http_backend: str) -> None:
    client = AsyncPinkCloudSyncClient(
        DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=url, http_backend=http_backend
    )

    async def requests(n: int) -> None:
        for _ in range(n):
            assert (await client.get("sync/sessions")).status_code == 200

    async def scenario() -> list[str]:
        async with client:
            await requests(5)  # first use may import lazily (PyJWT, aiohttp parts...)
            return await _counted(requests(200))

    assert asyncio.run(scenario()) == []


async def _counted(work: object) -> list[str]:
    finder = CountingFinder()
    sys.meta_path.insert(0, finder)
    try:
        await work  # type: ignore[misc]
    finally:
        sys.meta_path.remove(finder)
    return finder.names


def test_200_sync_requests_on_a_socket_import_nothing(url: str) -> None:
    with PinkCloudSyncClient(DEFAULT_API_KEY, DEFAULT_API_SECRET, base_url=url) as client:
        for _ in range(5):
            client.get("sync/sessions")

        def requests() -> None:
            for _ in range(200):
                assert client.get("sync/sessions").status_code == 200

        assert count_lookups(requests) == []


def test_the_counter_sees_a_failed_import() -> None:
    # Control for the tests above: a failed import is what the counter counts.
    def failing_import() -> None:
        with pytest.raises(ImportError):
            __import__("pinkcloudsync_no_such_module")

    assert count_lookups(failing_import) == ["pinkcloudsync_no_such_module"]


def test_sniffio_is_a_declared_dependency() -> None:
    names = {Requirement(spec).name for spec in requires("pinkcloudsync-async") or []}
    assert "sniffio" in names
