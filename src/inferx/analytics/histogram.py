"""Fixed latency buckets (ms) shared by the writer (rollups) and the reader (percentiles)."""

from __future__ import annotations

import bisect

EDGES_MS = (
    0.1,
    0.25,
    0.5,
    1,
    2,
    3,
    5,
    7.5,
    10,
    15,
    25,
    50,
    75,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
)


def bucket_of(ms: float) -> int:
    return bisect.bisect_left(EDGES_MS, ms)


def percentile(counts: dict[int, int], q: float, lo: float, hi: float) -> float | None:
    """Interpolated inside the bucket that holds the q-th value, clamped to the observed range."""
    total = sum(counts.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(counts):
        n = counts[bucket]
        if seen + n >= rank:
            low = EDGES_MS[bucket - 1] if bucket > 0 else 0.0
            high = EDGES_MS[bucket] if bucket < len(EDGES_MS) else hi
            value = low + (high - low) * ((rank - seen) / n if n else 0)
            return round(min(max(value, lo), hi), 3)
        seen += n
    return round(hi, 3)
