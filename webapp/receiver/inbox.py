"""Write deliveries into the inbox table (``webhook_events``) in as few round trips as possible.

One ``INSERT ... ON CONFLICT DO NOTHING RETURNING id`` stores a delivery or tells us it is a
duplicate, without an exception and without a race: of two identical deliveries arriving together,
the database lets exactly one insert, and the other finds the stored row. The task id is generated
before the INSERT and stored with the row, so after publishing only a tiny status flip remains.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import and_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

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
        value = "".join(ch for ch in str(value)[:_MAX_HEADER_VALUE] if ch.isprintable())
        lowered = str(name).lower()
        if any(word in lowered for word in _SENSITIVE_HEADER_WORDS) or (secret and secret in value):
            value = _REDACTED
        kept[str(name)] = value
    return kept


def store_delivery(conn: Connection, connection_id: int, delivery: ParsedDelivery, *, headers: dict[str, str],
                   body: str) -> StoredEvent:
    """Insert the delivery (committed by the caller's transaction) or return the existing duplicate."""
    now = utcnow()
    status = EventStatus.IGNORED if delivery.ignored else EventStatus.RECEIVED
    task_id = None if delivery.ignored else str(uuid.uuid4())
    values = {
        "connection_id": connection_id,
        "delivery_id": delivery.delivery_id,
        "event_type": delivery.event_type,
        "payload_format": delivery.payload_format,
        "headers": headers,
        "body": body,
        "folder_external_id": delivery.folder_external_id,
        "status": status,
        "status_reason": delivery.ignore_reason[:500] if delivery.ignore_reason else None,
        "attempts": 0,
        "task_id": task_id,
        "received_at": now,
        "created_at": now,
        "updated_at": now,
    }
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (insert(_TABLE).values(**values)
                 .on_conflict_do_nothing(index_elements=["connection_id", "delivery_id"])
                 .returning(_TABLE.c.id))
    event_id = conn.execute(statement).scalar()
    if event_id is not None:
        return StoredEvent(event_id=event_id, duplicate=False, status=status, task_id=task_id)
    existing = conn.execute(
        select(_TABLE.c.id, _TABLE.c.status, _TABLE.c.task_id)
        .where(and_(_TABLE.c.connection_id == connection_id, _TABLE.c.delivery_id == delivery.delivery_id))
    ).one()
    return StoredEvent(event_id=existing.id, duplicate=True, status=EventStatus(existing.status), task_id=existing.task_id)


def mark_queued(conn: Connection, event_id: int) -> bool:
    """Flip ``received`` → ``queued`` once the task is published.

    Compare-and-set: if a fast worker already claimed the event, its status is left alone.
    """
    now = utcnow()
    result = conn.execute(
        update(_TABLE)
        .where(and_(_TABLE.c.id == event_id, _TABLE.c.status == EventStatus.RECEIVED))
        .values(status=EventStatus.QUEUED, queued_at=now, updated_at=now)
    )
    return result.rowcount == 1
