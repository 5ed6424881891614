"""Time helpers: Wedof's ISO 8601 format and a logical clock that never repeats a timestamp.

Timestamps are handled internally as integer milliseconds since the Unix epoch (UTC), and rendered the
way Wedof does: ``2024-03-15T14:26:51.842Z``.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from datetime import UTC, date, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A '+' in a query string arrives as a space when the client did not percent-encode it.
_SPACE_OFFSET = re.compile(r" (\d\d:?\d\d)$")


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86_400))


def iso_ms(ms: int) -> str:
    """Render epoch milliseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    day, rest = divmod(ms, 86_400_000)
    seconds, millis = divmod(rest, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{_day_prefix(day)}{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def parse_datetime(text: str) -> int:
    """Parse ``YYYY-MM-DDTHH:mm:ssZ`` (Wedof's filter format), ISO with milliseconds or an offset,
    or a bare date; return epoch milliseconds. Raises ValueError on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty date")
    text = _SPACE_OFFSET.sub(r"+\1", text.strip())
    if len(text) == 10:
        return to_ms(datetime.combine(date.fromisoformat(text), datetime.min.time()))
    if "T" not in text and " " not in text:
        raise ValueError(f"not a date-time: {text!r}")
    return to_ms(datetime.fromisoformat(text))


def parse_iso_to_ms(value: str | None) -> int | None:
    """Lenient variant for values we produced ourselves (history dates); None stays None."""
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        return None


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class LogicalClock:
    """Hands out strictly increasing millisecond timestamps: max(wall clock, last + 1 ms).

    Receivers compare ``lastUpdate`` values to reject stale data, so two changes must never share one.
    """

    def __init__(self, floor_ms: int = 0) -> None:
        self._last = floor_ms
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            self._last = max(wall_ms(), self._last + 1)
            return self._last

    def advance_to(self, floor_ms: int) -> None:
        with self._lock:
            self._last = max(self._last, floor_ms)

    @property
    def last(self) -> int:
        return self._last
