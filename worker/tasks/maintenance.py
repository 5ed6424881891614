"""Housekeeping: the inbox sweeper, the raw-body purge, the sync scheduler, and webhook registration.

The sweeper is what makes "nothing acknowledged is lost" true when the broker is not: an event the
receiver stored but could not enqueue (Redis down), a message lost with a Redis restart, a retry
parked in the table, or a row left ``processing`` by a worker that died, is enqueued again under a
NEW task id (stored on the row first). A double enqueue is harmless: ``process_event`` claims the
row with a compare-and-set.

Thresholds (seconds) come from the task's keyword arguments, else the environment
(``BDC_SWEEP_RECEIVED_AFTER`` 10, ``BDC_SWEEP_QUEUED_AFTER`` 300, ``BDC_SWEEP_PROCESSING_AFTER`` 600,
``BDC_SWEEP_BATCH`` 500), so tests and the chaos run can use short ones.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import and_, func, or_, select, update

from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import EventStatus, WebhookEvent, WedofConnection
from bdc.settings import get_settings
from wedof.errors import WedofError
from worker.celery_app import app
from worker.connections import ConnectionNotUsable, client_for
from worker.task_names import (
    PROCESS_EVENT,
    PURGE_RAW_BODIES,
    REGISTER_WEBHOOK,
    SCHEDULE_SYNCS,
    SWEEP_INBOX,
    SYNC_CONNECTION,
)
from worker.tasks.common import MAX_COUNTDOWN, BadTaskArgument, as_id, backoff_seconds, log, short, utcnow

# The registration-folder events of wedof-api.md §5: the folder is the truth, whatever the event.
# Every event the folder rules apply: state changes and billing changes both carry the whole folder.
REGISTRATION_FOLDER_EVENTS = tuple(
    f"registrationFolder.{name}"
    for name in (
        "created", "updated", "notProcessed", "validated", "waitingAcceptation", "accepted", "inTraining",
        "terminated", "serviceDoneDeclared", "serviceDoneValidated", "canceledByAttendee",
        "canceledByAttendeeNotRealized", "canceledByOrganism", "canceledByFinancer",
        "rejectedWithoutTitulaireSuite", "refusedByAttendee", "refusedByOrganism", "refusedByFinancer",
    )
) + tuple(
    f"registrationFolderBilling.{name}"
    for name in ("notBillable", "depositWait", "depositPaid", "toBill", "billed", "paid")
)


def _threshold(value: float | None, name: str, default: float) -> float:
    """A task argument when given (checked: it may come from Flower), else the configured default."""
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 7 * 24 * 3600:
        raise BadTaskArgument(f"{name} must be a number of seconds, got {str(value)[:40]!r}")
    return float(value)


def _due_conditions(received_after: float, queued_after: float, processing_after: float):
    now = utcnow()
    received_cutoff = now - timedelta(seconds=received_after)
    queued_cutoff = now - timedelta(seconds=queued_after)
    processing_cutoff = now - timedelta(seconds=processing_after)
    received = and_(
        WebhookEvent.status == EventStatus.RECEIVED,
        or_(and_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.received_at <= received_cutoff),
            WebhookEvent.next_attempt_at <= now),
    )
    # A queued row's message may have been lost (Redis restart); a parked retry is due at next_attempt_at.
    queued = and_(
        WebhookEvent.status == EventStatus.QUEUED,
        func.coalesce(WebhookEvent.next_attempt_at, WebhookEvent.queued_at, WebhookEvent.received_at) <= queued_cutoff,
    )
    stuck = and_(WebhookEvent.status == EventStatus.PROCESSING, WebhookEvent.started_at <= processing_cutoff)
    return or_(received, queued, stuck)


@app.task(name=SWEEP_INBOX)
def sweep_inbox(received_after=None, queued_after=None, processing_after=None, batch=None):
    """Re-enqueue due inbox rows (at most ``batch`` per run); returns how many were sent."""
    try:
        settings = get_settings()
        received_after = _threshold(received_after, "received_after", settings.sweep_received_after)
        queued_after = _threshold(queued_after, "queued_after", settings.sweep_queued_after)
        processing_after = _threshold(processing_after, "processing_after", settings.sweep_processing_after)
        batch = int(_threshold(batch, "batch", settings.sweep_batch)) or 1
    except (BadTaskArgument, ValueError) as exc:
        log.error("sweep_inbox called with a bad argument: %s", exc)
        return {"status": "rejected", "reason": str(exc)}
    with session_scope() as session:
        candidates = session.execute(
            select(WebhookEvent.id, WebhookEvent.status)
            .where(_due_conditions(received_after, queued_after, processing_after))
            .order_by(WebhookEvent.id)
            .limit(batch)
        ).all()
    sent = 0
    for event_id, status in candidates:
        task_id = str(uuid.uuid4())
        with session_scope() as session:
            # Compare-and-set on the status we saw: a worker that claimed it meanwhile wins.
            moved = session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == status,
                       _due_conditions(received_after, queued_after, processing_after))
                .values(status=EventStatus.QUEUED, task_id=task_id, queued_at=utcnow(), next_attempt_at=None)
                .execution_options(synchronize_session=False)
            ).rowcount
        if not moved:
            continue
        try:
            app.send_task(PROCESS_EVENT, args=[event_id], task_id=task_id)
        except Exception as exc:  # broker away: the row stays queued and the next sweep tries again
            log.warning("sweep_inbox: could not enqueue event %s (%s); will retry", event_id, type(exc).__name__)
            break
        sent += 1
        if status != EventStatus.RECEIVED:
            log.info("sweep_inbox: re-enqueued %s event %s as task %s", status.value, event_id, task_id)
    return {"status": "ok", "candidates": len(candidates), "sent": sent}


@app.task(name=PURGE_RAW_BODIES)
def purge_raw_bodies(retention_days=None):
    """Null the raw body of processed/ignored events older than RAW_BODY_RETENTION_DAYS."""
    days = retention_days if retention_days is not None else get_settings().raw_body_retention_days
    if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
        log.error("purge_raw_bodies called with a bad retention: %r", str(days)[:40])
        return {"status": "rejected", "reason": "retention_days must be a non-negative number"}
    now = utcnow()
    cutoff = now - timedelta(days=days)
    with session_scope() as session:
        purged = session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.status.in_((EventStatus.PROCESSED, EventStatus.IGNORED)),
                   WebhookEvent.body.is_not(None),
                   func.coalesce(WebhookEvent.processed_at, WebhookEvent.received_at) < cutoff)
            .values(body=None, body_purged_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if purged:
            record_audit(session, actor="worker", action="inbox.raw_bodies_purged",
                         details={"count": purged, "retention_days": days})
    return {"status": "ok", "purged": purged}


@app.task(name=SCHEDULE_SYNCS)
def schedule_syncs():
    """One incremental ``sync_connection`` per enabled connection that has an API key."""
    with session_scope() as session:
        connections = session.execute(
            select(WedofConnection.id, WedofConnection.api_key).where(WedofConnection.enabled.is_(True))
        ).all()
    interval = get_settings().wedof_sync_interval
    sent = []
    for connection_id, api_key in connections:
        if not api_key:
            continue
        # Expires before the next tick: a backlog never runs two scheduled syncs back to back.
        app.send_task(SYNC_CONNECTION, args=[connection_id], kwargs={"trigger": "schedule"},
                      expires=interval * 0.9)
        sent.append(connection_id)
    return {"status": "ok", "connections": sent}


def webhook_url(connection: WedofConnection) -> str:
    base = get_settings().public_base_url.rstrip("/")
    return f"{base}/api/webhooks/wedof" if connection.is_env_default else f"{base}/api/webhooks/wedof/{connection.id}"


@app.task(bind=True, name=REGISTER_WEBHOOK, max_retries=5)
def register_webhook(self, connection_id):
    """Create the Wedof webhook of a connection (our URL, its secret) and store its id."""
    try:
        connection_id = as_id(connection_id, "connection_id")
    except BadTaskArgument as exc:
        log.error("register_webhook called with a bad argument: %s", exc)
        return {"status": "rejected", "reason": str(exc)}
    with session_scope() as session:
        connection = session.get(WedofConnection, connection_id)
        if connection is None:
            return {"status": "rejected", "reason": "unknown connection id"}
        tenant_id, url, secret = connection.tenant_id, webhook_url(connection), connection.webhook_secret
        try:
            client = client_for(connection)
        except ConnectionNotUsable as exc:
            record_audit(session, actor="worker", action="wedof.webhook_registration_failed", tenant_id=tenant_id,
                         target=("wedof_connection", connection_id), details={"error": str(exc)})
            return {"status": "failed", "reason": str(exc)}
    try:
        with client:
            webhook = client.create_webhook(url, REGISTRATION_FOLDER_EVENTS, secret, name="bdc-wedof-sync")
    except WedofError as exc:
        if exc.transient and self.request.retries < self.max_retries and not self.request.called_directly:
            raise self.retry(countdown=min(MAX_COUNTDOWN, backoff_seconds(self.request.retries + 1)), exc=exc) from None
        with session_scope() as session:
            record_audit(session, actor="worker", action="wedof.webhook_registration_failed", tenant_id=tenant_id,
                         target=("wedof_connection", connection_id), details={"error": short(str(exc), 1000)})
        return {"status": "failed", "reason": str(exc)}
    with session_scope() as session:
        connection = session.get(WedofConnection, connection_id)
        previous = connection.wedof_webhook_id
        connection.wedof_webhook_id = str(webhook["id"])
        record_audit(session, actor="worker", action="wedof.webhook_registered", tenant_id=tenant_id,
                     target=("wedof_connection", connection_id),
                     details={"webhook_id": str(webhook["id"]), "url": url, "events": len(REGISTRATION_FOLDER_EVENTS),
                              "replaces": previous})
    return {"status": "registered", "webhook_id": str(webhook["id"]), "url": url}
