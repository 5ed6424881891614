"""``wedof.process_event``: apply one stored webhook delivery to the data layer, exactly once.

The inbox row is the source of truth. The task claims it with a compare-and-set UPDATE, applies the
folder (from the stored body, or fetched from Wedof when the delivery carries only an id) and marks
the row ``processed`` in the SAME transaction as the apply, guarded by its own task id: the effect is
committed together with the "done" mark, or not at all.

Claim rules: ``received``/``queued`` rows are claimable; a ``processing`` row only by the task id
that holds it (Redis re-delivers a SIGKILLed worker's message with the same id); a ``failed`` row
only by an explicit re-apply (Flower, admin API), which restarts its attempt count. The sweeper
(``worker.tasks.maintenance``) hands a stuck ``processing`` row to a new task id after a timeout.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from celery.exceptions import Retry
from sqlalchemy import and_, case, or_, select, update

from bdc.db import session_scope
from bdc.models import EventStatus, WebhookEvent, WedofConnection
from wedof.errors import WedofError, WedofRateLimitedError
from wedof.events import APPLY, EVENT_HEADER, FETCH, DeliveryRejected, parse_delivery
from wedof.mapping import FolderRejected, apply_folder
from worker.celery_app import app
from worker.connections import ConnectionNotUsable, client_for
from worker.task_names import PROCESS_EVENT
from worker.tasks.common import (
    MAX_COUNTDOWN,
    MAX_EVENT_ATTEMPTS,
    BadTaskArgument,
    as_id,
    backoff_seconds,
    is_transient_db_error,
    log,
    retry_on_conflict,
    short,
    utcnow,
)

CLAIMABLE = (EventStatus.RECEIVED, EventStatus.QUEUED)


class ClaimLost(RuntimeError):
    """The row was handed to another task id while this one worked (the sweeper judged it stuck)."""


class PermanentFailure(RuntimeError):
    """Retrying cannot help (unreadable body, refused folder, 4xx from Wedof); the message says why."""


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    connection_id: int
    tenant_id: int
    attempts: int
    event_type: str
    headers: dict
    body: str | None


def claim_event(event_id: int, task_id: str) -> ClaimedEvent | str:
    """Claim the row for ``task_id``; returns the claimed event, or a reason why it was not claimed."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == event_id,
                or_(
                    WebhookEvent.status.in_(CLAIMABLE),
                    WebhookEvent.status == EventStatus.FAILED,
                    and_(WebhookEvent.status == EventStatus.PROCESSING, WebhookEvent.task_id == task_id),
                ),
            )
            .values(
                status=EventStatus.PROCESSING,
                # An explicit re-apply of a failed event starts a fresh series of attempts.
                attempts=case((WebhookEvent.status == EventStatus.FAILED, 1), else_=WebhookEvent.attempts + 1),
                started_at=now,
                task_id=task_id,
                next_attempt_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            row = session.execute(
                select(WebhookEvent.status, WebhookEvent.task_id).where(WebhookEvent.id == event_id)
            ).first()
            if row is None:
                return "unknown event id"
            return f"event is {row.status.value} (task {row.task_id})"
        event = session.get(WebhookEvent, event_id)
        tenant_id = session.scalar(select(WedofConnection.tenant_id).where(WedofConnection.id == event.connection_id))
        return ClaimedEvent(event.id, event.connection_id, tenant_id, event.attempts, event.event_type,
                            dict(event.headers or {}), event.body)


def _finish(event_id: int, task_id: str, *, status: EventStatus, reason: str | None = None,
            error: str | None = None, session=None) -> None:
    """Move the row out of ``processing`` (only if this task still holds it)."""
    values = {"status": status, "status_reason": short(reason, 500) if reason else None}
    if status in (EventStatus.PROCESSED, EventStatus.IGNORED):
        values.update(processed_at=utcnow(), last_error=None)
    if error is not None:
        values["last_error"] = short(error)
    stmt = (
        update(WebhookEvent)
        .where(WebhookEvent.id == event_id, WebhookEvent.status == EventStatus.PROCESSING,
               WebhookEvent.task_id == task_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if session is not None:
        if session.execute(stmt).rowcount != 1:
            raise ClaimLost(f"event {event_id} is no longer held by task {task_id}")
        return
    with session_scope() as own:
        if own.execute(stmt).rowcount != 1:
            log.warning("event %s was taken over by another task before task %s could finish it", event_id, task_id)


def _parse(event: ClaimedEvent):
    if event.body is None:
        raise PermanentFailure("the raw body was purged; the folder will be refreshed by the next sync")
    headers = dict(event.headers)
    if not any(str(k).lower() == EVENT_HEADER.lower() for k in headers):
        headers[EVENT_HEADER] = event.event_type
    try:
        return parse_delivery(headers, event.body.encode("utf-8"))
    except DeliveryRejected as exc:
        raise PermanentFailure(f"unreadable delivery ({exc.code}): {exc.message}") from None


def _fetch_folder(event: ClaimedEvent, external_id: str) -> dict:
    with session_scope() as session:
        connection = session.get(WedofConnection, event.connection_id)
        if connection is None:
            raise PermanentFailure(f"connection {event.connection_id} no longer exists")
        try:
            client = client_for(connection)
        except ConnectionNotUsable as exc:
            raise PermanentFailure(str(exc)) from None
    with client:
        return client.get_registration_folder(external_id)


def handle_event(event: ClaimedEvent, task_id: str) -> dict:
    """Do the work for a claimed event; raises WedofError / PermanentFailure / DB errors to the caller."""
    parsed = _parse(event)
    if parsed.disposition not in (APPLY, FETCH):
        _finish(event.id, task_id, status=EventStatus.IGNORED, reason=parsed.ignore_reason or "ignored")
        return {"status": "ignored", "reason": parsed.ignore_reason}
    folder = parsed.folder if parsed.disposition == APPLY else _fetch_folder(event, parsed.folder_external_id)

    def apply_and_mark():
        with session_scope() as session:
            try:
                result = apply_folder(session, event.tenant_id, folder, kind="all")
            except FolderRejected as exc:
                raise PermanentFailure(f"folder refused: {exc}") from None
            # Same transaction: the folder's effect and the "processed" mark commit together.
            _finish(event.id, task_id, status=EventStatus.PROCESSED,
                    reason=f"{parsed.disposition}: {result.outcome}", session=session)
            return result

    result = retry_on_conflict(apply_and_mark, f"event {event.id}")
    return {"status": "processed", "outcome": result.outcome, "enrollment_id": result.enrollment_id}


def _defer(task, event: ClaimedEvent, task_id: str, error: BaseException, retry_after: float | None):
    """Schedule the next attempt: a short Celery countdown, or back to the table for the sweeper."""
    if event.attempts >= MAX_EVENT_ATTEMPTS:
        _finish(event.id, task_id, status=EventStatus.FAILED, reason=f"gave up after {event.attempts} attempts",
                error=f"{type(error).__name__}: {error}")
        return {"status": "failed", "reason": "too many attempts"}
    delay = backoff_seconds(event.attempts, retry_after)
    due_at = utcnow() + timedelta(seconds=delay)
    short_wait = delay <= MAX_COUNTDOWN
    values = {
        "status": EventStatus.QUEUED if short_wait else EventStatus.RECEIVED,
        "next_attempt_at": due_at,
        "last_error": short(f"{type(error).__name__}: {error}"),
        "status_reason": f"retry {event.attempts + 1} in {delay:.0f}s",
    }
    if short_wait:
        values["queued_at"] = utcnow()
    else:
        values["task_id"] = None  # the sweeper enqueues it under a new id when due
    with session_scope() as session:
        moved = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id, WebhookEvent.status == EventStatus.PROCESSING,
                   WebhookEvent.task_id == task_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
    if not moved:
        return {"status": "skipped", "reason": "taken over by another task"}
    log.warning("event %s attempt %s failed (%s); next attempt in %.1fs", event.id, event.attempts, error, delay)
    if short_wait and not task.request.called_directly:
        raise task.retry(countdown=delay, exc=error)
    return {"status": "deferred", "delay": delay}


@app.task(bind=True, name=PROCESS_EVENT, max_retries=None)
def process_event(self, event_id):
    try:
        event_id = as_id(event_id, "event_id")
    except BadTaskArgument as exc:
        log.error("process_event called with a bad argument: %s", exc)
        return {"status": "rejected", "reason": str(exc)}
    task_id = self.request.id or f"direct-{uuid.uuid4()}"
    claimed = claim_event(event_id, task_id)
    if isinstance(claimed, str):
        log.info("event %s not claimed: %s", event_id, claimed)
        return {"status": "skipped", "reason": claimed}
    if claimed.attempts > MAX_EVENT_ATTEMPTS:
        # A message that keeps killing its worker (OOM, segfault) is re-claimed each time: stop here.
        _finish(event_id, task_id, status=EventStatus.FAILED, reason=f"gave up after {claimed.attempts - 1} attempts")
        return {"status": "failed", "reason": "too many attempts"}
    try:
        return handle_event(claimed, task_id)
    except ClaimLost as exc:
        log.warning("%s", exc)
        return {"status": "skipped", "reason": str(exc)}
    except PermanentFailure as exc:
        _finish(event_id, task_id, status=EventStatus.FAILED, reason=str(exc), error=str(exc))
        return {"status": "failed", "reason": str(exc)}
    except WedofError as exc:
        if exc.transient:
            retry_after = exc.retry_after if isinstance(exc, WedofRateLimitedError) else None
            return _defer(self, claimed, task_id, exc, retry_after)
        reason = f"Wedof refused: {exc}"
        _finish(event_id, task_id, status=EventStatus.FAILED, reason=reason, error=reason)
        return {"status": "failed", "reason": reason}
    except Exception as exc:
        if is_transient_db_error(exc):
            try:
                return _defer(self, claimed, task_id, exc, None)
            except Retry:
                raise
            except Exception as again:
                # The database is still away: retry the same message; should that be lost too, the
                # sweeper hands the row (still ``processing``) to a new task after its timeout.
                log.error("event %s: database unavailable (%s)", event_id, type(again).__name__)
                raise self.retry(countdown=min(30.0, MAX_COUNTDOWN), exc=exc) from None
        log.exception("event %s failed with an unexpected error", event_id)
        reason = f"unexpected error: {type(exc).__name__}: {exc}"
        _finish(event_id, task_id, status=EventStatus.FAILED, reason=reason, error=reason)
        return {"status": "failed", "reason": reason}
