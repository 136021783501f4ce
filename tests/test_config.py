"""Resolving configuration: argument > environment variable > default, securely."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pinkcloudsync_async import ConfigurationError, CredentialsError
from pinkcloudsync_async._config import Settings, is_loopback_host, resolve_settings
from pinkcloudsync_async._constants import DEFAULT_BASE_URL

KEY = "pk_test_config"
SECRET = "sk_test_config_SECRET_never_in_messages"
ENV = {"PINKCLOUDSYNC_API_KEY": "pk_test_from_env", "PINKCLOUDSYNC_API_SECRET": "sk_test_from_env"}


def resolve(**overrides: Any) -> Settings:
    arguments: dict[str, Any] = {
        "api_key": KEY,
        "api_secret": SECRET,
        "base_url": None,
        "refresh_margin": 300.0,
        "allow_insecure_http": False,
        "environ": {},
    }
    arguments.update(overrides)
    return resolve_settings(**arguments)


def config_error(**overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        resolve(**overrides)
    message = str(info.value)
    assert SECRET not in message
    assert "sk_test_from_env" not in message
    return info.value


# --- precedence -------------------------------------------------------------------------


def test_arguments_win_over_the_environment() -> None:
    env = {**ENV, "PINKCLOUDSYNC_BASE_URL": "https://env.example/v9"}
    settings = resolve(base_url="https://arg.example/v2", environ=env)
    assert settings.api_key == KEY
    assert settings.api_secret.get_secret_value() == SECRET
    assert str(settings.base_url) == "https://arg.example/v2/"


def test_environment_wins_over_the_default() -> None:
    env = {**ENV, "PINKCLOUDSYNC_BASE_URL": "https://env.example/v9"}
    settings = resolve(api_key=None, api_secret=None, environ=env)
    assert settings.api_key == "pk_test_from_env"
    assert settings.api_secret.get_secret_value() == "sk_test_from_env"
    assert str(settings.base_url) == "https://env.example/v9/"


def test_default_base_url() -> None:
    settings = resolve(environ={})
    assert DEFAULT_BASE_URL == "https://api.pinkcloudsync.example/v1"
    assert str(settings.base_url) == "https://api.pinkcloudsync.example/v1/"


def test_empty_base_url_variable_falls_back_to_the_default() -> None:
    settings = resolve(environ={"PINKCLOUDSYNC_BASE_URL": ""})
    assert str(settings.base_url) == DEFAULT_BASE_URL + "/"


def test_each_setting_is_resolved_on_its_own() -> None:
    settings = resolve(api_key=None, environ=ENV)
    assert settings.api_key == "pk_test_from_env"
    assert settings.api_secret.get_secret_value() == SECRET


def test_the_process_environment_is_the_default_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PINKCLOUDSYNC_API_KEY", "pk_test_process")
    monkeypatch.setenv("PINKCLOUDSYNC_API_SECRET", "sk_test_process")
    monkeypatch.delenv("PINKCLOUDSYNC_BASE_URL", raising=False)
    settings = resolve_settings(
        api_key=None,
        api_secret=None,
        base_url=None,
        refresh_margin=300.0,
        allow_insecure_http=False,
    )
    assert settings.api_key == "pk_test_process"
    assert settings.api_secret.get_secret_value() == "sk_test_process"


def test_secret_stays_wrapped_and_secret_str_is_accepted() -> None:
    settings = resolve(api_secret=SecretStr(SECRET))
    assert isinstance(settings.api_secret, SecretStr)
    assert settings.api_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)


def test_surrounding_whitespace_is_stripped() -> None:
    settings = resolve(
        api_key=f"  {KEY}\n", api_secret=f"{SECRET} ", base_url=" https://x.example/v1 "
    )
    assert settings.api_key == KEY
    assert settings.api_secret.get_secret_value() == SECRET
    assert str(settings.base_url) == "https://x.example/v1/"


# --- missing, blank and wrong-typed credentials ----------------------------------------


def test_missing_key_names_its_variable() -> None:
    error = config_error(api_key=None, environ={"PINKCLOUDSYNC_API_SECRET": SECRET})
    assert "PINKCLOUDSYNC_API_KEY" in str(error)
    assert "api_key" in str(error)


def test_missing_secret_names_its_variable() -> None:
    error = config_error(api_secret=None, environ={"PINKCLOUDSYNC_API_KEY": KEY})
    assert "PINKCLOUDSYNC_API_SECRET" in str(error)
    assert "api_secret" in str(error)


def test_missing_everything_is_a_value_error_too() -> None:
    with pytest.raises(ValueError, match="PINKCLOUDSYNC_API_KEY"):
        resolve(api_key=None, api_secret=None, environ={})


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_blank_key_argument_is_missing(blank: str) -> None:
    assert "PINKCLOUDSYNC_API_KEY" in str(config_error(api_key=blank, environ=ENV))


@pytest.mark.parametrize("blank", ["", " ", "\t\n"])
def test_blank_secret_argument_is_missing(blank: str) -> None:
    assert "PINKCLOUDSYNC_API_SECRET" in str(config_error(api_secret=blank, environ=ENV))


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_environment_variables_are_missing(blank: str) -> None:
    env = {"PINKCLOUDSYNC_API_KEY": blank, "PINKCLOUDSYNC_API_SECRET": SECRET}
    assert "PINKCLOUDSYNC_API_KEY" in str(config_error(api_key=None, environ=env))
    env = {"PINKCLOUDSYNC_API_KEY": KEY, "PINKCLOUDSYNC_API_SECRET": blank}
    assert "PINKCLOUDSYNC_API_SECRET" in str(config_error(api_secret=None, environ=env))


@pytest.mark.parametrize("value", [123, b"pk_bytes", ["pk"], True])
def test_wrong_typed_key(value: object) -> None:
    error = config_error(api_key=value)
    assert "api_key must be a string" in str(error)


@pytest.mark.parametrize("value", [123, b"sk_bytes_SECRET", ["sk"], 4.5])
def test_wrong_typed_secret_does_not_echo_it(value: object) -> None:
    error = config_error(api_secret=value)
    assert "api_secret must be a string" in str(error)
    assert "sk_bytes_SECRET" not in str(error)


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_key": None},
        {"base_url": "ftp://x.example"},
        {"base_url": "http://insecure.example"},
        {"refresh_margin": -1},
        {"api_key": 5},
    ],
)
def test_the_secret_is_never_in_a_configuration_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve(**overrides)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)


# --- base_url: HTTPS only, except loopback --------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://api.pinkcloudsync.example/v1", "http://10.0.0.5:8000", "http://[2001:db8::1]/"]
)
def test_plain_http_is_refused_for_a_remote_host(url: str) -> None:
    error = config_error(base_url=url)
    assert "http" in str(error).lower()
    assert "allow_insecure_http" in str(error)


def test_plain_http_is_allowed_when_asked() -> None:
    settings = resolve(base_url="http://api.internal.example/v1", allow_insecure_http=True)
    assert str(settings.base_url) == "http://api.internal.example/v1/"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000",
        "http://LOCALHOST:8000/v1",
        "http://127.0.0.1:8000",
        "http://127.5.6.7",
        "http://127.255.255.254:1/x",
        "http://[::1]:8000/v1",
    ],
)
def test_plain_http_is_allowed_for_loopback(url: str) -> None:
    assert resolve(base_url=url).base_url.scheme == "http"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost.evil.example",
        "http://evil.example/localhost",
        "http://127.0.0.1.evil.example",
        "http://128.0.0.1",
        "http://0.0.0.0:8000",
        "http://[::2]/",
    ],
)
def test_plain_http_lookalikes_are_not_loopback(url: str) -> None:
    config_error(base_url=url)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("localhost.", True),
        ("127.0.0.1", True),
        ("127.5.6.7", True),
        ("::1", True),
        ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True),
        ("128.0.0.1", False),
        ("10.0.0.1", False),
        ("::", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "url",
    ["ftp://api.example/v1", "ws://localhost", "file:///etc/passwd", "api.example.com/v1", "/v1"],
)
def test_non_http_schemes_and_relative_urls_are_refused(url: str) -> None:
    error = config_error(base_url=url)
    assert "http" in str(error)


def test_https_to_any_host_is_fine() -> None:
    assert str(resolve(base_url="https://10.0.0.5:8443/api").base_url) == (
        "https://10.0.0.5:8443/api/"
    )


def test_base_url_may_be_an_httpx_url() -> None:
    settings = resolve(base_url=httpx.URL("https://x.example/v2"))
    assert isinstance(settings.base_url, httpx.URL)
    assert str(settings.base_url) == "https://x.example/v2/"


def test_base_url_from_the_environment_is_checked_too() -> None:
    error = config_error(environ={"PINKCLOUDSYNC_BASE_URL": "http://remote.example"})
    assert "allow_insecure_http" in str(error)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.example/v1", "https://x.example/v1/"),
        ("https://x.example/v1/", "https://x.example/v1/"),
        ("https://x.example", "https://x.example/"),
        ("https://x.example/", "https://x.example/"),
        ("https://x.example/a/b", "https://x.example/a/b/"),
    ],
)
def test_base_url_gets_exactly_one_trailing_slash(url: str, expected: str) -> None:
    settings = resolve(base_url=url)
    assert settings.base_url.host == "x.example"
    assert settings.base_url.path == httpx.URL(expected).path
    assert settings.base_url.raw_path.endswith(b"/")
    assert not settings.base_url.raw_path.endswith(b"//")
    # What the trailing slash is for: relative paths join onto the base path.
    assert str(settings.base_url.join("auth/token")) == expected + "auth/token"


@pytest.mark.parametrize(
    "url", ["https://x.example/v1?tenant=a", "https://x.example/v1?", "https://x.example/v1/?a=b"]
)
def test_base_url_with_a_query_is_refused_or_keeps_its_path(url: str) -> None:
    """The slash must end the *path*: httpx merges request paths onto `raw_path`, which
    includes the query, so `/v1?q=1/` would send every call to a mangled URL."""
    try:
        settings = resolve(base_url=url)
    except ConfigurationError:
        return
    assert settings.base_url.raw_path == b"/v1/"
    assert str(settings.base_url.join("auth/token")) == "https://x.example/v1/auth/token"


# --- refresh_margin -------------------------------------------------------------------------


@pytest.mark.parametrize("margin", [0, 0.0, 1, 300, 300.0, 7200.5])
def test_refresh_margin_accepted(margin: float) -> None:
    settings = resolve(refresh_margin=margin)
    assert settings.refresh_margin == float(margin)
    assert isinstance(settings.refresh_margin, float)


@pytest.mark.parametrize(
    "margin", [-1, -0.001, math.nan, math.inf, -math.inf, True, False, "300", None]
)
def test_refresh_margin_refused(margin: object) -> None:
    error = config_error(refresh_margin=margin)
    assert "refresh_margin" in str(error)


def test_settings_are_frozen() -> None:
    settings = resolve()
    with pytest.raises(AttributeError):
        settings.api_key = "other"  # type: ignore[misc]


# --- *_FILE variables: the Docker and Kubernetes secrets convention ----------------------


@pytest.fixture
def secret_files(tmp_path: Any) -> dict[str, str]:
    """Key and secret files, and the environment naming them."""
    (tmp_path / "key").write_text("pk_test_from_file\n")
    (tmp_path / "secret").write_text("  sk_test_from_file_SECRET\n\n")
    return {
        "PINKCLOUDSYNC_API_KEY_FILE": str(tmp_path / "key"),
        "PINKCLOUDSYNC_API_SECRET_FILE": str(tmp_path / "secret"),
    }


def test_files_named_by_the_environment_give_the_stripped_values(
    secret_files: dict[str, str],
) -> None:
    settings = resolve(api_key=None, api_secret=None, environ=secret_files)
    assert settings.api_key == "pk_test_from_file"
    assert settings.api_secret.get_secret_value() == "sk_test_from_file_SECRET"
    assert "PINKCLOUDSYNC_API_SECRET_FILE" in settings.credentials.description
    assert secret_files["PINKCLOUDSYNC_API_SECRET_FILE"] in settings.credentials.description


def test_a_file_is_read_again_each_time(secret_files: dict[str, str], tmp_path: Any) -> None:
    settings = resolve(api_key=None, api_secret=None, environ=secret_files)
    (tmp_path / "secret").write_text("sk_test_rotated")
    assert settings.credentials.read().api_secret.get_secret_value() == "sk_test_rotated"


def test_an_argument_beats_a_file(secret_files: dict[str, str]) -> None:
    settings = resolve(api_secret=None, environ=secret_files)
    assert settings.api_key == KEY  # the argument
    assert settings.api_secret.get_secret_value() == "sk_test_from_file_SECRET"
    assert "api_key= argument" in settings.credentials.description


@pytest.mark.parametrize("name", ["PINKCLOUDSYNC_API_KEY", "PINKCLOUDSYNC_API_SECRET"])
def test_a_variable_and_its_file_variable_together_are_refused(
    secret_files: dict[str, str], name: str
) -> None:
    error = config_error(api_key=None, api_secret=None, environ={**secret_files, **ENV})
    assert "PINKCLOUDSYNC_API_KEY_FILE" in str(error)  # the first setting resolved
    environ = {**secret_files, name: ENV[name]}
    error = config_error(api_key=None, api_secret=None, environ=environ)
    assert f"Both {name} and {name}_FILE" in str(error)


@pytest.mark.parametrize(
    ("content", "says"), [(None, "No such file"), ("", "is empty"), (" \n", "is empty")]
)
def test_a_missing_or_empty_file_is_refused_at_construction(
    tmp_path: Any, content: str | None, says: str
) -> None:
    path = tmp_path / "secret"
    if content is not None:
        path.write_text(content)
    environ = {"PINKCLOUDSYNC_API_KEY": KEY, "PINKCLOUDSYNC_API_SECRET_FILE": str(path)}
    error = config_error(api_key=None, api_secret=None, environ=environ)
    assert isinstance(error, CredentialsError)
    assert str(path) in str(error)
    assert says in str(error)


def test_credentials_with_a_key_or_secret_argument_is_refused() -> None:
    error = config_error(credentials=lambda: (KEY, SECRET))
    assert "credentials=" in str(error)


@pytest.mark.parametrize("not_callable", ["pk:sk", ("pk", "sk"), 42])
def test_credentials_must_be_callable(not_callable: Any) -> None:
    error = config_error(api_key=None, api_secret=None, credentials=not_callable)
    assert isinstance(error, CredentialsError)
    assert "callable" in str(error)


def test_missing_everything_names_the_file_variables_too() -> None:
    error = config_error(api_key=None, api_secret=None, environ={})
    assert "PINKCLOUDSYNC_API_SECRET_FILE" in str(error)
    assert "credentials=" in str(error)
