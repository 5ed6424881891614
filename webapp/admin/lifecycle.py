"""Lifecycle actions (list, approve, reject, retry, re-evaluate), the tenant's lifecycle settings, and
the notices staff must read.

Approving an action commits it ``approved`` and sends ``wedof.carry_out_action`` by name; the worker
reads the folder before any call. Reason codes are checked against the organism's live list
(``/registrationFoldersReasons``): a code that list does not hold is refused, and when Wedof cannot be
asked, no code is accepted unchecked.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bdc.audit import changes, record_audit
from bdc.models import (
    ActionStatus,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
    Notice,
)
from bdc.types import utcnow
from lifecycle import actions
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.pagination import paginate
from webapp.admin.scope import (
    current_principal,
    resolve_tenant,
    tenant_connection,
    visible_row,
)
from webapp.admin.serializers import action_json, notice_json, settings_json
from webapp.admin.validation import field, json_object, query_choice, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from wedof.client import WedofClient
from wedof.errors import WedofError
from worker.task_names import CARRY_OUT_ACTION, EVALUATE_LIFECYCLE

REASON_CHECK_TIMEOUT = (3.0, 5.0)
CODE_FIELDS = {"normal_end_code": "terminated", "abandon_code": "terminated", "cancel_code": "canceled"}
MODE_FIELDS = {f"{kind.value}_mode" for kind in LifecycleKind}


def queue_task(task: str, args: list, what: str) -> str:
    """Publish a task the admin asked for, or 503 saying what happens to the work meanwhile."""
    try:
        return send_task(task, args)
    except BrokerUnavailable:
        raise ApiError(503, "broker_unavailable", f"The task queue is unreachable; {what}") from None


def queue_action(action_id: int, what: str) -> str:
    """Send an approved action to its task now; evaluations leave a queued action to that task."""
    task_id = queue_task(CARRY_OUT_ACTION, [action_id], what)
    with db_session() as session:
        actions.mark_queued(session, [action_id])
    return task_id


@bp.get("/lifecycle/actions")
@admin_required
def list_actions():
    status = query_choice("status", [s.value for s in ActionStatus])
    kind = query_choice("kind", [k.value for k in LifecycleKind])
    late = query_choice("late", ["true", "false"])
    enrollment_id = request.args.get("enrollment_id")
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = (select(LifecycleAction).where(LifecycleAction.tenant_id == tenant.id)
                .options(selectinload(LifecycleAction.enrollment)))
        if status:
            stmt = stmt.where(LifecycleAction.status == ActionStatus(status))
        if kind:
            stmt = stmt.where(LifecycleAction.kind == LifecycleKind(kind))
        if late:
            stmt = stmt.where(LifecycleAction.late.is_(late == "true"))
        if enrollment_id:
            if not enrollment_id.isdigit() or len(enrollment_id) > 9:
                raise ApiError(400, "invalid_parameter", "enrollment_id must be a whole number.")
            stmt = stmt.where(LifecycleAction.enrollment_id == int(enrollment_id))
        stmt = stmt.order_by(LifecycleAction.created_at.desc(), LifecycleAction.id.desc())
        return jsonify(paginate(session, stmt, action_json))


@bp.get("/lifecycle/actions/<int:action_id>")
@admin_required
def get_action(action_id: int):
    with db_session() as session:
        return jsonify(action_json(visible_row(session, LifecycleAction, action_id, "action")))


@bp.post("/lifecycle/actions/<int:action_id>/approve")
@admin_required
def approve_action(action_id: int):
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        action = visible_row(session, LifecycleAction, action_id, "action")
        if action.mode == LifecycleMode.DRY_RUN:
            raise ApiError(409, "dry_run", "This action was proposed in dry-run mode: it is shown, never sent. "
                                           "Switch the rule to approve or auto to act on it.")
        if not actions.approve(session, action.id, current_principal().actor):
            raise ApiError(409, "not_approvable", f"The action is {action.status.value}; only a proposed action "
                                                  "can be approved.", action_status=action.status.value)
    task_id = queue_action(action_id, "the action is approved and will be sent by the next "
                                                    "lifecycle evaluation.")
    return jsonify({"action_id": action_id, "status": "approved", "task_id": task_id}), 202


@bp.post("/lifecycle/actions/<int:action_id>/reject")
@admin_required
def reject_action(action_id: int):
    body = json_object()
    reject_unknown(body, {"reason"})
    reason = field(body, "reason", str, max_length=500)
    if not reason.strip():
        raise ApiError(422, "validation_error", "Say why the action is rejected.", fields={"reason": "required"})
    with db_session() as session:
        action = visible_row(session, LifecycleAction, action_id, "action")
        if not actions.reject(session, action.id, current_principal().actor, reason.strip()):
            raise ApiError(409, "not_rejectable", f"The action is {action.status.value}; only a proposed or "
                                                  "blocked action can be rejected.", action_status=action.status.value)
        session.refresh(action)
        return jsonify(action_json(action))


@bp.post("/lifecycle/actions/<int:action_id>/retry")
@admin_required
def retry_action(action_id: int):
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        action = visible_row(session, LifecycleAction, action_id, "action")
        if not actions.retry(session, action.id, current_principal().actor):
            raise ApiError(409, "not_retryable", f"The action is {action.status.value}; only a refused or failed "
                                                 "action can be sent again.", action_status=action.status.value)
    task_id = queue_action(action_id, "the action is approved again and will be sent by the next "
                                                    "lifecycle evaluation.")
    return jsonify({"action_id": action_id, "status": "approved", "task_id": task_id}), 202


@bp.post("/bilans/<int:enrollment_id>/evaluate")
@admin_required
def evaluate_bilan(enrollment_id: int):
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        visible_row(session, Enrollment, enrollment_id, "bilan")
    task_id = queue_task(EVALUATE_LIFECYCLE, [enrollment_id], "the beat evaluates it within its interval.")
    return jsonify({"enrollment_id": enrollment_id, "task_id": task_id}), 202


# -- settings ------------------------------------------------------------------------------------------

def _settings(session, tenant, *, create: bool) -> LifecycleSettings | None:
    """The tenant's settings; created (with the defaults) only when an admin saves some."""
    settings = session.scalars(select(LifecycleSettings).where(LifecycleSettings.tenant_id == tenant.id)).first()
    if settings is None and create:
        settings = LifecycleSettings(tenant_id=tenant.id)
        session.add(settings)
        session.flush()
    return settings


