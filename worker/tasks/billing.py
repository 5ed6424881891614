"""The billing tasks: find due folders, and send each invoice number to Wedof exactly once.

- ``wedof.bill_folder(enrollment_id)``: after a folder was applied at a billing step (toBill, billed, paid).
- ``wedof.bill_folders(tenant_id=None)``: beat (and after a sync): every tenant whose billing is on, due
  folders in pages, stranded invoices handed back, payments read for billed folders.
- ``wedof.send_invoice(invoice_id)``: the one sender of ``POST /billing``. The number was reserved and
  committed before; the task commits ``sent``, then READS the folder: when Wedof already holds our
  number (an earlier answer was lost, the worker died after the POST) the invoice is ``billed`` with
  no second POST; when Wedof holds another number or no longer bills the folder it is ``cancelled``,
  nothing sent; else ``POST /billing {billNumber}``. A refusal is ``failed`` with Wedof's violations and
  never resent until an admin retries; transient errors retry under :mod:`worker.policy`, each retry
  reading the folder first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import or_, select

from bdc.db import session_scope
from bdc.models import BillingMode, BillingSettings, Enrollment, Invoice, InvoiceStatus
from bdc.settings import get_settings
from bdc.types import utcnow
from billing import evaluate, invoices
from billing.issued import attach_pdf
from wedof.client import WedofClient
from wedof.errors import WedofValidationError
from wedof.mapping import FolderRejected, apply_folder, values
from worker.celery_app import app, send_soon
from worker.connections import tenant_client
from worker.policy import BadTaskArgument, Failure, PolicyTask, Refused, Report, as_id, log, retry_on_conflict
from worker.task_names import BILL_FOLDER, BILL_FOLDERS, SEND_INVOICE

BILLED_STATES = ("billed", "paid")
PAYMENT_CHECKS_PER_RUN = 200  # one GET per folder: spread over runs, oldest checked first


def _send_invoices(invoice_ids: list[int]) -> None:
    """Queue each invoice's task, once: evaluations leave a queued invoice alone until it is presumed lost."""
    # Best effort: an invoice not queued (the broker is away) is handed back by the next evaluation.
    queued = [invoice_id for invoice_id in invoice_ids if send_soon(SEND_INVOICE, [invoice_id])]
    if queued:
        with session_scope() as session:
            invoices.mark_queued(session, queued)


def _evaluate(settings_id: int, enrollment_ids: list[int] | None = None, after_id: int = 0,
              limit: int = evaluate.PAGE_SIZE) -> evaluate.Outcome:
    """One page of due folders (or the given ones): reserved in auto mode."""
    def unit():
        with session_scope() as session:
            return evaluate.evaluate_page(session, session.get(BillingSettings, settings_id), after_id=after_id,
                                          enrollment_ids=enrollment_ids, limit=limit)

    # Two evaluations reserving for one folder at once: the unique live index lets one win; the
    # other rolls back (giving its number back) and finds the folder invoiced on its next try.
    return retry_on_conflict(unit, "billing evaluation")


def _settle(settings_id: int, enrollment_ids: list[int] | None = None) -> tuple[int, list[int]]:
    """Once per run, whatever the mode: (invoices paid by the folder's state, stranded invoices to send again)."""
    with session_scope() as session:
        tenant_id = session.get(BillingSettings, settings_id).tenant_id
        return (evaluate.paid_by_state(session, tenant_id, enrollment_ids),
                evaluate.hand_back(session, tenant_id, enrollment_ids))


def _billing_settings(session, tenant_id: int | None = None) -> list[int]:
    query = select(BillingSettings.id).where(BillingSettings.mode != BillingMode.OFF)
    if tenant_id is not None:
        query = query.where(BillingSettings.tenant_id == tenant_id)
    return list(session.scalars(query))


@app.task(base=PolicyTask, bind=True, name=BILL_FOLDER, max_retries=3)
def bill_folder(self, enrollment_id):
    enrollment_id = as_id(enrollment_id, "enrollment_id")
    with session_scope() as session:
        tenant_id = session.scalar(select(Enrollment.tenant_id).where(Enrollment.id == enrollment_id))
        if tenant_id is None:
            raise BadTaskArgument(f"unknown enrollment id {enrollment_id}")
        settings_ids = _billing_settings(session, tenant_id)
    if not settings_ids:
        return {"status": "skipped", "reason": "billing is off for the tenant"}
    outcome = _evaluate(settings_ids[0], enrollment_ids=[enrollment_id])
    _send_invoices(outcome.to_send)  # queued now: the settling below leaves them to their task
    paid, stranded = _settle(settings_ids[0], [enrollment_id])
    _send_invoices(stranded)
    to_send = outcome.to_send + stranded
    if paid:
        _check_payments(settings_ids[0], enrollment_id)  # paid now: the payment's amount and date at once
    return {"status": "ok", "reserved": outcome.reserved, "to_send": to_send, "paid": paid,
            "problems": outcome.problems}


