"""The emulator's control endpoints: rotate keys on a served emulator at run time.

Under the base URL, at `_emulator/` (a name the API does not use), so that a
rotation can be shown against `pinkcloudsync emulator` from another process (curl,
a test, any client with the emulator's base URL):

    POST   {base}/_emulator/keys                     {"api_key", "api_secret", "permissions"?}
    DELETE {base}/_emulator/keys/{api_key}           stop accepting it (its tokens stay valid)
    POST   {base}/_emulator/keys/{api_key}/revoke    revoke the tokens issued for it

Answers are JSON; errors use the API's error body. A secret is never echoed. Like
the rest of the emulator, anyone who can reach it can use it: serve it on loopback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ._asgi import Reply, error_reply
from ._state import ALL_PERMISSIONS, DEFAULT_PERMISSIONS, EmulatorKey

if TYPE_CHECKING:
    from ._emulator import Emulator

__all__ = ["CONTROL_PREFIX", "control_reply"]

CONTROL_PREFIX = "/v1/_emulator/"
_KEYS = "/v1/_emulator/keys"

ReadBody = Callable[[], Awaitable[tuple[dict[str, Any], Reply | None]]]


async def control_reply(emulator: Emulator, method: str, path: str, read_body: ReadBody) -> Reply:
    """The reply to one control request (`path` without a trailing slash)."""
    if path == _KEYS:
        if method != "POST":
            return error_reply(405, f"{method} is not allowed here", headers=[("allow", "POST")])
        body, problem = await read_body()
        return problem or _add_key(emulator, body)
    if not path.startswith(_KEYS + "/"):
        return error_reply(404, f"No such control endpoint: {path}")
    rest = path[len(_KEYS) + 1 :]
    api_key, _, action = rest.partition("/")
    api_key = unquote(api_key)
    if action == "" and method == "DELETE":
        try:
            emulator.remove_key(api_key)
        except KeyError:
            return error_reply(404, f"No key {api_key!r}")
        return Reply(200, {"removed": api_key})
    if action == "revoke" and method == "POST":
        # A removed key too: revoking its tokens is the usual last step of a rotation.
        return Reply(200, {"api_key": api_key, "revoked": emulator.revoke_tokens(api_key)})
    allowed = "DELETE" if action == "" else "POST"
    if action not in {"", "revoke"}:
        return error_reply(404, f"No such control endpoint: {path}")
    return error_reply(405, f"{method} is not allowed here", headers=[("allow", allowed)])


def _add_key(emulator: Emulator, body: dict[str, Any]) -> Reply:
    api_key, api_secret = body.get("api_key"), body.get("api_secret")
    permissions = body.get("permissions", list(DEFAULT_PERMISSIONS))
    if not isinstance(api_key, str) or not api_key or not isinstance(api_secret, str):
        return error_reply(400, "api_key and api_secret must be non-empty strings")
    if not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions):
        return error_reply(400, "permissions must be a list of strings")
    unknown = [p for p in permissions if p not in ALL_PERMISSIONS]
    if unknown:
        return error_reply(400, f"Unknown permission(s): {', '.join(unknown)}")
    if any(key.api_key == api_key for key in emulator.keys):
        return error_reply(409, f"Key {api_key!r} exists: remove it first")
    try:
        key = EmulatorKey(api_key, api_secret, tuple(permissions))
        emulator.add_key(key)
    except ValueError as exc:  # raced with another add: the same answer
        return error_reply(409, str(exc))
    return Reply(201, {"api_key": key.api_key, "permissions": list(key.permissions)})
