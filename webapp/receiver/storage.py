"""The receiver's side of the database: its own engine, one reconnect, and the headers it keeps.

The inbox's rows are written by :mod:`bdc.inbox` (one INSERT per delivery); this module gives that
statement a connection. Statements run in autocommit mode: each is atomic on its own, and
autocommit saves the BEGIN and COMMIT round trips a transaction would add (the INSERT is durable
when it returns, which is what the 202 promises).
"""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from bdc.db import create_db_engine

# Header names whose values are credentials or signatures: stored as a marker, never as the value.
SENSITIVE_HEADER_WORDS = ("signature", "secret", "authorization", "cookie", "api-key", "apikey", "token", "password")
REDACTED = "[redacted]"
_MAX_HEADERS = 50
_MAX_HEADER_VALUE = 1000


_inbox_engine: tuple[str, Engine] | None = None
_engine_lock = threading.Lock()


def inbox_engine(database_url: str) -> Engine:
    """The receiver's own small engine: autocommit, PostgreSQL's default plan cache, no liveness ping.

    The shared engine pings every connection it hands out (one more round trip per delivery).
    Here a dead pooled connection instead fails the INSERT, which SQLAlchemy turns into a
    pool invalidation, and the caller retries once on a fresh connection (:func:`run_with_reconnect`).
    One engine per process: a new URL (tests) disposes the previous one.
    """
    global _inbox_engine
    current = _inbox_engine
    if current is not None and current[0] == database_url:
        return current[1]
    with _engine_lock:
        if _inbox_engine is None or _inbox_engine[0] != database_url:
            if _inbox_engine is not None:
                _inbox_engine[1].dispose()
            # The shared engine's custom plans help reads over growing tables; this engine's statements
            # (one INSERT, lookups by unique key) do as well with a cached plan, and each custom plan
            # cost PostgreSQL ~40 µs per delivery (measured).
            engine = create_db_engine(database_url, planner_settings=False, pool_pre_ping=False,
                                      isolation_level="AUTOCOMMIT")
            _inbox_engine = (database_url, engine)
        return _inbox_engine[1]


def dispose_inbox_engine() -> None:
    global _inbox_engine
    with _engine_lock:
        if _inbox_engine is not None:
            _inbox_engine[1].dispose()
        _inbox_engine = None


def run_with_reconnect(database_url: str, work):
    """``work(conn)`` on a pooled connection; once more on a fresh one if the first was dead.

    Safe because the INSERT is idempotent: if the lost attempt did store the row, the retry
    finds it as a duplicate.
    """
    # A plain loop rather than tenacity's Retrying: the same two attempts, without building a retry
    # policy for every delivery (10-40 µs each, measured).
    try:
        with inbox_engine(database_url).connect() as conn:
            return work(conn)
    except DBAPIError as error:
        if not _dead_connection(error):
            raise
    with inbox_engine(database_url).connect() as conn:
        return work(conn)


def _dead_connection(error: BaseException) -> bool:
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def headers_to_store(headers, secret: str | None, previous_secret: str | None = None) -> dict[str, str]:
    """The request headers worth keeping for replay and debugging, with every secret removed."""
    secrets = [s for s in (secret, previous_secret) if s]
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= _MAX_HEADERS:
            break
        value = str(value)[:_MAX_HEADER_VALUE]
        if not value.isprintable():  # the common case is already clean: no per-character pass
            value = "".join(ch for ch in value if ch.isprintable())
        lowered = str(name).lower()
        if any(word in lowered for word in SENSITIVE_HEADER_WORDS) or any(s in value for s in secrets):
            value = REDACTED
        kept[str(name)] = value
    return kept


