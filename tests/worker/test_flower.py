"""Flower is a real console for failures: real Flower, a real worker, the receiver under gunicorn and the
sandbox over HTTP, everything checked through Flower's own HTTP API as an admin would use it.

- a task the receiver sends is in Flower from the moment it is sent, before any worker takes it;
- a dead-lettered event, a failed sync and a refused push are FAILURE tasks whose arguments are only
  ids and whose exception says why;
- re-applied through ``/api/task/async-apply`` once the cause is fixed, each does its work; re-applied
  once more, with the work already done, each changes nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
import requests
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Enrollment,
    EventStatus,
    LifecycleAction,
    LifecycleKind,
    SyncRun,
    SyncStatus,
    WebhookEvent,
    WedofConnection,
)
from lifecycle import actions
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker, Flower, Receiver
from tests.worker.helpers import (
    envelope,
    event_row,
    insert_event,
    make_connection,
    sandbox_truth,
    send,
    truth_mismatches,
)
from wedof.signatures import compute_signature
from worker.task_names import CARRY_OUT_ACTION, PROCESS_EVENT, SYNC_CONNECTION

REVOKED = "a-revoked-api-key"


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=30, seed=41) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def flower(stack_env, output_dir):
    with Flower(stack_env, basic_auth=f"admin:{uuid.uuid4().hex[:12]}", log_dir=output_dir / "logs").start() as f:
        yield f


def flower_api(flower, method: str, path: str, **kwargs):
    response = requests.request(method, f"{flower.url}/api{path}", auth=flower.auth, timeout=10, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


def task_in_flower(flower, task_id: str, states=("SUCCESS", "FAILURE", "REJECTED", "RETRY"), timeout=60) -> dict:
    """The task as Flower shows it, once it is in one of ``states``."""
    def seen():
        response = requests.get(f"{flower.url}/api/task/info/{task_id}", auth=flower.auth, timeout=10)
        if response.status_code == 200 and response.json().get("state") in states:
            return response.json()
        return None

    return wait_until(seen, timeout=timeout, interval=0.3, message=f"task {task_id} in Flower as one of {states}")


def reapply(flower, name: str, args: list, kwargs: dict | None = None) -> str:
    """What an admin does: re-apply a task by name with the same ids, through Flower's HTTP API."""
    return flower_api(flower, "POST", f"/task/async-apply/{name}", json={"args": args, "kwargs": kwargs or {}})["task-id"]


def test_a_task_the_receiver_sends_is_in_flower_before_a_worker_takes_it(stack_env, sandbox, flower, output_dir):
    # No worker consumes the events queue yet (this test comes first in the module).
    _tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key, secret="flower-hook-secret")
    folder = sandbox_truth(sandbox)[0]
    body = json.dumps(folder).encode()
    with Receiver(stack_env, log_dir=output_dir / "logs").start() as receiver:
        response = requests.post(f"{receiver.url}/api/webhooks/wedof/{connection_id}", data=body, timeout=10, headers={
            "Content-Type": "application/json", "X-Wedof-Event": "registrationFolder.updated",
            "X-Wedof-Delivery": f"flower-{uuid.uuid4()}",
            "X-Wedof-Signature": compute_signature("flower-hook-secret", body)})
    assert response.status_code == 202, response.text
    row = event_row(response.json()["event_id"])
    sent = task_in_flower(flower, row.task_id, states=("PENDING",))
    assert (sent["name"], sent["args"]) == (PROCESS_EVENT, f"[{row.id}]")
    assert row.status == EventStatus.QUEUED  # nobody ran it: Flower knows it from the task-sent event alone
    with CeleryWorker(stack_env, queues="events", log_dir=output_dir / "logs").start():
        done = task_in_flower(flower, row.task_id, states=("SUCCESS",))
    assert "processed" in done["result"] and event_row(row.id).status == EventStatus.PROCESSED


def test_a_dead_lettered_event_fails_in_flower_and_is_reapplied_once_fixed(stack_env, broker, events_worker,
                                                                           sandbox, flower):
    tenant_id, connection_id = make_connection(sandbox.api_url, REVOKED)
    folder = sandbox_truth(sandbox)[5]
    event_id, task_id = insert_event(connection_id, envelope(folder["externalId"]), event_type="stagiaire.updated",
                                     payload_format="envelope")
    send(broker, PROCESS_EVENT, [event_id], task_id)
    failed = task_in_flower(flower, task_id)
    row = event_row(event_id)
    assert failed["state"] == "FAILURE" and failed["args"] == f"[{event_id}]", failed
    assert "TaskFailed" in failed["exception"] and "HTTP 401" in failed["exception"], failed["exception"]
    assert row.status == EventStatus.FAILED and row.status_reason in failed["exception"]
    listed = flower_api(flower, "GET", "/tasks", params={"state": "FAILURE", "taskname": PROCESS_EVENT})
    assert task_id in listed  # what an admin opening Flower's failed tasks finds

    with session_scope() as session:  # the admin fixes the cause
        session.get(WedofConnection, connection_id).api_key = sandbox.api_key
    again = reapply(flower, PROCESS_EVENT, [event_id])
    assert task_in_flower(flower, again)["state"] == "SUCCESS"
    row = event_row(event_id)
    assert (row.status, row.task_id, row.attempts) == (EventStatus.PROCESSED, again, 1)
    assert truth_mismatches(tenant_id, [folder]) == []

    once_more = reapply(flower, PROCESS_EVENT, [event_id])
    done = task_in_flower(flower, once_more)
    assert done["state"] == "SUCCESS" and "skipped" in done["result"], done
    after = event_row(event_id)
    assert (after.status, after.task_id, after.processed_at) == (EventStatus.PROCESSED, again, row.processed_at)


