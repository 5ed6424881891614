"""Billing from toBill to paid through real workers, Redis and the sandbox over HTTP, on PostgreSQL and SQLite.

In every case, the sandbox's own count of accepted ``/billing`` calls is the truth: at most one per
folder, one number per folder, no number used twice, no gap in the series. Covered: the flow from the
``toBill`` webhook to ``paid`` (amount and date from ``/payments``); a refusal shown with its violations
and never resent; the lost answer (Wedof applies the POST, the connection drops); a worker SIGKILLed
between the reservation and the POST, and again between the POST and its record (in
``test_billing_kills.py``, where no other worker runs).
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import (
    AuditLog,
    BillingMode,
    BillingSettings,
    Document,
    DocumentType,
    Enrollment,
    Invoice,
    InvoiceStatus,
    Notice,
    Tenant,
)
from billing.evaluate import release
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker
from tests.worker.helpers import insert_event, make_connection, send
from wedof.mapping import apply_folder
from worker.task_names import BILL_FOLDER, PROCESS_EVENT, SEND_INVOICE
from worker.tasks.billing import bill_folder, bill_folders

PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290, "vat": 20}


@pytest.fixture(scope="module")
def stack_env(stack_env_each_backend):
    return stack_env_each_backend  # every test here runs on PostgreSQL and on SQLite (events_worker follows)


@pytest.fixture(scope="module")
def events_worker(stack_env, output_dir):
    """Both queues: the webhooks on events, billing on sync (a worker of each in production)."""
    worker = CeleryWorker(stack_env, queues="events,sync", concurrency=2, log_dir=output_dir / "logs").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=60, seed=9) as sbx:
        yield sbx


_used: set[str] = set()


def tenant(sandbox, mode: BillingMode = BillingMode.AUTO) -> tuple[int, int]:
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    with session_scope() as session:
        # One organism at the sandbox: each tenant's own series, so two tests never collide at Wedof.
        session.add(BillingSettings(tenant_id=tenant_id, mode=mode, number_format=f"{series(tenant_id)}-{{year}}-{{seq:04d}}"))
    return tenant_id, connection_id


def series(tenant_id: int) -> str:
    """The tenant's own prefix (its random slug): both databases' tenants bill the same sandbox organism."""
    with session_scope() as session:
        return "T" + session.get(Tenant, tenant_id).slug.removeprefix("t-")[:8].upper()


def to_bill(sandbox, tenant_id: int, apply: bool = True, **patch) -> tuple[int | None, str, dict]:
    """One of the sandbox's folders, validated by the financer and toBill, applied to our data layer."""
    external_id = next(f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})
                       if f["externalId"] not in _used)
    _used.add(external_id)
    folder = sandbox.control("PUT", f"/folders/{external_id}?event=registrationFolderBilling.toBill", json={
        "state": "serviceDoneValidated", "billingState": "toBill", "billNumber": None, "billId": None,
        "trainingActionInfo": PRICE, **patch})
    if not apply:
        return None, external_id, folder
    with session_scope() as session:
        enrollment_id = apply_folder(session, tenant_id, folder).enrollment_id
    return enrollment_id, external_id, folder


def webhook(connection_id: int, broker, folder: dict, event: str) -> None:
    event_id, task_id = insert_event(connection_id, json.dumps(folder), event)
    send(broker, PROCESS_EVENT, [event_id], task_id=task_id)


def invoice_of(enrollment_id: int) -> Invoice | None:
    with session_scope() as session:
        return session.scalars(select(Invoice).where(Invoice.enrollment_id == enrollment_id)
                               .order_by(Invoice.id.desc())).first()


def wait_for(enrollment_id: int, statuses, timeout: float = 90) -> Invoice:
    def reached():
        invoice = invoice_of(enrollment_id)
        return invoice if invoice is not None and invoice.status in statuses else None

    return wait_until(reached, timeout=timeout, interval=0.2, message=f"invoice in {statuses}")


def billing_calls(sandbox, external_id: str) -> int:
    return sandbox.control("GET", "/transitions").get(external_id, {}).get("billing", 0)


def assert_series_intact(tenant_id: int) -> None:
    """One number per folder, no number twice, no gap in the series."""
    with session_scope() as session:
        rows = list(session.scalars(select(Invoice).where(Invoice.tenant_id == tenant_id)))
    numbers = [r.number for r in rows]
    assert len(numbers) == len(set(numbers))
    live = [r.enrollment_id for r in rows if r.status != InvoiceStatus.CANCELLED]
    assert len(live) == len(set(live))
    by_scope: dict[str, list[int]] = {}
    for r in rows:
        by_scope.setdefault(r.scope, []).append(r.sequence_value)
    for values in by_scope.values():
        assert sorted(values) == list(range(1, len(values) + 1)), values


def wedof_folder(sandbox, external_id: str) -> dict:
    return sandbox.api("GET", f"/registrationFolders/{external_id}").json()


