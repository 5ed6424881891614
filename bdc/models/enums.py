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