def live_reasons(connection) -> tuple[dict[str, list[dict]], str | None]:
    """The organism's reason lists, asked of Wedof now: ({type: [{code, label}]}, error)."""
    if connection is None or not connection.api_key:
        return {}, "no Wedof connection with an API key"
    try:
        with WedofClient(connection.base_url, connection.api_key, timeout=REASON_CHECK_TIMEOUT,
                         max_attempts=2) as client:
            return {kind: client.registration_folder_reasons(kind) for kind in ("terminated", "canceled")}, None
    except (WedofError, ValueError) as exc:
        return {}, str(exc)[:300]


@bp.get("/lifecycle/settings")
@admin_required
def get_lifecycle_settings():
    with db_session() as session:
        tenant = resolve_tenant(session)
        settings = _settings(session, tenant, create=False)
        # Nothing is evaluated until an admin saves settings: shown here are the defaults they would get.
        data = settings_json(settings or LifecycleSettings.defaults(tenant.id))
        connection = tenant_connection(session, tenant, required=False)
    reasons, error = live_reasons(connection)
    return jsonify({**data, "configured": settings is not None, "reasons": reasons, "reasons_error": error})


@bp.put("/lifecycle/settings")
@admin_required
def put_lifecycle_settings():
    body = json_object()
    reject_unknown(body, MODE_FIELDS | set(CODE_FIELDS) | {"inactivity_days", "time_zone", "trace_activities"})
    values: dict = {}
    for name in MODE_FIELDS & set(body):
        values[name] = LifecycleMode(field(body, name, str, choices=tuple(m.value for m in LifecycleMode)))
    for name in set(CODE_FIELDS) & set(body):
        code = field(body, name, (str, int), nullable=True, max_length=64)
        values[name] = None if code is None else str(code).strip() or None
    if "inactivity_days" in body:
        values["inactivity_days"] = field(body, "inactivity_days", int, minimum=1, maximum=365)
    if "time_zone" in body:
        zone = field(body, "time_zone", str, max_length=64)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(422, "validation_error", f"{zone[:64]!r} is not a time zone (e.g. Europe/Paris).",
                           fields={"time_zone": "unknown time zone"}) from None
        values["time_zone"] = zone
    if "trace_activities" in body:
        values["trace_activities"] = field(body, "trace_activities", bool)
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant, required=False)
        codes = {name: values[name] for name in CODE_FIELDS if values.get(name) is not None}
        if codes:
            reasons, error = live_reasons(connection)
            if error is not None:
                raise ApiError(503, "reasons_unavailable", "The reason codes cannot be checked against Wedof's list "
                                                           f"right now ({error}); nothing was changed.")
            for name, code in codes.items():
                known = {str(r.get("code")) for r in reasons.get(CODE_FIELDS[name], [])}
                if code not in known:
                    raise ApiError(422, "unknown_reason_code",
                                   f"{name}: Wedof's {CODE_FIELDS[name]} reasons have no code {code!r} "
                                   f"(known: {', '.join(sorted(known)) or 'none'}).", fields={name: "unknown code"})
        settings = _settings(session, tenant, create=True)
        before = settings_json(settings)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.updated_at = utcnow()
        session.flush()
        after = settings_json(settings)
        record_audit(session, actor=current_principal().actor, action="lifecycle.settings_changed",
                     tenant_id=tenant.id, target=("lifecycle_settings", settings.id),
                     details={"before": before, "after": after}, changes=changes(before, after))
    return jsonify({**after, "configured": True})


# -- notices ---------------------------------------------------------------------------------------------

@bp.get("/notices")
@admin_required
def list_notices():
    open_only = query_choice("open", ["true", "false"])
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = select(Notice).where(Notice.tenant_id == tenant.id)
        if open_only == "true":
            stmt = stmt.where(Notice.acknowledged_at.is_(None))
        return jsonify(paginate(session, stmt.order_by(Notice.created_at.desc(), Notice.id.desc()), notice_json))


@bp.post("/notices/<int:notice_id>/acknowledge")
@admin_required
def acknowledge_notice(notice_id: int):
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        notice = visible_row(session, Notice, notice_id, "notice")
        if notice.acknowledged_at is None:
            notice.acknowledged_at = utcnow()
        return jsonify(notice_json(notice))
