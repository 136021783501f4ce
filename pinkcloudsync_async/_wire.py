"""Reading JSON off the wire, whatever it holds: one parser for every body we read.

`json.loads` raises `RecursionError` (not a `ValueError`) for a body nested deeper
than the interpreter's recursion limit, such as 100,000 `[`. Every body the
library parses goes through `parse_json`, so that any body ends in a `ValueError`
its caller turns into a typed error.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["parse_json"]


def parse_json(content: bytes | str) -> Any:
    """The JSON value in `content`; ValueError for anything that is not JSON,
    nested too deeply, or holds an integer of more than 4,300 digits."""
    try:
        return json.loads(content)
    except RecursionError:
        pass  # raised below, outside the handler: no chained RecursionError
    raise ValueError("JSON nested too deeply")
