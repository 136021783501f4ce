"""`python -m pinkcloudsync_async`: the `pinkcloudsync` command line."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
