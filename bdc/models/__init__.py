"""All models, importable from one place: ``from bdc.models import Tenant, WebhookEvent``."""

from bdc.models.base import Base
from bdc.models.billing import BillingSettings, Invoice, InvoiceSequence
from bdc.models.enums import (
    ActionStatus,
    AppointmentPhase,
    AppointmentStatus,
    BeneficiaryStatus,
    BillingMode,
    DocumentType,
    EnrollmentStatus,
    EvaluationStatus,
    EventStatus,
    InvoiceStatus,
    LifecycleKind,
    LifecycleMode,
    NoticeKind,
    ProblemKind,
    ProblemStatus,
    ProgramStatus,
    ReportStatus,
    SyncKind,
    SyncStatus,
    SyncTrigger,
    UserRole,
)
from bdc.models.host import Beneficiary, Document, Enrollment, Evaluation, Program, Tenant, User
from bdc.models.integration import AuditLog, SyncRun, WebhookEvent, WedofConnection
from bdc.models.lifecycle import (
    LIVE_ACTION_STATUSES,
    Appointment,
    LifecycleAction,
    LifecycleSettings,
    Notice,
)
from bdc.models.operations import (
    ApiDrift,
    ConnectivityCheck,
    NotificationSettings,
    Problem,
    ReconciliationReport,
)
from bdc.models.privacy import ErasedAttendee

__all__ = [
    "Base", "Tenant", "User", "Beneficiary", "Program", "Enrollment", "Evaluation", "Document",
    "WedofConnection", "WebhookEvent", "SyncRun", "AuditLog",
    "UserRole", "BeneficiaryStatus", "ProgramStatus", "EnrollmentStatus", "EvaluationStatus", "DocumentType",
    "EventStatus", "SyncKind", "SyncTrigger", "SyncStatus",
    "Appointment", "LifecycleSettings", "LifecycleAction", "Notice", "LIVE_ACTION_STATUSES",
    "BillingSettings", "Invoice", "InvoiceSequence", "BillingMode", "InvoiceStatus",
    "AppointmentPhase", "AppointmentStatus", "LifecycleKind", "LifecycleMode", "ActionStatus", "NoticeKind",
    "NotificationSettings", "Problem", "ConnectivityCheck", "ReconciliationReport", "ApiDrift",
    "ProblemKind", "ProblemStatus", "ReportStatus",
    "ErasedAttendee",
]
