"""Rows → JSON for the admin API. Secrets never appear: connections say ``api_key_set`` instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bdc.models import (
    Appointment,
    AuditLog,
    Beneficiary,
    BillingSettings,
    Enrollment,
    Invoice,
    LifecycleAction,
    LifecycleKind,
    LifecycleSettings,
    Notice,
    Program,
    SyncRun,
    WebhookEvent,
    WedofConnection,
)
from bdc.settings import get_settings
from bdc.types import utcnow
from webapp.receiver.storage import REDACTED, SENSITIVE_HEADER_WORDS

BODY_PREVIEW_CHARS = 2000
ERROR_PREVIEW_CHARS = 500


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def flower_task_url(task_id: str | None) -> str | None:
    return f"{get_settings().flower_url}/task/{task_id}" if task_id else None


def connection_json(connection: WedofConnection) -> dict[str, Any]:
    return {
        "id": connection.id,
        "tenant_id": connection.tenant_id,
        "name": connection.name,
        "base_url": connection.base_url,
        "api_key_set": bool(connection.api_key),
        "webhook_secret_set": bool(connection.webhook_secret),
        # During a rotation's grace window deliveries signed with the previous secret are still accepted.
        "previous_secret_accepted_until": _grace_end(connection),
        "signature_algorithm": connection.signature_algorithm,
        "organism_siret": connection.organism_siret,
        "enabled": connection.enabled,
        "is_env_default": connection.is_env_default,
        "rate_limit_per_second": connection.rate_limit_per_second,
        "wedof_webhook_id": connection.wedof_webhook_id,
        "webhook_url": connection.webhook_url,
        "sync_cursor": iso(connection.sync_cursor),
        "last_sync_at": iso(connection.last_sync_at),
        "created_at": iso(connection.created_at),
        "updated_at": iso(connection.updated_at),
    }


def sync_run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "connection_id": run.connection_id,
        "kind": enum_value(run.kind),
        "trigger": enum_value(run.trigger),
        "full": run.full,
        "status": enum_value(run.status),
        "task_id": run.task_id,
        "pages": run.pages,
        "fetched": run.fetched,
        "applied": run.applied,
        "unchanged": run.unchanged,
        "failed": run.failed,
        "total": run.total,
        "progress": run.progress,
        "cursor_from": iso(run.cursor_from),
        "cursor_to": iso(run.cursor_to),
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "error": run.error,
        "flower_url": flower_task_url(run.task_id),
    }


def _short(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + "…"


def _grace_end(connection: WedofConnection) -> str | None:
    expires = connection.previous_secret_expires_at
    if not connection.previous_webhook_secret or expires is None or expires <= utcnow():
        return None
    return iso(expires)


def event_json(event: WebhookEvent) -> dict[str, Any]:
    """The list view: no body, no headers."""
    return {
        "id": event.id,
        "connection_id": event.connection_id,
        "delivery_id": event.delivery_id,
        "event_type": event.event_type,
        "payload_format": event.payload_format,
        "folder_external_id": event.folder_external_id,
        "status": enum_value(event.status),
        "status_reason": event.status_reason,
        "attempts": event.attempts,
        "last_error": _short(event.last_error, ERROR_PREVIEW_CHARS),
        "task_id": event.task_id,
        "received_at": iso(event.received_at),
        "queued_at": iso(event.queued_at),
        "started_at": iso(event.started_at),
        "processed_at": iso(event.processed_at),
        "next_attempt_at": iso(event.next_attempt_at),
        "signed_with_previous_secret": bool(event.signed_with_previous_secret),
        "flower_url": flower_task_url(event.task_id),
    }


def safe_headers(headers: dict | None) -> dict[str, str]:
    shown: dict[str, str] = {}
    for name, value in (headers or {}).items():
        lowered = str(name).lower()
        sensitive = any(part in lowered for part in SENSITIVE_HEADER_WORDS)
        shown[str(name)] = REDACTED if sensitive else str(value)[:500]
    return shown


def event_detail_json(event: WebhookEvent) -> dict[str, Any]:
    data = event_json(event)
    data.update(
        last_error=event.last_error,
        headers=safe_headers(event.headers),
        body_preview=_short(event.body, BODY_PREVIEW_CHARS),
        body_size=len(event.body) if event.body is not None else None,
        body_purged_at=iso(event.body_purged_at),
    )
    return data


def enrollment_json(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "id": enrollment.id,
        "beneficiary_id": enrollment.beneficiary_id,
        "program_id": enrollment.program_id,
        "program_name": enrollment.program.name if enrollment.program is not None else None,
        "status": enum_value(enrollment.status),
        "progress": enrollment.progress,
        "external_id": enrollment.external_id,
        "wedof_state": enrollment.wedof_state,
        "wedof_billing_state": enrollment.wedof_billing_state,
        "wedof_last_update": iso(enrollment.wedof_last_update),
        "enrolled_at": iso(enrollment.enrolled_at),
        "completed_at": iso(enrollment.completed_at),
    }


def beneficiary_json(beneficiary: Beneficiary) -> dict[str, Any]:
    user = beneficiary.user
    return {
        "id": beneficiary.id,
        "external_id": beneficiary.external_id,
        "status": enum_value(beneficiary.status),
        "first_name": user.first_name if user else None,
        "last_name": user.last_name if user else None,
        "email": user.email if user else None,
        "enrollments": [enrollment_json(e) for e in sorted(beneficiary.enrollments, key=lambda e: e.id)],
        "updated_at": iso(beneficiary.updated_at),
    }


def program_json(program: Program, enrollment_count: int = 0) -> dict[str, Any]:
    return {
        "id": program.id,
        "external_id": program.external_id,
        "name": program.name,
        "category": program.category,
        "status": enum_value(program.status),
        "duration_hours": program.duration_hours,
        "start_date": program.start_date.isoformat() if program.start_date else None,
        "end_date": program.end_date.isoformat() if program.end_date else None,
        "enrollment_count": enrollment_count,
        "updated_at": iso(program.updated_at),
    }


def bilan_json(enrollment: Enrollment) -> dict[str, Any]:
    data = enrollment_json(enrollment)
    user = enrollment.beneficiary.user if enrollment.beneficiary is not None else None
    data.update(
        first_name=user.first_name if user else None,
        last_name=user.last_name if user else None,
        email=user.email if user else None,
    )
    return data


def audit_json(entry: AuditLog) -> dict[str, Any]:
    return {
        "id": entry.id,
        "tenant_id": entry.tenant_id,
        "actor": entry.actor,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details or {},
        "created_at": iso(entry.created_at),
    }


def day(value) -> str | None:
    return value.isoformat() if value is not None else None


def appointment_json(appointment: Appointment) -> dict[str, Any]:
    return {
        "id": appointment.id,
        "tenant_id": appointment.tenant_id,
        "beneficiary_id": appointment.beneficiary_id,
        "enrollment_id": appointment.enrollment_id,
        "phase": enum_value(appointment.phase),
        "starts_at": iso(appointment.starts_at),
        "ends_at": iso(appointment.ends_at),
        "status": enum_value(appointment.status),
        "attended_minutes": appointment.attended_minutes,
        "trainer_id": appointment.trainer_id,
        "notes": appointment.notes,
        "updated_at": iso(appointment.updated_at),
    }


def evidence_json(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "enrollment_id": enrollment.id,
        "synthesis_delivered_on": day(enrollment.synthesis_delivered_on),
        "withdrawn_on": day(enrollment.withdrawn_on),
        "withdrawal_reason": enrollment.withdrawal_reason,
        "session_start_date": day(enrollment.session_start_date),
        "session_end_date": day(enrollment.session_end_date),
        "indicative_duration_hours": enrollment.indicative_duration_hours,
    }


def action_json(action: LifecycleAction) -> dict[str, Any]:
    return {
        "id": action.id,
        "tenant_id": action.tenant_id,
        "enrollment_id": action.enrollment_id,
        "external_id": action.enrollment.external_id if action.enrollment is not None else None,
        "kind": enum_value(action.kind),
        "status": enum_value(action.status),
        "mode": enum_value(action.mode),
        "body": action.body,
        "evidence": action.evidence or {},
        "reason": action.reason,
        "late": action.late,
        "wedof_answer": action.wedof_answer,
        "decided_by": action.decided_by,
        "decided_at": iso(action.decided_at),
        "sent_at": iso(action.sent_at),
        "finished_at": iso(action.finished_at),
        "created_at": iso(action.created_at),
        "flower_url": flower_task_url(action.task_id),
    }


def settings_json(settings: LifecycleSettings) -> dict[str, Any]:
    return {
        "modes": {kind.value: enum_value(getattr(settings, f"{kind.value}_mode")) for kind in LifecycleKind},
        "normal_end_code": settings.normal_end_code,
        "abandon_code": settings.abandon_code,
        "cancel_code": settings.cancel_code,
        "inactivity_days": settings.inactivity_days,
        "time_zone": settings.time_zone,
        "trace_activities": settings.trace_activities,
        "updated_at": iso(settings.updated_at),
    }


def notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "id": notice.id,
        "kind": enum_value(notice.kind),
        "message": notice.message,
        "target_type": notice.target_type,
        "target_id": notice.target_id,
        "created_at": iso(notice.created_at),
        "acknowledged_at": iso(notice.acknowledged_at),
    }


def _money(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def invoice_json(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "tenant_id": invoice.tenant_id,
        "enrollment_id": invoice.enrollment_id,
        "folder_number": invoice.folder_number,
        "number": invoice.number,
        "issue_date": invoice.issue_date.isoformat(),
        "status": enum_value(invoice.status),
        "mode": enum_value(invoice.mode),
        "amount_excl": _money(invoice.amount_excl),
        "vat_rate": _money(invoice.vat_rate),
        "vat_amount": _money(invoice.vat_amount),
        "amount_incl": _money(invoice.amount_incl),
        "currency": invoice.currency,
        "beneficiary_name": (invoice.document or {}).get("beneficiary_name"),
        "training_title": (invoice.document or {}).get("training_title"),
        "reason": invoice.reason,
        "violations": invoice.violations or [],
        "refused": invoice.refused,  # Wedof refused it: an admin may cancel it and bill the folder anew
        "wedof_answer": invoice.wedof_answer,
        "released_by": invoice.released_by,
        "sent_at": iso(invoice.sent_at),
        "billed_at": iso(invoice.billed_at),
        "paid_on": invoice.paid_on.isoformat() if invoice.paid_on else None,
        "paid_amount": _money(invoice.paid_amount),
        "created_at": iso(invoice.created_at),
        "pdf_url": f"/api/integrations/wedof/invoices/{invoice.id}/pdf",
        "flower_url": flower_task_url(invoice.task_id),
    }


def billing_settings_json(settings: BillingSettings, configured: bool) -> dict[str, Any]:
    return {"mode": enum_value(settings.mode), "number_format": settings.number_format,
            "vat_mention": settings.vat_mention, "seller_address": settings.seller_address, "configured": configured}
