"""Webhook events through real worker processes: inbox row → process_event → data layer.

Real Redis broker, a real ``celery worker -Q events`` process, PostgreSQL, and the Wedof sandbox
over HTTP for the events that carry only an id (fetched) and for the ground truth.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import Enrollment, EventStatus
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import (
    DONE,
    envelope,
    event_row,
    events_in,
    insert_event,
    make_connection,
    send,
    truth_mismatches,
)
from worker.task_names import PROCESS_EVENT


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=40, seed=11) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def tenant(stack_env, sandbox):
    return make_connection(sandbox.api_url, sandbox.api_key)


def folder(sandbox, external_id: str) -> dict:
    response = sandbox.api("GET", f"/registrationFolders/{external_id}")
    assert response.status_code == 200, response.text
    return response.json()


def ids(sandbox, start: int, count: int) -> list[str]:
    return [f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})[start:start + count]]


def process(broker, connection_id, bodies, event_type="registrationFolder.updated", payload_format="wedof"):
    event_ids = []
    for body in bodies:
        event_id, task_id = insert_event(connection_id, body, event_type=event_type, payload_format=payload_format)
        send(broker, PROCESS_EVENT, [event_id], task_id)
        event_ids.append(event_id)
    wait_until(lambda: events_in(event_ids, DONE), timeout=60, message="events processed")
    return event_ids


def test_stored_delivery_ends_as_the_right_rows(stack_env, broker, events_worker, sandbox, tenant):
    tenant_id, connection_id = tenant
    folders = [folder(sandbox, e) for e in ids(sandbox, 0, 5)]
    event_ids = process(broker, connection_id, [json.dumps(f) for f in folders])
    for event_id in event_ids:
        row = event_row(event_id)
        assert row.status == EventStatus.PROCESSED, (row.status, row.last_error)
        assert row.attempts == 1 and row.processed_at is not None
    assert truth_mismatches(tenant_id, folders) == []


def test_envelope_event_fetches_the_folder_from_wedof(stack_env, broker, events_worker, sandbox, tenant):
    tenant_id, connection_id = tenant
    external_ids = ids(sandbox, 5, 3)
    event_ids = process(broker, connection_id, [envelope(e) for e in external_ids],
                        event_type="stagiaire.updated", payload_format="envelope")
    assert all(event_row(e).status == EventStatus.PROCESSED for e in event_ids), [event_row(e).last_error for e in event_ids]
    assert truth_mismatches(tenant_id, [folder(sandbox, e) for e in external_ids]) == []


def test_replayed_duplicated_and_out_of_order_folders_leave_the_data_unchanged(
        stack_env, broker, events_worker, sandbox, tenant):
    tenant_id, connection_id = tenant
    external_id = ids(sandbox, 10, 1)[0]
    old = folder(sandbox, external_id)
    # A newer version at Wedof (progress and lastUpdate move).
    sandbox.control("PUT", f"/folders/{external_id}", json={"notes": "changed for the test"})
    new = folder(sandbox, external_id)
    assert new["lastUpdate"] > old["lastUpdate"]
    process(broker, connection_id, [json.dumps(new)])
    with session_scope() as session:
        before = session.scalars(select(Enrollment).where(Enrollment.external_id == external_id,
                                                          Enrollment.tenant_id == tenant_id)).one()
        snapshot = (before.wedof_last_update, before.status, before.progress, before.updated_at)
    # Replay of the same body, a duplicate, then the OLDER version arriving late.
    event_ids = process(broker, connection_id, [json.dumps(new), json.dumps(new), json.dumps(old)])
    reasons = [event_row(e).status_reason for e in event_ids]
    assert all(event_row(e).status == EventStatus.PROCESSED for e in event_ids)
    assert reasons[0].endswith("unchanged") and reasons[2].endswith("stale"), reasons
    with session_scope() as session:
        after = session.scalars(select(Enrollment).where(Enrollment.external_id == external_id,
                                                         Enrollment.tenant_id == tenant_id)).one()
        assert (after.wedof_last_update, after.status, after.progress, after.updated_at) == snapshot
        assert session.scalar(select(func.count()).select_from(Enrollment).where(
            Enrollment.external_id == external_id)) == 1
    assert truth_mismatches(tenant_id, [folder(sandbox, external_id)]) == []


def test_a_refused_folder_fails_with_its_reason_and_never_retries(stack_env, broker, events_worker, tenant):
    _tenant_id, connection_id = tenant
    bad = {"externalId": "999000111", "state": "inTraining", "lastUpdate": "2025-01-01T00:00:00.000Z",
           "attendee": "not an object", "trainingActionInfo": None}
    (event_id,) = process(broker, connection_id, [json.dumps(bad)])
    row = event_row(event_id)
    assert row.status == EventStatus.FAILED
    assert row.attempts == 1
    assert "folder refused" in row.status_reason and row.last_error


def test_ignored_event_types_are_marked_ignored(stack_env, broker, events_worker, tenant):
    _tenant_id, connection_id = tenant
    (event_id,) = process(broker, connection_id, [json.dumps({"id": 5, "state": "toTake"})],
                          event_type="certificationFolder.toTake")
    row = event_row(event_id)
    assert row.status == EventStatus.IGNORED and "certification" in row.status_reason


@pytest.mark.parametrize("bad_arg", ["abc", None, -3, 10**20, {"id": 1}, 987654321])
def test_bad_task_arguments_are_rejected_and_the_worker_serves_on(stack_env, broker, events_worker, bad_arg):
    result = broker.send_task(PROCESS_EVENT, args=[bad_arg], queue="events")
    # The worker stays up and keeps serving: a ping answers after the bad message.
    wait_until(lambda: broker.control.ping(destination=[events_worker.node], timeout=1), timeout=20,
               message="worker alive")
    assert events_worker.alive()
    assert result.id
