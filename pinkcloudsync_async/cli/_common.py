"""What the command line's modules share: the expected-failure error and parsing helpers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["PROG", "CLIError", "Parser", "positive"]

PROG = "pinkcloudsync"


class CLIError(Exception):
    """An expected failure: one line for stderr, and the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one `prog: error: ...` line after the usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(kind: Callable[[str], Any], *, allow_zero: bool = False) -> Callable[[str], Any]:
    """An argparse `type=` that accepts numbers > 0 (or >= 0)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {'>=' if allow_zero else '>'} 0: {text!r}")
        return value

    return parse
