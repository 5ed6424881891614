"""The bilan's evidence (appointments), the lifecycle settings of a tenant, the actions the rules decide,
and the notices staff read.

An :class:`Appointment` is shaped like the BDC host's appointments with attendance, so the host can
write these rows itself. A :class:`LifecycleAction` is a decision recorded before anything is sent:
the exact body, the evidence it rests on, its status (moved only by :mod:`lifecycle.actions`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bdc.models.base import Base, TimestampMixin
from bdc.models.enums import (
    ActionStatus,
    AppointmentPhase,
    AppointmentStatus,
    LifecycleKind,
    LifecycleMode,
    NoticeKind,
    db_enum,
)
from bdc.models.host import Enrollment
from bdc.types import utcnow

# At most one of these per enrollment and kind: re-evaluating never proposes twice.
LIVE_ACTION_STATUSES = (ActionStatus.PROPOSED, ActionStatus.APPROVED, ActionStatus.SENT, ActionStatus.BLOCKED)
_LIVE = "status IN ({})".format(", ".join(f"'{s.value}'" for s in LIVE_ACTION_STATUSES))


class Appointment(TimestampMixin, Base):
    """One bilan session of a beneficiary, planned and then attended (or missed, or cancelled)."""

    __tablename__ = "appointments"
    __table_args__ = (Index("ix_appointments_enrollment_starts", "enrollment_id", "starts_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    phase: Mapped[AppointmentPhase] = mapped_column(db_enum(AppointmentPhase, "appointment_phase"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    status: Mapped[AppointmentStatus] = mapped_column(
        db_enum(AppointmentStatus, "appointment_status"), default=AppointmentStatus.SCHEDULED
    )
    attended_minutes: Mapped[int | None] = mapped_column(Integer)
    trainer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    notes: Mapped[str | None] = mapped_column(Text)

    enrollment: Mapped[Enrollment] = relationship()


class LifecycleSettings(TimestampMixin, Base):
    """How a tenant wants the lifecycle declared. Reason codes are the organism's own (Wedof's
    ``/registrationFoldersReasons``): chosen by an admin, never guessed."""

    __tablename__ = "lifecycle_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), unique=True)
    entry_mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "entry_mode"),
                                                      default=LifecycleMode.APPROVE)
    progress_mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "progress_mode"),
                                                         default=LifecycleMode.AUTO)
    end_mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "end_mode"),
                                                    default=LifecycleMode.APPROVE)
    abandon_mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "abandon_mode"),
                                                        default=LifecycleMode.APPROVE)
    cancel_mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "cancel_mode"),
                                                       default=LifecycleMode.APPROVE)
    normal_end_code: Mapped[str | None] = mapped_column(String(64))  # type=terminated
    abandon_code: Mapped[str | None] = mapped_column(String(64))  # type=terminated
    cancel_code: Mapped[str | None] = mapped_column(String(64))  # type=canceled
    inactivity_days: Mapped[int] = mapped_column(Integer, default=30)
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    trace_activities: Mapped[bool] = mapped_column(default=False)  # a Wedof activity per declaration

    @classmethod
    def defaults(cls, tenant_id: int) -> LifecycleSettings:
        """Unsaved settings holding the column defaults (what a tenant gets when it first saves)."""
        return cls(tenant_id=tenant_id, **{column.key: column.default.arg for column in cls.__table__.columns
                                           if column.default is not None and not callable(column.default.arg)})


class LifecycleAction(TimestampMixin, Base):
    """One decision of the rules: what Wedof should be told, with which body, resting on which evidence."""

    __tablename__ = "lifecycle_actions"
    __table_args__ = (
        Index("uq_lifecycle_actions_live", "enrollment_id", "kind", unique=True,
              sqlite_where=text(_LIVE), postgresql_where=text(_LIVE)),
        Index("ix_lifecycle_actions_tenant_status", "tenant_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    enrollment_id: Mapped[int] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"), index=True)
    kind: Mapped[LifecycleKind] = mapped_column(db_enum(LifecycleKind, "lifecycle_kind"))
    status: Mapped[ActionStatus] = mapped_column(db_enum(ActionStatus, "action_status"))
    mode: Mapped[LifecycleMode] = mapped_column(db_enum(LifecycleMode, "action_mode"))
    body: Mapped[dict | None]
    evidence: Mapped[dict] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)  # why blocked, refused, failed or cancelled
    late: Mapped[bool] = mapped_column(default=False)  # past the 3 working days Wedof allows
    wedof_answer: Mapped[dict | None]
    task_id: Mapped[str | None] = mapped_column(String(64))
    decided_by: Mapped[str | None] = mapped_column(String(200))  # who approved or rejected
    decided_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]  # when an approved action's task was last queued: queued once, not per tick
    sent_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    enrollment: Mapped[Enrollment] = relationship()


class Notice(Base):
    """Something a tenant's staff must see (a refused declaration, a late entry): shown by the page."""

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[NoticeKind] = mapped_column(db_enum(NoticeKind, "notice_kind"))
    message: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str | None] = mapped_column(String(100))
    target_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
