"""The one backoff-with-jitter formula: the client's in-call retries and the tasks' retries both use it.

Exponential, doubling from ``base`` up to ``cap``, with "equal jitter" (half fixed, half random): the
waits of many workers spread out, yet none is near zero. A ``Retry-After`` is a minimum; a little
jitter on top keeps the workers that read the same header from coming back in the same instant.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after attempt ``attempt`` (1-based) failed."""
    exponent = min(max(attempt - 1, 0), 30)
    delay = min(cap, base * 2**exponent)
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None and retry_after >= 0:
        delay = max(delay, retry_after + random.uniform(0, min(1.0, 0.1 * retry_after + 0.05)))
    return round(delay, 3)
