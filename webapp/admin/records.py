"""Synced records (beneficiaries, programs, bilan enrollments) and the two declarations an admin makes by hand.

A declaration by hand is a lifecycle action like the rules' own (:mod:`lifecycle.actions`): the row,
approved and with the exact body, is committed first, then ``wedof.carry_out_action`` is queued by name.
The folder's Wedof state, read from the row the syncs keep, decides what is allowed.
"""

from __future__ import annotations

from datetime import date, timedelta

from flask import jsonify
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Enrollment,
    EnrollmentStatus,
    LifecycleKind,
    Program,
    ProgramStatus,
    User,
)
from bdc.types import utcnow
from lifecycle import actions
from lifecycle.evaluate import settings_of
from webapp.admin import bp
from webapp.admin.common import db_session, get_by_id
from webapp.admin.lifecycle import queue_action
from webapp.admin.pagination import paginate
from webapp.admin.scope import current_principal, ensure_visible, resolve_tenant, visible_row
from webapp.admin.serializers import beneficiary_json, bilan_json, program_json
from webapp.admin.validation import field, json_object, query_choice, query_text, reject_unknown
from webapp.auth import admin_required
from webapp.errors import ApiError
from wedof.mapping import DECLARATIONS, PROGRESS_ALLOWED_STATES
from worker.task_names import CARRY_OUT_ACTION

BILAN_CATEGORY = "bilan_competences"



@bp.get("/stagiaires")
@admin_required
def list_stagiaires():
    status = query_choice("status", [s.value for s in BeneficiaryStatus])
    search = query_text("q")
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = (select(Beneficiary).join(User, Beneficiary.user_id == User.id)
                .where(Beneficiary.tenant_id == tenant.id, Beneficiary.external_id.is_not(None))
                .options(selectinload(Beneficiary.user),
                         selectinload(Beneficiary.enrollments).selectinload(Enrollment.program)))
        if status:
            stmt = stmt.where(Beneficiary.status == BeneficiaryStatus(status))
        if search:
            pattern = f"%{search.lower()}%"
            stmt = stmt.where(func.lower(func.coalesce(User.last_name, "") + " " + func.coalesce(User.first_name, "")
                                         + " " + func.coalesce(User.email, "")).like(pattern))
        stmt = stmt.order_by(User.last_name, User.first_name, Beneficiary.id)
        return jsonify(paginate(session, stmt, beneficiary_json))


@bp.get("/formations")
@admin_required
def list_formations():
    status = query_choice("status", [s.value for s in ProgramStatus])
    with db_session() as session:
        tenant = resolve_tenant(session)
        counts = (select(Enrollment.program_id, func.count().label("n")).group_by(Enrollment.program_id).subquery())
        stmt = (select(Program, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.program_id == Program.id)
                .where(Program.tenant_id == tenant.id, Program.external_id.is_not(None)))
        if status:
            stmt = stmt.where(Program.status == ProgramStatus(status))
        stmt = stmt.order_by(Program.name, Program.id)
        return jsonify(paginate(session, stmt, lambda row: program_json(row[0], row[1])))


@bp.get("/bilans")
@admin_required
def list_bilans():
    status = query_choice("status", [s.value for s in EnrollmentStatus])
    wedof_state = query_text("wedof_state", 64)
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = (select(Enrollment).join(Program, Enrollment.program_id == Program.id)
                .where(Enrollment.tenant_id == tenant.id, Program.category == BILAN_CATEGORY)
                .options(selectinload(Enrollment.program),
                         selectinload(Enrollment.beneficiary).selectinload(Beneficiary.user)))
        if status:
            stmt = stmt.where(Enrollment.status == EnrollmentStatus(status))
        if wedof_state:
            stmt = stmt.where(Enrollment.wedof_state == wedof_state)
        stmt = stmt.order_by(Enrollment.wedof_last_update.desc(), Enrollment.id.desc())
        return jsonify(paginate(session, stmt, bilan_json))


def _by_hand(session, enrollment: Enrollment, kind: LifecycleKind, body: dict, evidence: dict | None = None) -> int:
    """Record an admin's decision as an approved lifecycle action (the row before the call); its id."""
    try:
        action = actions.decide_by_hand(session, enrollment.tenant_id, enrollment.id, kind, body,
                                        current_principal().actor, evidence)
    except actions.InFlight as exc:
        raise ApiError(409, "action_in_flight", f"{str(exc).capitalize()}.") from None
    return action.id


def _folder_enrollment(session, enrollment_id: int) -> Enrollment:
    enrollment = visible_row(session, Enrollment, enrollment_id, "bilan")
    if not enrollment.external_id:
        raise ApiError(409, "not_linked", "This enrollment has no Wedof folder.")
    return enrollment


