"""The webhook inbox seen by admins: list, detail, and re-enqueue by id (audited).

A retry is a compare-and-set on the row's status: only a failed event, or a received/queued one
that has been waiting longer than ``STUCK_AFTER`` (its task was lost), goes back to ``queued``
with a fresh task id that is stored before the task is published. Processed and processing
events answer 409: re-running them would race with the worker or redo finished work.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from flask import current_app, jsonify
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from bdc.audit import record_audit
from bdc.models import EventStatus, WebhookEvent, WedofConnection
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session, get_by_id
from webapp.admin.pagination import paginate
from webapp.admin.scope import current_principal, ensure_visible, resolve_tenant
from webapp.admin.serializers import event_detail_json, event_json
from webapp.admin.validation import json_object, query_choice, query_text, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from worker.task_names import PROCESS_EVENT

DEFAULT_STUCK_AFTER = timedelta(minutes=5)
MAX_BULK_RETRY = 500


def stuck_after() -> timedelta:
    return timedelta(seconds=current_app.config.get("WEDOF_STUCK_AFTER_SECONDS", DEFAULT_STUCK_AFTER.total_seconds()))


def _retryable(now) -> object:
    """SQL condition: failed, or received/queued for longer than the stuck delay."""
    cutoff = now - stuck_after()
    return or_(
        WebhookEvent.status == EventStatus.FAILED,
        and_(WebhookEvent.status == EventStatus.RECEIVED, WebhookEvent.received_at <= cutoff),
        and_(WebhookEvent.status == EventStatus.QUEUED,
             or_(WebhookEvent.queued_at.is_(None), WebhookEvent.queued_at <= cutoff)),
    )


def _tenant_events(session: Session):
    tenant = resolve_tenant(session)
    return tenant, select(WebhookEvent).join(WedofConnection).where(WedofConnection.tenant_id == tenant.id)


@bp.get("/events")
@admin_required
def list_events():
    status = query_choice("status", [s.value for s in EventStatus])
    event_type = query_text("type")
    with db_session() as session:
        _tenant, stmt = _tenant_events(session)
        if status:
            stmt = stmt.where(WebhookEvent.status == EventStatus(status))
        if event_type:
            stmt = stmt.where(WebhookEvent.event_type == event_type)
        stmt = stmt.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc())
        return jsonify(paginate(session, stmt, event_json))


def _visible_event(session: Session, event_id: int) -> WebhookEvent:
    event = get_by_id(session, WebhookEvent, event_id)
    if event is None:
        raise ApiError(404, "not_found", "No such event.")
    ensure_visible(event.connection.tenant_id, "event")
    return event


@bp.get("/events/<int:event_id>")
@admin_required
def get_event(event_id: int):
    with db_session() as session:
        return jsonify(event_detail_json(_visible_event(session, event_id)))


def _requeue(session: Session, event: WebhookEvent, actor: str, now) -> str | None:
    """Compare-and-set the event back to queued with a new task id; None if it was not retryable."""
    task_id = str(uuid.uuid4())
    previous, previous_attempts = event.status.value, event.attempts
    changed = session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event.id, _retryable(now))
        # A manual retry starts a fresh series of attempts (as the worker does for a re-applied
        # failed event); otherwise an event that failed after the last attempt would give up at once.
        .values(status=EventStatus.QUEUED, task_id=task_id, queued_at=now, next_attempt_at=None, attempts=0,
                status_reason="manual retry", updated_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not changed:
        return None
    record_audit(session, actor=actor, action="event.retry", tenant_id=event.connection.tenant_id,
                 target=("webhook_event", event.id), details={"from_status": previous, "previous_attempts": previous_attempts, "task_id": task_id})
    return task_id


def _publish(pairs: list[tuple[int, str]]) -> list[int]:
    """Publish process_event for each (event id, task id); returns the ids that could not be sent."""
    unsent = []
    for event_id, task_id in pairs:
        if unsent:  # the broker just failed: do not wait a second per remaining event
            unsent.append(event_id)
            continue
        try:
            send_task(PROCESS_EVENT, [event_id], task_id=task_id)
        except BrokerUnavailable:
            unsent.append(event_id)
    # Unsent rows are queued in the table: the inbox sweeper enqueues them when the broker is back.
    return unsent


@bp.post("/events/<int:event_id>/retry")
@admin_required
def retry_event(event_id: int):
    json_object(allow_empty=True)
    now = utcnow()
    with db_session() as session:
        event = _visible_event(session, event_id)
        task_id = _requeue(session, event, current_principal().actor, now)
        if task_id is None:
            state = event.status.value
            if event.status in (EventStatus.RECEIVED, EventStatus.QUEUED):
                message = f"The event is {state} and waiting for a worker; retry it once it is stuck or failed."
            else:
                message = f"The event is {state}; only failed or stuck events can be retried."
            raise ApiError(409, "not_retryable", message, event_status=state)
    if _publish([(event_id, task_id)]):
        raise ApiError(503, "broker_unavailable",
                       "The event is marked queued but the task queue is unreachable; the inbox sweeper will "
                       "enqueue it when the broker is back.", event_id=event_id, task_id=task_id)
    return jsonify({"event_id": event_id, "task_id": task_id, "status": "queued"}), 202


@bp.post("/events/retry-failed")
@admin_required
def retry_failed_events():
    reject_unknown(json_object(allow_empty=True), set())
    now = utcnow()
    actor = current_principal().actor
    with db_session() as session:
        _tenant, stmt = _tenant_events(session)
        events = session.scalars(stmt.where(WebhookEvent.status == EventStatus.FAILED)
                                 .order_by(WebhookEvent.id).limit(MAX_BULK_RETRY)).all()
        pairs = []
        for event in events:
            task_id = _requeue(session, event, actor, now)
            if task_id is not None:
                pairs.append((event.id, task_id))
    unsent = _publish(pairs)
    return jsonify({"retried": len(pairs), "event_ids": [event_id for event_id, _ in pairs],
                    "task_ids": [task_id for _, task_id in pairs], "not_published": unsent}), 202
