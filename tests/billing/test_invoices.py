"""The invoices' one owner and the billing evaluation, on SQLite and PostgreSQL (no worker, no Wedof).

The pairs below are the specification written out by hand: the module's table must agree with it,
and each named transition must move a row along exactly those pairs in the database.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bdc import db as bdc_db
from bdc.models import AuditLog, BillingMode, BillingSettings, Enrollment, Invoice, InvoiceStatus, Notice
from bdc.types import utcnow
from billing import evaluate, invoices
from billing.amounts import invoice_amounts

R, S, B, P = InvoiceStatus.RESERVED, InvoiceStatus.SENT, InvoiceStatus.BILLED, InvoiceStatus.PAID
F, C = InvoiceStatus.FAILED, InvoiceStatus.CANCELLED
EXPECTED_PAIRS = {
    (None, R),  # reserve
    (R, S), (S, S), (F, S),  # start; its own retry or a lost task; re-applied by hand (reads first)
    (S, B), (S, F), (S, C),  # billed; refused or out of retries; Wedof shows another number
    (F, R),  # an admin retries after a fix
    (R, C), (F, C),  # an admin cancels one never sent, or one Wedof refused
    (B, P), (P, P),  # paid; the payment's details arrive later
}


def test_the_transition_table_is_the_specification():
    for source, target in itertools.product([None, *InvoiceStatus], InvoiceStatus):
        assert invoices.allowed(source, target) == ((source, target) in EXPECTED_PAIRS), (source, target)


def _settings(session, tenant_id) -> BillingSettings:
    return evaluate.settings_of(session, tenant_id)


def _evaluate_all(tenant_id):
    with bdc_db.session_scope() as session:
        return evaluate.evaluate_page(session, _settings(session, tenant_id))


def test_auto_mode_reserves_one_number_per_due_folder_and_evaluating_again_reserves_nothing(billing_world):
    tenant_id, ids = billing_world
    first = _evaluate_all(tenant_id)
    assert len(first.reserved) == 4 and first.to_send == first.reserved
    again = _evaluate_all(tenant_id)
    assert again.reserved == [] and again.due == 0
    with bdc_db.session_scope() as session:
        rows = list(session.scalars(select(Invoice).order_by(Invoice.id)))
        year = date.today().year
        assert [r.number for r in rows] == [f"F-{year}-{n:06d}" for n in range(1, 5)]
        assert {r.enrollment_id for r in rows} == set(ids)
        first_row = rows[0]
        assert (first_row.amount_excl, first_row.vat_amount, first_row.amount_incl) == (
            Decimal("1075.00"), Decimal("215.00"), Decimal("1290.00"))
        assert first_row.document["seller_siret"] == "12345678900011"
        assert first_row.document["beneficiary_name"] == "Zoé Martin0"
        assert session.scalar(select(AuditLog.id).where(AuditLog.action == "billing.reserved")) is not None


def test_a_second_live_invoice_for_a_folder_is_refused_by_the_database(billing_world):
    tenant_id, ids = billing_world
    _evaluate_all(tenant_id)
    with pytest.raises(IntegrityError), bdc_db.session_scope() as session:
        enrollment = session.get(Enrollment, ids[0])
        invoices.reserve(session, enrollment, invoice_amounts(enrollment.wedof_amounts), number_format="X{seq}",
                         issued=date.today(), mode=BillingMode.AUTO, actor="test", document={})


def test_dry_run_and_approve_reserve_nothing_until_an_admin_releases(billing_world):
    tenant_id, ids = billing_world
    with bdc_db.session_scope() as session:
        _settings(session, tenant_id).mode = BillingMode.DRY_RUN
    assert _evaluate_all(tenant_id).reserved == []
    with bdc_db.session_scope() as session, pytest.raises(evaluate.NotReleasable, match="approve"):
        evaluate.release(session, _settings(session, tenant_id), ids, "admin@x.fr")
    with bdc_db.session_scope() as session:
        _settings(session, tenant_id).mode = BillingMode.APPROVE
    outcome = _evaluate_all(tenant_id)
    assert outcome.reserved == [] and outcome.due == 4
    with bdc_db.session_scope() as session:
        created, why = evaluate.release(session, _settings(session, tenant_id), [ids[0], ids[1], 999_999],
                                        "admin@x.fr")
        assert [i.enrollment_id for i in created] == [ids[0], ids[1]]
        assert created[0].released_by == "admin@x.fr"
        assert "not due" in why[999_999]
    with bdc_db.session_scope() as session:
        created, why = evaluate.release(session, _settings(session, tenant_id), [ids[0]], "admin@x.fr")
        assert created == [] and "already has an invoice" in why[ids[0]]


def test_a_folder_without_a_price_is_shown_with_the_reason_and_not_numbered(billing_world):
    tenant_id, ids = billing_world
    with bdc_db.session_scope() as session:
        session.get(Enrollment, ids[2]).wedof_amounts = {"totalExcl": 1000}
    outcome = _evaluate_all(tenant_id)
    assert len(outcome.reserved) == 3
    assert "no price" in outcome.problems["7000000002"]


def test_folders_not_at_to_bill_are_not_due(billing_world):
    tenant_id, ids = billing_world
    with bdc_db.session_scope() as session:
        session.get(Enrollment, ids[0]).wedof_billing_state = "notBillable"
        session.get(Enrollment, ids[1]).wedof_state = "inTraining"  # toBill without a service done: not ours to bill
        session.get(Enrollment, ids[2]).wedof_billing_state = "billed"
    assert len(_evaluate_all(tenant_id).reserved) == 1


def _one_invoice(tenant_id) -> int:
    return _evaluate_all(tenant_id).reserved[0]


def test_start_holds_the_invoice_for_its_task_until_it_is_presumed_lost(billing_world):
    tenant_id, _ = billing_world
    invoice_id = _one_invoice(tenant_id)
    with bdc_db.session_scope() as session:
        assert invoices.start(session, invoice_id, "task-a") is not None
    with bdc_db.session_scope() as session:
        assert invoices.start(session, invoice_id, "task-b") is None  # another task: not while a is on it
        assert invoices.start(session, invoice_id, "task-a") is not None  # its own retry
    with bdc_db.session_scope() as session:
        session.execute(update(Invoice).values(sent_at=utcnow() - timedelta(hours=1)))
    with bdc_db.session_scope() as session:
        assert invoices.start(session, invoice_id, "task-b") is not None  # presumed lost


def test_a_failure_keeps_the_number_notifies_staff_and_waits_for_an_admin(billing_world):
    tenant_id, ids = billing_world
    invoice_id = _one_invoice(tenant_id)
    with bdc_db.session_scope() as session:
        invoices.start(session, invoice_id, "t")
        assert invoices.fail(session, invoice_id, "Wedof refused: bad number", [{"propertyPath": "billNumber"}])
    assert _evaluate_all(tenant_id).to_send.count(invoice_id) == 0  # a failed invoice is never resent by itself
    with bdc_db.session_scope() as session:
        row = session.get(Invoice, invoice_id)
        assert row.status == F and row.violations == [{"propertyPath": "billNumber"}]
        notice = session.scalars(select(Notice)).one()
        assert row.number in notice.message and notice.target_id == str(invoice_id)
        assert invoices.retry(session, invoice_id, "admin@x.fr")
    with bdc_db.session_scope() as session:
        row = session.get(Invoice, invoice_id)
        assert (row.status, row.reason, row.released_by) == (R, None, "admin@x.fr")
        assert row.number.endswith("000001")  # the same number goes again
        moves = [(a.action, a.actor, a.details.get("changes", {}).get("status")) for a in session.scalars(
            select(AuditLog).where(AuditLog.target_id == str(invoice_id)).order_by(AuditLog.id))]
        assert moves == [("billing.reserved", "auto", None),
                         ("billing.sent", "worker", {"old": "reserved", "new": "sent"}),
                         ("billing.failed", "worker", {"old": "sent", "new": "failed"}),
                         ("billing.retried", "admin@x.fr", {"old": "failed", "new": "reserved"})]


def test_a_sent_invoice_cannot_be_cancelled_a_refused_one_can(billing_world):
    tenant_id, _ = billing_world
    first, second = _evaluate_all(tenant_id).reserved[:2]
    with bdc_db.session_scope() as session:
        invoices.start(session, first, "t")
        invoices.start(session, second, "t")
        assert not invoices.cancel(session, first, "admin", "no")  # sent: its answer may be on its way
        invoices.bill(session, first, {}, how="sent")
        assert not invoices.cancel(session, first, "admin", "no")  # billed at Wedof
        invoices.fail(session, second, "gave up after 16 attempts: Wedof unavailable")
        assert not invoices.cancel(session, second, "admin", "no")  # Wedof may hold it: only a retry settles it
        invoices.retry(session, second, "admin")
        invoices.start(session, second, "t2")
        invoices.fail(session, second, "Wedof refused: number already used", [{"propertyPath": "billNumber"}],
                      refused=True)
        assert invoices.cancel(session, second, "admin", "Wedof refuses this number")
    with bdc_db.session_scope() as session:
        assert session.get(Invoice, second).status == C
        assert evaluate.due(session, tenant_id, enrollment_ids=[session.get(Invoice, second).enrollment_id])
        retried_reserved = session.get(Invoice, first)
        retried_reserved.status = R  # a retried invoice was sent once: still not cancellable
    with bdc_db.session_scope() as session:
        assert not invoices.cancel(session, first, "admin", "no")


def test_cancel_only_an_invoice_that_never_reached_wedof_and_its_number_is_not_reused(billing_world):
    tenant_id, ids = billing_world
    invoice_id = _one_invoice(tenant_id)
    with bdc_db.session_scope() as session:
        number = session.get(Invoice, invoice_id).number
        enrollment_id = session.get(Invoice, invoice_id).enrollment_id
        assert invoices.cancel(session, invoice_id, "admin@x.fr", "wrong price")
    with bdc_db.session_scope() as session:
        settings = _settings(session, tenant_id)
        created, _ = evaluate.release(session, settings, [enrollment_id], "admin@x.fr")
        assert created and created[0].number != number
        taken = list(session.scalars(select(Invoice.number)))
        assert len(taken) == len(set(taken))


def test_billed_folders_shown_paid_become_paid_and_payment_details_arrive_later(billing_world):
    tenant_id, ids = billing_world
    invoice_id = _one_invoice(tenant_id)
    with bdc_db.session_scope() as session:
        invoices.start(session, invoice_id, "t")
        invoices.bill(session, invoice_id, {"billNumber": "x"}, how="sent")
        enrollment_id = session.get(Invoice, invoice_id).enrollment_id
        session.get(Enrollment, enrollment_id).wedof_billing_state = "paid"
    with bdc_db.session_scope() as session:
        assert evaluate.paid_by_state(session, tenant_id) == 1
        assert evaluate.paid_by_state(session, tenant_id) == 0  # already paid: nothing again
    with bdc_db.session_scope() as session:
        assert invoices.pay(session, invoice_id, paid_on=date(2026, 12, 1), amount=Decimal("1290.00"),
                            source="payments")
        assert not invoices.pay(session, invoice_id, paid_on=None, amount=None, source="payments")
    with bdc_db.session_scope() as session:
        row = session.get(Invoice, invoice_id)
        assert (row.status, row.paid_on, row.paid_amount) == (P, date(2026, 12, 1), Decimal("1290.00"))


def test_stranded_invoices_are_handed_back_once_their_task_is_presumed_lost(billing_world):
    tenant_id, _ = billing_world
    reserved = _evaluate_all(tenant_id).reserved
    with bdc_db.session_scope() as session:
        assert evaluate.hand_back(session, tenant_id) == reserved  # reserved, never queued
        invoices.mark_queued(session, reserved[:3])
    with bdc_db.session_scope() as session:
        assert evaluate.hand_back(session, tenant_id) == reserved[3:]  # queued: their task is on its way
        session.execute(update(Invoice).where(Invoice.id == reserved[0])
                        .values(queued_at=utcnow() - timedelta(hours=1)))
    with bdc_db.session_scope() as session:
        assert evaluate.hand_back(session, tenant_id) == [reserved[0], reserved[3]]


def test_worth_billing_only_while_an_invoice_is_due_or_behind_wedof(billing_world):
    tenant_id, ids = billing_world
    invoice_id = _evaluate_all(tenant_id).reserved[0]
    with bdc_db.session_scope() as session:
        enrollment_id = session.get(Invoice, invoice_id).enrollment_id
        assert not evaluate.worth_billing(session, tenant_id, enrollment_id)  # toBill but invoiced: nothing to do
        session.get(Enrollment, enrollment_id).wedof_billing_state = "billed"
    with bdc_db.session_scope() as session:
        assert evaluate.worth_billing(session, tenant_id, enrollment_id)  # Wedof shows billed, ours is reserved
        invoices.start(session, invoice_id, "t")
        invoices.bill(session, invoice_id, {}, how="sent")
    with bdc_db.session_scope() as session:
        assert not evaluate.worth_billing(session, tenant_id, enrollment_id)  # both billed: a later webhook, nothing
        session.get(Enrollment, enrollment_id).wedof_billing_state = "paid"
    with bdc_db.session_scope() as session:
        assert evaluate.worth_billing(session, tenant_id, enrollment_id)  # paid at Wedof: ours follows
        invoices.pay(session, invoice_id, paid_on=None, amount=None, source="billingState")
    with bdc_db.session_scope() as session:
        assert not evaluate.worth_billing(session, tenant_id, enrollment_id)


def test_worth_billing_only_when_billing_is_on_and_the_folder_is_at_a_billing_step(billing_world):
    tenant_id, ids = billing_world
    with bdc_db.session_scope() as session:
        assert evaluate.worth_billing(session, tenant_id, ids[0])
        session.get(Enrollment, ids[1]).wedof_billing_state = "notBillable"
    with bdc_db.session_scope() as session:
        assert not evaluate.worth_billing(session, tenant_id, ids[1])
        _settings(session, tenant_id).mode = BillingMode.OFF
    with bdc_db.session_scope() as session:
        assert not evaluate.worth_billing(session, tenant_id, ids[0])


def test_the_beat_numbers_at_most_a_batch_of_due_folders_per_tenant_and_run(billing_world, app_env, db_url):
    from worker.tasks.billing import bill_folders

    tenant_id, ids = billing_world
    app_env(database_url=db_url, bdc_billing_batch="3", redis_url="redis://127.0.0.1:9/0")  # no broker: queued later
    first = bill_folders(tenant_id)
    assert (first["reserved"], first["due"]) == (3, 3)
    second = bill_folders(tenant_id)
    assert second["reserved"] == 1 and bill_folders(tenant_id)["reserved"] == 0
    with bdc_db.session_scope() as session:
        assert sorted(session.scalars(select(Invoice.enrollment_id))) == sorted(ids)


def test_a_tenant_whose_connection_is_off_never_stops_the_beat_for_the_others(billing_world, app_env, db_url):
    from bdc.models import WedofConnection
    from worker.tasks.billing import bill_folders

    tenant_id, _ = billing_world
    invoice_id = _evaluate_all(tenant_id).reserved[0]
    with bdc_db.session_scope() as session:
        invoices.start(session, invoice_id, "t")
        invoices.bill(session, invoice_id, {}, how="sent")  # billed: its payments are due to be read
        session.scalars(select(WedofConnection)).one().enabled = False
    app_env(database_url=db_url, redis_url="redis://127.0.0.1:9/0")
    result = bill_folders()
    assert result["status"] == "ok" and result["payments_skipped"] == [1] and result["paid"] == 0
