"""The billing admin API: invoices listed, read, printed and exported; due folders released; failed invoices
retried; reserved ones cancelled; the month's figures; the tenant's billing settings.

Invoices are made by the billing package itself (``evaluate.release``, ``invoices.start/bill/fail/pay``) on
folders Wedof shows ``serviceDoneValidated`` / ``toBill``. The broker is the real Redis: a release or a retry
is checked by reading the ``wedof.send_invoice`` message from the ``events`` queue (no worker runs here).
Hostile input is refused with a clear ``{error, message}`` and leaves every billing row, the audit log and
the queue as they were.
"""

from __future__ import annotations

import csv
import io
import itertools
import threading
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import select, update

from bdc.db import session_scope
from bdc.models import (
    AuditLog,
    BillingMode,
    BillingSettings,
    Enrollment,
    Invoice,
    InvoiceSequence,
    InvoiceStatus,
    LifecycleSettings,
)
from billing import evaluate, invoices
from billing.export import COLUMNS
from tests.webapp.conftest import ADMIN_API, build_admin_world, queued_messages
from webapp.admin.serializers import billing_settings_json

PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}
SEND = "wedof.send_invoice"
_external = itertools.count(1)


# -- building invoices with the billing package -----------------------------------------------------------

def folders(w, tenant: str = "a", n: int = 1, price: dict | None = PRICE) -> list[int]:
    """``n`` folders of the tenant's beneficiary that Wedof shows service done and to bill."""
    ids = w.ids[tenant]
    made = []
    with session_scope(w.database_url) as session:
        program_id = session.get(Enrollment, ids["bilan_enrollment"]).program_id
        for _ in range(n):
            enrollment = Enrollment(tenant_id=ids["tenant"], beneficiary_id=ids["beneficiary"], program_id=program_id,
                                    external_id=f"8{ord(tenant)}{next(_external):08d}",
                                    wedof_state="serviceDoneValidated", wedof_billing_state="toBill",
                                    wedof_amounts=dict(price) if price else None,
                                    session_start_date=date(2026, 9, 1), session_end_date=date(2026, 11, 15))
            session.add(enrollment)
            session.flush()
            made.append(enrollment.id)
    return made


def billing_on(w, tenant: str = "a", mode: BillingMode = BillingMode.APPROVE, **fields) -> None:
    tenant_id = w.tenants[tenant]
    with session_scope(w.database_url) as session:
        settings = evaluate.settings_of(session, tenant_id)
        if settings is None:
            settings = BillingSettings.defaults(tenant_id)
            session.add(settings)
        settings.mode = mode
        for name, value in fields.items():
            setattr(settings, name, value)


def reserve(w, enrollment_ids: list[int], tenant: str = "a") -> list[int]:
    """Release the folders through the billing package (as an admin would): their invoice ids."""
    with session_scope(w.database_url) as session:
        created, why = evaluate.release(session, evaluate.settings_of(session, w.tenants[tenant]), enrollment_ids,
                                        "user:setup")
        assert why == {}
        return [invoice.id for invoice in created]


def advance(w, invoice_id: int, to: str, *, reason: str = "Wedof refused the bill",
            violations: list | None = None, paid_on: date | None = None) -> None:
    """Move an invoice along its real transitions: sent, then billed / failed, then paid."""
    with session_scope(w.database_url) as session:
        assert invoices.start(session, invoice_id, f"task-{invoice_id}") is not None
        if to in ("billed", "paid"):
            assert invoices.bill(session, invoice_id, {"billNumber": "x"}, "sent")
        if to == "paid":
            assert invoices.pay(session, invoice_id, paid_on=paid_on or today(), amount=Decimal("1290.00"),
                                source="payments")
        if to == "failed":
            assert invoices.fail(session, invoice_id, reason, violations)


def row(w, invoice_id: int) -> Invoice:
    with session_scope(w.database_url) as session:
        invoice = session.get(Invoice, invoice_id)
        session.expunge(invoice)
        return invoice


def audit(w, action: str) -> list[AuditLog]:
    with session_scope(w.database_url) as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))
        session.expunge_all()
        return rows


def snapshot(w) -> dict:
    """Every billing row and billing audit entry: what a refused request must leave untouched."""
    with session_scope(w.database_url) as session:
        return {
            "invoices": [(i.id, i.status.value, i.number, i.reason, i.queued_at, i.released_by, i.task_id)
                         for i in session.scalars(select(Invoice).order_by(Invoice.id))],
            "sequences": [(q.tenant_id, q.scope, q.last_value)
                          for q in session.scalars(select(InvoiceSequence).order_by(InvoiceSequence.id))],
            "settings": [billing_settings_json(s, True)
                         for s in session.scalars(select(BillingSettings).order_by(BillingSettings.id))],
            "audit": [(a.action, a.target_id) for a in session.scalars(
                select(AuditLog).where(AuditLog.action.like("billing.%")).order_by(AuditLog.id))],
        }


def sends(redis_client) -> list[tuple[str, list]]:
    return [(m["task"], m["args"]) for m in queued_messages(redis_client, "sync")]


def today() -> date:
    """The tenants' today: invoices are dated in their calendar (Paris by default), not the machine's."""
    return datetime.now(ZoneInfo("Europe/Paris")).date()


def today_month() -> str:
    return today().strftime("%Y-%m")


def number(n: int, year: int | None = None) -> str:
    return f"F-{year or today().year}-{n:06d}"


def assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) >= {"error", "message"} and isinstance(body["message"], str) and body["message"], body
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture
def world(admin_world):
    """Two tenants, billing in approve mode for tenant A."""
    billing_on(admin_world)
    return admin_world


@pytest.fixture
def world_any_db(admin_world_any_db):
    billing_on(admin_world_any_db)
    return admin_world_any_db


# -- due and release ---------------------------------------------------------------------------------------