@app.task(base=PolicyTask, bind=True, name=BILL_FOLDERS, max_retries=0)
def bill_folders(self, tenant_id=None):
    """Every tenant whose billing is on (or the one given): due folders a page at a time, then payments."""
    tenant_id = None if tenant_id is None else as_id(tenant_id, "tenant_id")
    with session_scope() as session:
        settings_ids = _billing_settings(session, tenant_id)
    totals = {"tenants": len(settings_ids), "due": 0, "reserved": 0, "sent": 0, "paid": 0, "problems": 0}
    batch = get_settings().billing_batch
    for settings_id in settings_ids:
        # At most a batch of due folders per tenant and run: a backlog of hundreds (billing just turned on)
        # is billed over a few runs, never in one burst that would hold every worker and Wedof's rate.
        after, budget = 0, batch
        while after is not None and budget > 0:
            outcome = _evaluate(settings_id, after_id=after, limit=min(evaluate.PAGE_SIZE, budget))
            budget -= outcome.due
            _send_invoices(outcome.to_send)
            after = outcome.last_id
            totals["due"] += outcome.due
            totals["reserved"] += len(outcome.reserved)
            totals["sent"] += len(outcome.to_send)
            totals["problems"] += len(outcome.problems)
        paid, stranded = _settle(settings_id)  # after the pages: what they queued is left to its task
        _send_invoices(stranded)
        totals["sent"] += len(stranded)
        totals["paid"] += paid
        try:
            totals["paid"] += _check_payments(settings_id)
        except Refused as exc:  # this tenant's connection is off or keyless: the other tenants go on
            log.warning("billing settings %s: payments not read (%s)", settings_id, exc)
            totals.setdefault("payments_skipped", []).append(settings_id)
    return {"status": "ok", **totals}


def _check_payments(settings_id: int, enrollment_id: int | None = None) -> int:
    """Read ``GET /payments`` for billed folders not checked lately (or the one given, now); a payment
    found makes the invoice paid with its amount and date."""
    cutoff = utcnow() - timedelta(seconds=get_settings().payment_check_after)
    query = select(Invoice.id, Invoice.folder_number).where(
        or_(Invoice.status == InvoiceStatus.BILLED,
            (Invoice.status == InvoiceStatus.PAID) & Invoice.paid_amount.is_(None)))
    if enrollment_id is not None:
        query = query.where(Invoice.enrollment_id == enrollment_id)
    else:
        query = query.where(or_(Invoice.payment_checked_at.is_(None), Invoice.payment_checked_at <= cutoff))
    with session_scope() as session:
        tenant_id = session.get(BillingSettings, settings_id).tenant_id
        due = list(session.execute(
            query.where(Invoice.tenant_id == tenant_id)
            .order_by(Invoice.payment_checked_at.is_not(None), Invoice.payment_checked_at, Invoice.id)
            .limit(PAYMENT_CHECKS_PER_RUN)))
    if not due:
        return 0
    paid = 0
    with tenant_client(tenant_id) as client:
        for invoice_id, folder_number in due:
            try:
                payment = payment_of(client.list_payments(folder_number, type="bill"))
            except Exception as exc:  # noqa: BLE001 - one folder's failure never stops the others; next run retries
                log.warning("payments of folder %s not read: %s", folder_number, type(exc).__name__)
                continue
            with session_scope() as session:
                if payment is None:
                    invoices.checked(session, invoice_id)
                else:
                    paid += invoices.pay(session, invoice_id, paid_on=payment[0], amount=payment[1],
                                         source="payments")
    return paid


def payment_of(items: list) -> tuple | None:
    """(date, amount) of a folder's issued bill payments, or None when Wedof lists none usable."""
    amount, day = Decimal("0"), None
    for item in items:
        if not isinstance(item, dict) or item.get("state") not in (None, "issued") or item.get("type") == "deposit":
            continue
        try:
            value = Decimal(str(item.get("amount")))
        except (InvalidOperation, ValueError):
            continue
        if not value.is_finite() or value <= 0:
            continue
        when = values.datetime_utc(item.get("transactionDate"))
        amount += value
        day = max(day, when.date()) if day and when else (when.date() if when else day)
    return (day, amount.quantize(Decimal("0.01"))) if amount > 0 else None