def test_from_the_to_bill_webhook_to_paid(stack_env, broker, events_worker, sandbox):
    tenant_id, connection_id = tenant(sandbox)
    enrollment_id, external_id, folder = to_bill(sandbox, tenant_id)
    webhook(connection_id, broker, folder, "registrationFolderBilling.toBill")
    billed = wait_for(enrollment_id, {InvoiceStatus.BILLED, InvoiceStatus.FAILED})
    assert billed.status == InvoiceStatus.BILLED, billed.reason
    year = date.today().year
    assert billed.number == f"{series(tenant_id)}-{year}-0001"
    at_wedof = wedof_folder(sandbox, external_id)
    assert (at_wedof["billingState"], at_wedof["billNumber"]) == ("billed", billed.number)
    assert billing_calls(sandbox, external_id) == 1
    assert (billed.amount_excl, billed.vat_amount, billed.amount_incl) == (
        Decimal("1075.00"), Decimal("215.00"), Decimal("1290.00"))
    def stored_pdf():  # stored right after the billed record, in its own transaction
        with session_scope() as session:
            return session.get(Invoice, billed.id).pdf

    assert wait_until(stored_pdf, timeout=30, message="the stored PDF").startswith(b"%PDF")
    with session_scope() as session:
        assert session.get(Enrollment, enrollment_id).wedof_billing_state == "billed"  # our copy follows
        document = session.scalars(select(Document).where(Document.enrollment_id == enrollment_id,
                                                        Document.type == DocumentType.INVOICE)).one()
        assert document.meta["number"] == billed.number and document.url.endswith(f"/invoices/{billed.id}/pdf")
        audited = set(session.scalars(select(AuditLog.action).where(AuditLog.target_id == str(billed.id))))
        assert {"billing.reserved", "billing.sent", "billing.billed"} <= audited

    # The financer pays: the folder turns paid, its webhook arrives; the payment's amount and date come
    # from GET /payments.
    paid = sandbox.control("POST", f"/folders/{external_id}/pay")
    webhook(connection_id, broker, wedof_folder(sandbox, external_id), "registrationFolderBilling.paid")
    done = wait_until(lambda: (i := invoice_of(enrollment_id)).paid_amount is not None and i, timeout=60,
                      message="the payment's amount")  # read from GET /payments as soon as it is paid
    assert done.paid_amount == Decimal(str(paid["amount"])).quantize(Decimal("0.01"))
    assert done.paid_on == date.fromisoformat(paid["transactionDate"][:10])
    assert billing_calls(sandbox, external_id) == 1
    assert_series_intact(tenant_id)


def test_a_refusal_is_failed_with_its_violations_and_never_resent(stack_env, broker, events_worker, sandbox):
    tenant_id, connection_id = tenant(sandbox)
    # The organism billed another folder by hand with the number our series gives next: Wedof refuses it.
    _, other_id, _ = to_bill(sandbox, tenant_id, apply=False)
    sandbox.api("POST", f"/registrationFolders/{other_id}/billing", json={"billNumber": f"{series(tenant_id)}-{date.today().year}-0001"})
    enrollment_id, external_id, _ = to_bill(sandbox, tenant_id)
    send(broker, BILL_FOLDER, [enrollment_id])
    failed = wait_for(enrollment_id, {InvoiceStatus.FAILED, InvoiceStatus.BILLED})
    assert failed.status == InvoiceStatus.FAILED, failed.status
    assert failed.violations and any("billNumber" in json.dumps(v) for v in failed.violations)
    assert billing_calls(sandbox, external_id) == 0
    with session_scope() as session:
        assert session.scalars(select(Notice).where(Notice.target_type == "invoice",
                                                    Notice.target_id == str(failed.id))).one()
    # Later evaluations (run here, to the end) leave it to an admin: nothing is sent again.
    assert bill_folder(enrollment_id)["to_send"] == []
    assert bill_folders(tenant_id)["sent"] == 0
    assert invoice_of(enrollment_id).status == InvoiceStatus.FAILED and invoice_of(enrollment_id).id == failed.id
    assert billing_calls(sandbox, external_id) == 0


def test_a_lost_answer_is_billed_after_a_re_read_never_a_second_post(stack_env, broker, events_worker, sandbox,
                                                                     faults):
    tenant_id, _ = tenant(sandbox)
    enrollment_id, external_id, _ = to_bill(sandbox, tenant_id)
    faults(lost_answer_rate=1)  # Wedof bills, then the connection drops before its answer
    send(broker, BILL_FOLDER, [enrollment_id])
    billed = wait_for(enrollment_id, {InvoiceStatus.BILLED, InvoiceStatus.FAILED})
    assert billed.status == InvoiceStatus.BILLED and billed.wedof_answer["billNumber"] == billed.number
    assert sandbox.control("GET", "/requests")["faults"]["lost_answer"] >= 1
    assert billing_calls(sandbox, external_id) == 1
    with session_scope() as session:
        how = session.scalars(select(AuditLog.details).where(AuditLog.action == "billing.billed",
                                                             AuditLog.target_id == str(billed.id))).one()
        assert how["how"] == "found"
    assert_series_intact(tenant_id)


def test_approve_mode_waits_for_a_release_and_dry_run_reserves_nothing(stack_env, broker, events_worker, sandbox):
    tenant_id, _ = tenant(sandbox, BillingMode.DRY_RUN)
    enrollment_id, external_id, _ = to_bill(sandbox, tenant_id)
    assert bill_folder(enrollment_id)["reserved"] == [] and bill_folders(tenant_id)["due"] == 1  # shown, not numbered
    with session_scope() as session:
        settings = session.scalars(select(BillingSettings).where(BillingSettings.tenant_id == tenant_id)).one()
        settings.mode = BillingMode.APPROVE
    assert bill_folder(enrollment_id)["reserved"] == []  # waits for an admin
    with session_scope() as session:
        assert session.scalars(select(Invoice).where(Invoice.tenant_id == tenant_id)).all() == []
        settings = session.scalars(select(BillingSettings).where(BillingSettings.tenant_id == tenant_id)).one()
        released, why = release(session, settings, [enrollment_id], "user:admin")
        assert len(released) == 1 and why == {}
        invoice_id = released[0].id
    send(broker, SEND_INVOICE, [invoice_id])
    billed = wait_for(enrollment_id, {InvoiceStatus.BILLED, InvoiceStatus.FAILED})
    assert billed.status == InvoiceStatus.BILLED and billed.released_by == "user:admin"
    assert billing_calls(sandbox, external_id) == 1