def test_due_previews_the_next_numbers_and_reserves_nothing(world_any_db, redis_client):
    w = world_any_db
    mine = folders(w, n=3)
    folders(w, tenant="b")  # another tenant's folder is not listed
    before = snapshot(w)
    for _ in range(2):
        due = w.call("GET", "/invoices/due", who="admin_a")
        assert due.status_code == 200, due.get_data(as_text=True)
        data = due.get_json()
        assert data["mode"] == "approve" and data["total"] == 3 and data["amount_incl"] == "3870.00"
        assert [i["enrollment_id"] for i in data["items"]] == mine
        assert [i["next_number"] for i in data["items"]] == [number(1), number(2), number(3)]
        assert data["items"][0]["amounts"] == {"amount_excl": "1075.00", "vat_rate": "20.00",
                                               "vat_amount": "215.00", "amount_incl": "1290.00"}
        assert data["items"][0]["wedof_state"] == "serviceDoneValidated" and data["items"][0]["problem"] is None
    # Previewing twice reserved nothing: no counter, no invoice, no audit row, no task.
    assert snapshot(w) == before and before["sequences"] == [] and before["invoices"] == []
    assert sends(redis_client) == []


def test_a_folder_without_a_price_is_due_with_its_reason_and_takes_no_number(world):
    w = world
    [priced] = folders(w)
    [unpriced] = folders(w, price=None)
    [later] = folders(w)
    items = w.call("GET", "/invoices/due", who="admin_a").get_json()["items"]
    assert [(i["enrollment_id"], i["next_number"]) for i in items] == [
        (priced, number(1)), (unpriced, None), (later, number(2))]
    assert "no price" in items[1]["problem"] and items[1]["amounts"] is None
    released = w.call("POST", "/invoices/release", who="admin_a", json={"enrollment_ids": [unpriced]}).get_json()
    assert released["released"] == [] and "no price" in released["not_released"][str(unpriced)]


def test_release_reserves_queues_one_send_per_invoice_and_audits(world_any_db, redis_client):
    w = world_any_db
    first, second, third = folders(w, n=3)
    admin = f"user:{w.ids['a']['admin']}"
    response = w.call("POST", "/invoices/release", who="admin_a", json={"enrollment_ids": [first, second, first]})
    assert response.status_code == 202, response.get_data(as_text=True)
    data = response.get_json()
    assert [(i["enrollment_id"], i["number"], i["status"]) for i in data["released"]] == [
        (first, number(1), "reserved"), (second, number(2), "reserved")]
    assert data["not_released"] == {}
    ids = [i["id"] for i in data["released"]]
    # Exactly one task per invoice, by name, on the events queue; each invoice is marked queued.
    assert sends(redis_client) == [(SEND, [ids[0]]), (SEND, [ids[1]])]
    for invoice_id in ids:
        invoice = row(w, invoice_id)
        assert invoice.status == InvoiceStatus.RESERVED and invoice.queued_at is not None
        assert invoice.released_by == admin and invoice.amount_incl == Decimal("1290.00")
    reserved = audit(w, "billing.reserved")
    assert [(a.actor, a.target_id, a.details["number"]) for a in reserved] == [
        (admin, str(ids[0]), number(1)), (admin, str(ids[1]), number(2))]

    # The folder left due takes the next number; "all" releases it; a second "all" finds nothing.
    assert [i["next_number"] for i in w.call("GET", "/invoices/due", who="admin_a").get_json()["items"]] == [number(3)]
    everything = w.call("POST", "/invoices/release", who="admin_a", json={"all": True})
    assert everything.status_code == 202
    [last] = everything.get_json()["released"]
    assert (last["enrollment_id"], last["number"]) == (third, number(3))
    again = w.call("POST", "/invoices/release", who="admin_a", json={"all": True})
    assert again.status_code == 202 and again.get_json() == {"released": [], "not_released": {}}
    assert sends(redis_client) == [(SEND, [ids[0]]), (SEND, [ids[1]]), (SEND, [last["id"]])]
    assert len(audit(w, "billing.reserved")) == 3


def test_release_says_why_a_folder_was_not_released(world, redis_client):
    w = world
    [mine] = folders(w)
    [theirs] = folders(w, tenant="b")
    billing_on(w, tenant="b")
    reserve(w, [mine])
    in_training = w.ids["a"]["bilan_enrollment"]
    response = w.call("POST", "/invoices/release", who="admin_a",
                      json={"enrollment_ids": [mine, theirs, in_training, 999_999]})
    assert response.status_code == 202
    data = response.get_json()
    assert data["released"] == []
    assert set(data["not_released"]) == {str(mine), str(theirs), str(in_training), "999999"}
    assert all(reason.startswith("not due") for reason in data["not_released"].values())
    assert sends(redis_client) == []
    # Tenant B's folder was left alone: it is still due for tenant B.
    assert [i["enrollment_id"] for i in w.call("GET", "/invoices/due", who="admin_b").get_json()["items"]] == [theirs]


@pytest.mark.parametrize("mode", [BillingMode.DRY_RUN, BillingMode.OFF, None])
@pytest.mark.parametrize("body", [{"all": True}, "ids"])
def test_release_is_refused_unless_billing_is_on(admin_world, redis_client, mode, body):
    w = admin_world
    ids = folders(w, n=2)
    if mode is not None:  # None: the tenant never configured billing (off)
        billing_on(w, mode=mode)
    before = snapshot(w)
    response = w.call("POST", "/invoices/release", who="admin_a",
                      json={"enrollment_ids": ids} if body == "ids" else body)
    message = assert_error(response, 409, "billing_mode")["message"]
    assert ("approve" in message) if mode == BillingMode.DRY_RUN else ("turn it on" in message)
    assert snapshot(w) == before and sends(redis_client) == []


def test_dry_run_shows_the_numbers_it_would_take(admin_world):
    w = admin_world
    folders(w, n=2)
    billing_on(w, mode=BillingMode.DRY_RUN)
    data = w.call("GET", "/invoices/due", who="admin_a").get_json()
    assert data["mode"] == "dry_run" and [i["next_number"] for i in data["items"]] == [number(1), number(2)]
    off = w.call("GET", "/invoices/due", who="admin_b").get_json()
    assert off == {"mode": "off", "items": [], "total": 0, "amount_incl": "0.00"}


