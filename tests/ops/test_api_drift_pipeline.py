"""Wedof's API "changes" at the sandbox; real workers sync and process webhooks, on PostgreSQL and SQLite.

The sandbox serves folders with new keys and without an expected one (``/_sandbox/api-changes``). The
sync records the set once (one row, one API_CHANGED notice naming the keys) and still applies every
folder; a webhook folder of the same shape only counts on that row and is applied (its state moves); a
webhook showing one more key makes a new row whose notice names that key alone; a full sync of the same
shape changes nothing; the API back to normal clears the set without a notice. A drift that cannot be
recorded never stops a sync.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from sqlalchemy import func, select

from bdc import api_drift
from bdc.db import session_scope
from bdc.models import ApiDrift, Enrollment, EventStatus, Notice, NoticeKind, SyncRun, SyncStatus
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import DONE, event_row, insert_event, make_connection, send
from worker.task_names import PROCESS_EVENT, SYNC_CONNECTION
from worker.tasks import sync as sync_module

FOLDERS = 120  # a page of 100 (large enough to clear a set) and one of 20
CHANGE = {"add": {"attendee.pronouns": "iel", "proposal": {"code": "P1"}}, "remove": ["attendee.phoneNumber"]}
UNKNOWN, MISSING = ["attendee.pronouns", "proposal"], ["attendee.phoneNumber"]


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=31) as sbx:
        yield sbx


@pytest.fixture
def wedof(sandbox):
    yield sandbox
    sandbox.control("DELETE", "/api-changes")


def full_sync(broker, connection_id: int) -> SyncRun:
    task_id = str(uuid.uuid4())
    send(broker, SYNC_CONNECTION, [connection_id, "all", True, None, "manual"], task_id=task_id)

    def finished():
        with session_scope() as session:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
            if run is not None and run.status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SKIPPED):
                session.expunge(run)
                return run
            return None
    run = wait_until(finished, timeout=120, message="the sync finished")
    assert run.status == SyncStatus.SUCCEEDED, run.error
    return run


def webhook(broker, connection_id: int, external_id: str, body: str, event: str) -> None:
    event_id, task_id = insert_event(connection_id, body, event_type=event, folder_external_id=external_id)
    send(broker, PROCESS_EVENT, [event_id], task_id=task_id)
    wait_until(lambda: event_row(event_id).status in DONE, timeout=60, message="the webhook processed")
    assert event_row(event_id).status == EventStatus.PROCESSED, event_row(event_id).last_error


def drift_rows(connection_id: int) -> list[tuple]:
    with session_scope() as session:
        return [(r.unknown_keys, r.missing_keys, r.samples) for r in session.scalars(
            select(ApiDrift).where(ApiDrift.connection_id == connection_id).order_by(ApiDrift.id))]


def api_notices(tenant_id: int) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(Notice.message).where(
            Notice.tenant_id == tenant_id, Notice.kind == NoticeKind.API_CHANGED).order_by(Notice.id)))


def state_of(tenant_id: int, external_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Enrollment.wedof_state).where(Enrollment.tenant_id == tenant_id,
                                                                   Enrollment.external_id == external_id))


def test_a_changed_api_is_recorded_once_announced_once_and_never_breaks_the_mapping(stack_env, broker, worker, wedof):
    tenant_id, connection_id = make_connection(wedof.api_url, wedof.api_key)
    wedof.control("PUT", "/api-changes", json=CHANGE)

    run = full_sync(broker, connection_id)
    assert (run.fetched, run.applied, run.failed) == (FOLDERS, FOLDERS, 0)  # every folder applied all the same
    assert drift_rows(connection_id) == [(UNKNOWN, MISSING, FOLDERS)]  # the union of both pages, once
    [notice] = api_notices(tenant_id)
    assert "attendee.pronouns, proposal" in notice and "attendee.phoneNumber" in notice

    # A webhook folder of the same shape: applied (its state moves), counted on the row, no new notice.
    folder = next(f for f in wedof.control("GET", "/truth", params={"compact": 1}) if f["state"] == "accepted")
    external_id = folder["externalId"]
    wedof.control("POST", f"/folders/{external_id}/moves/canceledByAttendee")
    body = wedof.api("GET", f"/registrationFolders/{external_id}").text
    webhook(broker, connection_id, external_id, body, "registrationFolder.canceledByAttendee")
    assert state_of(tenant_id, external_id) == "canceledByAttendee"
    assert drift_rows(connection_id) == [(UNKNOWN, MISSING, FOLDERS + 1)] and len(api_notices(tenant_id)) == 1

    # One more key, seen first on a webhook: a new row, and a notice naming that key alone.
    wedof.control("PUT", "/api-changes", json={**CHANGE, "add": {**CHANGE["add"], "contractId": 7}})
    other = next(f for f in wedof.control("GET", "/truth", params={"compact": 1}) if f["state"] == "accepted")
    wedof.control("POST", f"/folders/{other['externalId']}/moves/canceledByFinancer")
    body = wedof.api("GET", f"/registrationFolders/{other['externalId']}").text
    webhook(broker, connection_id, other["externalId"], body, "registrationFolder.canceledByFinancer")
    assert state_of(tenant_id, other["externalId"]) == "canceledByFinancer"
    assert drift_rows(connection_id)[-1] == (["attendee.pronouns", "contractId", "proposal"], MISSING, 1)
    messages = api_notices(tenant_id)
    assert len(messages) == 2 and "contractId" in messages[1] and "proposal" not in messages[1]

    # The same shape again, in full: the set is what the sync sees, so nothing new.
    full_sync(broker, connection_id)
    assert len(drift_rows(connection_id)) == 2 and len(api_notices(tenant_id)) == 2

    # Wedof's API back to normal: the first page (100 folders) clears the set, quietly.
    wedof.control("DELETE", "/api-changes")
    full_sync(broker, connection_id)
    assert drift_rows(connection_id)[-1][:2] == ([], [])
    assert len(drift_rows(connection_id)) == 3 and len(api_notices(tenant_id)) == 2


def test_a_drift_that_cannot_be_recorded_never_stops_the_sync(stack_env, wedof, monkeypatch, caplog):
    tenant_id, connection_id = make_connection(wedof.api_url, wedof.api_key)
    wedof.control("PUT", "/api-changes", json=CHANGE)

    def broken(*_args, **_kwargs):
        raise RuntimeError("api_drift table unavailable")

    monkeypatch.setattr(api_drift, "record", broken)
    caplog.set_level(logging.WARNING, logger="bdc.api_drift")
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")  # in this process
    assert result["status"] == "succeeded" and result["applied"] == FOLDERS and result["failed"] == 0
    assert "API drift of connection" in caplog.text and "api_drift table unavailable" in caplog.text
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)
                              .where(Enrollment.tenant_id == tenant_id)) == FOLDERS
    assert drift_rows(connection_id) == []
