"""Token sides that survive `os.fork()`: the child starts with no flight in progress.

A process forked while a thread (or a coroutine) of the parent is inside a token
request gets a copy of that flight, but not the thread that would finish it: its
callers would wait for ever, or until their timeout. Locks held by a parent thread
at the fork stay held in the child. `os.register_at_fork` runs `after_fork_in_child`
of every live token side in the child; a `WeakSet` holds them, so registering never
keeps a client alive, and one process-wide hook serves every client.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "reset_after_fork"]


class ForkAware(Protocol):
    """A token side that knows how to start over in a forked child."""

    def after_fork_in_child(self) -> None: ...


_LIVE: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def _reset_all() -> None:
    for side in list(_LIVE):
        side.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_reset_all)


def reset_after_fork(side: ForkAware) -> None:
    """Have `side.after_fork_in_child()` run in every child this process forks."""
    _LIVE.add(side)