def _bad_release_bodies():
    # A real, due id rides along each bad list: a lenient reader would release it.
    return [
        ({}, 422), ({"all": False}, 422), ({"all": None}, 422), ({"enrollment_ids": None}, 422),
        ({"all": True, "enrollment_ids": "REAL"}, 422), ({"all": False, "enrollment_ids": []}, 422),
        ({"all": True, "enrollment_ids": []}, 422), ({"enrollment_ids": []}, 422),
        ({"all": "yes"}, 422), ({"all": 1}, 422), ({"enrollment_ids": "REAL_SCALAR"}, 422),
        ({"enrollment_ids": ["REAL", "12"]}, 422), ({"enrollment_ids": ["REAL", -3]}, 422),
        ({"enrollment_ids": ["REAL", 0]}, 422), ({"enrollment_ids": ["REAL", True]}, 422),
        ({"enrollment_ids": ["REAL", 1.0]}, 422), ({"enrollment_ids": ["REAL", 2**31]}, 422),
        ({"enrollment_ids": ["REAL", 2**63 + 1]}, 422), ({"enrollment_ids": ["REAL", None]}, 422),
        ({"enrollment_ids": ["REAL", [1]]}, 422), ({"enrollment_ids": ["REAL", {"id": 1}]}, 422),
        ({"enrollment_ids": ["REAL"] + list(range(1, 501))}, 422),
        ({"enrollment_ids": ["REAL"], "dry_run": True}, 422),
        ("not json", 400), ("[1, 2]", 400), ("null", 400), ("", 400), ('{"all": tru', 400),
    ]


@pytest.mark.parametrize("body,status", _bad_release_bodies(), ids=lambda v: repr(v)[:60])
def test_hostile_release_bodies_are_refused_and_write_nothing(world, redis_client, body, status):
    w = world
    [real] = folders(w)

    def fill(value):
        if value == "REAL":
            return real
        if value == "REAL_SCALAR":
            return real
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    before = snapshot(w)
    if isinstance(body, str):
        response = w.client.post(ADMIN_API + "/invoices/release", data=body,
                                 headers={**w.headers("admin_a"), "Content-Type": "application/json"})
    else:
        response = w.call("POST", "/invoices/release", who="admin_a", json=fill(body))
    assert_error(response, status)
    assert snapshot(w) == before and sends(redis_client) == []
    # The same folder is released by a good body: the refusal was the body's, not the world's.
    assert w.call("POST", "/invoices/release", who="admin_a", json={"enrollment_ids": [real]}).status_code == 202


def test_five_hundred_ids_are_accepted(world, redis_client):
    w = world
    ids = folders(w, n=2)
    response = w.call("POST", "/invoices/release", who="admin_a",
                      json={"enrollment_ids": ids + list(range(10_000, 10_498))})
    assert response.status_code == 202 and len(response.get_json()["released"]) == 2
    assert len(response.get_json()["not_released"]) == 498 and len(sends(redis_client)) == 2


