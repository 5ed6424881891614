"""Retention of personal data: daily, each tenant's beneficiaries whose bilans all ended more than its
retention period ago (and who gave no consent to keep their data) are anonymised, one beneficiary per
transaction, by the same code as an erasure on request (:mod:`privacy`). A periodic task: no retry,
the next day's run picks up whatever this one left.
"""

from __future__ import annotations

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Beneficiary, Tenant
from bdc.settings import get_settings
from bdc.types import utcnow
from privacy import RETENTION, anonymise, cutoff_for, due_for_anonymisation
from worker.celery_app import app
from worker.policy import BadTaskArgument, PolicyTask, as_id, log, retry_on_conflict
from worker.task_names import APPLY_RETENTION

PAGE = 100


def _anonymise_one(beneficiary_id: int) -> bool:
    with session_scope() as session:
        beneficiary = session.get(Beneficiary, beneficiary_id)
        if beneficiary is None or beneficiary.anonymised_at is not None or beneficiary.retention_consent:
            return False  # gone, or changed since it was found due
        anonymise(session, beneficiary, reason=RETENTION, actor="worker")
        return True


def apply_tenant_retention(tenant_id: int, default_days: int, now) -> int:
    """Anonymise the tenant's due beneficiaries; how many were."""
    with session_scope() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise BadTaskArgument(f"unknown tenant id {tenant_id}")
        cutoff = cutoff_for(tenant, default_days, now)
    done, after_id = 0, 0
    while True:
        with session_scope() as session:
            due = due_for_anonymisation(session, tenant_id, cutoff, PAGE, after_id)
        for beneficiary_id in due:
            done += retry_on_conflict(_anonymise_one, f"retention of beneficiary {beneficiary_id}", beneficiary_id)
        if len(due) < PAGE:
            return done
        after_id = due[-1]


@app.task(base=PolicyTask, bind=True, name=APPLY_RETENTION, max_retries=0)
def apply_personal_data_retention(self, tenant_id=None):
    """Apply the retention period of one tenant (``tenant_id``), or of every tenant."""
    default_days, now = get_settings().personal_data_retention_days, utcnow()
    if tenant_id is not None:
        tenant_ids = [as_id(tenant_id, "tenant_id")]
    else:
        with session_scope() as session:
            tenant_ids = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
    anonymised = {}
    for one in tenant_ids:
        count = apply_tenant_retention(one, default_days, now)
        if count:
            anonymised[str(one)] = count
            log.info("retention: %d beneficiaries of tenant %s anonymised", count, one)
    return {"status": "ok", "tenants": len(tenant_ids), "anonymised": anonymised}
