"""The public surface: `__all__` is sorted, complete, documented, and typed."""

from __future__ import annotations
import __future__

import importlib.resources
import inspect
from types import ModuleType

import pytest

import pinkcloudsync_async

REQUIRED = {
    "AsyncPinkCloudSyncClient",
    "PinkCloudSyncAuth",
    "TokenResponse",
    "TokenClaims",
    "ErrorResponse",
    "AccessToken",
    "PinkCloudSyncError",
    "ConfigurationError",
    "APIError",
    "AuthenticationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "InvalidResponseError",
    "raise_for_api_error",
    "PinkCloudSyncClient",
}


def public_names() -> set[str]:
    """What `import pinkcloudsync_async` really exposes, minus modules and `annotations`."""
    return {
        name
        for name, value in vars(pinkcloudsync_async).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and value is not __future__.annotations
    }


def test_all_is_sorted() -> None:
    assert pinkcloudsync_async.__all__ == sorted(pinkcloudsync_async.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(pinkcloudsync_async.__all__)) == len(pinkcloudsync_async.__all__)


def test_all_matches_the_public_names() -> None:
    assert set(pinkcloudsync_async.__all__) == public_names()


def test_all_has_no_private_names() -> None:
    assert not [name for name in pinkcloudsync_async.__all__ if name.startswith("_")]


def test_all_contains_the_required_names() -> None:
    assert REQUIRED - set(pinkcloudsync_async.__all__) == set()


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pinkcloudsync_async import *", namespace)  # noqa: S102 - a fixed string
    namespace.pop("__builtins__")
    assert set(namespace) == set(pinkcloudsync_async.__all__)


@pytest.mark.parametrize("name", pinkcloudsync_async.__all__)
def test_every_public_name_is_ours(name: str) -> None:
    value = getattr(pinkcloudsync_async, name)
    assert value.__module__.startswith("pinkcloudsync_async.")


@pytest.mark.parametrize("name", pinkcloudsync_async.__all__)
def test_every_public_name_has_a_docstring(name: str) -> None:
    value = getattr(pinkcloudsync_async, name)
    # The object's own docstring: not inherited, not a dataclass's generated signature.
    doc = value.__doc__
    assert doc is not None
    assert doc.strip()
    if inspect.isclass(value):
        assert "__doc__" in vars(value)
        assert not doc.startswith(f"{name}(")


def test_the_package_has_a_docstring_and_version() -> None:
    assert (pinkcloudsync_async.__doc__ or "").strip()
    assert isinstance(pinkcloudsync_async.__version__, str)


def test_py_typed_ships() -> None:
    marker = importlib.resources.files("pinkcloudsync_async") / "py.typed"
    assert marker.is_file()


def test_the_stores_subpackage_has_one_documented_public_surface() -> None:
    from pinkcloudsync_async import stores

    public = {
        name
        for name, value in vars(stores).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }
    assert stores.__all__ == sorted(stores.__all__)
    assert set(stores.__all__) == public == {"InProcessTokenStore", "RedisTokenStore", "TokenStore"}
    for name in stores.__all__:
        assert (getattr(stores, name).__doc__ or "").strip()
