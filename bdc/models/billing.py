"""Invoices: one number per folder, ever, reserved and committed before Wedof hears it.

An :class:`Invoice` row is the intent to bill (the number, the amounts, who released it), written
before ``POST /billing``; its status is moved only by :mod:`billing.invoices`. The
:class:`InvoiceSequence` hands out numbers gaplessly: the counter is incremented in the same
transaction as the invoice row, so a rolled-back reservation leaves no hole and no number is reused.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bdc.models.base import Base, TimestampMixin
from bdc.models.enums import BillingMode, InvoiceStatus, db_enum
from bdc.models.host import Enrollment

# Every invoice but a cancelled one holds its folder: one live invoice per folder.
_LIVE = f"status <> '{InvoiceStatus.CANCELLED.value}'"
DEFAULT_NUMBER_FORMAT = "F-{year}-{seq:06d}"
# Printed on the invoice when the training carries no VAT (organisms declared under art. 261-4-4° a).
DEFAULT_VAT_MENTION = "TVA non applicable, art. 261-4-4° a du CGI"


def money() -> Mapped[Decimal | None]:
    return mapped_column(Numeric(12, 2, asdecimal=True))


class BillingSettings(TimestampMixin, Base):
    """How a tenant bills its folders. No row means billing is off."""

    __tablename__ = "billing_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), unique=True)
    mode: Mapped[BillingMode] = mapped_column(db_enum(BillingMode, "billing_mode"), default=BillingMode.APPROVE)
    number_format: Mapped[str] = mapped_column(String(100), default=DEFAULT_NUMBER_FORMAT)
    vat_mention: Mapped[str | None] = mapped_column(String(300), default=DEFAULT_VAT_MENTION)
    seller_address: Mapped[str | None] = mapped_column(String(500))  # printed under the organism's name

    @classmethod
    def defaults(cls, tenant_id: int) -> BillingSettings:
        return cls(tenant_id=tenant_id, mode=BillingMode.APPROVE, number_format=DEFAULT_NUMBER_FORMAT,
                   vat_mention=DEFAULT_VAT_MENTION)


class InvoiceSequence(Base):
    """The last number handed out, per tenant and scope (the year, when the format holds ``{year}``)."""

    __tablename__ = "invoice_sequences"
    __table_args__ = (UniqueConstraint("tenant_id", "scope"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))
    last_value: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(TimestampMixin, Base):
    """One invoice of one folder: its number, its amounts, and what Wedof answered."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        UniqueConstraint("tenant_id", "scope", "sequence_value"),
        Index("uq_invoices_live_enrollment", "enrollment_id", unique=True,
              sqlite_where=text(_LIVE), postgresql_where=text(_LIVE)),
        Index("ix_invoices_tenant_status", "tenant_id", "status"),
        Index("ix_invoices_tenant_issued", "tenant_id", "issue_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # SET NULL: an invoice outlives its folder's row (accounting keeps invoices for ten years).
    enrollment_id: Mapped[int | None] = mapped_column(ForeignKey("enrollments.id", ondelete="SET NULL"), index=True)
    folder_number: Mapped[str] = mapped_column(String(64))
    number: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))
    sequence_value: Mapped[int] = mapped_column(Integer)
    issue_date: Mapped[date]
    status: Mapped[InvoiceStatus] = mapped_column(db_enum(InvoiceStatus, "invoice_status"))
    mode: Mapped[BillingMode] = mapped_column(db_enum(BillingMode, "invoice_mode"))
    amount_excl: Mapped[Decimal | None] = money()
    vat_rate: Mapped[Decimal | None] = mapped_column(Numeric(5, 2, asdecimal=True))
    vat_amount: Mapped[Decimal | None] = money()
    amount_incl: Mapped[Decimal | None] = money()
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    # What the PDF prints, frozen when the number is reserved: a later rename never rewrites an invoice.
    document: Mapped[dict] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text)  # why failed or cancelled
    violations: Mapped[list | None] = mapped_column(JSON)
    refused: Mapped[bool] = mapped_column(default=False)  # failed because Wedof refused the number (read again)
    wedof_answer: Mapped[dict | None]
    released_by: Mapped[str | None] = mapped_column(String(200))  # who let it go to Wedof (approve mode)
    task_id: Mapped[str | None] = mapped_column(String(64))
    queued_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    billed_at: Mapped[datetime | None]
    paid_on: Mapped[date | None]
    paid_amount: Mapped[Decimal | None] = money()
    payment_checked_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)

    enrollment: Mapped[Enrollment | None] = relationship()
