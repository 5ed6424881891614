"""Write deliveries into the inbox table (``webhook_events``) in as few round trips as possible.

One ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` stores a delivery or tells us it is a
duplicate, without an exception and without a race: of two identical deliveries arriving together,
the database lets exactly one insert, and the other finds the stored row. The task id is generated
before the INSERT and stored with the row, with the status ``queued``: when the publish then
succeeds (the common case) nothing else is written.

Statements run in autocommit mode: each is atomic on its own, and autocommit saves the separate
BEGIN and COMMIT round trips a transaction would add (the INSERT is durable when it returns, which
is what the 202 promises).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from bdc.db import create_db_engine
from bdc.models import WebhookEvent
from bdc.models.enums import EventStatus
from bdc.types import utcnow
from wedof.events import ParsedDelivery

_TABLE = WebhookEvent.__table__
# Header names whose values are credentials or signatures: stored as a marker, never as the value.
_SENSITIVE_HEADER_WORDS = ("signature", "secret", "authorization", "cookie", "api-key", "apikey", "token", "password")
_REDACTED = "[redacted]"
_MAX_HEADERS = 50
_MAX_HEADER_VALUE = 1000


_inbox_engine: tuple[str, Engine] | None = None
_engine_lock = threading.Lock()


def inbox_engine(database_url: str) -> Engine:
    """The receiver's own small engine: autocommit, and no liveness ping on checkout.

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
            engine = create_db_engine(database_url, pool_pre_ping=False, isolation_level="AUTOCOMMIT")
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
    for attempt in (1, 2):
        try:
            with inbox_engine(database_url).connect() as conn:
                return work(conn)
        except DBAPIError as exc:
            if attempt == 2 or not exc.connection_invalidated:
                raise


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    duplicate: bool
    status: EventStatus
    task_id: str | None


def headers_to_store(headers, secret: str | None) -> dict[str, str]:
    """The request headers worth keeping for replay and debugging, with every secret removed."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        if len(kept) >= _MAX_HEADERS:
            break
        value = str(value)[:_MAX_HEADER_VALUE]
        if not value.isprintable():  # the common case is already clean: no per-character pass
            value = "".join(ch for ch in value if ch.isprintable())
        lowered = str(name).lower()
        if any(word in lowered for word in _SENSITIVE_HEADER_WORDS) or (secret and secret in value):
            value = _REDACTED
        kept[str(name)] = value
    return kept


def store_delivery(conn: Connection, connection_id: int, delivery: ParsedDelivery, *, headers: dict[str, str],
                   body: str) -> StoredEvent:
    """Insert the delivery or return the existing duplicate (``conn`` in autocommit: durable on return).

    A delivery to process is inserted already ``queued`` with its pre-generated task id and
    ``queued_at``, the same way the sweeper records a row before it publishes: the caller publishes
    next, and only if that fails does it call :func:`mark_not_queued`. So the common path is a
    single statement. If the process dies between the INSERT and the publish, the sweeper re-sends
    the row once it has been ``queued`` for its threshold (``BDC_SWEEP_QUEUED_AFTER``): late, never lost.
    """
    now = utcnow()
    ignored = delivery.ignored
    task_id = None if ignored else str(uuid.uuid4())
    values = {
        "connection_id": connection_id,
        "delivery_id": delivery.delivery_id,
        "event_type": delivery.event_type,
        "payload_format": delivery.payload_format,
        "headers": headers,
        "body": body,
        "folder_external_id": delivery.folder_external_id,
        "status": EventStatus.IGNORED if ignored else EventStatus.QUEUED,
        "status_reason": delivery.ignore_reason[:500] if delivery.ignore_reason else None,
        "attempts": 0,
        "task_id": task_id,
        "received_at": now,
        "queued_at": None if ignored else now,
        "created_at": now,
        "updated_at": now,
    }
    if conn.dialect.name == "postgresql" and conn.dialect.paramstyle == "pyformat":
        event_id = conn.exec_driver_sql(_PG_INSERT, _pg_parameters(values)).scalar()
    else:
        event_id = conn.execute(_insert_statement(conn.dialect.name), values).scalar()
    if event_id is not None:
        return StoredEvent(event_id=event_id, duplicate=False, status=values["status"], task_id=task_id)
    existing = conn.execute(
        select(_TABLE.c.id, _TABLE.c.status, _TABLE.c.task_id)
        .where(and_(_TABLE.c.connection_id == connection_id, _TABLE.c.delivery_id == delivery.delivery_id))
    ).one()
    return StoredEvent(event_id=existing.id, duplicate=True, status=EventStatus(existing.status), task_id=existing.task_id)


def mark_not_queued(conn: Connection, event_id: int, task_id: str) -> bool:
    """The publish failed: put the row back to ``received`` so the sweeper enqueues it soon.

    Compare-and-set on our own task id: a worker or sweeper that already moved the row wins.
    """
    result = conn.execute(
        update(_TABLE)
        .where(and_(_TABLE.c.id == event_id, _TABLE.c.status == EventStatus.QUEUED, _TABLE.c.task_id == task_id))
        .values(status=EventStatus.RECEIVED, queued_at=None, updated_at=utcnow())
    )
    return result.rowcount == 1


_inserts: dict[str, object] = {}

# The PostgreSQL INSERT as plain SQL: executing a Core statement costs a cache-key build and the
# per-column bind processing on every delivery; here the two values that need it (the JSON
# headers, the status enum's value) are converted by hand, and psycopg reuses its prepared plan.
_PG_COLUMNS = ("connection_id", "delivery_id", "event_type", "payload_format", "headers", "body",
               "folder_external_id", "status", "status_reason", "attempts", "task_id", "received_at", "queued_at",
               "created_at", "updated_at")
_PG_INSERT = (
    f"INSERT INTO {_TABLE.name} ({', '.join(_PG_COLUMNS)}) VALUES ("
    + ", ".join("%(headers)s::JSON" if name == "headers" else f"%({name})s" for name in _PG_COLUMNS)
    + ") ON CONFLICT (connection_id, delivery_id) DO NOTHING RETURNING id"
)


def _pg_parameters(values: dict) -> dict:
    return {**values, "headers": json.dumps(values["headers"]), "status": values["status"].value}


def _insert_statement(dialect: str):
    # Built once per dialect and executed with parameters, so SQLAlchemy compiles it once.
    if dialect not in _inserts:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _inserts[dialect] = (insert(_TABLE)
                             .on_conflict_do_nothing(index_elements=["connection_id", "delivery_id"])
                             .returning(_TABLE.c.id))
    return _inserts[dialect]
