"""Slow down a connection flooded with bad signatures, without limiting genuine deliveries.

Wedof's own deliveries are never rate limited (a burst of changes must all land). Only requests that
fail the signature check are counted, per connection and per minute, in Redis (shared by every
receiver process); past ``WEBHOOK_BAD_SIGNATURE_LIMIT`` they are answered 429 with ``Retry-After``
until the minute ends, and no longer logged one by one (a flood must not flood the logs). A valid
signature is still accepted during that minute: the check runs first, and the count is only read
on the failure path, so the accepted path costs nothing more. Redis unreachable: the plain 401.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger("webapp.receiver")

WINDOW_SECONDS = 60
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return _clients[url]


def count_bad_signature(redis_url: str, connection_id: int, now: float | None = None) -> tuple[int, int] | None:
    """Count one failed signature; (failures in this window, seconds left in it), or None without Redis."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    key = f"receiver:bad-signatures:{connection_id}:{window}"
    try:
        pipe = _client(redis_url).pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, WINDOW_SECONDS * 2)
        count, _ = pipe.execute()
    except redis.RedisError:
        return None
    return int(count), max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
