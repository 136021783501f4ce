"""Shared fixtures: the backends to run on. The fakes the tests share live in fakes.py."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Tests marked `@pytest.mark.anyio` run once on asyncio and once on trio."""
    return str(request.param)
