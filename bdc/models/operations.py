"""The operations tables: staff notification settings, the problems notices are grouped by, the
periodic connectivity checks, the reconciliation reports and the Wedof API drift seen per connection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bdc.models.base import Base, TimestampMixin
from bdc.models.enums import ProblemKind, ProblemStatus, ReportStatus, db_enum
from bdc.models.integration import WedofConnection
from bdc.types import EncryptedString, utcnow


class NotificationSettings(TimestampMixin, Base):
    """Who among a tenant's staff hears about problems, by email and by an optional chat webhook."""

    __tablename__ = "notification_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), unique=True)
    email_enabled: Mapped[bool] = mapped_column(default=True)
    recipients: Mapped[list] = mapped_column(JSON, default=list)  # email addresses
    # A Slack/Mattermost/Teams-style incoming webhook: it embeds a secret, so it is encrypted and write-only.
    chat_webhook_url: Mapped[str | None] = mapped_column(EncryptedString)
    reminder_after_seconds: Mapped[int | None]  # None: the BDC_NOTICE_REMINDER_AFTER default


class Problem(Base):
    """One ongoing problem of a tenant (failed events, a revoked key, ...): the unit notices are sent for.

    Opened once, reminded while it lasts, resolved when its condition clears. At most one open problem
    per tenant, kind and key (a partial unique index), so a burst of failures is one problem, one message.
    """

    __tablename__ = "problems"
    __table_args__ = (
        Index("uq_problems_open", "tenant_id", "kind", "key", unique=True,
              postgresql_where=text("status = 'open'"), sqlite_where=text("status = 'open'")),
        Index("ix_problems_status_kind", "status", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[ProblemKind] = mapped_column(db_enum(ProblemKind, "problem_kind"))
    key: Mapped[str] = mapped_column(String(200), default="")  # e.g. the connection id, "" for tenant-wide
    status: Mapped[ProblemStatus] = mapped_column(db_enum(ProblemStatus, "problem_status"), default=ProblemStatus.OPEN)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict] = mapped_column(default=dict)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    notified_at: Mapped[datetime | None]  # the first message went out
    reminded_at: Mapped[datetime | None]
    reminders: Mapped[int] = mapped_column(Integer, default=0)
    resolved_at: Mapped[datetime | None]
    resolved_notified_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)  # the last delivery failure of a message


class ConnectivityCheck(Base):
    """One ``GET users/me`` made by the periodic connectivity check, with what it found."""

    __tablename__ = "connectivity_checks"
    __table_args__ = (Index("ix_connectivity_checks_connection_checked", "connection_id", "checked_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("wedof_connections.id", ondelete="CASCADE"))
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool]
    status_code: Mapped[int | None]  # Wedof's HTTP status; None when it could not be reached
    latency_ms: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(String(500))

    connection: Mapped[WedofConnection] = relationship()


class ReconciliationReport(Base):
    """What Wedof lists for a connection against what the data layer holds, from listing counts only."""

    __tablename__ = "reconciliation_reports"
    __table_args__ = (Index("ix_reconciliation_reports_connection_created", "connection_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("wedof_connections.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[ReportStatus] = mapped_column(db_enum(ReportStatus, "report_status"))
    wedof_states: Mapped[dict] = mapped_column(default=dict)  # {state: count}
    local_states: Mapped[dict] = mapped_column(default=dict)
    wedof_billing: Mapped[dict] = mapped_column(default=dict)  # {billingState: count}
    local_billing: Mapped[dict] = mapped_column(default=dict)
    wedof_newest_update: Mapped[datetime | None]
    local_newest_update: Mapped[datetime | None]
    drift: Mapped[int] = mapped_column(Integer, default=0)  # folders counted differently, summed over states
    details: Mapped[dict] = mapped_column(default=dict)
    sync_run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)

    connection: Mapped[WedofConnection] = relationship()


class ApiDrift(Base):
    """The set of keys Wedof sends that the mapping does not know, and expected keys that are missing.

    One row per change of that set for a connection (the newest row is the current set), so the page
    can show when Wedof's API changed and how.
    """

    __tablename__ = "api_drift"
    __table_args__ = (Index("ix_api_drift_connection_observed", "connection_id", "observed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("wedof_connections.id", ondelete="CASCADE"))
    observed_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    unknown_keys: Mapped[list] = mapped_column(JSON, default=list)  # dotted paths, e.g. "attendee.newField"
    missing_keys: Mapped[list] = mapped_column(JSON, default=list)
    samples: Mapped[int] = mapped_column(Integer, default=0)  # folders read with this set

    connection: Mapped[WedofConnection] = relationship()
