"""Every row the data layer holds about one beneficiary: the one definition export and erasure share.

A beneficiary's folders are its enrollments; what hangs off a folder (declarations, invoices, inbox
events, notices, audit entries) is found through the folder numbers and row ids, within its tenant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bdc.models import (
    Appointment,
    AuditLog,
    Beneficiary,
    Document,
    Enrollment,
    ErasedAttendee,
    Evaluation,
    Invoice,
    LifecycleAction,
    Notice,
    User,
    WebhookEvent,
    WedofConnection,
)


@dataclass
class Holdings:
    beneficiary: Beneficiary
    user: User | None
    tombstone: ErasedAttendee | None
    enrollments: list[Enrollment]
    evaluations: list[Evaluation]
    appointments: list[Appointment]
    documents: list[Document]
    lifecycle_actions: list[LifecycleAction]
    invoices: list[Invoice]
    inbox_events: list[WebhookEvent]
    audit_entries: list[AuditLog]
    notices: list[Notice]

    @property
    def folder_numbers(self) -> list[str]:
        return sorted(e.external_id for e in self.enrollments if e.external_id)


def _by_id(rows):
    return sorted(rows, key=lambda row: row.id)


def _targets(column_type, column_id, targets: dict[str, list[int]]):
    """``(target_type, target_id)`` is one of ``targets`` (ids stored as text, as record_audit writes them)."""
    clauses = [and_(column_type == kind, column_id.in_([str(i) for i in ids])) for kind, ids in targets.items() if ids]
    return or_(*clauses) if clauses else None


def holdings_of(session: Session, beneficiary: Beneficiary) -> Holdings:
    """Everything held about ``beneficiary``, each list in id order (a fixed number of queries)."""
    tenant_id, beneficiary_id = beneficiary.tenant_id, beneficiary.id
    enrollments = _by_id(session.scalars(select(Enrollment).where(Enrollment.beneficiary_id == beneficiary_id)))
    enrollment_ids = [e.id for e in enrollments]
    folders = [e.external_id for e in enrollments if e.external_id]

    def of_beneficiary(model):
        return _by_id(session.scalars(select(model).where(model.beneficiary_id == beneficiary_id)))

    actions = _by_id(session.scalars(select(LifecycleAction).where(LifecycleAction.enrollment_id.in_(enrollment_ids))))
    # An invoice outlives its enrollment row (SET NULL): its folder number still names it.
    invoices = _by_id(session.scalars(select(Invoice).where(
        Invoice.tenant_id == tenant_id,
        or_(Invoice.enrollment_id.in_(enrollment_ids), Invoice.folder_number.in_(folders)))))
    events = _by_id(session.scalars(
        select(WebhookEvent).join(WedofConnection, WebhookEvent.connection_id == WedofConnection.id)
        .where(WedofConnection.tenant_id == tenant_id, WebhookEvent.folder_external_id.in_(folders))))
    targets = {"beneficiary": [beneficiary_id], "enrollment": enrollment_ids,
               "lifecycle_action": [a.id for a in actions], "invoice": [i.id for i in invoices],
               "webhook_event": [e.id for e in events]}
    audit = _by_id(session.scalars(select(AuditLog).where(
        AuditLog.tenant_id == tenant_id, _targets(AuditLog.target_type, AuditLog.target_id, targets))))
    notices = _by_id(session.scalars(select(Notice).where(
        Notice.tenant_id == tenant_id, _targets(Notice.target_type, Notice.target_id, targets))))
    tombstone = None
    if beneficiary.external_id:
        tombstone = session.scalar(select(ErasedAttendee).where(
            ErasedAttendee.tenant_id == tenant_id, ErasedAttendee.attendee_id == beneficiary.external_id))
    return Holdings(
        beneficiary=beneficiary, user=session.get(User, beneficiary.user_id), tombstone=tombstone,
        enrollments=enrollments, evaluations=of_beneficiary(Evaluation), appointments=of_beneficiary(Appointment),
        documents=of_beneficiary(Document), lifecycle_actions=actions, invoices=invoices, inbox_events=events,
        audit_entries=audit, notices=notices,
    )
