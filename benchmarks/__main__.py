"""`python -m benchmarks`: run every scenario and print the table."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
