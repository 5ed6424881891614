"""Synced records (beneficiaries, programs, bilan enrollments) and the two pushes an admin starts.

Pushes go through the worker: the API stores the intent (the progress value) and queues the task
by name; the folder's Wedof state decides what is allowed, read from the row the syncs keep.
"""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bdc.audit import record_audit
from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Enrollment,
    EnrollmentStatus,
    Program,
    ProgramStatus,
    User,
)
from webapp.admin import bp
from webapp.admin.common import db_session, get_by_id
from webapp.admin.pagination import paginate
from webapp.admin.scope import current_principal, ensure_visible, resolve_tenant
from webapp.admin.serializers import beneficiary_json, bilan_json, program_json
from webapp.admin.validation import field, json_object, query_choice, query_text, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from wedof.mapping import DECLARATIONS, PROGRESS_ALLOWED_STATES
from worker.task_names import DECLARE_IN_TRAINING, DECLARE_SERVICE_DONE, DECLARE_TERMINATED, PUSH_PROGRESS

BILAN_CATEGORY = "bilan_competences"
# Target → the task that declares it; the states it is allowed from are the declaration's own.
TRANSITIONS = {"inTraining": DECLARE_IN_TRAINING, "terminated": DECLARE_TERMINATED, "serviceDone": DECLARE_SERVICE_DONE}


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


def _queue(task: str, enrollment_id: int, what: str) -> str:
    try:
        return send_task(task, [enrollment_id])
    except BrokerUnavailable:
        raise ApiError(503, "broker_unavailable", f"The task queue is unreachable; {what}") from None


@bp.post("/stagiaires/<int:beneficiary_id>/progression")
@admin_required
def push_progression(beneficiary_id: int):
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
        previous = enrollment.progress
        enrollment.progress = progress
        record_audit(session, actor=current_principal().actor, action="enrollment.progress_set",
                     tenant_id=enrollment.tenant_id, target=("enrollment", enrollment.id),
                     details={"from": previous, "to": progress})
        target_id = enrollment.id
    task_id = _queue(PUSH_PROGRESS, target_id, "the progress is saved but not pushed yet; send it again.")
    return jsonify({"enrollment_id": target_id, "progress": progress, "task_id": task_id}), 202


@bp.post("/bilans/<int:enrollment_id>/transition")
@admin_required
def transition_bilan(enrollment_id: int):
    body = json_object()
    reject_unknown(body, {"to"})
    target = field(body, "to", str, choices=tuple(TRANSITIONS))
    task, allowed_from = TRANSITIONS[target], sorted(DECLARATIONS[target].allowed_from)
    with db_session() as session:
        enrollment = get_by_id(session, Enrollment, enrollment_id)
        if enrollment is None:
            raise ApiError(404, "not_found", "No such bilan.")
        ensure_visible(enrollment.tenant_id, "bilan")
        if not enrollment.external_id:
            raise ApiError(409, "not_linked", "This enrollment has no Wedof folder.")
        if enrollment.wedof_state not in allowed_from:
            raise ApiError(409, "invalid_transition",
                           f"A folder in state {enrollment.wedof_state or 'unknown'} cannot go to {target} "
                           f"(allowed from: {', '.join(allowed_from)}).", wedof_state=enrollment.wedof_state)
        record_audit(session, actor=current_principal().actor, action="enrollment.transition_requested",
                     tenant_id=enrollment.tenant_id, target=("enrollment", enrollment.id),
                     details={"to": target, "from_state": enrollment.wedof_state})
    task_id = _queue(task, enrollment_id, "the transition was not requested; try again.")
    return jsonify({"enrollment_id": enrollment_id, "to": target, "task": task, "task_id": task_id}), 202
