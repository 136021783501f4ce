"""Transports: what carries the client's requests, kept apart from the client.

`LoopBoundTransport` gives each event loop its own inner transport;
`with_own_transports` builds the client's own pool and proxy mounts that way.
"""

from __future__ import annotations

from ._loop_bound import LoopBoundTransport
from ._own import environment_proxies, with_own_transports

__all__ = ["LoopBoundTransport", "environment_proxies", "with_own_transports"]
