"""Every status and role the data layer knows, as enums the database checks (never free text)."""

from __future__ import annotations

import enum

from sqlalchemy import Enum as SAEnum


class UserRole(enum.StrEnum):
    SUPER_ADMIN = "super_admin"
    TENANT_ADMIN = "tenant_admin"
    TRAINER = "trainer"
    STUDENT = "student"


class BeneficiaryStatus(enum.StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    COMPLETED = "completed"
    ARCHIVED = "archived"


class ProgramStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    ARCHIVED = "archived"


class EnrollmentStatus(enum.StrEnum):
    ENROLLED = "enrolled"
    ACTIVE = "active"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class EvaluationStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


class DocumentType(enum.StrEnum):
    BILAN_REPORT = "bilan_report"
    ATTESTATION = "attestation"
    INVOICE = "invoice"
    OTHER = "other"


class EventStatus(enum.StrEnum):
    RECEIVED = "received"
    QUEUED = "queued"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    IGNORED = "ignored"


class SyncKind(enum.StrEnum):
    ALL = "all"
    STAGIAIRES = "stagiaires"
    FORMATIONS = "formations"


class SyncTrigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"


class SyncStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class AppointmentPhase(enum.StrEnum):
    """The phases of a bilan de compétences (Code du travail), and the follow-up interview."""

    PRELIMINAIRE = "preliminaire"
    INVESTIGATION = "investigation"
    CONCLUSION = "conclusion"
    SUIVI = "suivi"


class AppointmentStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    ATTENDED = "attended"
    MISSED = "missed"
    CANCELLED = "cancelled"


class LifecycleKind(enum.StrEnum):
    """What the lifecycle rules may tell Wedof about a folder."""

    ENTRY = "entry"  # inTraining {date}
    PROGRESS = "progress"  # completionRate
    END = "end"  # serviceDone with the normal-end code
    ABANDON = "abandon"  # serviceDone with the abandon code
    CANCEL = "cancel"  # cancel {code, description}, before entry


class LifecycleMode(enum.StrEnum):
    OFF = "off"  # the rule is not evaluated
    DRY_RUN = "dry_run"  # proposals are shown, never sent
    APPROVE = "approve"  # proposals wait for a tenant admin
    AUTO = "auto"  # decisions are sent


class ActionStatus(enum.StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    SENT = "sent"  # the call is being made (or its answer was lost): read the folder before anything else
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    BLOCKED = "blocked"  # a setting is missing; the reason says which
    CANCELLED = "cancelled"


class NoticeKind(enum.StrEnum):
    ACTION_REFUSED = "action_refused"
    ACTION_FAILED = "action_failed"
    LATE_ENTRY = "late_entry"
    BILLING_FAILED = "billing_failed"
    KEY_REVOKED = "key_revoked"  # Wedof answers 401: the API key was revoked or changed
    API_CHANGED = "api_changed"  # Wedof sends keys the mapping does not know, or stopped sending some
    RECONCILIATION_DRIFT = "reconciliation_drift"  # Wedof's counts and ours still differ after a sync


class ProblemKind(enum.StrEnum):
    """What staff notices are grouped by; one open problem per tenant, kind and key."""

    EVENTS_FAILED = "events_failed"
    INBOX_STUCK = "inbox_stuck"
    SYNC_STALE = "sync_stale"
    SYNC_FAILED = "sync_failed"
    KEY_REVOKED = "key_revoked"
    WEDOF_UNREACHABLE = "wedof_unreachable"
    LATE_DECLARATION = "late_declaration"
    ACTION_FAILED = "action_failed"
    BILLING_FAILED = "billing_failed"
    API_CHANGED = "api_changed"
    RECONCILIATION_DRIFT = "reconciliation_drift"


class ProblemStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ReportStatus(enum.StrEnum):
    OK = "ok"  # Wedof's counts and ours agree
    DRIFT = "drift"
    FAILED = "failed"  # Wedof could not be read; nothing compared


class BillingMode(enum.StrEnum):
    OFF = "off"  # nothing is billed from here
    DRY_RUN = "dry_run"  # what would be billed is shown; no number is reserved
    APPROVE = "approve"  # a tenant admin releases each invoice (or a batch)
    AUTO = "auto"  # a folder turning toBill is invoiced and sent to Wedof


class InvoiceStatus(enum.StrEnum):
    RESERVED = "reserved"  # the number is committed with the row; nothing sent yet
    SENT = "sent"  # POST /billing is being made (or its answer was lost): read the folder first
    BILLED = "billed"  # Wedof holds our number
    PAID = "paid"
    FAILED = "failed"  # refused by Wedof, or out of retries: waits for an admin; the number stays
    CANCELLED = "cancelled"  # never reached Wedof; the number stays used, never reused


def db_enum(enum_cls: type[enum.Enum], name: str) -> SAEnum:
    """A VARCHAR + CHECK constraint on every backend, storing the enum's value."""
    return SAEnum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=32,
        values_callable=lambda cls: [member.value for member in cls],
    )