def test_a_release_with_the_broker_down_keeps_the_numbers_for_the_beat(world, app_env, fresh_task_sender):
    from tests.support.processes import free_port

    w = world
    [folder] = folders(w)
    app_env(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fresh_task_sender()
    response = w.call("POST", "/invoices/release", who="admin_a", json={"enrollment_ids": [folder]})
    assert_error(response, 503, "broker_unavailable")
    with session_scope(w.database_url) as session:
        [invoice] = session.scalars(select(Invoice)).all()
        # Reserved and committed, not marked queued: the next evaluation hands it back to a task.
        assert invoice.status == InvoiceStatus.RESERVED and invoice.queued_at is None
        assert evaluate.hand_back(session, w.tenants["a"]) == [invoice.id]


def test_two_releases_racing_for_one_folder_give_it_one_number(app_env, pg_db_url, redis_url, redis_client,
                                                               fresh_task_sender):
    """Both requests see the folder due, then queue on the counter row: the loser answers 409, never 500."""
    from sqlalchemy import create_engine, text

    w = build_admin_world(app_env, fresh_task_sender, pg_db_url, redis_url)
    billing_on(w)
    [folder] = folders(w)
    with session_scope(w.database_url) as session:
        session.add(InvoiceSequence(tenant_id=w.tenants["a"], scope=str(today().year), last_value=0))
    engine = create_engine(pg_db_url)
    holder, watcher = engine.connect(), engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    lock = holder.begin()
    holder.execute(text("SELECT last_value FROM invoice_sequences FOR UPDATE"))
    answers = []

    def release():
        client = w.app.test_client()
        answers.append(client.post(ADMIN_API + "/invoices/release", json={"enrollment_ids": [folder]},
                                   headers=w.headers("admin_a")))

    threads = [threading.Thread(target=release) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        # Both saw the folder due and now wait on the counter row (seen from a connection of its own:
        # pg_stat_activity is a snapshot per transaction).
        for _ in range(400):
            waiting = watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                           "AND datname = current_database()")).scalar()
            if waiting == 2:
                break
            threading.Event().wait(0.05)
        assert waiting == 2
    finally:
        lock.rollback()
        holder.close()
        watcher.close()
        engine.dispose()
    for thread in threads:
        thread.join(30)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202, 409], [a.get_data(as_text=True) for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    assert_error(loser, 409, "release_conflict")
    with session_scope(w.database_url) as session:
        assert [(i.number, i.status) for i in session.scalars(select(Invoice))] == [(number(1), InvoiceStatus.RESERVED)]
        assert session.scalar(select(InvoiceSequence.last_value)) == 1  # the loser's number was given back
    assert len(sends(redis_client)) == 1


# -- retry and cancel ------------------------------------------------------------------------------------

def test_a_failed_invoice_shows_why_and_is_retried_with_the_same_number(world, redis_client):
    w = world
    [invoice_id] = reserve(w, folders(w))
    violations = [{"propertyPath": "billNumber", "message": "already used"}]
    advance(w, invoice_id, "failed", reason="HTTP 400: billNumber already used", violations=violations)
    failed = w.call("GET", f"/invoices/{invoice_id}", who="admin_a").get_json()
    assert (failed["status"], failed["reason"], failed["violations"]) == (
        "failed", "HTTP 400: billNumber already used", violations)
    assert failed["flower_url"] == f"http://127.0.0.1:5555/task/task-{invoice_id}"

    assert_error(w.call("POST", f"/invoices/{invoice_id}/retry", who="admin_b"), 404, "not_found")
    assert_error(w.call("POST", f"/invoices/{invoice_id}/retry", who="admin_a", json={"force": True}), 422)
    assert sends(redis_client) == [] and row(w, invoice_id).status == InvoiceStatus.FAILED

    response = w.call("POST", f"/invoices/{invoice_id}/retry", who="admin_a")
    assert response.status_code == 202, response.get_data(as_text=True)
    data = response.get_json()
    assert data["invoice_id"] == invoice_id and data["status"] == "reserved"
    [message] = queued_messages(redis_client, "sync")
    assert (message["task"], message["args"], message["id"]) == (SEND, [invoice_id], data["task_id"])
    retried = row(w, invoice_id)
    assert (retried.status, retried.number, retried.reason, retried.violations) == (
        InvoiceStatus.RESERVED, number(1), None, None)
    assert retried.queued_at is not None and retried.released_by == f"user:{w.ids['a']['admin']}"
    [entry] = audit(w, "billing.retried")
    assert (entry.actor, entry.target_id, entry.tenant_id) == (
        f"user:{w.ids['a']['admin']}", str(invoice_id), w.tenants["a"])

    again = assert_error(w.call("POST", f"/invoices/{invoice_id}/retry", who="admin_a"), 409, "not_retryable")
    assert again["invoice_status"] == "reserved" and len(sends(redis_client)) == 1


@pytest.mark.parametrize("status", ["reserved", "sent", "billed", "paid", "cancelled"])
def test_only_a_failed_invoice_is_retried(world, redis_client, status):
    w = world
    [invoice_id] = reserve(w, folders(w))
    if status == "cancelled":
        with session_scope(w.database_url) as session:
            assert invoices.cancel(session, invoice_id, "user:setup", "typo")
    elif status == "sent":
        with session_scope(w.database_url) as session:
            assert invoices.start(session, invoice_id, "t")
    elif status != "reserved":
        advance(w, invoice_id, status)
    before = snapshot(w)
    body = assert_error(w.call("POST", f"/invoices/{invoice_id}/retry", who="admin_a"), 409, "not_retryable")
    assert body["invoice_status"] == status
    assert snapshot(w) == before and sends(redis_client) == []


def test_a_reserved_invoice_is_cancelled_with_a_reason_and_its_number_stays_used(world, redis_client):
    w = world
    [folder] = folders(w)
    [invoice_id] = reserve(w, [folder])
    response = w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a",
                      json={"reason": "  mauvais tarif  "})
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert (data["status"], data["reason"], data["number"]) == ("cancelled", "cancelled: mauvais tarif", number(1))
    [entry] = audit(w, "billing.cancelled")
    assert (entry.actor, entry.target_id, entry.details["reason"]) == (
        f"user:{w.ids['a']['admin']}", str(invoice_id), "mauvais tarif")
    assert sends(redis_client) == []
    # The folder is due again and takes the next number: the cancelled one is never reused.
    [item] = w.call("GET", "/invoices/due", who="admin_a").get_json()["items"]
    assert (item["enrollment_id"], item["next_number"]) == (folder, number(2))
    assert_error(w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a", json={"reason": "x"}), 409,
                 "not_cancellable")


@pytest.mark.parametrize("status", ["sent", "billed", "paid", "failed", "retried after a send"])
def test_an_invoice_wedof_may_have_seen_is_never_cancelled(world, status):
    w = world
    [invoice_id] = reserve(w, folders(w))
    if status == "sent":
        with session_scope(w.database_url) as session:
            assert invoices.start(session, invoice_id, "t")
    elif status == "retried after a send":
        advance(w, invoice_id, "failed")
        with session_scope(w.database_url) as session:
            assert invoices.retry(session, invoice_id, "user:setup")
    else:
        advance(w, invoice_id, status)
    before = snapshot(w)
    body = assert_error(w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a", json={"reason": "erreur"}),
                        409, "not_cancellable")
    assert body["invoice_status"] == ("reserved" if status.startswith("retried") else status)
    assert snapshot(w) == before


@pytest.mark.parametrize("body,status", [
    (None, 400), ({}, 422), ({"reason": ""}, 422), ({"reason": "   "}, 422), ({"reason": None}, 422),
    ({"reason": 5}, 422), ({"reason": ["x"]}, 422), ({"reason": "x" * 501}, 422),
    ({"reason": "ok", "force": True}, 422), ("[]", 400), ("nope", 400),
])
def test_hostile_cancel_bodies_are_refused_and_write_nothing(world, redis_client, body, status):
    w = world
    [invoice_id] = reserve(w, folders(w))
    before = snapshot(w)
    if isinstance(body, str) or body is None:
        response = w.client.post(ADMIN_API + f"/invoices/{invoice_id}/cancel", data=body or "",
                                 headers={**w.headers("admin_a"), "Content-Type": "application/json"})
    else:
        response = w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a", json=body)
    assert_error(response, status)
    assert snapshot(w) == before and row(w, invoice_id).status == InvoiceStatus.RESERVED
    assert w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a", json={"reason": "x" * 500}).status_code == 200


