"""What the data layer remembers about personal data it no longer holds.

An :class:`ErasedAttendee` is the tombstone of one Wedof attendee whose personal data was erased (on
request, or by retention): the mapping reads it so later webhooks and syncs leave the person's fields
empty instead of writing them back, while the folders' states, billing and progress keep flowing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bdc.models.base import Base
from bdc.types import utcnow


class ErasedAttendee(Base):
    __tablename__ = "erased_attendees"
    __table_args__ = (UniqueConstraint("tenant_id", "attendee_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    attendee_id: Mapped[str] = mapped_column(String(64))  # Beneficiary.external_id, Wedof's attendee.id
    reason: Mapped[str] = mapped_column(String(32))  # "request" or "retention"
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
