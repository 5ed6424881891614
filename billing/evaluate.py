"""Which folders are due an invoice, and bringing invoices in line with what Wedof shows.

Level-triggered from the data: a folder whose ``billingState`` is ``toBill``, in a service-done
state, with no live invoice is *due*. Whatever brought it there (the ``toBill`` webhook, a sync, the
beat), evaluating again gives the same answer, and the unique live index makes a second reservation
fail instead of billing twice. Per mode:

- ``auto``: a due folder gets its number now (:func:`billing.invoices.reserve`) and is handed to the
  sending task;
- ``approve``: due folders are listed; an admin releases them (:func:`release`), which reserves;
- ``dry_run``: due folders are listed with the number they would take; nothing is reserved;
- ``off``: nothing.

Whatever the mode, invoices already reserved or sent whose task is not on its way are handed back
(a broker outage, a task lost with its worker), and billed ones whose folder Wedof shows paid are
marked paid. A page costs a fixed number of queries, whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from bdc.models import (
    Beneficiary,
    BillingMode,
    BillingSettings,
    Enrollment,
    Invoice,
    InvoiceStatus,
    LifecycleSettings,
    Tenant,
    WedofConnection,
)
from billing import invoices
from billing.amounts import Amounts, NoPrice, invoice_amounts

PAGE_SIZE = 500
SERVICE_DONE_STATES = ("serviceDoneDeclared", "serviceDoneValidated")
DEFAULT_TIME_ZONE = "Europe/Paris"


@dataclass
class Due:
    """A folder to invoice, with its amounts, or the reason it cannot be invoiced yet."""

    enrollment: Enrollment
    amounts: Amounts | None
    problem: str | None


@dataclass
class Outcome:
    last_id: int | None = None
    due: int = 0
    reserved: list[int] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # folder number -> why it is not invoiced

    @property
    def to_send(self) -> list[int]:
        return list(self.reserved)  # what the page reserved goes to Wedof


def settings_of(session: Session, tenant_id: int) -> BillingSettings | None:
    return session.scalars(select(BillingSettings).where(BillingSettings.tenant_id == tenant_id)).first()


def mode_of(settings: BillingSettings | None) -> BillingMode:
    return settings.mode if settings is not None else BillingMode.OFF


def tenant_today(session: Session, tenant_id: int) -> date:
    """Today in the tenant's calendar (the lifecycle settings' time zone, Paris by default)."""
    zone = session.scalar(select(LifecycleSettings.time_zone).where(LifecycleSettings.tenant_id == tenant_id))
    return datetime.now(ZoneInfo(zone or DEFAULT_TIME_ZONE)).date()


def _due_query(tenant_id: int):
    live = select(Invoice.id).where(Invoice.enrollment_id == Enrollment.id,
                                    Invoice.status.in_(sorted(invoices.LIVE))).exists()
    return (select(Enrollment)
            .where(Enrollment.tenant_id == tenant_id, Enrollment.external_id.is_not(None),
                   Enrollment.wedof_billing_state == "toBill", Enrollment.wedof_state.in_(SERVICE_DONE_STATES),
                   ~live)
            .order_by(Enrollment.id))


def due(session: Session, tenant_id: int, *, after_id: int = 0, enrollment_ids: list[int] | None = None,
        limit: int = PAGE_SIZE, to_invoice: bool = False) -> list[Due]:
    """A page of folders due an invoice (by id after ``after_id``, or among the given ones).

    ``to_invoice``: their beneficiaries and programs are loaded too (two queries for the page), for
    the invoices' documents; lists and counts do without.
    """
    query = _due_query(tenant_id)
    if to_invoice:
        query = query.options(selectinload(Enrollment.beneficiary).selectinload(Beneficiary.user),
                              selectinload(Enrollment.program))
    query = query.where(Enrollment.id.in_(enrollment_ids)) if enrollment_ids is not None else \
        query.where(Enrollment.id > after_id).limit(limit)
    found = []
    for enrollment in session.scalars(query):
        try:
            found.append(Due(enrollment, invoice_amounts(enrollment.wedof_amounts), None))
        except NoPrice as exc:
            found.append(Due(enrollment, None, str(exc)))
    return found


def seller_of(session: Session, settings: BillingSettings) -> dict:
    """The seller block of the tenant's invoices: its name, its organism's SIRET, the address from the settings."""
    tenant = session.get(Tenant, settings.tenant_id)
    siret = session.scalar(select(WedofConnection.organism_siret).where(WedofConnection.tenant_id == tenant.id))
    return {"seller_name": tenant.name, "seller_siret": siret, "seller_address": settings.seller_address,
            "vat_mention": settings.vat_mention}


def document_of(enrollment: Enrollment, seller: dict) -> dict:
    """What the invoice prints, frozen at reservation (seller, beneficiary, training)."""
    beneficiary = enrollment.beneficiary
    user = beneficiary.user
    name = " ".join(part for part in (user.first_name, user.last_name) if part) or (user.email or "")
    address = "\n".join(part for part in (beneficiary.address,
                                          " ".join(p for p in (beneficiary.postal_code, beneficiary.city) if p))
                        if part)
    program = enrollment.program
    return {**seller, "beneficiary_name": name, "beneficiary_address": address or None,
            "training_title": program.name if program else "",
            "session_start": enrollment.session_start_date.isoformat() if enrollment.session_start_date else None,
            "session_end": enrollment.session_end_date.isoformat() if enrollment.session_end_date else None}


def reserve_due(session: Session, settings: BillingSettings, dues: list[Due], actor: str) -> list[Invoice]:
    """Number and record an invoice for each due folder that has a price (in the caller's transaction)."""
    issued, seller = tenant_today(session, settings.tenant_id), seller_of(session, settings)
    return [invoices.reserve(session, item.enrollment, item.amounts, number_format=settings.number_format,
                             issued=issued, mode=settings.mode, actor=actor, document=document_of(item.enrollment, seller))
            for item in dues if item.amounts is not None]


def evaluate_page(session: Session, settings: BillingSettings, *, after_id: int = 0,
                  enrollment_ids: list[int] | None = None, limit: int = PAGE_SIZE) -> Outcome:
    """Auto mode: reserve a page of (at most ``limit``) due folders; the page ends at the last one read."""
    dues = due(session, settings.tenant_id, after_id=after_id, enrollment_ids=enrollment_ids, limit=limit,
               to_invoice=settings.mode == BillingMode.AUTO)
    outcome = Outcome(last_id=dues[-1].enrollment.id if dues else None, due=len(dues))
    outcome.problems = {item.enrollment.external_id: item.problem for item in dues if item.problem}
    if settings.mode == BillingMode.AUTO:
        created = reserve_due(session, settings, dues, actor="auto")
        outcome.reserved = [invoice.id for invoice in created]
    return outcome


def hand_back(session: Session, tenant_id: int, enrollment_ids: list[int] | None = None,
              limit: int = PAGE_SIZE) -> list[int]:
    """Reserved or sent invoices whose task is not on its way: to be queued again (once)."""
    query = select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.status.in_(sorted(invoices.TO_SEND)))
    if enrollment_ids is not None:
        query = query.where(Invoice.enrollment_id.in_(enrollment_ids))
    return [invoice.id for invoice in session.scalars(query.order_by(Invoice.id).limit(limit))
            if not invoices.awaits_its_task(invoice)]


