"""Housekeeping: the inbox sweeper, the raw-body purge, the sync scheduler, and webhook registration.

The sweeper is what makes "nothing acknowledged is lost" true when the broker is not: an event the
receiver stored but could not enqueue (Redis down), a message lost with a Redis restart, a retry
parked in the table, or a row left ``processing`` by a worker that died, is :func:`bdc.inbox.stuck`
and requeued under a NEW task id (stored on the row first). A double enqueue is harmless:
``process_event`` claims the row with a compare-and-set. The thresholds are ``BDC_SWEEP_*``, the
same ones the admin API's retry obeys; a task argument may shorten them (tests, the chaos run).
The periodic tasks never retry: their next tick is the retry.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bdc import inbox
from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import EventStatus, WedofConnection
from bdc.settings import get_settings
from bdc.types import utcnow
from wedof.errors import WedofError, WedofNotFoundError
from wedof.events import SUBSCRIBED_EVENTS
from worker.celery_app import app
from worker.connections import ConnectionNotUsable, client_for
from worker.policy import BadTaskArgument, Failure, PermanentError, PolicyTask, Report, as_id, log
from worker.task_names import (
    PROCESS_EVENT,
    PURGE_RAW_BODIES,
    REGISTER_WEBHOOK,
    SCHEDULE_SYNCS,
    SWEEP_INBOX,
    SYNC_CONNECTION,
)


def _seconds(value, name: str, default: float, maximum: float = 7 * 24 * 3600) -> float:
    """A task argument when given (checked: it may come from Flower), else the configured default."""
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= maximum:
        raise BadTaskArgument(f"{name} must be a number between 0 and {maximum:g}, got {str(value)[:40]!r}")
    return float(value)


@app.task(base=PolicyTask, bind=True, name=SWEEP_INBOX, max_retries=0)
def sweep_inbox(self, received_after=None, queued_after=None, processing_after=None, batch=None):
    """Requeue the stuck inbox rows (at most ``batch`` per run); returns how many were sent."""
    settings, defaults = get_settings(), inbox.thresholds()
    limits = inbox.Thresholds(_seconds(received_after, "received_after", defaults.received_after),
                              _seconds(queued_after, "queued_after", defaults.queued_after),
                              _seconds(processing_after, "processing_after", defaults.processing_after))
    batch = int(_seconds(batch, "batch", settings.sweep_batch, 100_000)) or 1
    now = utcnow()
    with session_scope() as session:
        candidates = inbox.due_for_sweep(session, batch, now, limits)
    sent = 0
    for event in candidates:
        with session_scope() as session:
            requeued = inbox.requeue(session, event, failed_too=False, now=now, limits=limits)
        if requeued is None:
            continue  # a worker claimed it meanwhile
        try:
            app.send_task(PROCESS_EVENT, args=[event.id], task_id=requeued.task_id, ignore_result=True)
        except Exception as exc:  # noqa: BLE001 - broker away: the row stays queued, the next sweep tries again
            log.warning("sweep_inbox: could not enqueue event %s (%s); will retry", event.id, type(exc).__name__)
            break
        sent += 1
        if requeued.from_status != EventStatus.RECEIVED:
            log.info("sweep_inbox: re-enqueued %s event %s as task %s", requeued.from_status.value, event.id,
                     requeued.task_id)
    return {"status": "ok", "candidates": len(candidates), "sent": sent}


@app.task(base=PolicyTask, bind=True, name=PURGE_RAW_BODIES, max_retries=0)
def purge_raw_bodies(self, retention_days=None):
    """Drop the raw body of processed/ignored events older than RAW_BODY_RETENTION_DAYS."""
    days = _seconds(retention_days, "retention_days", get_settings().raw_body_retention_days, 100 * 365)
    with session_scope() as session:
        purged = inbox.purge_raw_bodies(session, utcnow() - timedelta(days=days))
        if purged:
            record_audit(session, actor="worker", action="inbox.raw_bodies_purged",
                         details={"count": purged, "retention_days": days})
    return {"status": "ok", "purged": purged}


@app.task(base=PolicyTask, bind=True, name=SCHEDULE_SYNCS, max_retries=0)
def schedule_syncs(self):
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
                      expires=interval * 0.9, ignore_result=True)
        sent.append(connection_id)
    return {"status": "ok", "connections": sent}


class RegistrationReport(Report):
    """A registration's failures go to the audit log, on the connection."""

    def __init__(self, connection_id: int, tenant_id: int):
        self.connection_id, self.tenant_id = connection_id, tenant_id

    def failed(self, failure: Failure) -> None:
        with session_scope() as session:
            record_audit(session, actor="worker", action="wedof.webhook_registration_failed",
                         tenant_id=self.tenant_id, target=("wedof_connection", self.connection_id),
                         details={"error": failure.reason, **failure.details})


@app.task(base=PolicyTask, bind=True, name=REGISTER_WEBHOOK, max_retries=5)
def register_webhook(self, connection_id):
    """Create the Wedof webhook of a connection (our URL, its secret) and store its id."""
    connection_id = as_id(connection_id, "connection_id")
    with session_scope() as session:
        connection = session.get(WedofConnection, connection_id)
        if connection is None:
            raise BadTaskArgument(f"unknown connection id {connection_id}")
        tenant_id, url, secret = connection.tenant_id, connection.webhook_url, connection.webhook_secret
    with self.reporting(RegistrationReport(connection_id, tenant_id)):
        with session_scope() as session:
            try:
                client = client_for(session.get(WedofConnection, connection_id))
            except ConnectionNotUsable as exc:
                raise PermanentError(str(exc)) from None
        with client:
            webhook = client.create_webhook(url, SUBSCRIBED_EVENTS, secret, name="bdc-wedof-sync")
            new_id = str(webhook["id"])
            with session_scope() as session:
                connection = session.get(WedofConnection, connection_id)
                previous = connection.wedof_webhook_id
                connection.wedof_webhook_id = new_id
                record_audit(session, actor="worker", action="wedof.webhook_registered", tenant_id=tenant_id,
                             target=("wedof_connection", connection_id),
                             details={"webhook_id": new_id, "url": url, "events": len(SUBSCRIBED_EVENTS),
                                      "replaces": previous,
                                      "changes": {"wedof_webhook_id": {"old": previous, "new": new_id}}})
            # The old webhook (the old secret) would keep delivering every change a second time.
            removed = _delete_replaced_webhook(client, previous, new_id, connection_id, tenant_id)
        return {"status": "registered", "webhook_id": new_id, "url": url, "replaced": previous,
                "replaced_deleted": removed}


def _delete_replaced_webhook(client, previous: str | None, new_id: str, connection_id: int, tenant_id: int) -> bool:
    """Delete the webhook the new one replaces; its outcome is audited and never fails the registration."""
    if not previous or previous == new_id:
        return False
    try:
        client.delete_webhook(previous)
        outcome, error = "wedof.webhook_deleted", None
    except WedofNotFoundError:
        outcome, error = "wedof.webhook_deleted", "already gone at Wedof"
    except (WedofError, ValueError) as exc:
        outcome, error = "wedof.webhook_delete_failed", str(exc)[:300]
    with session_scope() as session:
        record_audit(session, actor="worker", action=outcome, tenant_id=tenant_id,
                     target=("wedof_connection", connection_id),
                     details={"webhook_id": previous, "replaced_by": new_id, "error": error})
    return outcome == "wedof.webhook_deleted"
