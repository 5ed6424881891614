"""The one owner of ``Invoice.status``: every move is a named transition, audited here.

The number is reserved and committed with its row before Wedof is called; after that the row only
moves forward. Each transition is a compare-and-set UPDATE guarded by the statuses it may start
from, so the beat, a webhook's evaluation, an admin and the sending task can race without two of
them winning. One live invoice per folder (every status but cancelled) is enforced by a partial
unique index: a folder never gets a second number while it holds one.

::

    (new) ─reserve─▶ reserved            (auto mode, or released by an admin in approve mode)
    reserved | failed ─start─▶ sent      (the intent is committed before the call;
    sent ─start─▶ sent                    its own retry, or a task presumed lost: read the folder first)
    sent ─bill─▶ billed                  (Wedof answered, or its folder shows our number)
    sent ─fail─▶ failed                  (refused with violations, or out of retries: an admin acts)
    sent ─moved_on─▶ cancelled           (Wedof shows another number, or no longer bills the folder;
                                          nothing was sent)
    failed ─retry─▶ reserved             (an admin, after a fix: the same number is sent again)
    reserved | failed ─cancel─▶ cancelled (an admin: reserved only when never sent; failed only when Wedof
                                          refused it; the folder is due again under a new number)
    billed | paid ─pay─▶ paid            (the folder is paid; the payment's amount and date when known)

A cancelled invoice keeps its number: the series has no gap, and no number is ever used twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bdc.audit import note_transition, record_audit
from bdc.models import BillingMode, Enrollment, Invoice, InvoiceStatus, Notice, NoticeKind
from bdc.types import utcnow
from billing import numbers
from billing.amounts import Amounts
from lifecycle.actions import lost_after

RESERVED, SENT, BILLED, PAID = InvoiceStatus.RESERVED, InvoiceStatus.SENT, InvoiceStatus.BILLED, InvoiceStatus.PAID
FAILED, CANCELLED = InvoiceStatus.FAILED, InvoiceStatus.CANCELLED
NEW = None


@dataclass(frozen=True)
class Transition:
    sources: frozenset
    target: InvoiceStatus


TRANSITIONS: dict[str, Transition] = {
    "reserve": Transition(frozenset({NEW}), RESERVED),
    "start": Transition(frozenset({RESERVED, SENT, FAILED}), SENT),
    "bill": Transition(frozenset({SENT}), BILLED),
    "fail": Transition(frozenset({SENT}), FAILED),
    "moved_on": Transition(frozenset({SENT}), CANCELLED),
    "retry": Transition(frozenset({FAILED}), RESERVED),
    "cancel": Transition(frozenset({RESERVED, FAILED}), CANCELLED),
    "pay": Transition(frozenset({BILLED, PAID}), PAID),
}
ALLOWED = frozenset((source, t.target) for t in TRANSITIONS.values() for source in t.sources)
LIVE = frozenset(InvoiceStatus) - {CANCELLED}
TO_SEND = frozenset({RESERVED, SENT})  # a task must carry these to Wedof


def allowed(source: InvoiceStatus | None, target: InvoiceStatus) -> bool:
    return (source, target) in ALLOWED


def _move(session: Session, invoice_id: int, name: str, *conditions, **values) -> bool:
    transition = TRANSITIONS[name]
    # The status it moves from, for the audit row (locked: on PostgreSQL nobody moves it in between).
    old = session.scalar(select(Invoice.status).where(Invoice.id == invoice_id).with_for_update())
    if old not in transition.sources:
        return False
    statement = (
        update(Invoice)
        .where(Invoice.id == invoice_id, Invoice.status.in_(sorted(transition.sources)), *conditions)
        .values(status=transition.target, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    moved = session.execute(statement).rowcount == 1
    if moved:
        note_transition(session, ("invoice", invoice_id), old, transition.target)
    return moved


def _audit(session: Session, invoice: Invoice | int, what: str, actor: str, **details) -> Invoice:
    if isinstance(invoice, int):
        invoice = session.get(Invoice, invoice)
        session.refresh(invoice)
    record_audit(session, actor=actor, action=f"billing.{what}", tenant_id=invoice.tenant_id,
                 target=("invoice", invoice.id),
                 details={"number": invoice.number, "folder": invoice.folder_number, **details})
    return invoice


def reserve(session: Session, enrollment: Enrollment, amounts: Amounts, *, number_format: str, issued: date,
            mode: BillingMode, actor: str, document: dict) -> Invoice:
    """Take the next number and write the invoice row, in the caller's transaction (commit before calling Wedof).

    Flushed here: a live twin for the folder (another reservation racing this one) fails on the unique
    index now, and the rollback gives the number back.
    """
    reserved = numbers.reserve(session, enrollment.tenant_id, number_format, issued)
    invoice = Invoice(tenant_id=enrollment.tenant_id, enrollment_id=enrollment.id,
                      folder_number=enrollment.external_id, number=reserved.number, scope=reserved.scope,
                      sequence_value=reserved.value, issue_date=issued, status=RESERVED, mode=mode,
                      amount_excl=amounts.excl, vat_rate=amounts.vat_rate, vat_amount=amounts.vat,
                      amount_incl=amounts.incl, currency="EUR", document=document, released_by=actor)
    session.add(invoice)
    session.flush()
    _audit(session, invoice, "reserved", actor, mode=mode.value, **amounts.as_json())
    return invoice


def start(session: Session, invoice_id: int, task_id: str) -> Invoice | None:
    """reserved → sent, held by ``task_id``: committed before the call.

    A sent invoice is started again only by its own task (a retry, or the same task redelivered after
    its worker died) or once presumed lost, so two tasks never send one invoice at once; the task then
    reads the folder before anything is sent.
    """
    now = utcnow()
    mine_or_lost = or_(Invoice.status.in_((RESERVED, FAILED)), Invoice.task_id == task_id,
                       Invoice.sent_at <= now - lost_after())
    if not _move(session, invoice_id, "start", mine_or_lost, task_id=task_id, sent_at=now):
        return None
    return _audit(session, invoice_id, "sent", "worker", task_id=task_id)


def bill(session: Session, invoice_id: int, answer: dict, how: str) -> bool:
    """Wedof holds our number (``how``: ``sent`` it answered, ``found`` the folder read showed it)."""
    moved = _move(session, invoice_id, "bill", wedof_answer=answer, billed_at=utcnow(), finished_at=utcnow(),
                  reason=None, violations=None)
    if moved:
        _audit(session, invoice_id, "billed", "worker", how=how, answer=answer)
    return moved


def fail(session: Session, invoice_id: int, reason: str, violations: list | None = None, *,
         refused: bool = False) -> bool:
    """Out of retries, or ``refused``: Wedof answered 4xx and the folder read again did not hold our number."""
    moved = _move(session, invoice_id, "fail", reason=reason[:4000], violations=violations, refused=refused,
                  finished_at=utcnow())
    if moved:
        invoice = _audit(session, invoice_id, "failed", "worker", reason=reason, violations=violations)
        notify(session, invoice, f"Invoice {invoice.number} of folder {invoice.folder_number} failed: {reason}. "
                                 "Nothing is sent again until an admin retries it.")
    return moved


def moved_on(session: Session, invoice_id: int, why: str) -> bool:
    moved = _move(session, invoice_id, "moved_on", reason=f"nothing sent: {why}"[:4000], finished_at=utcnow())
    if moved:
        invoice = _audit(session, invoice_id, "moved_on", "worker", reason=why)
        notify(session, invoice, f"Invoice {invoice.number} was not sent to Wedof: {why}.")
    return moved


def retry(session: Session, invoice_id: int, actor: str) -> bool:
    moved = _move(session, invoice_id, "retry", reason=None, violations=None, refused=False, task_id=None, queued_at=None,
                  finished_at=None, released_by=actor)
    if moved:
        _audit(session, invoice_id, "retried", actor)
    return moved


def cancel(session: Session, invoice_id: int, actor: str, reason: str) -> bool:
    """A reserved invoice never sent, or one Wedof refused; its number stays used (shown as cancelled).

    A failed invoice Wedof may hold (out of retries after a lost answer) is never cancelled: only a retry,
    which reads the folder first, settles it. A refused one's folder is due again, under a new number.
    """
    never_sent = or_(Invoice.refused.is_(True), Invoice.sent_at.is_(None))
    moved = _move(session, invoice_id, "cancel", never_sent, reason=f"cancelled: {reason}"[:4000],
                  finished_at=utcnow())
    if moved:
        _audit(session, invoice_id, "cancelled", actor, reason=reason)
    return moved


def pay(session: Session, invoice_id: int, *, paid_on: date | None, amount: Decimal | None, source: str) -> bool:
    """The folder is paid (``source``: the webhook's billing state, or a payment Wedof lists)."""
    current = session.get(Invoice, invoice_id, populate_existing=True)
    if current is None:
        return False
    paid_on = paid_on or current.paid_on  # a later check without the payment keeps what is known
    amount = amount if amount is not None else current.paid_amount
    if current.status == PAID and (current.paid_on, current.paid_amount) == (paid_on, amount):
        return False  # nothing new: a repeated check writes nothing
    moved = _move(session, invoice_id, "pay", payment_checked_at=utcnow(), paid_on=paid_on, paid_amount=amount)
    if moved:
        _audit(session, invoice_id, "paid", "worker", source=source, paid_on=str(paid_on), amount=str(amount))
    return moved


def mark_queued(session: Session, invoice_ids: list[int]) -> None:
    """Their task is queued: evaluations leave them to it until it is presumed lost (not a status move)."""
    if invoice_ids:
        session.execute(update(Invoice).where(Invoice.id.in_(invoice_ids), Invoice.status.in_(sorted(TO_SEND)))
                        .values(queued_at=utcnow()).execution_options(synchronize_session=False))


def awaits_its_task(invoice: Invoice) -> bool:
    recent = utcnow() - lost_after()
    return any(at is not None and at > recent for at in (invoice.queued_at, invoice.sent_at))


def live_invoice(session: Session, enrollment_id: int) -> Invoice | None:
    return session.scalars(select(Invoice).where(Invoice.enrollment_id == enrollment_id,
                                                 Invoice.status.in_(sorted(LIVE)))).first()


def notify(session: Session, invoice: Invoice, message: str) -> Notice:
    notice = Notice(tenant_id=invoice.tenant_id, kind=NoticeKind.BILLING_FAILED, message=message[:4000],
                    target_type="invoice", target_id=str(invoice.id))
    session.add(notice)
    return notice


def checked(session: Session, invoice_id: int) -> None:
    """Wedof's payments were read for it and showed none yet (not a status move)."""
    session.execute(update(Invoice).where(Invoice.id == invoice_id).values(payment_checked_at=utcnow())
                    .execution_options(synchronize_session=False))
