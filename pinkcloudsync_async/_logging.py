"""Secrets kept out of httpx's and httpcore's log records too.

httpx logs every response at INFO with its reason phrase, and httpcore logs the
response headers at DEBUG: a server echoing the API secret or a token there would
put it in a log line we caused. A filter on those loggers redacts every record
against the secrets of every live token side (a `WeakSet`: registering never keeps
a client alive). A logger's level is checked before its filters run, so with
those loggers quiet (the default) this costs nothing.
"""

from __future__ import annotations

import logging
import weakref
from typing import Protocol

from pydantic import SecretStr

from ._redaction import Redactor

__all__ = ["HasSecrets", "redact_dependency_logs"]

# httpcore logs on its submodules' loggers; a logger's filters see only its own records.
_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)


class HasSecrets(Protocol):
    """A token side: what it must keep out of logs right now."""

    def secrets(self) -> tuple[SecretStr, ...]: ...


class _RedactRecords(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.sides: weakref.WeakSet[HasSecrets] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = Redactor(*(secret for side in list(self.sides) for secret in side.secrets()))
        if not redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is logging's to report, not ours to raise
            return True
        hidden = redactor.text(message)
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


_FILTER = _RedactRecords()
for _name in _LOGGERS:
    logging.getLogger(_name).addFilter(_FILTER)


def redact_dependency_logs(side: HasSecrets) -> None:
    """Keep `side.secrets()` out of httpx's and httpcore's records while it lives."""
    _FILTER.sides.add(side)
