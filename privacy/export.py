"""The right of access: everything held about one beneficiary, as one JSON document.

Rows are exported column by column, as stored, so nothing held is left out by a forgotten field.
Left out on purpose: file contents (documents are exported as metadata; an invoice's PDF as
``has_pdf``) and, unless asked for, the inbox events' raw bodies (``raw_bodies_included`` says which):
a raw body is Wedof's copy of a folder, whose personal values the profile and enrollments already show.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from bdc.audit import record_audit
from bdc.models import Beneficiary, Tenant
from bdc.types import json_safe, utcnow
from privacy.holdings import Holdings, holdings_of

EXPORT_FORMAT = "bdc-wedof-sync/personal-data-export/1"
# Rows whose columns are exported less some: binary content is described, not copied.
_LEFT_OUT = {"Invoice": {"pdf"}, "WebhookEvent": {"body"}}


def row_json(row: Any) -> dict:
    """Every column of an ORM row (but the binary ones left out above), by attribute name."""
    left_out = _LEFT_OUT.get(type(row).__name__, set())
    return {attr.key: json_safe(getattr(row, attr.key))
            for attr in inspect(type(row)).column_attrs if attr.key not in left_out}


def export_document(session: Session, holdings: Holdings, *, include_raw_bodies: bool = False) -> dict:
    tenant = session.get(Tenant, holdings.beneficiary.tenant_id)
    events = []
    for event in holdings.inbox_events:
        item = {**row_json(event), "has_body": event.body is not None}
        if include_raw_bodies:
            item["body"] = event.body
        events.append(item)
    return {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "tenant": {"id": tenant.id, "slug": tenant.slug, "name": tenant.name},
        "beneficiary": row_json(holdings.beneficiary),
        "user": row_json(holdings.user) if holdings.user is not None else None,
        "erasure": row_json(holdings.tombstone) if holdings.tombstone is not None else None,
        "enrollments": [row_json(row) for row in holdings.enrollments],
        "evaluations": [row_json(row) for row in holdings.evaluations],
        "appointments": [row_json(row) for row in holdings.appointments],
        "documents": [row_json(row) for row in holdings.documents],
        "document_contents_included": False,
        "lifecycle_actions": [row_json(row) for row in holdings.lifecycle_actions],
        "invoices": [{**row_json(row), "has_pdf": row.pdf is not None} for row in holdings.invoices],
        "audit_log": [row_json(row) for row in holdings.audit_entries],
        "notices": [row_json(row) for row in holdings.notices],
        "inbox_events": events,
        "raw_bodies_included": include_raw_bodies,
    }


def export_beneficiary(session: Session, beneficiary: Beneficiary, *, actor: str,
                       include_raw_bodies: bool = False) -> dict:
    """The export of ``beneficiary``, audited (who asked, for whom, how much) in the caller's transaction."""
    document = export_document(session, holdings_of(session, beneficiary), include_raw_bodies=include_raw_bodies)
    counts = {key: len(value) for key, value in document.items() if isinstance(value, list)}
    # The audit row says who exported whom and how much, never a personal value.
    record_audit(session, actor=actor, action="beneficiary.exported", tenant_id=beneficiary.tenant_id,
                 target=("beneficiary", beneficiary.id),
                 details={"counts": counts, "raw_bodies_included": include_raw_bodies})
    return document
