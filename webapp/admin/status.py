"""Connection status (with a live Wedof check), manual syncs and the sync history."""

from __future__ import annotations

import logging
import uuid

import redis
from flask import jsonify
from sqlalchemy import func, select

from bdc.audit import record_audit
from bdc.models import EventStatus, SyncKind, SyncRun, SyncStatus, SyncTrigger, WebhookEvent
from bdc.settings import get_settings
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session, get_by_id
from webapp.admin.pagination import paginate
from webapp.admin.scope import (
    current_principal,
    ensure_visible,
    refuse_fenced_url,
    resolve_tenant,
    tenant_connection,
)
from webapp.admin.serializers import connection_json, sync_run_json
from webapp.admin.validation import field, json_object, query_choice, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from wedof.client import WedofClient
from wedof.errors import WedofError
from worker.task_names import EVENTS_QUEUE, SYNC_CONNECTION, SYNC_QUEUE

log = logging.getLogger(__name__)

# The original notes' names are accepted too and mean the same sync.
SYNC_TYPES = {"all": SyncKind.ALL, "stagiaires": SyncKind.STAGIAIRES, "beneficiaries": SyncKind.STAGIAIRES,
              "formations": SyncKind.FORMATIONS, "programs": SyncKind.FORMATIONS}
LIVE_CHECK_TIMEOUT = (3.0, 3.0)


def live_check(connection) -> tuple[bool, str | None, dict | None]:
    """One ``GET users/me`` with a short timeout and no retry: (connected, error, who)."""
    if not connection.api_key:
        return False, "no API key configured", None
    try:
        with WedofClient(connection.base_url, connection.api_key, timeout=LIVE_CHECK_TIMEOUT, max_attempts=1) as client:
            me = client.users_me()
    except WedofError as exc:
        return False, str(exc)[:300], None
    except ValueError as exc:  # a base URL or key the client refuses
        return False, str(exc)[:300], None
    who = {key: me.get(key) for key in ("email", "name", "firstName", "lastName") if isinstance(me, dict) and key in me}
    return True, None, who


def queue_depths() -> dict:
    url = get_settings().redis_url
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return {"events": client.llen(EVENTS_QUEUE), "sync": client.llen(SYNC_QUEUE), "error": None}
        finally:
            client.close()
    except redis.RedisError as exc:
        return {"events": None, "sync": None, "error": f"broker unreachable: {exc.__class__.__name__}"}


@bp.get("/status")
@admin_required
def status():
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant, required=False)
        body: dict = {"tenant": {"id": tenant.id, "name": tenant.name, "slug": tenant.slug},
                      "queues": queue_depths()}
        if connection is None:
            body.update(configured=False, connected=False, error="no Wedof connection for this tenant",
                        connection=None, webhook_url=None, last_sync=None, events_by_status={})
            return jsonify(body)
        counts = dict(session.execute(
            select(WebhookEvent.status, func.count()).where(WebhookEvent.connection_id == connection.id)
            .group_by(WebhookEvent.status)).all())
        last_run = session.scalar(select(SyncRun).where(SyncRun.connection_id == connection.id)
                                  .order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(1))
        connected, error, who = live_check(connection)
        body.update(
            configured=bool(connection.api_key and connection.webhook_secret),
            connected=connected,
            error=error,
            wedof_user=who,
            connection=connection_json(connection),
            webhook_url=connection.webhook_url,
            last_sync=sync_run_json(last_run) if last_run else None,
            events_by_status={status.value: counts.get(status, 0) for status in EventStatus},
        )
        return jsonify(body)


@bp.post("/sync")
@admin_required
def start_sync():
    body = json_object(allow_empty=True)
    reject_unknown(body, {"type", "full"})
    kind = SYNC_TYPES[field(body, "type", str, default="all", choices=tuple(SYNC_TYPES))]
    full = field(body, "full", bool, default=False)
    principal = current_principal()
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant)
        if not connection.api_key:
            raise ApiError(409, "connection_not_configured", "Set the Wedof API key before syncing.")
        refuse_fenced_url(connection, "nothing was synced")
        task_id = str(uuid.uuid4())
        run = SyncRun(connection_id=connection.id, kind=SyncKind(kind), trigger=SyncTrigger.MANUAL, full=full,
                      status=SyncStatus.QUEUED, task_id=task_id)
        session.add(run)
        session.flush()
        record_audit(session, actor=principal.actor, action="sync.requested", tenant_id=tenant.id,
                     target=("sync_run", run.id), details={"kind": kind, "full": full})
        run_id, connection_id = run.id, connection.id
    # The row is committed before publishing, so the worker always finds it.
    try:
        send_task(SYNC_CONNECTION, [connection_id, kind, full, run_id, SyncTrigger.MANUAL.value], task_id=task_id)
    except BrokerUnavailable:
        with db_session() as session:
            run = get_by_id(session, SyncRun, run_id)
            run.status = SyncStatus.FAILED
            run.error = "broker unavailable: the sync could not be queued"
            run.finished_at = utcnow()
        raise ApiError(503, "broker_unavailable", "The task queue is unreachable; the sync was not started.",
                       run_id=run_id) from None
    return jsonify({"task_id": task_id, "run_id": run_id}), 202


@bp.get("/sync-runs")
@admin_required
def list_sync_runs():
    wanted_status = query_choice("status", [s.value for s in SyncStatus])
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant, required=False)
        stmt = select(SyncRun).where(SyncRun.connection_id == (connection.id if connection else -1))
        if wanted_status:
            stmt = stmt.where(SyncRun.status == SyncStatus(wanted_status))
        stmt = stmt.order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
        return jsonify(paginate(session, stmt, sync_run_json))


def task_state(task_id: str | None) -> dict | None:
    """The Celery state and meta from the result backend, or None when unavailable."""
    if not task_id:
        return None
    from webapp.dispatch import task_sender

    try:
        result = task_sender().AsyncResult(task_id)
        state, info = result.state, result.info
    except Exception as exc:  # a backend outage must not break the progress view
        log.info("result backend unavailable: %s", exc.__class__.__name__)
        return None
    meta = info if isinstance(info, dict) else ({"error": str(info)[:300]} if info is not None else None)
    return {"state": state, "meta": meta}


@bp.get("/sync-runs/<int:run_id>")
@admin_required
def get_sync_run(run_id: int):
    with db_session() as session:
        run = get_by_id(session, SyncRun, run_id)
        if run is None:
            raise ApiError(404, "not_found", "No such sync run.")
        ensure_visible(run.connection.tenant_id, "sync run")
        data = sync_run_json(run)
        live = run.status in (SyncStatus.QUEUED, SyncStatus.RUNNING)
    data["task"] = task_state(data["task_id"]) if live else None
    return jsonify(data)
