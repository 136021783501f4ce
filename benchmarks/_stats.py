"""Small statistics and timing helpers shared by the scenarios."""

from __future__ import annotations

import gc
import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def settle() -> None:
    """Between rounds: collect now, so no round pays for the previous one's garbage."""
    gc.collect()
