"""One helper to write the audit log, so every admin and sync action is recorded the same way."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bdc.models import AuditLog


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    tenant_id: int | None = None,
    target: tuple[str, object] | None = None,
    details: dict | None = None,
) -> AuditLog:
    """Add an audit row to the caller's transaction (it commits with the change it describes)."""
    entry = AuditLog(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target[0] if target else None,
        target_id=str(target[1]) if target else None,
        details=details or {},
    )
    session.add(entry)
    return entry