def paid_by_state(session: Session, tenant_id: int, enrollment_ids: list[int] | None = None) -> int:
    """Billed invoices whose folder Wedof shows ``paid``: paid (the payment's details come from /payments)."""
    query = (select(Invoice.id).join(Enrollment, Enrollment.id == Invoice.enrollment_id)
             .where(Invoice.tenant_id == tenant_id, Invoice.status == InvoiceStatus.BILLED,
                    Enrollment.wedof_billing_state == "paid"))
    if enrollment_ids is not None:
        query = query.where(Invoice.enrollment_id.in_(enrollment_ids))
    return sum(invoices.pay(session, invoice_id, paid_on=None, amount=None, source="billingState")
               for invoice_id in list(session.scalars(query)))


def worth_billing(session: Session, tenant_id: int, enrollment_id: int) -> bool:
    """Whether an applied folder may change an invoice (billing on): ``toBill`` without a live invoice (due),
    or a folder Wedof shows billed or paid while its invoice is not there yet. Folders billed long ago, and
    their many later webhooks, ask for nothing."""
    if mode_of(settings_of(session, tenant_id)) == BillingMode.OFF:
        return False
    # One read on the webhook's hot path: the folder's billing state and its live invoice, if any.
    row = session.execute(
        select(Enrollment.wedof_billing_state, Invoice.status)
        .outerjoin(Invoice, (Invoice.enrollment_id == Enrollment.id) & Invoice.status.in_(sorted(invoices.LIVE)))
        .where(Enrollment.id == enrollment_id)).first()
    if row is None:
        return False
    state, current = row
    behind = {"toBill": (), "billed": (InvoiceStatus.RESERVED, InvoiceStatus.SENT),
              "paid": (InvoiceStatus.RESERVED, InvoiceStatus.SENT, InvoiceStatus.BILLED)}.get(state)
    if behind is None:
        return False
    return current is None if state == "toBill" else current in behind


class NotReleasable(ValueError):
    """The tenant's billing mode does not let an admin release invoices."""


def release(session: Session, settings: BillingSettings | None, enrollment_ids: list[int],
            actor: str) -> tuple[list[Invoice], dict[int, str]]:
    """An admin releases due folders (approve mode): each gets its number now. Returns the invoices and,
    per enrollment id not invoiced, why."""
    mode = mode_of(settings)
    if mode not in (BillingMode.APPROVE, BillingMode.AUTO):
        raise NotReleasable(f"billing is {mode.value!r} for this tenant: set the mode to 'approve' to release "
                            "invoices" if mode == BillingMode.DRY_RUN else
                            f"billing is {mode.value!r} for this tenant: turn it on first")
    dues = due(session, settings.tenant_id, enrollment_ids=enrollment_ids, to_invoice=True)
    created = reserve_due(session, settings, dues, actor=actor)
    why = {item.enrollment.id: item.problem for item in dues if item.problem}
    found = {item.enrollment.id for item in dues}
    why.update({enrollment_id: "not due: the folder is not toBill at Wedof, or it already has an invoice"
                for enrollment_id in enrollment_ids if enrollment_id not in found})
    return created, why
