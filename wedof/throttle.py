"""Rate limiting of Wedof API calls, shared by every process that uses the same Redis key.

``RedisThrottle`` is a GCRA (generic cell rate algorithm, an exact token bucket) kept in one Redis
key and updated by a Lua script that reads the clock with Redis ``TIME``: all worker processes
share one clock and one state, so together they never exceed ``rate_per_second`` (plus ``burst``
back-to-back calls). Use one key per Wedof connection (:func:`throttle_key`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

logger = logging.getLogger(__name__)

KEY_PREFIX = "wedof:throttle:"

# KEYS[1] = state key (theoretical arrival time, microseconds on the Redis clock)
# ARGV[1] = emission interval (µs per request), ARGV[2] = burst
# Returns {granted (1/0), wait_us, now_us}.
_GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
local allowed_ahead = burst * interval
if ahead <= allowed_ahead then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + 1000)
  return {1, 0, string.format('%d', now)}
end
return {0, ahead - allowed_ahead, string.format('%d', now)}
"""


def throttle_key(connection_id: object) -> str:
    """The Redis key holding the throttle state of one Wedof connection."""
    return f"{KEY_PREFIX}{connection_id}"


class Throttle(Protocol):
    def acquire(self, timeout: float | None = None) -> bool: ...


class NullThrottle:
    """No limit: every call is allowed at once (tests, one-off scripts)."""

    last_granted_at: float | None = None

    def acquire(self, timeout: float | None = None) -> bool:
        self.last_granted_at = time.time()
        return True


class RedisThrottle:
    """At most ``rate_per_second`` calls per second (plus ``burst`` at once) across all processes."""

    def __init__(self, redis_client: Any, key: str, rate_per_second: float, burst: int = 1,
                 on_wait: Callable[[float], None] | None = None) -> None:
        if not (isinstance(rate_per_second, int | float) and math.isfinite(rate_per_second)):
            raise ValueError("rate_per_second must be a finite number")
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be > 0")
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise ValueError("burst must be an integer >= 1")
        if not key:
            raise ValueError("a throttle key is required")
        self.redis = redis_client
        self.key = key
        self.rate_per_second = float(rate_per_second)
        self.burst = burst
        # Rounded up so rounding can only make us slower than the rate, never faster.
        self.interval_us = max(1, math.ceil(1_000_000 / self.rate_per_second))
        self._script = redis_client.register_script(_GCRA_LUA)
        # Redis-clock time (seconds) of the last grant this instance obtained; for diagnostics.
        self.last_granted_at: float | None = None
        self.on_wait = on_wait  # told each wait's seconds before sleeping it (the workers' metrics)

    def try_acquire(self) -> float:
        """One attempt: 0.0 when granted, otherwise the seconds to wait before the next chance."""
        granted, wait_us, now_us = self._script(keys=[self.key], args=[self.interval_us, self.burst])
        if int(granted) == 1:
            self.last_granted_at = int(now_us) / 1_000_000
            return 0.0
        return int(wait_us) / 1_000_000

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until a call is allowed; False if ``timeout`` seconds pass first.

        Redis errors propagate (the caller decides whether that is worth a retry).
        """
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            wait = self.try_acquire()
            if wait == 0.0:
                return True
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or wait > remaining:
                    return False
            self._report_wait(wait)
            time.sleep(wait)

    def _report_wait(self, seconds: float) -> None:
        if self.on_wait is None:
            return
        try:
            self.on_wait(seconds)
        except Exception:  # noqa: BLE001 - an observer's fault must never fail a call
            logger.debug("throttle wait observer failed", exc_info=True)

    def __repr__(self) -> str:
        return f"RedisThrottle(key={self.key!r}, rate_per_second={self.rate_per_second}, burst={self.burst})"