@bp.post("/stagiaires/<int:beneficiary_id>/progression")
@admin_required
def push_progression(beneficiary_id: int):
    """An admin's completion rate, sent to Wedof as a lifecycle action (Wedof's answer updates our copy)."""
    body = json_object()
    reject_unknown(body, {"progress", "enrollment_id"})
    progress = field(body, "progress", int, minimum=0, maximum=100)
    enrollment_id = field(body, "enrollment_id", int, default=None, nullable=True, minimum=1, maximum=2**62)
    with db_session() as session:
        beneficiary = get_by_id(session, Beneficiary, beneficiary_id)
        if beneficiary is None:
            raise ApiError(404, "not_found", "No such stagiaire.")
        ensure_visible(beneficiary.tenant_id, "stagiaire")
        linked = [e for e in beneficiary.enrollments if e.external_id]
        if enrollment_id is not None:
            enrollment = next((e for e in beneficiary.enrollments if e.id == enrollment_id), None)
            if enrollment is None:
                raise ApiError(404, "not_found", "This stagiaire has no such enrollment.")
        elif len(linked) == 1:
            enrollment = linked[0]
        else:
            raise ApiError(422, "enrollment_required",
                           f"This stagiaire has {len(linked)} Wedof folders; say which with enrollment_id.")
        if not enrollment.external_id:
            raise ApiError(409, "not_linked", "This enrollment has no Wedof folder.")
        if enrollment.wedof_state not in PROGRESS_ALLOWED_STATES:
            raise ApiError(409, "invalid_state",
                           f"Wedof accepts a progress only on folders in training or terminated; "
                           f"this folder is {enrollment.wedof_state or 'in an unknown state'}.",
                           wedof_state=enrollment.wedof_state)
        action_id = _by_hand(session, enrollment, LifecycleKind.PROGRESS, {"completionRate": progress},
                             {"previous_rate": enrollment.progress})
        target_id = enrollment.id
    task_id = queue_action(action_id, "the rate is recorded as an approved action and will be sent "
                                                    "by the next lifecycle evaluation.")
    return jsonify({"enrollment_id": target_id, "progress": progress, "action_id": action_id, "task_id": task_id}), 202


@bp.post("/bilans/<int:enrollment_id>/transition")
@admin_required
def transition_bilan(enrollment_id: int):
    """An admin's declaration, with the dates and figures the admin gives (never today's date by default)."""
    body = json_object()
    reject_unknown(body, {"to", "date", "code", "absence_duration", "force_majeure_absence"})
    target = field(body, "to", str)
    if target == "terminated":
        raise ApiError(422, "use_service_done", "Wedof records the exit with the service-fait declaration: "
                                                "declare serviceDone (it passes through terminated by itself).",
                       fields={"to": "use serviceDone"})
    target = field(body, "to", str, choices=tuple(MANUAL_DECLARATIONS))
    declared_on = _declared_day(body)
    with db_session() as session:
        enrollment = _folder_enrollment(session, enrollment_id)
        allowed_from = sorted(DECLARATIONS[target].allowed_from)
        if enrollment.wedof_state not in allowed_from:
            raise ApiError(409, "invalid_transition",
                           f"A folder in state {enrollment.wedof_state or 'unknown'} cannot go to {target} "
                           f"(allowed from: {', '.join(allowed_from)}).", wedof_state=enrollment.wedof_state)
        if target == "inTraining":
            if enrollment.session_start_date and declared_on < enrollment.session_start_date:
                raise ApiError(422, "before_session_start", f"The entry cannot be before the session start "
                                                            f"({enrollment.session_start_date.isoformat()}).")
            kind, declaration = LifecycleKind.ENTRY, {"date": declared_on.isoformat()}
        else:
            kind, declaration = LifecycleKind.END, _service_done_body(session, enrollment, body, declared_on)
        action_id = _by_hand(session, enrollment, kind, declaration)
    task_id = queue_action(action_id, "the declaration is recorded as an approved action and will "
                                                    "be sent by the next lifecycle evaluation.")
    return jsonify({"enrollment_id": enrollment_id, "to": target, "action_id": action_id, "body": declaration,
                    "task": CARRY_OUT_ACTION, "task_id": task_id}), 202


MANUAL_DECLARATIONS = ("inTraining", "serviceDone")


def _declared_day(body: dict) -> date:
    raw = field(body, "date", str, max_length=10)
    try:
        declared_on = date.fromisoformat(raw)
    except ValueError:
        raise ApiError(422, "validation_error", "date must be YYYY-MM-DD.", fields={"date": "not a date"}) from None
    if declared_on > utcnow().date() + timedelta(days=1):
        raise ApiError(422, "date_in_future", "A declaration cannot be dated in the future.", fields={"date": "future"})
    return declared_on


def _service_done_body(session, enrollment: Enrollment, body: dict, ended_on: date) -> dict:
    if enrollment.session_end_date and ended_on > enrollment.session_end_date:
        raise ApiError(422, "after_session_end", f"The end cannot be after the session end "
                                                 f"({enrollment.session_end_date.isoformat()}).")
    if not enrollment.indicative_duration_hours:
        raise ApiError(409, "no_duration", "The folder has no indicativeDuration (Wedof's trainingDuration).")
    absence = field(body, "absence_duration", (int, float), minimum=0, maximum=enrollment.indicative_duration_hours)
    code = field(body, "code", (str, int), default=None, nullable=True, max_length=64)
    if code is None:
        settings = settings_of(session, enrollment.tenant_id)
        code = settings.normal_end_code if settings is not None else None
    if code is None:
        raise ApiError(422, "code_required", "Give the exit reason code, or choose the normal-end code in the "
                                             "lifecycle settings.", fields={"code": "required"})
    return {"date": ended_on.isoformat(), "code": str(code), "absenceDuration": float(absence),
            "forceMajeureAbsence": field(body, "force_majeure_absence", bool, default=False),
            "trainingDuration": enrollment.indicative_duration_hours}