def test_another_tenants_invoice_does_not_exist_for_a_tenant_admin(world):
    w = world
    billing_on(w, tenant="b")
    [theirs] = reserve(w, folders(w, tenant="b"), tenant="b")
    before = snapshot(w)
    for method, path, body in (("GET", f"/invoices/{theirs}", None), ("GET", f"/invoices/{theirs}/pdf", None),
                               ("POST", f"/invoices/{theirs}/retry", None),
                               ("POST", f"/invoices/{theirs}/cancel", {"reason": "not mine"})):
        assert_error(w.call(method, path, who="admin_a", json=body), 404, "not_found")
        # A super_admin narrowed to tenant A does not reach it either.
        assert_error(w.call(method, f"{path}?tenant_id={w.tenants['a']}", who="super", json=body), 404, "not_found")
    assert snapshot(w) == before
    assert w.call("GET", f"/invoices/{theirs}", who="super").get_json()["tenant_id"] == w.tenants["b"]
    assert w.call("GET", f"/invoices/{theirs}", who="admin_b").status_code == 200


@pytest.mark.parametrize("path", ["/invoices/{id}", "/invoices/{id}/pdf"])
@pytest.mark.parametrize("invoice_id", ["0", "-1", str(2**31), str(2**63 + 5), "abc", "1.5", "true"])
def test_ids_no_invoice_can_have_are_404(admin_world_any_db, path, invoice_id):
    w = admin_world_any_db
    assert_error(w.call("GET", path.format(id=invoice_id), who="super"), 404)
    for verb, body in (("retry", None), ("cancel", {"reason": "x"})):
        assert_error(w.call("POST", f"/invoices/{invoice_id}/{verb}", who="super", json=body), 404)


# -- list, one, PDF, CSV ---------------------------------------------------------------------------------

def _mixed(w) -> dict[str, int]:
    """Tenant A: one invoice per status, issued on different days; tenant B: one reserved invoice."""
    ids = dict(zip(("reserved", "failed", "billed", "paid", "cancelled"), reserve(w, folders(w, n=5)), strict=True))
    advance(w, ids["failed"], "failed")
    advance(w, ids["billed"], "billed")
    advance(w, ids["paid"], "paid")
    with session_scope(w.database_url) as session:
        assert invoices.cancel(session, ids["cancelled"], "user:setup", "doublon")
        days = {"reserved": date(2026, 3, 1), "failed": date(2026, 3, 15), "billed": date(2026, 3, 31),
                "paid": date(2026, 4, 1), "cancelled": date(2026, 2, 28)}
        for status, day in days.items():
            session.execute(update(Invoice).where(Invoice.id == ids[status]).values(issue_date=day))
    billing_on(w, tenant="b")
    ids["theirs"] = reserve(w, folders(w, tenant="b"), tenant="b")[0]
    return ids


def _listed(w, query: str = "", who: str = "admin_a") -> list[int]:
    response = w.call("GET", "/invoices" + query, who=who)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [i["id"] for i in response.get_json()["items"]]


def test_the_list_filters_by_status_dates_and_text(world_any_db):
    w = world_any_db
    ids = _mixed(w)
    mine = [ids[s] for s in ("reserved", "failed", "billed", "paid", "cancelled")]
    assert _listed(w) == sorted(mine, reverse=True)  # newest first, tenant A's only
    for status in ("reserved", "failed", "billed", "paid", "cancelled"):
        assert _listed(w, f"?status={status}") == [ids[status]]
    assert _listed(w, "?status=sent") == []
    assert _listed(w, "?from=2026-03-01&to=2026-03-31") == [ids["billed"], ids["failed"], ids["reserved"]]
    assert _listed(w, "?from=2026-03-15") == [ids["paid"], ids["billed"], ids["failed"]]
    assert _listed(w, "?to=2026-02-28") == [ids["cancelled"]]
    assert _listed(w, "?from=2026-03-31&to=2026-03-31&status=billed") == [ids["billed"]]
    assert _listed(w, f"?q={number(3)}") == [ids["billed"]]
    assert _listed(w, f"?q={number(3).lower()}") == [ids["billed"]]  # case does not matter
    folder = row(w, ids["paid"]).folder_number
    assert _listed(w, f"?q={folder[-5:]}") == [ids["paid"]]
    assert _listed(w, f"?q={number(1)}") == [ids["reserved"]]  # tenant B's F-…-000001 is not tenant A's
    assert _listed(w, "?q=nothing-like-it") == []
    page = w.call("GET", "/invoices?per_page=2&page=3", who="admin_a").get_json()
    assert (page["total"], page["pages"], [i["id"] for i in page["items"]]) == (5, 3, [ids["reserved"]])
    # A super_admin names the tenant.
    assert _listed(w, f"?tenant_id={w.tenants['b']}", who="super") == [ids["theirs"]]
    item = w.call("GET", "/invoices?status=paid", who="admin_a").get_json()["items"][0]
    assert (item["amount_excl"], item["vat_amount"], item["amount_incl"], item["paid_amount"]) == (
        "1075.00", "215.00", "1290.00", "1290.00")
    assert item["beneficiary_name"] == "Camille Martin-a" and item["training_title"] == "Bilan de compétences a"


def test_search_text_is_matched_literally(world_any_db):
    """``%``, ``_`` and ``\\`` in q are characters to find, not patterns (numbers may hold ``_``)."""
    w = world_any_db
    billing_on(w, number_format="FAC_{year}_{seq:04d}")
    first, second = reserve(w, folders(w, n=2))
    year = today().year
    assert _listed(w, f"?q=FAC_{year}_0002") == [second]
    assert _listed(w, "?q=_") == [second, first]
    assert _listed(w, "?q=%25") == []  # "%": no number holds one
    assert _listed(w, "?q=%5C") == []  # a lone backslash
    assert _listed(w, "?q=FAC%5C_") == []


FILTERS = ["status=weird", "status=RESERVED", "from=2026-13-01", "from=2026-02-30", "from=yesterday",
           "to=01/02/2026", "from=2026-03-02&to=2026-03-01", f"q={'x' * 101}", f"from={'2' * 11}", "q=%00", "q=a%00b",
           "q=a%0Ab", "tenant_id=abc"]
PAGING = ["page=0", "per_page=1000", "page=abc", "per_page=-1"]


@pytest.mark.parametrize("path,query", [("/invoices", q) for q in FILTERS + PAGING] +
                         [("/invoices/export.csv", q) for q in FILTERS])
