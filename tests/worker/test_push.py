"""Pushes BDC → Wedof through a real worker against the sandbox: progress, declarations, webhook registration."""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import AuditLog, Enrollment, EventStatus, WedofConnection
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import events_in, insert_event, make_connection, send
from worker.task_names import (
    DECLARE_IN_TRAINING,
    DECLARE_TERMINATED,
    PROCESS_EVENT,
    PUSH_PROGRESS,
    REGISTER_WEBHOOK,
)


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=80, seed=31) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def world(stack_env, broker, events_worker, sandbox):
    """The tenant's enrollments, one per sandbox folder, applied through process_event."""
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    folders = json.loads(requests.get(f"{sandbox.url}/_sandbox/truth", timeout=60).content)
    event_ids = []
    for folder in folders:
        event_id, task_id = insert_event(connection_id, json.dumps(folder))
        send(broker, PROCESS_EVENT, [event_id], task_id)
        event_ids.append(event_id)
    wait_until(lambda: events_in(event_ids, {EventStatus.PROCESSED}), timeout=120, message="applied")
    with session_scope() as session:
        by_state: dict[str, list[int]] = {}
        for enrollment in session.scalars(select(Enrollment).where(Enrollment.tenant_id == tenant_id)):
            by_state.setdefault(enrollment.wedof_state, []).append(enrollment.id)
    return tenant_id, connection_id, by_state


def push(broker, name, enrollment_id) -> AuditLog:
    with session_scope() as session:
        last = session.scalar(select(func.max(AuditLog.id))) or 0
    send(broker, name, [enrollment_id])

    def audited():
        with session_scope() as session:
            return session.scalars(select(AuditLog).where(AuditLog.action == name, AuditLog.id > last,
                                                          AuditLog.target_id == str(enrollment_id))).first()

    return wait_until(audited, timeout=60, message=f"{name} audited")


def enrollment(enrollment_id) -> Enrollment:
    with session_scope() as session:
        return session.get(Enrollment, enrollment_id)


def wedof_folder(sandbox, external_id) -> dict:
    return sandbox.api("GET", f"/registrationFolders/{external_id}").json()


def test_progress_is_pushed_in_training_and_refused_locally_elsewhere(broker, sandbox, world):
    _tenant, _connection, by_state = world
    in_training = by_state["inTraining"][0]
    with session_scope() as session:
        session.get(Enrollment, in_training).progress = 73
    audit = push(broker, PUSH_PROGRESS, in_training)
    assert audit.details["outcome"] == "sent", audit.details
    assert wedof_folder(sandbox, enrollment(in_training).external_id)["completionRate"] == 73

    other_state = next(s for s in by_state if s not in ("inTraining", "terminated"))
    refused = by_state[other_state][0]
    before = wedof_folder(sandbox, enrollment(refused).external_id)
    audit = push(broker, PUSH_PROGRESS, refused)
    assert audit.details["outcome"] == "refused_locally" and other_state in audit.details["reason"]
    assert wedof_folder(sandbox, enrollment(refused).external_id)["lastUpdate"] == before["lastUpdate"]


def test_declaration_reads_the_state_first_and_skips_when_already_there(broker, sandbox, world):
    _tenant, _connection, by_state = world
    accepted = by_state["accepted"][0]
    audit = push(broker, DECLARE_IN_TRAINING, accepted)
    assert audit.details["outcome"] == "sent" and audit.details["state"] == "inTraining", audit.details
    assert wedof_folder(sandbox, enrollment(accepted).external_id)["state"] == "inTraining"
    assert enrollment(accepted).wedof_state == "inTraining"  # the returned folder was applied
    again = push(broker, DECLARE_IN_TRAINING, accepted)
    assert again.id != audit.id and again.details["outcome"] == "already_there"


def test_a_transition_wedof_refuses_is_audited_as_failed_without_retry(broker, sandbox, world):
    _tenant, _connection, by_state = world
    state = next(s for s in ("notProcessed", "validated", "accepted") if by_state.get(s))
    target = by_state[state][-1]
    audit = push(broker, DECLARE_TERMINATED, target)
    assert audit.details["outcome"] == "failed" and audit.details["status_code"] == 400, audit.details
    assert wedof_folder(sandbox, enrollment(target).external_id)["state"] == state


def test_register_webhook_creates_it_at_wedof_and_stores_its_id(broker, sandbox, world):
    _tenant, connection_id, _ = world
    send(broker, REGISTER_WEBHOOK, [connection_id])

    def stored():
        with session_scope() as session:
            return session.get(WedofConnection, connection_id).wedof_webhook_id

    webhook_id = wait_until(stored, timeout=60, message="webhook id stored")
    hooks = sandbox.control("GET", "/webhooks")
    hook = next(h for h in hooks if str(h["id"]) == webhook_id)
    assert hook["url"].endswith(f"/api/webhooks/wedof/{connection_id}")
    assert "registrationFolder.inTraining" in hook["events"] and hook["enabled"] is True
    assert "registrationFolderBilling.billed" in hook["events"]  # billing changes carry the folder too


@pytest.mark.parametrize("name", [PUSH_PROGRESS, DECLARE_IN_TRAINING, REGISTER_WEBHOOK])
def test_bad_push_arguments_do_not_crash_the_worker(broker, events_worker, world, name):
    for bad in ("abc", None, -1, 987654321):
        send(broker, name, [bad])
    wait_until(lambda: broker.control.ping(destination=[events_worker.node], timeout=1), timeout=20,
               message="worker alive")
    assert events_worker.alive()
