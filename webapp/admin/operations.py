"""The operations view of the admin API: reconciliation reports, Wedof API drift, deliveries, sync durations.

``GET /operations`` answers everything the page's "Exploitation" section draws, for the caller's tenant:
the last reconciliation report and the reports over time, the current API drift and its changes,
deliveries and failed deliveries per hour (grouped in SQL, one query, both databases) and the
durations of the last sync runs. ``POST /reconcile`` asks the worker for a report now (sent by name).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import jsonify, request
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from bdc.audit import record_audit
from bdc.models import (
    ApiDrift,
    EventStatus,
    ReconciliationReport,
    SyncRun,
    WebhookEvent,
)
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.lifecycle import queue_task
from webapp.admin.scope import current_principal, resolve_tenant, tenant_connection, usable_connection
from webapp.admin.serializers import iso
from webapp.admin.validation import json_object, reject_unknown
from webapp.auth import admin_required
from webapp.errors import ApiError
from worker.task_names import RECONCILE

LIMITS = {  # query parameter -> (default, maximum)
    "hours": (48, 168),
    "reports": (48, 500),
    "runs": (30, 100),
    "drift_changes": (20, 100),
}


def _count_param(name: str) -> int:
    default, maximum = LIMITS[name]
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number from 1 to {maximum}.")
    return int(raw)


def report_json(report: ReconciliationReport) -> dict:
    return {
        "id": report.id, "connection_id": report.connection_id, "created_at": iso(report.created_at),
        "status": report.status.value, "drift": report.drift,
        "wedof_states": report.wedof_states or {}, "local_states": report.local_states or {},
        "wedof_billing": report.wedof_billing or {}, "local_billing": report.local_billing or {},
        "wedof_newest_update": iso(report.wedof_newest_update), "local_newest_update": iso(report.local_newest_update),
        "details": report.details or {}, "sync_run_id": report.sync_run_id, "error": report.error,
    }


def drift_json(row: ApiDrift) -> dict:
    return {"id": row.id, "observed_at": iso(row.observed_at), "last_seen_at": iso(row.last_seen_at),
            "unknown_keys": list(row.unknown_keys or []), "missing_keys": list(row.missing_keys or []),
            "samples": row.samples}


def _hour_of(column, dialect: str):
    """The UTC hour of a timestamp as text ``YYYY-MM-DDTHH``, the same on both databases."""
    if dialect == "postgresql":  # timestamptz: truncate in UTC, not in the session's time zone
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24')
    return func.strftime("%Y-%m-%dT%H", column)  # SQLite keeps UTC text


def deliveries_per_hour(session: Session, connection_id: int, hours: int, now: datetime) -> list[dict]:
    """Every hour of the window (oldest first, zeros included): deliveries received, and those now failed."""
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    hour = _hour_of(WebhookEvent.received_at, session.get_bind().dialect.name).label("hour")
    rows = session.execute(
        select(hour, func.count(), func.sum(case((WebhookEvent.status == EventStatus.FAILED, 1), else_=0)))
        .where(WebhookEvent.connection_id == connection_id, WebhookEvent.received_at >= first)
        .group_by(hour)).all()
    counted = {label: (int(total or 0), int(failed or 0)) for label, total, failed in rows}
    series = []
    for step in range(hours):
        at = first + timedelta(hours=step)
        total, failed = counted.get(at.strftime("%Y-%m-%dT%H"), (0, 0))
        series.append({"hour": iso(at), "deliveries": total, "failures": failed})
    return series


def sync_durations(session: Session, connection_id: int, limit: int) -> list[dict]:
    runs = session.scalars(select(SyncRun).where(
        SyncRun.connection_id == connection_id, SyncRun.started_at.is_not(None), SyncRun.finished_at.is_not(None))
        .order_by(SyncRun.id.desc()).limit(limit)).all()
    return [{"id": run.id, "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
             "duration_seconds": round(max(0.0, (run.finished_at - run.started_at).total_seconds()), 3),
             "status": run.status.value, "kind": run.kind.value, "trigger": run.trigger.value, "full": run.full,
             "fetched": run.fetched, "applied": run.applied, "failed": run.failed} for run in reversed(runs)]


@bp.get("/operations")
@admin_required
def operations():
    hours, reports, runs, changes = (_count_param(name) for name in ("hours", "reports", "runs", "drift_changes"))
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant, required=False)
        body: dict = {"tenant": {"id": tenant.id, "name": tenant.name}, "connection_id": None,
                      "generated_at": iso(utcnow()),
                      "reconciliation": {"last": None, "series": []}, "api_drift": {"current": None, "history": []},
                      "deliveries": {"hours": hours, "series": []}, "sync_runs": []}
        if connection is None:
            return jsonify(body)
        body["connection_id"] = connection.id
        recent = session.scalars(select(ReconciliationReport).where(
            ReconciliationReport.connection_id == connection.id)
            .order_by(ReconciliationReport.id.desc()).limit(reports)).all()
        body["reconciliation"] = {
            "last": report_json(recent[0]) if recent else None,
            "series": [{"id": r.id, "created_at": iso(r.created_at), "status": r.status.value, "drift": r.drift,
                        "error": r.error} for r in reversed(recent)],
        }
        drift_rows = session.scalars(select(ApiDrift).where(ApiDrift.connection_id == connection.id)
                                     .order_by(ApiDrift.id.desc()).limit(changes)).all()
        body["api_drift"] = {"current": drift_json(drift_rows[0]) if drift_rows else None,
                             "history": [drift_json(row) for row in drift_rows]}
        body["deliveries"]["series"] = deliveries_per_hour(session, connection.id, hours, utcnow())
        body["sync_runs"] = sync_durations(session, connection.id, runs)
        return jsonify(body)


@bp.post("/reconcile")
@admin_required
def request_reconciliation():
    """A reconciliation report of the tenant's connection now (queued on the sync queue)."""
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = usable_connection(session, tenant, "Wedof cannot be counted")
        connection_id = connection.id
        record_audit(session, actor=current_principal().actor, action="reconcile.requested", tenant_id=tenant.id,
                     target=("wedof_connection", connection_id))
    task_id = queue_task(RECONCILE, [connection_id], "no report was started; the hourly one still runs.")
    return jsonify({"task_id": task_id, "connection_id": connection_id}), 202