def test_hostile_list_parameters_are_a_clear_400(world_any_db, path, query):
    w = world_any_db
    reserve(w, folders(w))
    response = w.call("GET", f"{path}?{query}", who="admin_a")
    assert_error(response, 400)
    assert response.mimetype == "application/json"


def test_one_invoice(world):
    w = world
    [invoice_id] = reserve(w, folders(w))
    data = w.call("GET", f"/invoices/{invoice_id}", who="admin_a").get_json()
    assert data["id"] == invoice_id and data["number"] == number(1) and data["status"] == "reserved"
    assert data["pdf_url"] == f"{ADMIN_API}/invoices/{invoice_id}/pdf" and data["mode"] == "approve"
    with session_scope(w.database_url) as session:
        assert data["issue_date"] == evaluate.tenant_today(session, w.tenants["a"]).isoformat()
    assert (data["amount_excl"], data["vat_rate"], data["vat_amount"], data["amount_incl"], data["currency"]) == (
        "1075.00", "20.00", "215.00", "1290.00", "EUR")
    assert data["released_by"] == "user:setup" and data["reason"] is None and data["violations"] == []


def test_the_pdf_holds_the_number_and_the_amounts(world_any_db):
    w = world_any_db
    [invoice_id] = reserve(w, folders(w))
    response = w.call("GET", f"/invoices/{invoice_id}/pdf", who="admin_a")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f'attachment; filename="facture-{number(1)}.pdf"'
    assert response.data.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.data)).pages)
    folder = row(w, invoice_id).folder_number
    for expected in (f"N° de facture : {number(1)}", "Total HT : 1 075,00 EUR", "TVA (20 %) : 215,00 EUR",
                     "Total TTC : 1 290,00 EUR", f"Dossier CPF n° {folder}", "Organisme A", "Camille Martin-a"):
        assert expected in text, (expected, text)
    assert_error(w.call("GET", f"/invoices/{invoice_id}/pdf", who="trainer_a"), 403, "forbidden")
    assert_error(w.call("GET", f"/invoices/{invoice_id}/pdf", who=None), 401)


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="factures.csv"'
    return list(csv.reader(io.StringIO(response.get_data(as_text=True), newline="")))


def test_the_csv_export_has_the_header_and_the_filtered_rows_only(world_any_db):
    w = world_any_db
    ids = _mixed(w)
    rows = _csv(w.call("GET", "/invoices/export.csv", who="admin_a"))
    assert rows[0] == list(COLUMNS)
    by_number = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in rows[1:]}
    assert len(rows) == 6 and len(by_number) == 5  # tenant A's five, ordered by issue date
    assert [r[1] for r in rows[1:]] == ["2026-02-28", "2026-03-01", "2026-03-15", "2026-03-31", "2026-04-01"]
    paid = by_number[row(w, ids["paid"]).number]
    assert (paid["status"], paid["amount_excl"], paid["vat_rate"], paid["vat_amount"], paid["amount_incl"],
            paid["currency"], paid["paid_amount"], paid["paid_at"]) == (
        "paid", "1075.00", "20.00", "215.00", "1290.00", "EUR", "1290.00", today().isoformat())
    assert paid["billed_at"].endswith("Z") and paid["beneficiary_name"] == "Camille Martin-a"
    assert by_number[row(w, ids["reserved"]).number]["billed_at"] == ""

    march = _csv(w.call("GET", "/invoices/export.csv?from=2026-03-01&to=2026-03-31", who="admin_a"))
    assert march[0] == list(COLUMNS)
    assert [r[0] for r in march[1:]] == [row(w, ids[s]).number for s in ("reserved", "failed", "billed")]
    failed = _csv(w.call("GET", "/invoices/export.csv?status=failed", who="admin_a"))
    assert [(r[0], r[2]) for r in failed[1:]] == [(row(w, ids["failed"]).number, "failed")]
    assert _csv(w.call("GET", "/invoices/export.csv?status=sent", who="admin_a")) == [list(COLUMNS)]
    theirs = _csv(w.call("GET", f"/invoices/export.csv?tenant_id={w.tenants['b']}", who="super"))
    assert [r[0] for r in theirs[1:]] == [row(w, ids["theirs"]).number]
    assert_error(w.call("GET", f"/invoices/export.csv?tenant_id={w.tenants['b']}", who="admin_a"), 404)


def test_the_csv_defuses_formulas_from_folder_data(world):
    w = world
    with session_scope(w.database_url) as session:
        from bdc.models import User

        student = session.scalars(select(User).where(User.email == "stagiaire-a@bdc.test")).one()
        student.first_name, student.last_name = "=HYPERLINK(\"http://evil\")", "+1"
    reserve(w, folders(w))
    [_, line] = _csv(w.call("GET", "/invoices/export.csv", who="admin_a"))
    assert dict(zip(COLUMNS, line, strict=True))["beneficiary_name"] == "'=HYPERLINK(\"http://evil\") +1"


# -- the month's figures ----------------------------------------------------------------------------------

def test_the_summary_matches_the_invoices_of_the_month(world_any_db):
    w = world_any_db
    made = reserve(w, folders(w, n=6))
    reserved, sent, failed, billed, paid, cancelled = made
    with session_scope(w.database_url) as session:
        assert invoices.start(session, sent, "t")
        assert invoices.cancel(session, cancelled, "user:setup", "doublon")
    advance(w, failed, "failed")
    advance(w, billed, "billed")
    advance(w, paid, "paid", paid_on=today())
    folders(w, n=2)  # still due, priced (with the cancelled invoice's folder: due again)
    folders(w, price=None)  # due, without a price
    folders(w, tenant="b", n=4)  # another tenant's: not counted
    month = today_month()
    response = w.call("GET", f"/invoices/summary?month={month}", who="admin_a")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "month": month, "mode": "approve",
        "to_bill": {"count": 4, "amount_incl": "3870.00", "without_price": 1},
        "reserved": {"count": 2, "amount_incl": "2580.00"},  # reserved and sent: on their way
        "billed": {"count": 2, "amount_incl": "2580.00"},  # billed and paid, issued this month
        "paid": {"count": 1, "amount_incl": "1290.00"},
        "failed": {"count": 1, "amount_incl": "1290.00"},
    }
    # Another month: what was billed or paid in it is nothing; what waits now is the same.
    other = w.call("GET", "/invoices/summary?month=2001-02", who="admin_a").get_json()
    assert other["month"] == "2001-02" and other["billed"] == other["paid"] == {"count": 0, "amount_incl": "0.00"}
    assert other["to_bill"]["count"] == 4 and other["failed"]["count"] == 1
    theirs = w.call("GET", f"/invoices/summary?month={month}&tenant_id={w.tenants['b']}", who="super").get_json()
    assert theirs["mode"] == "off" and theirs["to_bill"] == {"count": 4, "amount_incl": "5160.00", "without_price": 0}
    assert theirs["billed"]["count"] == 0


