"""The audit log of the tenant, newest first."""

from __future__ import annotations

from flask import jsonify
from sqlalchemy import select

from bdc.models import AuditLog
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.pagination import paginate
from webapp.admin.scope import resolve_tenant
from webapp.admin.serializers import audit_json
from webapp.admin.validation import query_text
from webapp.auth import admin_required


@bp.get("/audit-log")
@admin_required
def list_audit_log():
    action = query_text("action", 100)
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = select(AuditLog).where(AuditLog.tenant_id == tenant.id)
        if action:
            stmt = stmt.where(AuditLog.action == action)
        stmt = stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
        return jsonify(paginate(session, stmt, audit_json))
