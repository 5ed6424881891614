"""The integration's own tables: Wedof connections, the webhook inbox, sync runs, the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import false as sa_false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bdc.models.base import Base, TimestampMixin
from bdc.models.enums import EventStatus, SyncKind, SyncStatus, SyncTrigger, db_enum
from bdc.models.host import Tenant
from bdc.settings import get_settings
from bdc.types import EncryptedString, utcnow


class WedofConnection(TimestampMixin, Base):
    """One tenant's link to its Wedof organism. Secrets are encrypted at rest and write-only."""

    __tablename__ = "wedof_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="Wedof")
    base_url: Mapped[str] = mapped_column(String(500), default="https://www.wedof.fr/api")
    api_key: Mapped[str | None] = mapped_column(EncryptedString)
    webhook_secret: Mapped[str | None] = mapped_column(EncryptedString)
    # After a rotation the old secret still verifies deliveries until it expires (the grace window),
    # so deliveries Wedof signed before it learnt the new one are not lost.
    previous_webhook_secret: Mapped[str | None] = mapped_column(EncryptedString)
    previous_secret_expires_at: Mapped[datetime | None]
    signature_algorithm: Mapped[str] = mapped_column(String(16), default="sha256")
    organism_siret: Mapped[str | None] = mapped_column(String(14))
    enabled: Mapped[bool] = mapped_column(default=True)
    # The connection configured from the environment answers on /api/webhooks/wedof.
    is_env_default: Mapped[bool] = mapped_column(default=False, index=True)
    rate_limit_per_second: Mapped[float | None]
    # Highest Wedof lastUpdate applied by a completed sync; the next incremental sync starts there.
    sync_cursor: Mapped[datetime | None]
    wedof_webhook_id: Mapped[str | None] = mapped_column(String(100))
    last_sync_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship()

    @property
    def webhook_url(self) -> str:
        """Where Wedof must post this connection's deliveries (``PUBLIC_BASE_URL`` + the receiver's path)."""
        base = f"{get_settings().public_base_url.rstrip('/')}/api/webhooks/wedof"
        return base if self.is_env_default else f"{base}/{self.id}"

    def __repr__(self) -> str:  # never show secrets, even in a debugger or a log line
        return f"<WedofConnection id={self.id} tenant={self.tenant_id} enabled={self.enabled}>"


class WebhookEvent(TimestampMixin, Base):
    """The inbox: every trusted delivery, stored before it is acknowledged."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("connection_id", "delivery_id"),
        Index("ix_webhook_events_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_webhook_events_connection_status", "connection_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("wedof_connections.id", ondelete="CASCADE"))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(120))
    # "wedof" (the folder itself as body) or "envelope" (the original notes' {"type", "data"} shape).
    payload_format: Mapped[str] = mapped_column(String(16), default="wedof")
    headers: Mapped[dict] = mapped_column(default=dict)
    body: Mapped[str | None] = mapped_column(Text)  # purged after the retention period
    folder_external_id: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[EventStatus] = mapped_column(db_enum(EventStatus, "event_status"), default=EventStatus.RECEIVED)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    body_purged_at: Mapped[datetime | None]
    # Accepted on the previous secret during a rotation's grace window.
    signed_with_previous_secret: Mapped[bool] = mapped_column(default=False, server_default=sa_false())

    connection: Mapped[WedofConnection] = relationship()


class SyncRun(Base):
    """One pass of a connection's sync, with counts and live progress an admin can read."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_connection_started", "connection_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("wedof_connections.id", ondelete="CASCADE"))
    kind: Mapped[SyncKind] = mapped_column(db_enum(SyncKind, "sync_kind"), default=SyncKind.ALL)
    trigger: Mapped[SyncTrigger] = mapped_column(db_enum(SyncTrigger, "sync_trigger"), default=SyncTrigger.SCHEDULE)
    full: Mapped[bool] = mapped_column(default=False)
    status: Mapped[SyncStatus] = mapped_column(db_enum(SyncStatus, "sync_status"), default=SyncStatus.QUEUED)
    task_id: Mapped[str | None] = mapped_column(String(64))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    applied: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None]
    cursor_from: Mapped[datetime | None]
    cursor_to: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)

    connection: Mapped[WedofConnection] = relationship()

    @property
    def progress(self) -> int | None:
        """Percent done when Wedof told us the total, else None."""
        if not self.total:
            return None
        return min(100, round(100 * self.fetched / self.total))


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    actor: Mapped[str] = mapped_column(String(200))  # "user:<id>", "system", "worker"
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(100))
    target_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
