"""The library's defaults: the ones the issues and the API guide pin."""

from __future__ import annotations

import math

import httpx

from pinkcloudsync_async import _client_base, _constants


def test_default_timeout_is_finite_in_every_phase() -> None:
    timeout = _client_base.DEFAULT_TIMEOUT
    assert timeout == httpx.Timeout(
        _constants.DEFAULT_TIMEOUT_SECONDS, connect=_constants.DEFAULT_CONNECT_TIMEOUT_SECONDS
    )
    assert isinstance(timeout, httpx.Timeout)
    phases = timeout.as_dict()
    assert set(phases) == {"connect", "read", "write", "pool"}
    assert all(v is not None and math.isfinite(v) and v > 0 for v in phases.values())


def test_default_retries_are_two() -> None:
    assert _constants.DEFAULT_MAX_RETRIES == 2


def test_default_backoff_is_capped_above_its_base() -> None:
    assert 0 < _constants.DEFAULT_RETRY_BACKOFF_BASE <= _constants.DEFAULT_RETRY_BACKOFF_MAX
    assert math.isfinite(_constants.DEFAULT_RETRY_BACKOFF_MAX)


def test_default_retry_after_cap_is_sixty_seconds() -> None:
    assert _constants.DEFAULT_MAX_RETRY_AFTER == 60.0


def test_refresh_failure_backoff_is_short_and_capped() -> None:
    assert 0 < _constants.REFRESH_FAILURE_BACKOFF_BASE <= _constants.REFRESH_FAILURE_BACKOFF_MAX
    # A failed early refresh must get a few more tries inside the 300 s margin.
    assert _constants.REFRESH_FAILURE_BACKOFF_MAX < _constants.DEFAULT_REFRESH_MARGIN / 2


def test_the_api_guides_values() -> None:
    assert _constants.DEFAULT_REFRESH_MARGIN == 300.0
    assert _constants.DEFAULT_BASE_URL == "https://api.pinkcloudsync.example/v1"
    assert httpx.URL(_constants.DEFAULT_BASE_URL).scheme == "https"
    assert _constants.API_KEY_ENV == "PINKCLOUDSYNC_API_KEY"
    assert _constants.API_SECRET_ENV == "PINKCLOUDSYNC_API_SECRET"
    assert _constants.BASE_URL_ENV == "PINKCLOUDSYNC_BASE_URL"
    assert _constants.TOKEN_PATH == "auth/token"
    assert _constants.LOGGER_NAME == "pinkcloudsync_async"


def test_all_lists_every_constant() -> None:
    public = {name for name in vars(_constants) if name.isupper()}
    assert set(_constants.__all__) == public
    assert _constants.__all__ == sorted(_constants.__all__)


def test_extension_keys_are_namespaced_and_distinct() -> None:
    keys = [
        _constants.MAX_RETRIES_EXTENSION,
        _constants.IDEMPOTENT_EXTENSION,
        _constants.DEADLINE_EXTENSION,
        _constants.ATTEMPTS_EXTENSION,
    ]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("pinkcloudsync.") for key in keys)