@dataclass(frozen=True)
class Plan:
    invoice_id: int
    number: str
    external_id: str
    tenant_id: int


class InvoiceReport(Report):
    """An invoice's failures go on its row (failed, with Wedof's violations when it refused) and notify staff."""

    def __init__(self, invoice_id: int):
        self.invoice_id = invoice_id

    def failed(self, failure: Failure) -> None:
        with session_scope() as session:
            invoices.fail(session, self.invoice_id, failure.reason, failure.details.get("violations"),
                          refused=failure.refused_by_wedof)


def _answer(folder: dict) -> dict:
    keys = ("billingState", "billNumber", "billId", "amountHtNet", "amountTtc", "amountToInvoice", "lastUpdate")
    history = folder.get("history") if isinstance(folder.get("history"), dict) else {}
    return {**{key: folder.get(key) for key in keys}, "billedDate": history.get("billedDate")}


def read_then_bill(client: WedofClient, plan: Plan) -> tuple[str, dict, str | None]:
    """Read the folder, then POST only when Wedof does not hold a number yet and still bills it.

    Returns (outcome, folder, why): ``found`` (Wedof holds our number: nothing sent), ``sent``, or
    ``moved_on`` (another number, or not billable: nothing sent, ``why`` says what Wedof shows).
    """
    current = client.get_registration_folder(plan.external_id)
    state, number = current.get("billingState"), current.get("billNumber")
    if state in BILLED_STATES:
        if number == plan.number:
            return "found", current, None
        return "moved_on", current, f"Wedof shows the folder {state} with bill number {str(number)[:100]!r}"
    if state != "toBill":
        return "moved_on", current, f"Wedof shows billingState {str(state)[:40]!r}, not 'toBill'"
    try:
        folder = client.billing(plan.external_id, plan.number)
    except WedofValidationError:
        # Refused: read again before calling it a refusal. A task presumed lost that was not may
        # have billed meanwhile: then it is billed, and nothing was sent twice.
        current = client.get_registration_folder(plan.external_id)
        if current.get("billingState") in BILLED_STATES and current.get("billNumber") == plan.number:
            return "found", current, None
        raise
    return "sent", folder, None


# Each Wedof call is one attempt (see tenant_client): 16 attempts span about 45 min of Wedof or
# database trouble (backoff from 2 s, at most 5 min apart) before the invoice is failed and staff told.
@app.task(base=PolicyTask, bind=True, name=SEND_INVOICE, max_retries=15)
def send_invoice(self, invoice_id):
    invoice_id = as_id(invoice_id, "invoice_id")
    task_id = self.request.id or f"direct-{uuid.uuid4()}"
    with session_scope() as session:
        invoice = invoices.start(session, invoice_id, task_id)
        if invoice is None:
            row = session.get(Invoice, invoice_id)
            if row is None:
                raise BadTaskArgument(f"unknown invoice id {invoice_id}")
            return {"status": "skipped", "reason": f"the invoice is {row.status.value}"}
        plan = Plan(invoice.id, invoice.number, invoice.folder_number, invoice.tenant_id)
    with self.reporting(InvoiceReport(invoice_id)):
        with tenant_client(plan.tenant_id) as client:
            outcome, folder, why = read_then_bill(client, plan)

        def record():
            with session_scope() as session:
                if outcome == "moved_on":
                    invoices.moved_on(session, invoice_id, why)
                else:
                    invoices.bill(session, invoice_id, _answer(folder), how=outcome)
                try:
                    apply_folder(session, plan.tenant_id, folder)  # our copy follows Wedof at once
                except FolderRejected as exc:
                    log.warning("invoice %s: Wedof's answer was not applied: %s", invoice_id, exc)

        retry_on_conflict(record, f"invoice {invoice_id}")
    if outcome != "moved_on":
        _attach_pdf(invoice_id)
    return {"status": "cancelled" if outcome == "moved_on" else "billed", "outcome": outcome,
            "invoice_id": invoice_id, "number": plan.number}


def _attach_pdf(invoice_id: int) -> None:
    """The invoice's PDF, stored once billed; a failure here is logged (the download renders it then)."""
    try:
        with session_scope() as session:
            attach_pdf(session, session.get(Invoice, invoice_id))
    except Exception as exc:  # noqa: BLE001 - the invoice is billed whatever happens to its document
        log.warning("invoice %s: PDF not stored (%s: %s)", invoice_id, type(exc).__name__, exc)
