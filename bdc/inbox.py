"""The webhook inbox's one owner: every move of a ``WebhookEvent`` row is a named transition here.

The receiver stores, the worker claims, finishes and defers, an admin or the sweeper requeues;
none of them writes the status column itself. Each transition is one compare-and-set UPDATE (the
receiver's store is one INSERT), guarded by the statuses it may start from, so two processes
racing for a row can never both win, and a row never moves along a pair :data:`TRANSITIONS` does
not list.

Lifecycle::

    (new) ─store─▶ queued ─claim─▶ processing ─finish─▶ processed | ignored | failed
      └─store─▶ ignored  │   ▲              ├─defer─▶ queued   (short wait: a Celery countdown)
         queued ─unpublished─▶ received     └─defer─▶ received (long wait: until next_attempt_at)
    received / queued / processing, once stuck ─requeue─▶ queued     failed ─requeue (admin)─▶ queued
                                                                     failed ─claim (re-applied)─▶ processing

Three rules live here once:

- **stuck**: a row whose task is presumed lost (:func:`stuck`), with the thresholds of
  :func:`thresholds` (``BDC_SWEEP_*``); the sweeper requeues stuck rows, an admin may too;
- **attempts**: each claim counts one; a failed row that is re-applied (claimed or requeued)
  starts a fresh series (:func:`_attempts_so_far`); :func:`attempt_allowed` says when to stop;
- **which status may move to which**: :data:`TRANSITIONS`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from bdc.models import EventStatus, WebhookEvent, WedofConnection
from bdc.settings import get_settings
from bdc.types import utcnow

RECEIVED, QUEUED, PROCESSING = EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING
PROCESSED, FAILED, IGNORED = EventStatus.PROCESSED, EventStatus.FAILED, EventStatus.IGNORED
NEW = None  # the "status" of a delivery not stored yet
FINISHED = frozenset({PROCESSED, IGNORED, FAILED})
REASON_LENGTH = 500
ERROR_LENGTH = 2000


@dataclass(frozen=True)
class Transition:
    sources: frozenset
    targets: frozenset[EventStatus]


TRANSITIONS: dict[str, Transition] = {
    "store": Transition(frozenset({NEW}), frozenset({QUEUED, IGNORED})),
    "unpublished": Transition(frozenset({QUEUED}), frozenset({RECEIVED})),
    # processing: only by the task id holding it (Redis re-delivers a killed worker's message);
    # failed: an explicit re-apply (Flower, the admin API's requeue).
    "claim": Transition(frozenset({RECEIVED, QUEUED, PROCESSING, FAILED}), frozenset({PROCESSING})),
    "finish": Transition(frozenset({PROCESSING}), FINISHED),
    "defer": Transition(frozenset({PROCESSING}), frozenset({QUEUED, RECEIVED})),
    # received, queued and processing only once stuck; failed only when an admin asks.
    "requeue": Transition(frozenset({RECEIVED, QUEUED, PROCESSING, FAILED}), frozenset({QUEUED})),
}
ALLOWED: frozenset[tuple] = frozenset(
    (source, target) for t in TRANSITIONS.values() for source in t.sources for target in t.targets
)


def allowed(source: EventStatus | None, target: EventStatus) -> bool:
    return (source, target) in ALLOWED


def _sources(name: str, target: EventStatus) -> list[EventStatus]:
    transition = TRANSITIONS[name]
    assert target in transition.targets, f"{name} cannot lead to {target}"  # a caller bug
    return sorted(s for s in transition.sources if s is not NEW)


# -- the shared rules -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    """How long a row may wait in each status before its task is presumed lost (seconds)."""

    received_after: float  # stored but never published (broker down): short
    queued_after: float  # published, but the message may have been lost (Redis restart)
    processing_after: float  # claimed by a worker that may have died


def thresholds() -> Thresholds:
    settings = get_settings()
    return Thresholds(settings.sweep_received_after, settings.sweep_queued_after, settings.sweep_processing_after)


def stuck(now: datetime, limits: Thresholds | None = None):
    """SQL condition: the row's task is presumed lost, so requeueing it is safe (the claim is a CAS)."""
    limits = limits or thresholds()
    received = and_(
        WebhookEvent.status == RECEIVED,
        or_(and_(WebhookEvent.next_attempt_at.is_(None),
                 WebhookEvent.received_at <= now - timedelta(seconds=limits.received_after)),
            WebhookEvent.next_attempt_at <= now),  # a parked retry, now due
    )
    queued = and_(
        WebhookEvent.status == QUEUED,
        func.coalesce(WebhookEvent.next_attempt_at, WebhookEvent.queued_at, WebhookEvent.received_at)
        <= now - timedelta(seconds=limits.queued_after),
    )
    processing = and_(WebhookEvent.status == PROCESSING,
                      WebhookEvent.started_at <= now - timedelta(seconds=limits.processing_after))
    return or_(received, queued, processing)


