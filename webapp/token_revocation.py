"""Revoked token ids (``jti``) in a Redis blocklist, shared by every receiver process.

One key per revoked jti, expiring when the token itself would have: past that moment the token is
refused as expired anyway, so the blocklist never grows beyond the tokens still alive. A token
without ``exp`` never expires, so neither does its key. A jti given without its token (the CLI's
``revoke-token <jti>``) has no known lifetime: the CLI keeps it ``UNKNOWN_LIFETIME_SECONDS``, the
longest lifetime the CLI issues (90 days).

Only the jti is ever stored or recorded, never the token.
"""

from __future__ import annotations

import re
import threading
import time

import redis

KEY_PREFIX = "auth:revoked-jti:"
UNKNOWN_LIFETIME_SECONDS = 90 * 24 * 3600
# jwt-extended writes a UUID; other issuers use other ids. Printable, bounded: it becomes a Redis key
# and the audit log's target_id (100 characters).
_JTI = re.compile(r"[\x21-\x7e]{1,100}")

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


class RevocationUnavailable(Exception):
    """Redis could not be reached to read or write the blocklist."""


def _client(url: str) -> redis.Redis:
    with _lock:
        if url not in _clients:
            # Short timeouts: every admin request waits on this lookup.
            _clients[url] = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        return _clients[url]


def valid_jti(jti: object) -> bool:
    return isinstance(jti, str) and _JTI.fullmatch(jti) is not None


def revoke(redis_url: str, jti: str, expires_at: float | None, now: float | None = None) -> int | None:
    """Block ``jti`` until ``expires_at`` (epoch seconds). Returns the seconds it is kept.

    ``expires_at`` None is a token without ``exp``, valid for ever: its jti is kept for ever (None).
    0 means the token has already expired and nothing was stored: it cannot be used anyway.
    """
    if not valid_jti(jti):
        raise ValueError("a jti is 1 to 100 printable characters without spaces")
    now = time.time() if now is None else now
    ttl = None if expires_at is None else int(expires_at - now) + 1
    if ttl is not None and ttl <= 0:
        return 0
    try:
        _client(redis_url).set(KEY_PREFIX + jti, "1", ex=ttl)
    except redis.RedisError as exc:
        raise RevocationUnavailable(str(exc)) from None
    return ttl


def is_revoked(redis_url: str, jti: str) -> bool:
    try:
        return bool(_client(redis_url).exists(KEY_PREFIX + jti))
    except redis.RedisError as exc:
        raise RevocationUnavailable(str(exc)) from None
