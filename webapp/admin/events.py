"""The webhook inbox seen by admins: list, detail, and re-enqueue by id (audited).

A retry is :func:`bdc.inbox.requeue`: only a failed event, or one that is stuck (the sweeper's own
rule, ``BDC_SWEEP_*``: its task is presumed lost), goes back to ``queued`` with a fresh task id that
is stored before the task is published. Processed events, and events a worker holds or is about to
run, answer 409: re-running them would race with the worker or redo finished work.
"""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc import inbox
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

MAX_BULK_RETRY = 500


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
    """Requeue a failed or stuck event with a new task id (audited); None if it is neither."""
    requeued = inbox.requeue(session, event, failed_too=True, reason="manual retry", now=now)
    if requeued is None:
        return None
    record_audit(session, actor=actor, action="event.retry", tenant_id=event.connection.tenant_id,
                 target=("webhook_event", event.id),
                 details={"from_status": requeued.from_status.value, "previous_attempts": requeued.previous_attempts,
                          "task_id": requeued.task_id})
    return requeued.task_id


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
            if event.status in inbox.FINISHED:
                message = f"The event is {state}; only failed or stuck events can be retried."
            elif event.next_attempt_at is not None:
                message = (f"The event is {state}, its next attempt is due at {event.next_attempt_at.isoformat()}; "
                           "retry it once it is stuck or failed.")
            else:
                message = f"The event is {state} and a worker has it or soon will; retry it once it is stuck or failed."
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