def _attempts_so_far():
    """The attempts that count: a failed row re-applied starts a fresh series of attempts."""
    return case((WebhookEvent.status == FAILED, 0), else_=WebhookEvent.attempts)


def attempt_allowed(attempt: int) -> bool:
    """Whether attempt number ``attempt`` (1-based) may run (``BDC_MAX_EVENT_ATTEMPTS``)."""
    return attempt <= get_settings().max_event_attempts


def _short(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _move(session, name: str, target: EventStatus, event_id: int, *conditions, **values) -> bool:
    """One compare-and-set UPDATE along a named transition; True when the row moved."""
    now = utcnow()
    statement = (
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status.in_(_sources(name, target)), *conditions)
        .values(status=target, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


# -- store (the receiver) ----------------------------------------------------------------------------

@dataclass(frozen=True)
class NewDelivery:
    """A verified, parsed delivery, as the receiver hands it over."""

    connection_id: int
    delivery_id: str
    event_type: str
    payload_format: str
    folder_external_id: str | None
    ignore_reason: str | None  # set: stored as ignored, never processed
    headers: dict[str, str]
    body: str
    signed_with_previous_secret: bool = False  # accepted on a rotated-out secret, in its grace window


@dataclass(frozen=True)
class StoredEvent:
    event_id: int
    duplicate: bool
    status: EventStatus
    task_id: str | None


def store(conn: Connection, delivery: NewDelivery) -> StoredEvent:
    """Insert the delivery, or find the stored duplicate: one statement (``conn`` in autocommit).

    A delivery to process is inserted already ``queued`` with a task id chosen here, the way
    :func:`requeue` records a row before it is published: the caller publishes next and calls
    :func:`unpublished` only if that fails. A crash between the two leaves a ``queued`` row with
    no message, which is :func:`stuck` after ``queued_after``: late, never lost.
    ``ON CONFLICT DO NOTHING`` makes two identical deliveries racing store exactly one row.
    """
    now = utcnow()
    ignored = delivery.ignore_reason is not None
    task_id = None if ignored else str(uuid.uuid4())
    values = {
        "connection_id": delivery.connection_id,
        "delivery_id": delivery.delivery_id,
        "event_type": delivery.event_type,
        "payload_format": delivery.payload_format,
        "headers": delivery.headers,
        "body": delivery.body,
        "folder_external_id": delivery.folder_external_id,
        "status": IGNORED if ignored else QUEUED,
        "status_reason": _short(delivery.ignore_reason, REASON_LENGTH) if ignored else None,
        "attempts": 0,
        "task_id": task_id,
        "received_at": now,
        "queued_at": None if ignored else now,
        "created_at": now,
        "updated_at": now,
        "signed_with_previous_secret": delivery.signed_with_previous_secret,
    }
    event_id = conn.execute(_insert_statement(conn.dialect.name), values).scalar()
    if event_id is not None:
        return StoredEvent(event_id=event_id, duplicate=False, status=values["status"], task_id=task_id)
    existing = conn.execute(
        select(WebhookEvent.id, WebhookEvent.status, WebhookEvent.task_id)
        .where(WebhookEvent.connection_id == delivery.connection_id,
               WebhookEvent.delivery_id == delivery.delivery_id)
    ).one()
    return StoredEvent(event_id=existing.id, duplicate=True, status=EventStatus(existing.status),
                       task_id=existing.task_id)


def unpublished(conn, event_id: int, task_id: str) -> bool:
    """The receiver could not publish: back to ``received``, so the sweeper sends it soon.

    Guarded by our own task id: a worker or the sweeper that already moved the row wins.
    """
    return _move(conn, "unpublished", RECEIVED, event_id, WebhookEvent.task_id == task_id, queued_at=None)


_inserts: dict[str, object] = {}


def _insert_statement(dialect: str):
    # Built once per dialect and executed with parameters, so SQLAlchemy compiles it once.
    if dialect not in _inserts:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        _inserts[dialect] = (insert(WebhookEvent.__table__)
                             .on_conflict_do_nothing(index_elements=["connection_id", "delivery_id"])
                             .returning(WebhookEvent.__table__.c.id))
    return _inserts[dialect]


# -- claim, finish, defer (the worker) ---------------------------------------------------------------

@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    connection_id: int
    tenant_id: int
    attempts: int  # this attempt's number, 1-based
    event_type: str
    headers: dict
    body: str | None


@dataclass(frozen=True)
class NotClaimed:
    reason: str
    status: EventStatus | None  # None: no such row


def claim(session: Session, event_id: int, task_id: str) -> ClaimedEvent | NotClaimed:
    """``received``/``queued``/``failed`` → ``processing`` for ``task_id``, counting one attempt."""
    moved = _move(
        session, "claim", PROCESSING, event_id,
        or_(WebhookEvent.status != PROCESSING, WebhookEvent.task_id == task_id),
        attempts=_attempts_so_far() + 1, started_at=utcnow(), task_id=task_id, next_attempt_at=None,
    )
    if not moved:
        row = session.execute(select(WebhookEvent.status, WebhookEvent.task_id)
                              .where(WebhookEvent.id == event_id)).first()
        if row is None:
            return NotClaimed("unknown event id", None)
        return NotClaimed(f"event is {row.status.value} (task {row.task_id})", row.status)
    event = session.get(WebhookEvent, event_id)
    tenant_id = session.scalar(select(WedofConnection.tenant_id).where(WedofConnection.id == event.connection_id))
    return ClaimedEvent(event.id, event.connection_id, tenant_id, event.attempts, event.event_type,
                        dict(event.headers or {}), event.body)


def finish(session: Session, event_id: int, task_id: str, status: EventStatus, reason: str | None = None,
           error: str | None = None) -> bool:
    """``processing`` → ``processed``/``ignored``/``failed``, only while ``task_id`` holds the row.

    Run in the same transaction as the work it concludes, so the effect and the mark commit together.
    """
    values: dict = {"status_reason": _short(reason, REASON_LENGTH) if reason else None}
    if status in (PROCESSED, IGNORED):
        values.update(processed_at=utcnow(), last_error=None)
    if error is not None:
        values["last_error"] = _short(error, ERROR_LENGTH)
    return _move(session, "finish", status, event_id, WebhookEvent.task_id == task_id, **values)


def defer(session: Session, event_id: int, task_id: str, delay: float, error: str, *, countdown: bool) -> bool:
    """``processing`` → the next attempt in ``delay`` seconds.

    ``countdown``: the task retries itself (a Celery countdown): the row waits ``queued`` with its task
    id. Otherwise the wait is too long for the broker: the row is parked ``received`` with
    ``next_attempt_at`` and no task id, and the sweeper sends it when due.
    """
    now = utcnow()
    values: dict = {"next_attempt_at": now + timedelta(seconds=delay), "last_error": _short(error, ERROR_LENGTH),
                    "status_reason": f"next attempt in {delay:.0f}s"}
    if countdown:
        values["queued_at"] = now
    else:
        values["task_id"] = None
    return _move(session, "defer", QUEUED if countdown else RECEIVED, event_id, WebhookEvent.task_id == task_id,
                 **values)


# -- requeue (an admin, the sweeper) -----------------------------------------------------------------

@dataclass(frozen=True)
class Requeued:
    event_id: int
    task_id: str
    from_status: EventStatus
    previous_attempts: int


def requeue(session: Session, event: WebhookEvent, *, failed_too: bool, reason: str | None = None,
            now: datetime | None = None, limits: Thresholds | None = None) -> Requeued | None:
    """Stuck (or, for an admin, failed) → ``queued`` under a NEW task id, stored before it is published.

    None when the row is neither (another process moved it first, or it is not stuck yet). A
    double publish is harmless: the claim is a compare-and-set.
    """
    now = now or utcnow()
    task_id = str(uuid.uuid4())
    previous = Requeued(event.id, task_id, event.status, event.attempts)
    eligible = or_(WebhookEvent.status == FAILED, stuck(now, limits)) if failed_too else stuck(now, limits)
    values: dict = {"task_id": task_id, "queued_at": now, "next_attempt_at": None, "attempts": _attempts_so_far()}
    if reason is not None:
        values["status_reason"] = reason
    return previous if _move(session, "requeue", QUEUED, event.id, eligible, **values) else None


def due_for_sweep(session: Session, limit: int, now: datetime | None = None,
                  limits: Thresholds | None = None) -> list[WebhookEvent]:
    """The stuck rows, oldest first, at most ``limit``."""
    return list(session.scalars(select(WebhookEvent).where(stuck(now or utcnow(), limits))
                                .order_by(WebhookEvent.id).limit(limit)))


# -- retention --------------------------------------------------------------------------------------

def purge_raw_bodies(session: Session, older_than: datetime) -> int:
    """Drop the raw body of finished (processed/ignored) rows older than ``older_than``; the row stays."""
    return session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.status.in_((PROCESSED, IGNORED)), WebhookEvent.body.is_not(None),
               func.coalesce(WebhookEvent.processed_at, WebhookEvent.received_at) < older_than)
        .values(body=None, body_purged_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
