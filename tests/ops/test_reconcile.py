"""The reconciliation report against the sandbox over HTTP, with a real worker, on PostgreSQL and SQLite.

Each test has its own tenant on the one sandbox, synced in full first (in this process, as
test_sync_progress does); every report is made by the real worker (``bdc.reconcile`` sent by name on
the sync queue), and the incremental sync a drift queues is run by that worker too. Folders are changed
at the sandbox with no webhook registered, so only the reconciliation can notice.
"""

from __future__ import annotations

from collections import Counter

import pytest
from celery.exceptions import Reject
from sqlalchemy import delete, func, select

from bdc.db import session_scope
from bdc.models import (
    Enrollment,
    Notice,
    NoticeKind,
    ReconciliationReport,
    ReportStatus,
    SyncRun,
    SyncStatus,
    WedofConnection,
)
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import make_connection, send
from worker.reconcile import connections_to_reconcile
from worker.task_names import RECONCILE
from worker.tasks import sync as sync_module
from worker.tasks.reconcile import reconcile as reconcile_task

FOLDERS = 120
FINISHED = (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SKIPPED)


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=21) as sbx:
        yield sbx


@pytest.fixture
def wedof(sandbox):
    """The module's sandbox, its faults and API changes off again after each test."""
    yield sandbox
    sandbox.control("PUT", "/faults", json={"error_rate": 0, "latency_ms": 0})
    sandbox.control("DELETE", "/api-changes")


def synced_tenant(sandbox) -> tuple[int, int]:
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    assert result["status"] == "succeeded" and result["failed"] == 0, result
    return tenant_id, connection_id


def newest_report_id(connection_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.max(ReconciliationReport.id))
                              .where(ReconciliationReport.connection_id == connection_id)) or 0


def report(broker, worker, connection_id: int) -> ReconciliationReport:
    """One report made by the worker: sent by name, waited for, read back."""
    before = newest_report_id(connection_id)
    send(broker, RECONCILE, [connection_id])
    wait_until(lambda: newest_report_id(connection_id) > before, timeout=90,
               message=f"a reconciliation report of connection {connection_id}")
    with session_scope() as session:
        row = session.get(ReconciliationReport, newest_report_id(connection_id))
        session.expunge(row)
        return row


def wait_sync(run_id: int) -> SyncRun:
    def finished():
        with session_scope() as session:
            run = session.get(SyncRun, run_id)
            if run.status in FINISHED:
                session.expunge(run)
                return run
            return None
    return wait_until(finished, timeout=90, message=f"sync run {run_id} finished")


def truth_counts(sandbox) -> tuple[Counter, Counter]:
    folders = sandbox.control("GET", "/truth", params={"compact": 1})
    return Counter(f["state"] for f in folders), Counter(f["billingState"] for f in folders)


def notices(tenant_id: int) -> list[Notice]:
    with session_scope() as session:
        rows = session.scalars(select(Notice).where(Notice.tenant_id == tenant_id,
                                                    Notice.kind == NoticeKind.RECONCILIATION_DRIFT)
                               .order_by(Notice.id)).all()
        session.expunge_all()
        return list(rows)


def test_agreeing_counts_make_an_ok_report(stack_env, broker, worker, wedof):
    tenant_id, connection_id = synced_tenant(wedof)
    row = report(broker, worker, connection_id)
    states, billing = truth_counts(wedof)
    assert row.status == ReportStatus.OK and row.drift == 0 and row.error is None, row.details
    assert {k: v for k, v in row.wedof_states.items() if v} == dict(states) == {
        k: v for k, v in row.local_states.items() if v}
    assert {k: v for k, v in row.wedof_billing.items() if v} == dict(billing)
    assert row.wedof_newest_update == row.local_newest_update is not None
    assert row.details["total"] == {"wedof": FOLDERS, "local": FOLDERS} and row.sync_run_id is None
    assert row.details["streak"] == 0 and notices(tenant_id) == []


def test_folders_changed_without_webhooks_drift_then_the_sync_it_queues_brings_them_back(stack_env, broker, worker,
                                                                                          wedof):
    tenant_id, connection_id = synced_tenant(wedof)
    accepted = [f["externalId"] for f in wedof.control("GET", "/truth", params={"compact": 1})
                if f["state"] == "accepted"][:3]
    assert len(accepted) == 3
    for external_id in accepted:  # the attendee cancels, at Wedof only: no webhook reaches us
        wedof.control("POST", f"/folders/{external_id}/moves/canceledByAttendee")

    drifted = report(broker, worker, connection_id)
    assert drifted.status == ReportStatus.DRIFT and drifted.drift == 6, drifted.details
    assert drifted.details["differences"]["states"] == {"accepted": -3, "canceledByAttendee": 3}  # Wedof minus ours
    assert drifted.details["behind"] and drifted.wedof_newest_update > drifted.local_newest_update
    assert drifted.sync_run_id is not None and drifted.details["sync"] == "queued"

    run = wait_sync(drifted.sync_run_id)  # the worker ran the incremental sync the report queued
    assert (run.status, run.full, run.trigger.value) == (SyncStatus.SUCCEEDED, False, "schedule")
    assert run.applied == 3, (run.applied, run.error)
    with session_scope() as session:
        held = dict(session.execute(select(Enrollment.external_id, Enrollment.wedof_state)
                                    .where(Enrollment.external_id.in_(accepted), Enrollment.tenant_id == tenant_id))
                    .all())
    assert held == dict.fromkeys(accepted, "canceledByAttendee")

    again = report(broker, worker, connection_id)
    assert again.status == ReportStatus.OK and again.drift == 0 and again.sync_run_id is None, again.details
    assert notices(tenant_id) == []  # one drifting report, cleared by its sync: nothing to tell staff


