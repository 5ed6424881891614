"""The BDC host system's own entities, shaped so the data means the same thing there.

Every row belongs to a tenant; ``external_id`` carries the Wedof identifier and is unique per
tenant, which is what makes every upsert from Wedof idempotent.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bdc.models.base import Base, TimestampMixin
from bdc.models.enums import (
    BeneficiaryStatus,
    DocumentType,
    EnrollmentStatus,
    EvaluationStatus,
    ProgramStatus,
    UserRole,
    db_enum,
)

_CHILD = "all, delete-orphan"


def _tenant_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


def _external_id() -> Mapped[str | None]:
    return mapped_column(String(64), index=True)


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    settings: Mapped[dict] = mapped_column(default=dict)

    users: Mapped[list[User]] = relationship(back_populates="tenant", cascade=_CHILD, passive_deletes=True)
    beneficiaries: Mapped[list[Beneficiary]] = relationship(back_populates="tenant", cascade=_CHILD, passive_deletes=True)
    programs: Mapped[list[Program]] = relationship(back_populates="tenant", cascade=_CHILD, passive_deletes=True)


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Super admins belong to no tenant; everyone else to exactly one.
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # NULL allowed: Wedof attendees sometimes have no email, and NULLs never collide on a unique index.
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[UserRole] = mapped_column(db_enum(UserRole, "user_role"))
    is_active: Mapped[bool] = mapped_column(default=True)

    tenant: Mapped[Tenant | None] = relationship(back_populates="users")
    beneficiary: Mapped[Beneficiary | None] = relationship(
        back_populates="user", foreign_keys="Beneficiary.user_id", cascade=_CHILD, passive_deletes=True
    )


class Beneficiary(TimestampMixin, Base):
    """The profile of a student user; for Wedof, one attendee (``external_id`` = attendee id)."""

    __tablename__ = "beneficiaries"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    trainer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    phone: Mapped[str | None] = mapped_column(String(50))
    birth_date: Mapped[date | None]
    address: Mapped[str | None] = mapped_column(String(500))
    city: Mapped[str | None] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[BeneficiaryStatus] = mapped_column(
        db_enum(BeneficiaryStatus, "beneficiary_status"), default=BeneficiaryStatus.ACTIVE
    )
    custom_fields: Mapped[dict] = mapped_column(default=dict)
    external_id: Mapped[str | None] = _external_id()
    # Written consent to keep the personal data past the retention period (e.g. for the follow-up).
    retention_consent: Mapped[bool] = mapped_column(default=False, server_default=sa_false())
    # When the personal fields were emptied (erasure or retention); retention skips these.
    anonymised_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship(back_populates="beneficiaries")
    user: Mapped[User] = relationship(back_populates="beneficiary", foreign_keys=[user_id])
    trainer: Mapped[User | None] = relationship(foreign_keys=[trainer_id])
    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="beneficiary", cascade=_CHILD, passive_deletes=True)
    evaluations: Mapped[list[Evaluation]] = relationship(back_populates="beneficiary", cascade=_CHILD, passive_deletes=True)
    documents: Mapped[list[Document]] = relationship(back_populates="beneficiary", cascade=_CHILD, passive_deletes=True)


class Program(TimestampMixin, Base):
    """A training offer; for Wedof, one training action (``external_id`` = its externalId)."""

    __tablename__ = "programs"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    duration_hours: Mapped[float | None] = mapped_column(Float)
    start_date: Mapped[date | None]
    end_date: Mapped[date | None]
    max_participants: Mapped[int | None]
    status: Mapped[ProgramStatus] = mapped_column(db_enum(ProgramStatus, "program_status"), default=ProgramStatus.ACTIVE)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)

    tenant: Mapped[Tenant] = relationship(back_populates="programs")
    enrollments: Mapped[list[Enrollment]] = relationship(back_populates="program", cascade=_CHILD, passive_deletes=True)


class Enrollment(TimestampMixin, Base):
    """A beneficiary in a program; for Wedof, one registration folder (``external_id`` = folder number)."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        CheckConstraint("progress >= 0 AND progress <= 100", name="progress_range"),
        Index("ix_enrollments_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="CASCADE"), index=True)
    status: Mapped[EnrollmentStatus] = mapped_column(
        db_enum(EnrollmentStatus, "enrollment_status"), default=EnrollmentStatus.ENROLLED
    )
    progress: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str | None] = _external_id()
    # Wedof's own view, kept verbatim: the state is the truth, lastUpdate guards against stale writes.
    wedof_state: Mapped[str | None] = mapped_column(String(64))
    wedof_billing_state: Mapped[str | None] = mapped_column(String(32))
    wedof_last_update: Mapped[datetime | None]
    enrolled_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # The folder's own session and duration (trainingActionInfo), and the date Wedof recorded its entry:
    # what the lifecycle rules check a declaration against.
    session_start_date: Mapped[date | None]
    session_end_date: Mapped[date | None]
    indicative_duration_hours: Mapped[float | None] = mapped_column(Float)
    in_training_at: Mapped[datetime | None]
    # BDC evidence kept on the enrollment: the day the document de synthèse was handed over, and the day
    # a withdrawal was recorded (the beneficiary stopped), in the tenant's calendar.
    synthesis_delivered_on: Mapped[date | None]
    withdrawn_on: Mapped[date | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(String(500))
    # What billing needs from the folder: its price (trainingActionInfo totals and VAT split, then
    # the amount* fields Wedof fills at billing), kept as Wedof's numbers, and the bill number it holds.
    wedof_amounts: Mapped[dict | None]
    wedof_bill_number: Mapped[str | None] = mapped_column(String(100))

    beneficiary: Mapped[Beneficiary] = relationship(back_populates="enrollments")
    program: Mapped[Program] = relationship(back_populates="enrollments")


class Evaluation(TimestampMixin, Base):
    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[EvaluationStatus] = mapped_column(
        db_enum(EvaluationStatus, "evaluation_status"), default=EvaluationStatus.PENDING
    )
    external_id: Mapped[str | None] = _external_id()

    beneficiary: Mapped[Beneficiary] = relationship(back_populates="evaluations")


class Document(TimestampMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = _tenant_fk()
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True)
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    type: Mapped[DocumentType] = mapped_column(db_enum(DocumentType, "document_type"), default=DocumentType.OTHER)
    url: Mapped[str | None] = mapped_column(String(2000))
    # "metadata" is reserved by SQLAlchemy's declarative base; the column keeps the BDC name.
    meta: Mapped[dict] = mapped_column("metadata", default=dict)
    external_id: Mapped[str | None] = _external_id()

    beneficiary: Mapped[Beneficiary] = relationship(back_populates="documents")
