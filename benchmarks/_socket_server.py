"""The socket scenario's server: a minimal HTTP/1.1 keep-alive API, in its own process.

    python -m benchmarks._socket_server      # prints its port, serves until stdin closes

It must not be the bottleneck, so it is a bare `asyncio.Protocol` that parses just
enough HTTP/1.1 (request line, `Content-Length`, `Authorization`, pipelining) and
answers from prebuilt bytes:

    POST /v1/auth/token     200, a fresh JWT (`expires_in` 3600), as the API's
    GET  /v1/sync/sessions  200 `{"sessions": []}` with a bearer token, else 401
    GET  /_stats            its own CPU seconds and request counts, for the benchmark

It binds 127.0.0.1 on a free port and stops when its stdin reaches EOF, so it
cannot outlive the benchmark that started it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

from ._mock import make_jwt

TOKEN_LIFETIME = 3600
_JSON_HEAD = (
    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
)


def _response(status: str, body: bytes) -> bytes:
    return _JSON_HEAD.format(status=status, length=len(body)).encode() + body


_SESSIONS = _response("200 OK", b'{"sessions": []}')
_UNAUTHORIZED = _response(
    "401 Unauthorized", b'{"error": "invalid_token", "message": "Missing bearer token"}'
)
_NOT_FOUND = _response("404 Not Found", b'{"error": "not_found", "message": "No such path"}')


class Counters:
    def __init__(self) -> None:
        self.token_requests = 0
        self.api_requests = 0
        self.unauthorized = 0
        self.connections = 0

    def stats(self) -> bytes:
        body = {
            "cpu_s": time.process_time(),
            "token_requests": self.token_requests,
            "api_requests": self.api_requests,
            "unauthorized": self.unauthorized,
            "connections": self.connections,
        }
        return _response("200 OK", json.dumps(body).encode())


class HTTPProtocol(asyncio.Protocol):
    """One keep-alive connection: answers every complete request in each read at once."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._counters.connections += 1

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        answers = []
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : line_end if line_end >= 0 else None])
            if len(buffer) < end + 4 + length:
                break  # the body is still on its way
            buffer = buffer[end + 4 + length :]
            answers.append(self._answer(head))
        self._buffer = buffer
        if answers and self._transport is not None:
            self._transport.write(b"".join(answers))

    def _answer(self, head: bytes) -> bytes:
        request_line = head[: head.find(b"\r\n")]
        if request_line.startswith(b"get /v1/sync/sessions"):
            if b"\r\nauthorization: bearer " not in head:
                self._counters.unauthorized += 1
                return _UNAUTHORIZED
            self._counters.api_requests += 1
            return _SESSIONS
        if request_line.startswith(b"post /v1/auth/token"):
            self._counters.token_requests += 1
            body = {
                "access_token": make_jwt(TOKEN_LIFETIME),
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
            }
            return _response("200 OK", json.dumps(body).encode())
        if request_line.startswith(b"get /_stats"):
            return self._counters.stats()
        return _NOT_FOUND


async def serve() -> None:
    loop = asyncio.get_running_loop()
    counters = Counters()
    server = await loop.create_server(lambda: HTTPProtocol(counters), "127.0.0.1", 0, backlog=4096)
    stop = asyncio.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()  # returns when the benchmark closes our stdin or dies
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
