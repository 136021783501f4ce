"""The error hierarchy, and `raise_for_api_error`.

    PinkCloudSyncError                     every error this library raises
    ├── ConfigurationError                 missing or unusable configuration (also ValueError)
    │   └── CredentialsError               a secret file or a credentials= callable failed
    ├── InvalidResponseError               a payload that is not what the API promises
    ├── APIConnectionError                 the API could not be reached (also httpx.TransportError)
    ├── RequestTimeoutError                a request's total time budget ran out
    │                                      (also httpx.TimeoutException)
    └── APIError                           the API answered with an error status
        ├── BadRequestError                400
        ├── AuthenticationError            401: bad credentials, expired or invalid token
        ├── PermissionDeniedError          403: valid credentials, missing permission
        ├── NotFoundError                  404
        ├── RateLimitError                 429: `.retry_after` seconds, or None
        └── ServerError                    5xx

No message ever contains the API secret or an access token: bodies of non-JSON error
responses are described (type and size), never echoed, and whatever a server echoes is
redacted in every form (see `_redaction`); an error's `.response` is a redacted copy.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import ValidationError

from ._constants import ATTEMPTS_EXTENSION
from ._models import ErrorResponse
from ._redaction import (
    Redactor,
    hide_in_reason_phrase,
    redacted_request,
    redacted_response,
    sent_credentials,
)
from ._retry_policy import parse_retry_after
from ._wire import parse_json

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "CredentialsError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PinkCloudSyncError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "raise_for_api_error",
]


class PinkCloudSyncError(Exception):
    """Base class of every error raised by pinkcloudsync_async."""


class ConfigurationError(PinkCloudSyncError, ValueError):
    """The client cannot be built or used with the configuration it was given."""


class CredentialsError(ConfigurationError):
    """The credentials could not be read for a token request: a secret file missing,
    unreadable or empty, or a `credentials=` callable that raised (its exception is
    the `__cause__`) or returned something other than `(api_key, api_secret)`."""


class InvalidResponseError(PinkCloudSyncError):
    """The API answered, but not with what it promises (wrong JSON, HTML, empty...)."""

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class APIConnectionError(PinkCloudSyncError, httpx.TransportError):
    """The API could not be reached, or the connection was lost (raised for the token
    request and by typed calls; raw calls keep httpx's own transport errors)."""


class RequestTimeoutError(PinkCloudSyncError, httpx.TimeoutException):
    """A request's total time budget (its `timeout`) ran out across its retries and
    its wait for a token."""


class APIError(PinkCloudSyncError):
    """The API answered with an error status.

    `error` is the API's error code (or `http_<status>` when the body was not the
    API's JSON error), `message` its human text, `attempts` how many requests were
    made before giving up.
    """

    def __init__(
        self,
        *,
        status_code: int,
        error: str,
        message: str,
        response: httpx.Response | None = None,
        attempts: int = 1,
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.message = message
        self.response = response
        self.attempts = attempts
        text = f"{status_code} {error}: {message}"
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        super().__init__(text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__: teach copy/pickle how to rebuild us.
        return (_rebuild, (type(self), self.__dict__))


class BadRequestError(APIError):
    """400: the API refused the request as malformed."""


class AuthenticationError(APIError):
    """401: invalid API credentials, or an expired or invalid token."""


class PermissionDeniedError(APIError):
    """403: the credentials are valid but lack a permission. Never retried."""


class NotFoundError(APIError):
    """404: no such resource."""


class RateLimitError(APIError):
    """429: too many requests. `retry_after` is the server's wait in seconds, or None."""

    def __init__(self, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(**kwargs)


class ServerError(APIError):
    """5xx: the API or a gateway in front of it failed."""


def _rebuild(cls: type[APIError], state: dict[str, Any]) -> APIError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    text = f"{state['status_code']} {state['error']}: {state['message']}"
    if state.get("attempts", 1) > 1:
        text += f" (after {state['attempts']} attempts)"
    error.args = (text,)
    return error


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def _error_class(status_code: int) -> type[APIError]:
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIError)


def _describe_body(response: httpx.Response) -> tuple[str, str]:
    """The error code and message for a response, without echoing a foreign body."""
    fallback_code = f"http_{response.status_code}"
    reason = response.reason_phrase or "HTTP error"
    try:
        body = response.content
    except httpx.ResponseNotRead:
        return fallback_code, f"{reason} (body not read)"
    if not body.strip():
        return fallback_code, f"{reason} (empty body)"
    try:
        data = parse_json(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        try:
            parsed = ErrorResponse.model_validate(data)
        except ValidationError:
            pass
        else:
            return parsed.error, parsed.message
        code = data.get("error")
        text = data.get("message")
        if isinstance(code, str) or isinstance(text, str):
            return (
                code if isinstance(code, str) else fallback_code,
                text if isinstance(text, str) else reason,
            )
    content_type = response.headers.get("content-type", "no content-type").split(";")[0]
    return fallback_code, f"{reason} (non-JSON error body: {content_type}, {len(body)} bytes)"


def api_error_for(
    response: httpx.Response, *, attempts: int = 1, secrets: Redactor | None = None
) -> APIError:
    """The typed error for an error response (not raised), built redacted: neither
    its message nor its `.response` (a detached, redacted copy) shows the bearer
    token the request sent, nor any of `secrets`, in any form."""
    redactor = (secrets or Redactor()).with_secrets([sent_credentials(response)])
    code, message = _describe_body(response)
    cls = _error_class(response.status_code)
    kwargs: dict[str, Any] = {
        "status_code": response.status_code,
        "error": redactor.text(code),
        "message": redactor.text(message),
        "response": redacted_response(response, redactor),
        "attempts": attempts,
    }
    if cls is RateLimitError:
        kwargs["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
    return cls(**kwargs)


def request_failure_error(
    exc: httpx.RequestError, *, what: str, request: httpx.Request, spent: bool
) -> PinkCloudSyncError:
    """The typed error for a request that got no usable response, for every typed
    call: `what` names the call in the message (never a body or a credential).

    The caller's deadline `spent`, or an answer too slow (read, write, pool
    timeouts): `RequestTimeoutError`. A body that cannot be decoded, or redirects
    without end: `InvalidResponseError`. The host not reached or the connection
    lost: `APIConnectionError`. Its `request` is a redacted copy of `request`.
    """
    if isinstance(exc, PinkCloudSyncError):
        return exc  # already typed below us
    attempts = request.extensions.get(ATTEMPTS_EXTENSION, 1)
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    kind = type(exc).__name__
    safe = redacted_request(request, Redactor(sent_credentials(request)))
    if spent or (
        isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)
    ):
        return RequestTimeoutError(f"{what} timed out{tries}: {kind}", request=safe)
    if isinstance(exc, (httpx.DecodingError, httpx.TooManyRedirects)):
        return InvalidResponseError(f"{what} got an unreadable answer{tries}: {kind}")
    return APIConnectionError(f"{what} failed{tries}: {kind}", request=safe)


def raise_for_api_error(response: httpx.Response, *, attempts: int = 1) -> None:
    """Raise the typed error for a 4xx/5xx response; do nothing for any other status.

    Works for any body: the API's JSON `{error, message}`, an HTML page from a
    gateway, an empty or truncated body.
    """
    if response.status_code >= 400:
        hide_in_reason_phrase(response, Redactor(sent_credentials(response)))
        raise api_error_for(response, attempts=attempts)
