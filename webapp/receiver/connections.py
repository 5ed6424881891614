"""Look up the connection a delivery is addressed to, with its decrypted secret, cached briefly.

Every delivery needs the connection's secret before anything else; reading and decrypting it per
request would cost a query and a Fernet decryption. A few seconds of caching bounds how long an
edited secret or a disabled connection takes to be seen, which is acceptable for webhooks (the
admin API calls :func:`forget_cached_connections` after a change to make it immediate).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from bdc.db import get_engine
from bdc.models import Tenant, WedofConnection

CACHE_SECONDS = 5.0
_MAX_ENTRIES = 1024
ENV_DEFAULT = "env-default"  # cache key of the connection configured from the environment


@dataclass(frozen=True)
class ReceivingConnection:
    """What the receiver needs of a connection; ``repr`` never shows the secret."""

    id: int
    tenant_id: int
    enabled: bool
    signature_algorithm: str
    webhook_secret: str | None
    tenant_slug: str  # the metrics' tenant label: bounded by the tenants, unlike connection ids
    previous_secret: str | None = None  # a rotated-out secret, accepted until previous_secret_expires_at
    previous_secret_expires_at: datetime | None = None

    def previous_secret_valid(self, now: datetime) -> str | None:
        """The rotated-out secret while its grace window lasts, else None."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and now < expires:
            return self.previous_secret
        return None

    def __repr__(self) -> str:
        return f"ReceivingConnection(id={self.id}, tenant_id={self.tenant_id}, enabled={self.enabled})"


_cache: dict[tuple[str, int | str], tuple[float, ReceivingConnection]] = {}
_lock = threading.Lock()


def find_connection(database_url: str, connection_id: int | None) -> ReceivingConnection | None:
    """The connection with this id, or the environment's default one when ``connection_id`` is None.

    Unknown connections are not cached, so a connection created a moment ago answers at once.
    Database errors propagate (the caller answers 503).
    """
    key = (database_url, ENV_DEFAULT if connection_id is None else connection_id)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    found = _load(database_url, connection_id)
    if found is not None:
        with _lock:
            if len(_cache) >= _MAX_ENTRIES:
                _cache.clear()
            _cache[key] = (now + CACHE_SECONDS, found)
    return found


def reloaded_connection(database_url: str, connection_id: int | None,
                        min_age: float = 1.0) -> ReceivingConnection | None:
    """The connection read again if the cached copy is older than ``min_age`` seconds, else None.

    For a signature that fails: the secret may have been rotated through another process a moment
    ago, and this process's copy would refuse Wedof's new signatures until it expires. At most one
    read per ``min_age`` per connection and process, so a flood of bad signatures costs no more.
    """
    key = (database_url, ENV_DEFAULT if connection_id is None else connection_id)
    cached = _cache.get(key)
    if cached is None or cached[0] - CACHE_SECONDS > time.monotonic() - min_age:
        return None
    with _lock:
        _cache.pop(key, None)
    return find_connection(database_url, connection_id)


def forget_cached_connections() -> None:
    """Drop every cached connection (after an admin edits one, and between tests)."""
    with _lock:
        _cache.clear()


def _load(database_url: str, connection_id: int | None) -> ReceivingConnection | None:
    query = select(
        WedofConnection.id, WedofConnection.tenant_id, WedofConnection.enabled,
        WedofConnection.signature_algorithm, WedofConnection.webhook_secret, Tenant.slug,
        WedofConnection.previous_webhook_secret, WedofConnection.previous_secret_expires_at,
    ).join(Tenant, Tenant.id == WedofConnection.tenant_id)
    if connection_id is None:
        query = query.where(WedofConnection.is_env_default.is_(True)).order_by(WedofConnection.id).limit(1)
    else:
        query = query.where(WedofConnection.id == connection_id)
    with get_engine(database_url).connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return ReceivingConnection(id=row.id, tenant_id=row.tenant_id, enabled=bool(row.enabled),
                               signature_algorithm=row.signature_algorithm or "sha256",
                               webhook_secret=row.webhook_secret or None, tenant_slug=row.slug,
                               previous_secret=row.previous_webhook_secret or None,
                               previous_secret_expires_at=row.previous_secret_expires_at)
