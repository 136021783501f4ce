"""Request bodies read as the strict JSON an API accepts, not as Python's json module does.

`json.loads` is lenient where a server must not be, and each leniency reached the
emulator either as a 500 or as a reply no JSON parser reads back:

- deep nesting raises RecursionError, which is no ValueError;
- `\\ud800` decodes to a lone surrogate, a str that cannot be encoded (checking it
  as an api_secret raised UnicodeEncodeError);
- `NaN`, `Infinity` and numbers past a double's range (`1e400` becomes inf) are
  taken, then written back as `NaN` and `Infinity`, which are not JSON;
- a repeated key keeps its last value, so `{"api_secret": "a", "api_secret": "b"}`
  means whatever the parser says;
- bytes are taken in UTF-16 and UTF-32 too.

`parse_json` refuses each with a `BadJSON` whose text is the 400's message. It never
quotes the body, which may hold a secret. (RFC 8259; I-JSON, RFC 7493.)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "BadJSON", "parse_json"]

# Sessions are flat; 64 levels is generous and far from Python's recursion limit, so
# whatever is stored can always be written back out.
MAX_DEPTH = 64
# JSON integers have no leading zeros: 308 digits always fit a double (its largest
# is about 1.8e308), 310 never do; 309 may.
_SAFE_INT_CHARS = 308
_MAX_INT_CHARS = 310  # a minus sign and 309 digits

_TOO_DEEP = f"Request body is nested too deeply (at most {MAX_DEPTH} levels)"
_OUT_OF_RANGE = "Request body has a number too large for a double"
_LONE_SURROGATE = "Request body has a string with a lone surrogate, which is not Unicode"
_SURROGATE = re.compile("[\ud800-\udfff]")
# UTF-8 text holds no surrogate: only a \ud800-\udfff escape can make one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BadJSON(Exception):
    """The body is not JSON the emulator takes; `str(error)` is the 400's message."""


def parse_json(raw: bytes) -> Any:
    """`raw` as strict JSON: UTF-8, no NaN or Infinity, numbers a double can hold,
    no repeated keys, no lone surrogates, at most `MAX_DEPTH` levels deep."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON("Request body must be JSON encoded in UTF-8") from None
    text = text.removeprefix("\ufeff")  # RFC 8259 8.1: a parser may ignore a BOM
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
        )
    except RecursionError:
        raise BadJSON(_TOO_DEEP) from None
    except json.JSONDecodeError as error:
        # The parser's own words and a position; never the text itself.
        message = (
            f"Request body must be JSON: {error.msg} (line {error.lineno} column {error.colno})"
        )
        raise BadJSON(message) from None
    except ValueError:
        raise BadJSON("Request body must be JSON") from None
    # Two scans at C speed spare most bodies the walk through every value.
    if _SURROGATE_ESCAPE.search(text) or text.count("[") + text.count("{") > MAX_DEPTH:
        _check(value)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        raise BadJSON("Request body has a duplicate key in an object")
    return value


def _constant(name: str) -> Any:
    raise BadJSON("Request body has NaN or Infinity, which are not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(_OUT_OF_RANGE)
    return value


def _int(text: str) -> int:
    if len(text) <= _SAFE_INT_CHARS:
        return int(text)
    if len(text) > _MAX_INT_CHARS:  # before int(): a megabyte of digits costs nothing
        raise BadJSON(_OUT_OF_RANGE)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise BadJSON(_OUT_OF_RANGE) from None
    return value


def _check(value: Any) -> None:
    # One level at a time, without recursion: checking the depth cannot run out of stack.
    level = [value]
    depth = 0
    while level:
        depth += 1
        deeper: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                deeper.extend(node)  # its keys, checked as strings one level down
                deeper.extend(node.values())
            elif isinstance(node, list):
                deeper.extend(node)
            elif isinstance(node, str) and _SURROGATE.search(node):
                raise BadJSON(_LONE_SURROGATE)
        if depth > MAX_DEPTH and any(isinstance(node, (dict, list)) for node in level):
            raise BadJSON(_TOO_DEEP)
        level = deeper
