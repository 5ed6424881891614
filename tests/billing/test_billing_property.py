"""A property test of billing: random interleavings of toBill webhooks, syncs, sends, retries, lost answers,
kills and payments, every call made against the sandbox over HTTP (billing in auto mode, two folders).

Whatever the interleaving:
- at most one ``/billing`` call per folder reaches the sandbox (its own count);
- a folder billed by us holds our invoice's number at Wedof;
- one live invoice per folder, no number used twice, no gap in the series.

A kill is the task dying at one of two points: after committing ``sent`` (before the POST), or after
the POST reached Wedof (before its record). Its message comes back later with the same task id, as
Redis redelivers an unacknowledged message.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from bdc import db as bdc_db
from bdc.models import BillingMode, BillingSettings, Invoice, InvoiceStatus
from billing import invoices
from tests.support.sandbox import running_sandbox
from tests.worker.helpers import make_connection
from wedof.client import WedofClient
from wedof.mapping import apply_folder
from worker.tasks.billing import bill_folder, bill_folders, send_invoice

PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}
FOLDERS = 2


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=500, seed=23) as sbx:
        yield sbx


class BillingMachine(RuleBasedStateMachine):
    sandbox = None
    folders: list[str] = []
    seen: Counter = Counter()  # what the whole run did: the interleavings were really exercised

    @initialize()
    def a_tenant(self):
        self.tenant_id, _ = make_connection(self.sandbox.api_url, self.sandbox.api_key)
        with bdc_db.session_scope() as session:
            session.add(BillingSettings(tenant_id=self.tenant_id, mode=BillingMode.AUTO, number_format=f"P{self.tenant_id}X{{seq:05d}}"))
        self.external_ids = [self.folders.pop() for _ in range(FOLDERS)]
        self.baseline = {e: self._billing_calls(e) for e in self.external_ids}
        self.enrollments: dict[str, int] = {}
        self.dead_tasks: list[tuple[int, str]] = []  # (invoice id, task id) whose message will come back
        for external_id in self.external_ids:
            self.sandbox.control("PUT", f"/folders/{external_id}", json={
                "state": "serviceDoneDeclared", "billingState": "notBillable", "billNumber": None,
                "trainingActionInfo": PRICE})
            self._sync(external_id)

    def _billing_calls(self, external_id: str) -> int:
        return self.sandbox.control("GET", "/transitions").get(external_id, {}).get("billing", 0)

    def _sync(self, external_id: str) -> None:
        folder = self.sandbox.api("GET", f"/registrationFolders/{external_id}").json()
        with bdc_db.session_scope() as session:
            self.enrollments[external_id] = apply_folder(session, self.tenant_id, folder).enrollment_id

    def _invoices(self) -> list[Invoice]:
        with bdc_db.session_scope() as session:
            return list(session.scalars(select(Invoice).where(Invoice.tenant_id == self.tenant_id)))

    @rule(n=st.integers(0, FOLDERS - 1))
    def the_financer_validates(self, n):
        """serviceDoneValidated: the folder turns toBill (its webhook is the next rule, or a sync)."""
        external_id = self.external_ids[n]
        folder = self.sandbox.api("GET", f"/registrationFolders/{external_id}").json()
        if folder["billingState"] == "notBillable":
            self.sandbox.control("PUT", f"/folders/{external_id}", json={
                "state": "serviceDoneValidated", "billingState": "toBill"})

    @rule(n=st.integers(0, FOLDERS - 1))
    def a_webhook_or_a_sync_applies_the_folder(self, n):
        external_id = self.external_ids[n]
        self._sync(external_id)
        bill_folder(self.enrollments[external_id])  # what process_event asks for, run here
        self.seen["applied"] += 1

    @rule()
    def the_beat(self):
        bill_folders(self.tenant_id)
        self.seen["beat"] += 1

    @rule(data=st.data())
    def a_send(self, data):
        """A send_invoice message is delivered (a fresh one, or one whose worker died, with its task id)."""
        live = [i for i in self._invoices() if i.status in invoices.TO_SEND]
        choices = [(i.id, str(uuid.uuid4())) for i in live] + self.dead_tasks
        if not choices:
            return
        invoice_id, task_id = data.draw(st.sampled_from(choices))
        if (invoice_id, task_id) in self.dead_tasks:
            self.dead_tasks.remove((invoice_id, task_id))
            self.seen["redelivered"] += 1
        lost = data.draw(st.booleans())
        if lost:
            self._faults(lost_answer_rate=1)
            self.seen["lost_answer"] += 1
        try:
            send_invoice.apply(args=[invoice_id], task_id=task_id)
        finally:
            if lost:
                self._faults(lost_answer_rate=0)

    @rule(data=st.data(), after_post=st.booleans())
    def a_worker_dies_mid_send(self, data, after_post):
        reserved = [i for i in self._invoices() if i.status == InvoiceStatus.RESERVED]
        if not reserved:
            return
        invoice = data.draw(st.sampled_from(reserved))
        task_id = str(uuid.uuid4())
        with bdc_db.session_scope() as session:
            if invoices.start(session, invoice.id, task_id) is None:
                return
        if after_post:  # Wedof applied the POST; the worker died before recording the answer
            with WedofClient(self.sandbox.api_url, self.sandbox.api_key) as client:
                folder = client.get_registration_folder(invoice.folder_number)
                if folder["billingState"] == "toBill":
                    client.billing(invoice.folder_number, invoice.number)
        self.dead_tasks.append((invoice.id, task_id))
        self.seen[f"killed_{'after' if after_post else 'before'}_post"] += 1

    @rule(data=st.data())
    def an_admin_retries_a_failed_one(self, data):
        failed = [i for i in self._invoices() if i.status == InvoiceStatus.FAILED]
        if failed:
            with bdc_db.session_scope() as session:
                invoices.retry(session, data.draw(st.sampled_from(failed)).id, "admin@x.fr")
            self.seen["retried"] += 1

    @rule(n=st.integers(0, FOLDERS - 1))
    def the_financer_pays(self, n):
        external_id = self.external_ids[n]
        if self.sandbox.api("GET", f"/registrationFolders/{external_id}").json()["billingState"] == "billed":
            self.sandbox.control("POST", f"/folders/{external_id}/pay")
            self.seen["paid"] += 1

    def _faults(self, **values):
        self.sandbox.control("PUT", "/faults", json=values)

    @invariant()
    def billed_once_with_our_number_and_an_intact_series(self):
        if not hasattr(self, "baseline"):
            return
        rows = self._invoices()
        numbers = [r.number for r in rows]
        assert len(numbers) == len(set(numbers)), numbers
        live = [r.enrollment_id for r in rows if r.status != InvoiceStatus.CANCELLED]
        assert len(live) == len(set(live)), rows
        assert sorted(r.sequence_value for r in rows) == list(range(1, len(rows) + 1))
        ours = {r.folder_number: r.number for r in rows if r.status != InvoiceStatus.CANCELLED}
        for external_id in self.external_ids:
            calls = self._billing_calls(external_id) - self.baseline[external_id]
            assert calls <= 1, (external_id, calls)
            if calls:
                folder = self.sandbox.api("GET", f"/registrationFolders/{external_id}").json()
                assert folder["billNumber"] == ours.get(external_id), (folder["billNumber"], ours)
        billed = sum(r.status in (InvoiceStatus.BILLED, InvoiceStatus.PAID) for r in rows)
        self.seen["billed_rows"] = max(self.seen["billed_rows"], billed)


def test_random_interleavings_bill_each_folder_once_with_one_number(sandbox, sqlite_db_url, app_env, redis_url,
                                                                    redis_client):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, bdc_retry_backoff_base="0.01",
            bdc_payment_check_after="0.01")
    BillingMachine.sandbox = sandbox
    BillingMachine.folders = [f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})]
    hunt = int(os.environ.get("BILLING_EXAMPLES", "0"))  # a longer, randomized hunt when set
    run_state_machine_as_test(BillingMachine, settings=settings(
        max_examples=hunt or 60, stateful_step_count=20, deadline=None, derandomize=not hunt, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    seen = BillingMachine.seen
    for what in ("applied", "beat", "redelivered", "lost_answer", "killed_before_post", "killed_after_post", "paid"):
        assert seen[what] > 0, (what, seen)
    assert seen["billed_rows"] > 0, seen