def _bogus_enrollment(tenant_id: int) -> None:
    """A folder we hold that Wedof does not list: no sync can make the counts agree."""
    with session_scope() as session:
        model = session.scalars(select(Enrollment).where(Enrollment.tenant_id == tenant_id).limit(1)).one()
        session.add(Enrollment(tenant_id=tenant_id, beneficiary_id=model.beneficiary_id, program_id=model.program_id,
                               external_id="9000000001", wedof_state="inTraining", wedof_billing_state="notBillable",
                               wedof_last_update=model.wedof_last_update))


def test_a_persisting_drift_raises_one_notice_and_a_new_one_after_it_came_back(stack_env, broker, worker, wedof):
    tenant_id, connection_id = synced_tenant(wedof)
    _bogus_enrollment(tenant_id)
    first = report(broker, worker, connection_id)
    assert (first.status, first.drift, first.details["streak"]) == (ReportStatus.DRIFT, 2, 1), first.details
    assert first.details["differences"] == {"states": {"inTraining": -1}, "billing": {"notBillable": -1}}
    assert notices(tenant_id) == []

    # Wedof unreadable in between: a failed report compares nothing, so the run of drifting reports goes on.
    wedof.control("PUT", "/api-changes", json={"total_count": "omit"})
    assert report(broker, worker, connection_id).status == ReportStatus.FAILED
    wedof.control("DELETE", "/api-changes")

    second = report(broker, worker, connection_id)  # BDC_DRIFT_NOTICE_AFTER = 2: still there, tell staff once
    assert (second.status, second.details["streak"]) == (ReportStatus.DRIFT, 2)
    [notice] = notices(tenant_id)
    assert second.details["notice_id"] == notice.id and notice.target_id == str(second.id)
    assert "2 folder(s) counted differently" in notice.message and "inTraining -1" in notice.message

    third = report(broker, worker, connection_id)
    assert (third.status, third.details["streak"]) == (ReportStatus.DRIFT, 3) and "notice_id" not in third.details
    assert len(notices(tenant_id)) == 1  # not one per report while it lasts

    with session_scope() as session:  # fixed: the next report agrees
        session.execute(delete(Enrollment).where(Enrollment.tenant_id == tenant_id,
                                                 Enrollment.external_id == "9000000001"))
    cleared = report(broker, worker, connection_id)
    assert (cleared.status, cleared.details["streak"]) == (ReportStatus.OK, 0)

    _bogus_enrollment(tenant_id)  # and back: counted from one again, a new notice at two
    assert report(broker, worker, connection_id).details["streak"] == 1
    assert len(notices(tenant_id)) == 1
    assert report(broker, worker, connection_id).details["streak"] == 2
    assert len(notices(tenant_id)) == 2


@pytest.mark.parametrize("mode,reason", [
    ("omit", "Wedof sent no X-Total-Count header for registrationFolders (all)"),
    ("garbage", "X-Total-Count 'lots' is not a count"),
])
def test_without_a_readable_total_the_report_fails_with_its_reason(stack_env, broker, worker, wedof, mode, reason):
    tenant_id, connection_id = synced_tenant(wedof)
    wedof.control("PUT", "/api-changes", json={"total_count": mode})
    row = report(broker, worker, connection_id)
    assert row.status == ReportStatus.FAILED and reason in row.error, row.error
    assert (row.wedof_states, row.local_states, row.drift, row.sync_run_id) == ({}, {}, 0, None)
    with session_scope() as session:  # no sync queued on a guess
        assert session.scalar(select(func.count()).select_from(SyncRun)
                              .where(SyncRun.connection_id == connection_id)) == 1


def test_wedof_answering_5xx_is_a_failed_report_and_the_worker_goes_on(stack_env, broker, worker, wedof):
    _tenant_id, connection_id = synced_tenant(wedof)
    wedof.control("PUT", "/faults", json={"error_rate": 1.0})
    row = report(broker, worker, connection_id)
    assert row.status == ReportStatus.FAILED and "Wedof unavailable: HTTP 5" in row.error, row.error
    wedof.control("PUT", "/faults", json={"error_rate": 0})
    assert report(broker, worker, connection_id).status == ReportStatus.OK  # the same worker, still consuming


def test_a_connection_that_cannot_call_wedof_gets_a_failed_report(stack_env, broker, worker, wedof):
    _tenant_id, disabled = make_connection(wedof.api_url, wedof.api_key)
    _tenant_id, keyless = make_connection(wedof.api_url, wedof.api_key)
    with session_scope() as session:
        session.get(WedofConnection, disabled).enabled = False
        session.get(WedofConnection, keyless).api_key = None
    assert "is disabled" in report(broker, worker, disabled).error
    assert "has no Wedof API key" in report(broker, worker, keyless).error
    with session_scope() as session:  # the hourly report leaves both out
        listed = connections_to_reconcile(session)
    assert disabled not in listed and keyless not in listed


@pytest.mark.parametrize("argument", ["abc", True, -3, 0, "1; DROP TABLE x", 2**70, [1], 987654])
def test_hostile_task_arguments_are_rejected(stack_env, argument):
    with pytest.raises(Reject):
        reconcile_task(argument)
