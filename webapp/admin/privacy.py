"""A beneficiary's personal data through the admin API: export (access), erasure, retention consent,
and the tenant's retention period. The work is :mod:`privacy`'s, shared with the CLI; every call is
audited there or here, never with a personal value.
"""

from __future__ import annotations

import re

from flask import jsonify

from bdc.audit import record_audit
from bdc.models import Beneficiary
from bdc.settings import get_settings
from privacy import TENANT_SETTING, erase_beneficiary, export_beneficiary, retention_days
from privacy.retention import MAX_RETENTION_DAYS
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.scope import current_principal, resolve_tenant, visible_row
from webapp.admin.validation import field, json_object, query_choice, reject_unknown
from webapp.auth import admin_required
from webapp.errors import ApiError

_ID = re.compile(r"[0-9]{1,12}")


def beneficiary_id_of(raw: str) -> int:
    """The id in the path: 400 when it is not a whole number (``<int:>`` would answer a bare 404)."""
    if not _ID.fullmatch(raw):
        raise ApiError(400, "invalid_id", "The beneficiary id must be a positive whole number.")
    return int(raw)


def _beneficiary(session, raw: str) -> Beneficiary:
    return visible_row(session, Beneficiary, beneficiary_id_of(raw), "beneficiary")


@bp.get("/beneficiaries/<beneficiary_id>/export")
@admin_required
def export_personal_data(beneficiary_id: str):
    """Everything held about the beneficiary as one JSON document (raw inbox bodies only when asked)."""
    include_raw = query_choice("include_raw_bodies", ("true", "false")) == "true"
    with db_session() as session:
        document = export_beneficiary(session, _beneficiary(session, beneficiary_id), actor=current_principal().actor,
                                      include_raw_bodies=include_raw)
    return jsonify(document)


@bp.post("/beneficiaries/<beneficiary_id>/erase")
@admin_required
def erase_personal_data(beneficiary_id: str):
    """Erase the beneficiary's personal data on its request; ``{"confirm": true}`` says it is meant."""
    beneficiary_id_of(beneficiary_id)  # a bad id is answered before the body is read
    body = json_object()
    reject_unknown(body, {"confirm"})
    if field(body, "confirm", bool) is not True:
        raise ApiError(422, "confirmation_required", "Erasure cannot be undone: send {\"confirm\": true}.",
                       fields={"confirm": "must be true"})
    with db_session() as session:
        done = erase_beneficiary(session, _beneficiary(session, beneficiary_id), actor=current_principal().actor)
    return jsonify({"beneficiary_id": int(beneficiary_id), "erased": True, **done})


@bp.put("/beneficiaries/<beneficiary_id>/retention-consent")
@admin_required
def set_retention_consent(beneficiary_id: str):
    """Record (or withdraw) the beneficiary's written consent to keep its data past the retention period."""
    body = json_object()
    reject_unknown(body, {"consent"})
    consent = field(body, "consent", bool)
    with db_session() as session:
        beneficiary = _beneficiary(session, beneficiary_id)
        old, beneficiary.retention_consent = beneficiary.retention_consent, consent
        record_audit(session, actor=current_principal().actor, action="beneficiary.retention_consent",
                     tenant_id=beneficiary.tenant_id, target=("beneficiary", beneficiary.id),
                     changes={"retention_consent": {"old": old, "new": consent}} if old != consent else None)
        return jsonify({"beneficiary_id": beneficiary.id, "retention_consent": consent})


def _retention_json(tenant) -> dict:
    default = get_settings().personal_data_retention_days
    own = (tenant.settings or {}).get(TENANT_SETTING)
    return {"retention_days": retention_days(tenant, default), "tenant_retention_days": own,
            "default_retention_days": default}


@bp.get("/privacy/settings")
@admin_required
def get_privacy_settings():
    with db_session() as session:
        return jsonify(_retention_json(resolve_tenant(session)))


@bp.put("/privacy/settings")
@admin_required
def put_privacy_settings():
    """The tenant's own retention period in days, or null for the global default."""
    body = json_object()
    reject_unknown(body, {"retention_days"})
    days = field(body, "retention_days", int, nullable=True, minimum=1, maximum=MAX_RETENTION_DAYS)
    with db_session() as session:
        tenant = resolve_tenant(session)
        settings = dict(tenant.settings or {})
        old = settings.get(TENANT_SETTING)
        if days is None:
            settings.pop(TENANT_SETTING, None)
        else:
            settings[TENANT_SETTING] = days
        tenant.settings = settings
        record_audit(session, actor=current_principal().actor, action="privacy.settings_updated",
                     tenant_id=tenant.id, target=("tenant", tenant.id),
                     changes={TENANT_SETTING: {"old": old, "new": days}} if old != days else None)
        return jsonify(_retention_json(tenant))