def test_the_summary_defaults_to_the_tenants_month(world):
    w = world
    # Kiritimati is UTC+14: for most of each month's last day its month is already the next one.
    with session_scope(w.database_url) as session:
        session.add(LifecycleSettings(tenant_id=w.tenants["a"], time_zone="Pacific/Kiritimati"))
    with session_scope(w.database_url) as session:
        expected = evaluate.tenant_today(session, w.tenants["a"]).strftime("%Y-%m")
    assert w.call("GET", "/invoices/summary", who="admin_a").get_json()["month"] == expected


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "2026", "abcd-ef",
                                   "2026-01-01", "0000-01", "+2026-1", " 2026-1", "２０２６-01", "2026-1x", "-1-1"])
def test_a_bad_month_is_a_clear_400(world, month):
    from urllib.parse import quote

    response = world.call("GET", f"/invoices/summary?month={quote(month)}", who="admin_a")
    assert_error(response, 400, "invalid_parameter")


# -- settings ---------------------------------------------------------------------------------------------

def test_settings_show_the_defaults_until_saved_then_are_audited(admin_world):
    w = admin_world
    shown = w.call("GET", "/billing/settings", who="admin_a").get_json()
    assert shown == {"mode": "off", "number_format": "F-{year}-{seq:06d}", "configured": False,
                     "vat_mention": "TVA non applicable, art. 261-4-4° a du CGI", "seller_address": None}
    body = {"mode": "approve", "number_format": "BC-{year}-{seq:05d}", "vat_mention": "  Exonéré  ",
            "seller_address": "1 rue de la Paix\n75002 Paris"}
    saved = w.call("PUT", "/billing/settings", who="admin_a", json=body)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    expected = {**body, "vat_mention": "Exonéré", "configured": True}
    assert saved.get_json() == expected
    assert w.call("GET", "/billing/settings", who="admin_a").get_json() == expected
    assert w.call("GET", "/billing/settings", who="admin_b").get_json()["configured"] is False
    [entry] = audit(w, "billing.settings_changed")
    assert (entry.actor, entry.tenant_id) == (f"user:{w.ids['a']['admin']}", w.tenants["a"])
    assert entry.details["before"]["number_format"] == "F-{year}-{seq:06d}"
    assert entry.details["after"]["number_format"] == "BC-{year}-{seq:05d}"
    folders(w)
    [item] = w.call("GET", "/invoices/due", who="admin_a").get_json()["items"]
    assert item["next_number"] == f"BC-{today().year}-00001"
    cleared = w.call("PUT", "/billing/settings", who="admin_a", json={"vat_mention": None, "seller_address": " "})
    assert (cleared.get_json()["vat_mention"], cleared.get_json()["seller_address"]) == (None, None)
    assert cleared.get_json()["mode"] == "approve"  # untouched fields keep their value
    assert len(audit(w, "billing.settings_changed")) == 2
    # A super_admin changes tenant B's, by name.
    theirs = w.call("PUT", f"/billing/settings?tenant_id={w.tenants['b']}", who="super", json={"mode": "dry_run"})
    assert theirs.status_code == 200 and audit(w, "billing.settings_changed")[-1].actor == f"user:{w.ids['super']}"
    assert w.call("GET", "/billing/settings", who="admin_b").get_json()["mode"] == "dry_run"


@pytest.mark.parametrize("body,status", [
    ({"number_format": "{seq}{seq}"}, 422), ({"number_format": "{name}"}, 422), ({"number_format": "F-{name}-{seq}"}, 422),
    ({"number_format": "F-{year}"}, 422), ({"number_format": "F-{year}-{year}-{seq}"}, 422),
    ({"number_format": "F-{seq:x}"}, 422), ({"number_format": "F-{seq:>6}"}, 422), ({"number_format": "F {seq}"}, 422),
    ({"number_format": "F-{seq!r}"}, 422), ({"number_format": "F-{0}"}, 422), ({"number_format": "F-{}"}, 422),
    ({"number_format": "F-{year:04d}-{seq}"}, 422), ({"number_format": "F-{seq"}, 422), ({"number_format": "F-{{seq}}"}, 422),
    ({"number_format": ""}, 422), ({"number_format": "   "}, 422), ({"number_format": None}, 422),
    ({"number_format": 123}, 422), ({"number_format": "F" * 60 + "{seq}"}, 422),
    ({"number_format": "F-" + "x" * 100 + "{seq}"}, 422), ({"number_format": "F<script>{seq}"}, 422),
    ({"vat_mention": 5}, 422), ({"vat_mention": ["TVA"]}, 422), ({"vat_mention": True}, 422),
    ({"vat_mention": "x" * 301}, 422), ({"seller_address": {"street": "x"}}, 422), ({"seller_address": "x" * 501}, 422),
    ({"mode": "sometimes"}, 422), ({"mode": 1}, 422), ({"mode": None}, 422), ({"mode": "AUTO"}, 422),
    ({"colour": "red"}, 422), ({"mode": "auto", "extra": 1}, 422),
    ("not json", 400), ("[]", 400), ("null", 400), ("", 400),
])
def test_hostile_settings_are_refused_and_change_nothing(world, body, status):
    w = world
    before = snapshot(w)
    if isinstance(body, str):
        response = w.client.put(ADMIN_API + "/billing/settings", data=body,
                                headers={**w.headers("admin_a"), "Content-Type": "application/json"})
    else:
        # A good field rides along: a lenient reader would save it.
        response = w.call("PUT", "/billing/settings", who="admin_a", json={"seller_address": "changed", **body})
    assert_error(response, status)
    assert snapshot(w) == before


