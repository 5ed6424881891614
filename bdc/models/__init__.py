"""All models, importable from one place: ``from bdc.models import Tenant, WebhookEvent``."""

from bdc.models.base import Base
from bdc.models.enums import (
    BeneficiaryStatus,
    DocumentType,
    EnrollmentStatus,
    EvaluationStatus,
    EventStatus,
    ProgramStatus,
    SyncKind,
    SyncStatus,
    SyncTrigger,
    UserRole,
)
from bdc.models.host import Beneficiary, Document, Enrollment, Evaluation, Program, Tenant, User
from bdc.models.integration import AuditLog, SyncRun, WebhookEvent, WedofConnection

__all__ = [
    "Base", "Tenant", "User", "Beneficiary", "Program", "Enrollment", "Evaluation", "Document",
    "WedofConnection", "WebhookEvent", "SyncRun", "AuditLog",
    "UserRole", "BeneficiaryStatus", "ProgramStatus", "EnrollmentStatus", "EvaluationStatus", "DocumentType",
    "EventStatus", "SyncKind", "SyncTrigger", "SyncStatus",
]