def test_a_failed_sync_fails_in_flower_and_is_reapplied_once_fixed(stack_env, broker, sync_worker, sandbox, flower):
    tenant_id, connection_id = make_connection(sandbox.api_url, REVOKED)
    args = [connection_id, "all", True, None, "manual"]
    task_id = send(broker, SYNC_CONNECTION, args)
    failed = task_in_flower(flower, task_id)
    assert failed["state"] == "FAILURE" and failed["args"] == repr(args), failed["args"]
    with session_scope() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).one()
        assert run.status == SyncStatus.FAILED and "HTTP 401" in run.error and run.error in failed["exception"]

    with session_scope() as session:
        session.get(WedofConnection, connection_id).api_key = sandbox.api_key
    again = reapply(flower, SYNC_CONNECTION, args)
    assert task_in_flower(flower, again)["state"] == "SUCCESS"
    assert truth_mismatches(tenant_id, sandbox_truth(sandbox), complete=True) == []

    once_more = reapply(flower, SYNC_CONNECTION, args)
    assert task_in_flower(flower, once_more)["state"] == "SUCCESS"
    with session_scope() as session:
        runs = {run.task_id: run for run in session.scalars(select(SyncRun).where(SyncRun.connection_id == connection_id))}
    assert runs[again].applied == 30 and (runs[once_more].applied, runs[once_more].unchanged) == (0, 30)
    assert truth_mismatches(tenant_id, sandbox_truth(sandbox), complete=True) == []


def test_a_refused_declaration_fails_in_flower_and_is_reapplied_once_fixed(stack_env, broker, events_worker,
                                                                           sync_worker, sandbox, flower):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    task_id = send(broker, SYNC_CONNECTION, [connection_id, "all", True, None, "manual"])
    assert task_in_flower(flower, task_id)["state"] == "SUCCESS"
    with session_scope() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.tenant_id == tenant_id,
                                                              Enrollment.wedof_state == "accepted")).first()
        enrollment_id, external_id = enrollment.id, enrollment.external_id
        ended_on = min(date.today(), enrollment.session_end_date).isoformat()
        # An admin declares the service done of a bilan that never started: Wedof refuses it.
        action_id = actions.decide_by_hand(session, tenant_id, enrollment_id, LifecycleKind.END, {
            "date": ended_on, "code": "8", "absenceDuration": 0.0, "forceMajeureAbsence": False,
            "trainingDuration": enrollment.indicative_duration_hours}, "user:1").id

    def declarations_sent() -> int:  # every POST of a transition the sandbox received
        return sandbox.control("GET", "/requests")["by_route"].get("POST /api/registrationFolders/<external_id>/<verb>", 0)

    refused = send(broker, CARRY_OUT_ACTION, [action_id])
    failed = task_in_flower(flower, refused)
    assert failed["state"] == "FAILURE" and failed["args"] == f"[{action_id}]"
    assert "Wedof refused" in failed["exception"] and "HTTP 400" in failed["exception"], failed["exception"]
    with session_scope() as session:
        action = session.get(LifecycleAction, action_id)
        assert action.status == ActionStatus.REFUSED and action.reason in failed["exception"]
        assert action.wedof_answer["violations"][0]["propertyPath"] == "state"  # Wedof's reason, shown

    # The cause, fixed: the bilan really started, and its entry is declared.
    with session_scope() as session:
        entry_id = actions.decide_by_hand(session, tenant_id, enrollment_id, LifecycleKind.ENTRY,
                                          {"date": sandbox_session_start(sandbox, external_id)}, "user:1").id
    assert task_in_flower(flower, reapply(flower, CARRY_OUT_ACTION, [entry_id]))["state"] == "SUCCESS"
    calls = declarations_sent()
    again = reapply(flower, CARRY_OUT_ACTION, [action_id])
    assert task_in_flower(flower, again)["state"] == "SUCCESS"
    assert sandbox.api("GET", f"/registrationFolders/{external_id}").json()["state"] == "serviceDoneDeclared"
    assert declarations_sent() == calls + 1

    once_more = reapply(flower, CARRY_OUT_ACTION, [action_id])
    done = task_in_flower(flower, once_more)
    assert done["state"] == "SUCCESS" and "skipped" in done["result"], done
    assert declarations_sent() == calls + 1  # done: never declared twice
    with session_scope() as session:
        assert session.get(LifecycleAction, action_id).status == ActionStatus.DONE


def sandbox_session_start(sandbox, external_id: str) -> str:
    return sandbox.api("GET", f"/registrationFolders/{external_id}").json()["trainingActionInfo"]["sessionStartDate"][:10]


def test_a_bad_argument_is_rejected_once(broker, events_worker, flower):
    task_id = send(broker, PROCESS_EVENT, ["not-an-id"])
    rejected = task_in_flower(flower, task_id, states=("REJECTED", "FAILURE"))
    # Celery records a message rejected for good as a FAILURE whose exception is the Reject.
    assert rejected["state"] == "FAILURE" and rejected["exception"].startswith("reject requeue=False"), rejected
    assert "event_id must be an integer" in rejected["exception"] and rejected["retries"] == 0
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)
                              .where(WebhookEvent.task_id == task_id)) == 0
