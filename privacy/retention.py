"""Retention: a beneficiary's personal data is anonymised once all its bilans ended long enough ago.

The period is the tenant's ``settings["personal_data_retention_days"]``, else the global
``PERSONAL_DATA_RETENTION_DAYS`` (365: the synthesis rule, at most one year after the bilan). A
beneficiary whose ``retention_consent`` is set (written consent, e.g. for the follow-up interview) is
kept. Ended means every enrollment is completed or withdrawn; it ended at its ``completed_at``, else at
Wedof's last change of the folder (a withdrawal has no end date of its own), else at our last write.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from bdc.models import Beneficiary, Enrollment, EnrollmentStatus, Tenant

TENANT_SETTING = "personal_data_retention_days"
MAX_RETENTION_DAYS = 100 * 365
ENDED = (EnrollmentStatus.COMPLETED, EnrollmentStatus.WITHDRAWN)


def retention_days(tenant: Tenant, default_days: int) -> int:
    """The tenant's period when it set a usable one, else the global default."""
    value = (tenant.settings or {}).get(TENANT_SETTING)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_RETENTION_DAYS:
        return value
    return default_days


def due_for_anonymisation(session: Session, tenant_id: int, cutoff: datetime, limit: int,
                          after_id: int = 0) -> list[int]:
    """Ids of the tenant's beneficiaries (above ``after_id``, at most ``limit``) whose every bilan ended
    before ``cutoff``, not yet anonymised, without consent to keep their data."""
    ended_at = func.coalesce(Enrollment.completed_at, Enrollment.wedof_last_update, Enrollment.updated_at)
    of_beneficiary = Enrollment.beneficiary_id == Beneficiary.id
    still_running_or_recent = or_(Enrollment.status.not_in(ENDED), ended_at >= cutoff)
    return list(session.scalars(
        select(Beneficiary.id)
        .where(Beneficiary.tenant_id == tenant_id, Beneficiary.anonymised_at.is_(None),
               Beneficiary.retention_consent.is_(False), Beneficiary.id > after_id,
               exists().where(of_beneficiary),
               not_(exists().where(and_(of_beneficiary, still_running_or_recent))))
        .order_by(Beneficiary.id).limit(limit)))


def cutoff_for(tenant: Tenant, default_days: int, now: datetime) -> datetime:
    return now - timedelta(days=retention_days(tenant, default_days))
