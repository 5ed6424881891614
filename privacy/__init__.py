"""Personal data: the beneficiary's export (access), erasure on request, and retention.

``export_beneficiary`` and ``erase_beneficiary`` are what the admin API and the CLI call;
``anonymise`` is the one code path of erasure and retention (:mod:`privacy.erasure`);
``due_for_anonymisation`` finds who retention concerns (:mod:`privacy.retention`). None commits: the
caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bdc.models import Beneficiary
from privacy.erasure import ERASED_NAME, REQUEST, RETENTION, anonymise, forget_event_body
from privacy.export import EXPORT_FORMAT, export_beneficiary
from privacy.retention import TENANT_SETTING, cutoff_for, due_for_anonymisation, retention_days


def erase_beneficiary(session: Session, beneficiary: Beneficiary, *, actor: str) -> dict:
    """Erase ``beneficiary``'s personal data on its request (see :mod:`privacy.erasure`)."""
    return anonymise(session, beneficiary, reason=REQUEST, actor=actor)


__all__ = [
    "ERASED_NAME", "EXPORT_FORMAT", "REQUEST", "RETENTION", "TENANT_SETTING",
    "anonymise", "cutoff_for", "due_for_anonymisation", "erase_beneficiary", "export_beneficiary",
    "forget_event_body", "retention_days",
]
