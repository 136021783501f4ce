"""Keeping secrets out of what we produce: every form a secret takes, and safe copies.

A server may echo what it was sent: raw, inside a JSON string it built (escaped),
or in a URL (percent-encoded), in its body, its headers or its reason phrase. A
`Redactor` holds the secrets one error must not show, wrapped (`SecretStr`), and
replaces every one of those forms. Errors are *built* redacted: their messages go
through it, and the response they carry is a detached copy (`redacted_response`)
whose request holds no credentials and no body.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable

import httpx
from pydantic import SecretStr

__all__ = [
    "REDACTED",
    "Redactor",
    "hide_in_reason_phrase",
    "redacted_request",
    "redacted_response",
    "sent_credentials",
]

REDACTED = "[redacted]"

# Headers whose whole value is a credential, whatever it holds.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# A copy's body is already decoded and re-measured: these would describe the original.
_BODY_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _forms(secret: str) -> set[str]:
    """The ways `secret` can appear in text: raw, JSON-escaped (once and twice,
    ASCII-only or not, as json.dumps and httpx write it), Python-repr-escaped (str
    and bytes), percent-encoded."""
    forms = {secret}
    for once in {json.dumps(secret, ensure_ascii=flag)[1:-1] for flag in (True, False)}:
        forms.add(once)
        forms |= {json.dumps(once, ensure_ascii=flag)[1:-1] for flag in (True, False)}
    # Python's repr of the text and of its UTF-8 bytes (httpcore's DEBUG records show
    # header values as bytes reprs).
    forms |= {repr(secret)[1:-1], repr(secret.encode())[2:-1]}
    forms |= {
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret, safe=""),
    }
    return forms


class Redactor:
    """The secrets one piece of output must not show, kept wrapped.

    `text` and `data` replace every form of every secret (`_forms`) with
    `[redacted]`, longest first so that a form containing another goes whole.
    """

    __slots__ = ("_secrets",)

    def __init__(self, *secrets: str | SecretStr | None) -> None:
        self._secrets = tuple(s if isinstance(s, SecretStr) else SecretStr(s) for s in secrets if s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<{len(self._secrets)} secrets>)"

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def with_secrets(self, secrets: Iterable[str | SecretStr | None]) -> Redactor:
        """This redactor, with more secrets to hide."""
        return Redactor(*self._secrets, *secrets)

    def _all_forms(self) -> list[str]:
        forms: set[str] = set()
        for secret in self._secrets:
            if secret.get_secret_value():
                forms |= _forms(secret.get_secret_value())
        return sorted(forms, key=len, reverse=True)

    def text(self, text: str) -> str:
        """`text` with every form of every secret replaced."""
        for form in self._all_forms():
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        """`data` (a body, UTF-8 or not) with every form of every secret replaced."""
        for form in self._all_forms():
            encoded = form.encode("utf-8")
            if encoded in data:
                data = data.replace(encoded, REDACTED.encode())
        return data


def sent_credentials(message: httpx.Request | httpx.Response) -> SecretStr | None:
    """The credentials a request's Authorization header carried (a bearer token),
    if any; for a response, its request's (none for a Response built by hand)."""
    if isinstance(message, httpx.Response):
        try:
            message = message.request
        except RuntimeError:
            return None
    _, _, credentials = message.headers.get("authorization", "").partition(" ")
    return SecretStr(credentials.strip()) if credentials.strip() else None


def redacted_request(request: httpx.Request, redactor: Redactor) -> httpx.Request:
    """A copy of `request` safe to keep in an error: its method and URL (redacted),
    its headers with credentials masked, and no body (a token request's body is the
    API secret)."""
    headers = [
        (name, REDACTED if name.lower() in _CREDENTIAL_HEADERS else redactor.text(value))
        for name, value in request.headers.multi_items()
        if name.lower() not in _BODY_HEADERS
    ]
    url = request.url.copy_with(username=None, password=None)
    return httpx.Request(request.method, redactor.text(str(url)), headers=headers)


def hide_in_reason_phrase(response: httpx.Response, redactor: Redactor) -> None:
    """Redact a response's reason phrase in place, as soon as we hold the response.

    `repr(response)` shows the reason phrase, and error trackers print the repr of
    every local of every frame in a traceback: a server echoing a secret there
    would put it in any traceback that passes through a frame holding `response`.
    """
    phrase = response.extensions.get("reason_phrase")
    if isinstance(phrase, bytes) and redactor:
        hidden = redactor.data(phrase)
        if hidden != phrase:
            response.extensions["reason_phrase"] = hidden


def redacted_response(
    response: httpx.Response, redactor: Redactor, *, body: bool = True
) -> httpx.Response:
    """A detached copy of `response` safe to keep in an error (pickled, shipped to an
    error tracker): status, headers, reason phrase and body with every secret and
    the request's own credentials redacted; its request from `redacted_request`.
    A body not read yet stays unread (the copy has none); `body=False` leaves the
    body out (a token response's body holds a token, valid or not)."""
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a Response built by hand has no request
        request = None
    redactor = redactor.with_secrets([sent_credentials(response)])
    try:
        content = redactor.data(response.content) if body else b""
    except httpx.ResponseNotRead:
        content = b""
    headers = [
        (name, REDACTED if name.lower() in _CREDENTIAL_HEADERS else redactor.text(value))
        for name, value in response.headers.multi_items()
        if name.lower() not in _BODY_HEADERS
    ]
    extensions = {
        name: value for name, value in response.extensions.items() if name.startswith("pinkcloud")
    }
    extensions["http_version"] = response.http_version.encode("ascii", "replace")
    reason = redactor.text(response.reason_phrase)
    extensions["reason_phrase"] = reason.encode("ascii", "replace")
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=content,
        request=None if request is None else redacted_request(request, redactor),
        extensions=extensions,
    )
