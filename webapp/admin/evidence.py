"""The bilan's evidence, recorded and corrected by staff: appointments and their attendance, the synthesis
hand-over, a withdrawal.

Hostile or impossible input is answered 400 with what is wrong, and writes nothing: an end before its
start, attendance in the future, negative or absurd durations, another tenant's enrollment, two
sessions of one beneficiary at the same time. Every change is audited and asks for the lifecycle
rules to run again for that enrollment (by task name; the beat runs them anyway).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from flask import jsonify
from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc.audit import changes, record_audit
from bdc.models import Appointment, AppointmentPhase, AppointmentStatus, Enrollment, User, UserRole
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session, get_by_id
from webapp.admin.scope import current_principal, resolve_tenant, visible_row
from webapp.admin.serializers import appointment_json, evidence_json
from webapp.admin.validation import field, json_object, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from worker.task_names import EVALUATE_LIFECYCLE

MAX_SESSION = timedelta(hours=12)  # longer than any bilan session: a typo, not a session
MAX_NOTES = 4000
TRAINER_ROLES = (UserRole.TRAINER, UserRole.TENANT_ADMIN)
APPOINTMENT_FIELDS = {"phase", "starts_at", "ends_at", "status", "attended_minutes", "trainer_id", "notes"}


def bad(error: str, message: str, **extra) -> ApiError:
    return ApiError(400, error, message, **extra)


def moment(body: dict, name: str) -> datetime:
    """An ISO 8601 date-time with its offset (a naive time is ambiguous: refused), as aware UTC."""
    raw = field(body, name, str, max_length=40, status=400)
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad("invalid_datetime", f"{name} must be an ISO 8601 date-time, e.g. 2025-03-05T09:30:00+01:00.") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise bad("invalid_datetime", f"{name} must carry its UTC offset (e.g. +01:00 or Z).")
    return value.astimezone(utcnow().tzinfo)


def day_of(body: dict, name: str) -> date | None:
    raw = field(body, name, str, nullable=True, max_length=10, status=400)
    if raw is None:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise bad("invalid_date", f"{name} must be a date YYYY-MM-DD.") from None
    if value > utcnow().date() + timedelta(days=1):  # a day ahead of UTC: Paris is already there at night
        raise bad("date_in_future", f"{name} cannot be in the future.")
    return value


def tenant_enrollment(session: Session, tenant_id: int, enrollment_id) -> Enrollment:
    """The tenant's enrollment, or 400: naming another tenant's is hostile input, not a lookup."""
    if isinstance(enrollment_id, bool) or not isinstance(enrollment_id, int):
        raise bad("validation_error", "enrollment_id must be an integer.", fields={"enrollment_id": "expected an integer"})
    enrollment = get_by_id(session, Enrollment, enrollment_id)
    if enrollment is None or enrollment.tenant_id != tenant_id:
        raise bad("unknown_enrollment", f"No enrollment {enrollment_id} in this tenant.")
    return enrollment


def _apply_fields(session: Session, appointment: Appointment, body: dict) -> None:
    """Set the given fields, then check the appointment as a whole (nothing is committed when it fails)."""
    if "phase" in body:
        appointment.phase = AppointmentPhase(field(body, "phase", str, choices=tuple(AppointmentPhase), status=400))
    if "status" in body:
        appointment.status = AppointmentStatus(field(body, "status", str, choices=tuple(AppointmentStatus), status=400))
    for name in ("starts_at", "ends_at"):
        if name in body:
            setattr(appointment, name, moment(body, name))
    if "attended_minutes" in body:
        appointment.attended_minutes = field(body, "attended_minutes", int, nullable=True, status=400)
    if "notes" in body:
        appointment.notes = field(body, "notes", str, nullable=True, max_length=MAX_NOTES, status=400)
    if "trainer_id" in body:
        trainer_id = field(body, "trainer_id", int, nullable=True, minimum=1, maximum=2**31 - 1, status=400)
        if trainer_id is not None:
            trainer = session.get(User, trainer_id)
            if trainer is None or trainer.tenant_id != appointment.tenant_id or trainer.role not in TRAINER_ROLES:
                raise bad("unknown_trainer", f"No trainer {trainer_id} in this tenant.")
        appointment.trainer_id = trainer_id
    check(session, appointment)


def check(session: Session, appointment: Appointment) -> None:
    """What no real session can be: 400 with the reason."""
    if appointment.starts_at is None or appointment.ends_at is None:
        raise bad("validation_error", "starts_at and ends_at are required.")
    length = appointment.ends_at - appointment.starts_at
    if length <= timedelta(0):
        raise bad("end_before_start", "ends_at must be after starts_at.")
    if length > MAX_SESSION:
        raise bad("absurd_duration", f"A session lasts at most {MAX_SESSION.seconds // 3600} hours.")
    minutes = appointment.attended_minutes
    if minutes is not None:
        if appointment.status != AppointmentStatus.ATTENDED:
            raise bad("minutes_without_attendance", "attended_minutes is for an attended session only.")
        if minutes < 0 or minutes > length.total_seconds() / 60:
            raise bad("absurd_duration", f"attended_minutes must be between 0 and the session's length "
                                         f"({int(length.total_seconds() // 60)} minutes).")
    if appointment.status in (AppointmentStatus.ATTENDED, AppointmentStatus.MISSED) and \
            appointment.starts_at > utcnow():
        raise bad("attendance_in_future", "A session that has not started cannot be attended or missed yet.")
    if appointment.status != AppointmentStatus.CANCELLED:
        clash = session.scalars(select(Appointment).where(
            Appointment.beneficiary_id == appointment.beneficiary_id,
            Appointment.status != AppointmentStatus.CANCELLED,
            Appointment.id != (appointment.id or 0),
            Appointment.starts_at < appointment.ends_at, Appointment.ends_at > appointment.starts_at)).first()
        if clash is not None:
            raise bad("overlapping_sessions", f"The beneficiary has appointment {clash.id} at that time "
                                              f"({clash.starts_at.isoformat()} - {clash.ends_at.isoformat()}).")


def _changed(session: Session, what: str, appointment_or_enrollment, details: dict) -> dict:
    tenant_id = appointment_or_enrollment.tenant_id
    target = ("appointment", appointment_or_enrollment.id) if isinstance(appointment_or_enrollment, Appointment) \
        else ("enrollment", appointment_or_enrollment.id)
    record_audit(session, actor=current_principal().actor, action=what, tenant_id=tenant_id, target=target,
                 details=details)
    return details


def _evaluate(enrollment_id: int) -> str:
    """Ask for the rules to run again; a broker outage leaves it to the beat (the evidence is saved)."""
    try:
        send_task(EVALUATE_LIFECYCLE, [enrollment_id])
    except BrokerUnavailable:
        return "pending"
    return "queued"


@bp.get("/bilans/<int:enrollment_id>/appointments")
@admin_required
def list_appointments(enrollment_id: int):
    with db_session() as session:
        enrollment = visible_row(session, Enrollment, enrollment_id, "bilan")
        rows = session.scalars(select(Appointment).where(Appointment.enrollment_id == enrollment.id)
                               .order_by(Appointment.starts_at, Appointment.id)).all()
        return jsonify({"items": [appointment_json(a) for a in rows], "evidence": evidence_json(enrollment)})


@bp.post("/appointments")
@admin_required
def create_appointment():
    body = json_object()
    reject_unknown(body, APPOINTMENT_FIELDS | {"enrollment_id"}, status=400)
    with db_session() as session:
        tenant = resolve_tenant(session)
        enrollment = tenant_enrollment(session, tenant.id, field(body, "enrollment_id", int, status=400))
        for name in ("phase", "starts_at", "ends_at"):
            field(body, name, str, status=400)  # required on creation
        appointment = Appointment(tenant_id=tenant.id, beneficiary_id=enrollment.beneficiary_id,
                                  enrollment_id=enrollment.id, status=AppointmentStatus.SCHEDULED)
        _apply_fields(session, appointment, body)
        session.add(appointment)
        session.flush()
        _changed(session, "appointment.created", appointment, appointment_json(appointment))
        data, enrollment_id = appointment_json(appointment), enrollment.id
    return jsonify({**data, "evaluation": _evaluate(enrollment_id)}), 201


@bp.patch("/appointments/<int:appointment_id>")
@admin_required
def update_appointment(appointment_id: int):
    body = json_object()
    reject_unknown(body, APPOINTMENT_FIELDS, status=400)
    with db_session() as session:
        appointment = visible_row(session, Appointment, appointment_id, "appointment")
        before = appointment_json(appointment)
        _apply_fields(session, appointment, body)
        session.flush()
        after = appointment_json(appointment)
        _changed(session, "appointment.updated", appointment,
                 {"before": {k: before[k] for k in body}, "after": {k: after[k] for k in body},
                  "changes": changes(before, after, fields=body)})
        enrollment_id = appointment.enrollment_id
    return jsonify({**after, "evaluation": _evaluate(enrollment_id)})


@bp.post("/appointments/<int:appointment_id>/attendance")
@admin_required
def mark_attendance(appointment_id: int):
    body = json_object()
    reject_unknown(body, {"status", "attended_minutes"}, status=400)
    field(body, "status", str, choices=(AppointmentStatus.ATTENDED.value, AppointmentStatus.MISSED.value), status=400)
    if body["status"] == AppointmentStatus.MISSED.value:
        body = {**body, "attended_minutes": None}
    return _patch(appointment_id, body, "appointment.attendance_marked")


@bp.post("/appointments/<int:appointment_id>/cancel")
@admin_required
def cancel_appointment(appointment_id: int):
    reject_unknown(json_object(allow_empty=True), set(), status=400)
    return _patch(appointment_id, {"status": AppointmentStatus.CANCELLED.value, "attended_minutes": None},
                  "appointment.cancelled")


def _patch(appointment_id: int, body: dict, what: str):
    with db_session() as session:
        appointment = visible_row(session, Appointment, appointment_id, "appointment")
        before, before_status = appointment_json(appointment), appointment.status.value
        _apply_fields(session, appointment, body)
        session.flush()
        _changed(session, what, appointment, {"from_status": before_status, **body,
                                              "changes": changes(before, appointment_json(appointment), fields=body)})
        data, enrollment_id = appointment_json(appointment), appointment.enrollment_id
    return jsonify({**data, "evaluation": _evaluate(enrollment_id)})


@bp.put("/bilans/<int:enrollment_id>/evidence")
@admin_required
def record_evidence(enrollment_id: int):
    """The synthesis hand-over and a withdrawal, as days (null clears a mistaken entry)."""
    body = json_object()
    reject_unknown(body, {"synthesis_delivered_on", "withdrawn_on", "withdrawal_reason"}, status=400)
    if not body:
        raise bad("validation_error", "Give synthesis_delivered_on, withdrawn_on or withdrawal_reason.")
    with db_session() as session:
        enrollment = visible_row(session, Enrollment, enrollment_id, "bilan")
        before = evidence_json(enrollment)
        for name in ("synthesis_delivered_on", "withdrawn_on"):
            if name in body:
                setattr(enrollment, name, day_of(body, name))
        if "withdrawal_reason" in body:
            enrollment.withdrawal_reason = field(body, "withdrawal_reason", str, nullable=True, max_length=500,
                                                 status=400)
        if enrollment.withdrawal_reason and enrollment.withdrawn_on is None:
            raise bad("validation_error", "A withdrawal reason needs its withdrawn_on date.")
        after = evidence_json(enrollment)
        _changed(session, "enrollment.evidence_recorded", enrollment,
                 {"before": {k: before[k] for k in body}, "after": {k: after[k] for k in body},
                  "changes": changes(before, after, fields=body)})
    return jsonify({**after, "evaluation": _evaluate(enrollment_id)})