def test_a_format_that_would_hand_out_used_numbers_again_is_refused(world, redis_client):
    """A new series (here: the year moved into the literal) would start again at 1 over existing numbers."""
    w = world
    first, second = reserve(w, folders(w, n=2))
    year = today().year
    before = snapshot(w)
    response = w.call("PUT", "/billing/settings", who="admin_a", json={"number_format": f"F-{year}-{{seq:06d}}"})
    assert_error(response, 409, "number_format_reuses_numbers")
    assert snapshot(w) == before
    # A format whose numbers cannot meet the used ones is fine, and the next release uses it.
    assert w.call("PUT", "/billing/settings", who="admin_a", json={"number_format": "FA{year}-{seq:04d}"}).status_code == 200
    [folder] = folders(w)
    released = w.call("POST", "/invoices/release", who="admin_a", json={"enrollment_ids": [folder]})
    assert released.status_code == 202 and released.get_json()["released"][0]["number"] == f"FA{year}-0003"


# -- who may call what ----------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/invoices", None, 200, "tenant"),
    ("GET", "/invoices/{invoice}", None, 200, "object"),
    ("GET", "/invoices/{invoice}/pdf", None, 200, "object"),
    ("GET", "/invoices/export.csv", None, 200, "tenant"),
    ("GET", "/invoices/due", None, 200, "tenant"),
    ("POST", "/invoices/release", {"all": True}, 202, "tenant"),
    ("POST", "/invoices/{failed}/retry", None, 202, "object"),
    ("POST", "/invoices/{invoice}/cancel", {"reason": "doublon"}, 200, "object"),
    ("GET", "/invoices/summary", None, 200, "tenant"),
    ("GET", "/billing/settings", None, 200, "tenant"),
    ("PUT", "/billing/settings", {"mode": "approve"}, 200, "tenant"),
]


def _student_token(w) -> str:
    from flask_jwt_extended import create_access_token

    with w.app.app_context():
        return create_access_token(identity="bdc-student-7", additional_claims={"role": "student",
                                                                               "tenant_id": w.tenants["a"]})


@pytest.mark.parametrize("method,path,body,ok,scope", ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_every_billing_endpoint_with_every_caller(admin_world, redis_client, method, path, body, ok, scope):
    w = admin_world
    w.tokens["student_a"] = _student_token(w)
    made = {}
    for tenant in ("a", "b"):
        billing_on(w, tenant=tenant)
        invoice, failed = reserve(w, folders(w, tenant=tenant, n=2), tenant=tenant)
        advance(w, failed, "failed")
        made[tenant] = {"invoice": invoice, "failed": failed}

    def url(tenant):
        return path.format(**made[tenant])

    before = snapshot(w)
    for who, status in (("trainer_a", 403), ("student_a", 403), (None, 401), ("expired", 401), ("forged", 401)):
        assert_error(w.call(method, url("a"), who=who, json=body), status)
    assert snapshot(w) == before and sends(redis_client) == []

    def succeeds(path_, who):
        response = w.call(method, path_, who=who, json=body)
        data = response.get_data()  # read to the end: the CSV is streamed (and the PDF is bytes)
        response.close()
        assert response.status_code == ok, data[:500]

    if scope == "object":
        assert_error(w.call(method, url("a"), who="admin_b", json=body), 404, "not_found")
        assert_error(w.call(method, url("b") + f"?tenant_id={w.tenants['a']}", who="super", json=body), 404)
        assert snapshot(w) == before
        succeeds(url("a"), "admin_a")
        succeeds(url("b"), "super")  # a super_admin crosses tenants
    else:
        assert_error(w.call(method, url("a") + f"?tenant_id={w.tenants['a']}", who="admin_b", json=body), 404)
        # Two tenants exist: a super_admin must choose.
        assert_error(w.call(method, url("a"), who="super", json=body), 400, "tenant_required")
        assert snapshot(w) == before
        succeeds(url("a"), "admin_a")
        succeeds(url("b") + f"?tenant_id={w.tenants['b']}", "super")


def test_lists_show_only_the_callers_tenant(world):
    w = world
    billing_on(w, tenant="b")
    mine = reserve(w, folders(w, n=2))
    theirs = reserve(w, folders(w, tenant="b", n=3), tenant="b")
    assert sorted(_listed(w)) == mine
    assert sorted(_listed(w, who="admin_b")) == theirs
    assert_error(w.call("GET", f"/invoices?tenant_id={w.tenants['b']}", who="admin_a"), 404)
    due_a = w.call("GET", "/invoices/due", who="admin_a").get_json()
    assert due_a["total"] == 0
    summary_b = w.call("GET", "/invoices/summary", who="admin_b").get_json()
    assert summary_b["reserved"] == {"count": 3, "amount_incl": "3870.00"}


def test_an_invoice_wedof_refused_can_be_cancelled_and_the_folder_billed_under_a_new_number(world):
    w = world
    [folder] = folders(w)
    [invoice_id] = reserve(w, [folder])
    with session_scope(w.database_url) as session:
        assert invoices.start(session, invoice_id, "t")
        assert invoices.fail(session, invoice_id, "Wedof refused: billNumber already used",
                             [{"propertyPath": "billNumber"}], refused=True)
    shown = w.call("GET", f"/invoices/{invoice_id}", who="admin_a").get_json()
    assert shown["refused"] is True and shown["status"] == "failed"
    response = w.call("POST", f"/invoices/{invoice_id}/cancel", who="admin_a", json={"reason": "numéro refusé"})
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    [item] = w.call("GET", "/invoices/due", who="admin_a").get_json()["items"]
    assert (item["enrollment_id"], item["next_number"]) == (folder, number(2))
