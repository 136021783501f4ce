"""The little of ASGI the emulator needs: reading a request, sending a JSON reply."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = [
    "MAX_BODY_BYTES",
    "Receive",
    "Reply",
    "Scope",
    "Send",
    "error_reply",
    "header",
    "read_body",
    "reason",
    "send_reply",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Sessions are small; anything bigger is a client bug worth a clear 413.
MAX_BODY_BYTES = 1 << 20
_DRAIN_LIMIT = 64 << 20

_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "insufficient_permissions",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass
class Reply:
    """A JSON response to send."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)


def error_reply(
    status: int,
    message: str,
    *,
    error: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
) -> Reply:
    """The API's error body: `{"error": <code>, "message": <text>}`."""
    code = error or _ERROR_CODES.get(status, f"http_{status}")
    return Reply(status, {"error": code, "message": message}, list(headers))


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (`name` in lower case), decoded as latin-1."""
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body; None if the client went away. Raises OverflowError past `limit`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        more = message.get("more_body", False)
        if size > limit:
            if more:
                await _drain(receive, _DRAIN_LIMIT)
            raise OverflowError(size)
        chunks.append(chunk)
        if not more:
            return b"".join(chunks)


async def _drain(receive: Receive, limit: int) -> None:
    # Read (and drop) the rest of a refused body: an in-process sender such as
    # httpx.ASGITransport leaves its body iterator unclosed if the app stops reading.
    size = 0
    while size <= limit:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return


async def send_reply(send: Send, reply: Reply) -> None:
    """Send `reply` as a complete JSON response."""
    payload = json.dumps(reply.body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def reason(status: int) -> str:
    """The status's standard phrase, e.g. "Service Unavailable"."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
