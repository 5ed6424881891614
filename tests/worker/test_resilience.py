"""Failure modes with real processes: a flaky Wedof, SIGKILLed workers, a broker outage, a dead letter
re-applied through a real Flower. Each test asserts the final data equals the sandbox's truth."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import EventStatus, SyncRun, SyncStatus, WebhookEvent, WedofConnection
from bdc.types import utcnow
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryBeat, CeleryWorker, Flower
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
from worker.task_names import PROCESS_EVENT, SYNC_CONNECTION

# The SIGKILL tests come first: they start their own workers, and no module-wide worker may be
# running yet to take their message.


@pytest.fixture(scope="module")
def stack_env(stack_env):
    stack_env["BDC_SYNC_PAGE_SIZE"] = "10"  # several pages even for a small population
    return stack_env


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=60, seed=23) as sbx:
        yield sbx


def truth(sandbox) -> list[dict]:
    return json.loads(requests.get(f"{sandbox.url}/_sandbox/truth", timeout=60).content)


def run_sync(broker, connection_id, full=True) -> SyncRun:
    task_id = send(broker, SYNC_CONNECTION, [connection_id, "all", full, None, "manual"])

    def finished():
        with session_scope() as session:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
            return run if run is not None and run.status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED) else None

    return wait_until(finished, timeout=120, interval=0.3, message="sync finished")


def test_worker_sigkilled_mid_event_runs_it_again_and_applies_once(stack_env, broker, sandbox, faults, output_dir):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    worker = CeleryWorker(stack_env, queues="events", log_dir=output_dir / "logs").start()
    try:
        faults(latency_ms=8000)  # the Wedof fetch hangs: the task is mid-flight when the worker dies
        external_id = truth(sandbox)[3]["externalId"]
        event_id, task_id = insert_event(connection_id, envelope(external_id), event_type="stagiaire.updated",
                                         payload_format="envelope")
        send(broker, PROCESS_EVENT, [event_id], task_id)
        wait_until(lambda: event_row(event_id).status == EventStatus.PROCESSING, timeout=30, message="processing")
        worker.kill()
    finally:
        worker.stop()
    faults()
    assert event_row(event_id).status == EventStatus.PROCESSING
    replacement = CeleryWorker(stack_env, queues="events", log_dir=output_dir / "logs").start()
    try:
        # acks_late: the unacknowledged message comes back (same task id) after the visibility timeout.
        wait_until(lambda: event_row(event_id).status in DONE, timeout=90, interval=0.3, message="re-run")
    finally:
        replacement.stop()
    row = event_row(event_id)
    assert row.status == EventStatus.PROCESSED, row.last_error
    assert row.task_id == task_id and row.attempts == 2
    assert truth_mismatches(tenant_id, [f for f in truth(sandbox) if f["externalId"] == external_id]) == []


def test_worker_sigkilled_mid_sync_resumes_the_same_run(stack_env, broker, sandbox, faults, output_dir):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    worker = CeleryWorker(stack_env, queues="sync", log_dir=output_dir / "logs").start()
    faults(latency_ms=600)
    task_id = send(broker, SYNC_CONNECTION, [connection_id, "all", True, None, "manual"])

    def run_row():
        with session_scope() as session:
            return session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()

    try:
        wait_until(lambda: (run_row() is not None and run_row().pages >= 2), timeout=60, message="two pages")
        worker.kill()
    finally:
        worker.stop()
    killed = run_row()
    assert killed.status == SyncStatus.RUNNING and killed.pages < 6
    faults()
    replacement = CeleryWorker(stack_env, queues="sync", log_dir=output_dir / "logs").start()
    try:
        wait_until(lambda: run_row().status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED), timeout=90,
                   interval=0.3, message="sync re-run")
    finally:
        replacement.stop()
    run = run_row()
    assert run.id == killed.id and run.status == SyncStatus.SUCCEEDED, run.error
    assert run.fetched == 60
    with session_scope() as session:
        assert len(session.scalars(select(SyncRun).where(SyncRun.connection_id == connection_id)).all()) == 1
    assert truth_mismatches(tenant_id, truth(sandbox), complete=True) == []


OUTAGE_QUEUE = "resilience-outage"  # only this test's worker consumes it: the held task is its own


class OutageWorker:
    """The worker under test, read through its log; every wait fails at once, with the reason, if it died."""

    def __init__(self, worker: CeleryWorker):
        self.worker = worker

    def log(self) -> str:
        return self.worker.process.log_path.read_text(errors="replace")

    def outages(self) -> tuple[int, int]:
        """(connections lost, connections made) so far."""
        log = self.log()
        return log.count("Connection to broker lost"), log.count("Connected to redis://")

    def until(self, condition, message: str, timeout: float = 60):
        def alive_and():
            if not self.worker.alive():
                crash = [line for line in self.log().splitlines() if "Unrecoverable error" in line]
                raise AssertionError(f"the worker died while waiting for {message}: {crash or self.worker.log_tail()}")
            return condition()

        return wait_until(alive_and, timeout=timeout, interval=0.2, message=message)


def unacknowledged(redis_url: str) -> str:
    """Redis's index of delivered, unacknowledged messages (kombu's ``unacked`` hash), as text."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return " ".join(value.decode() for value in client.hvals("unacked"))
    finally:
        client.close()


@pytest.mark.slow
def test_worker_survives_redis_outages_with_a_task_in_flight_and_consumes_again(
        stack_env, broker, sandbox, redis_server, output_dir):
    """Redis stops under a worker that runs a task (held at the sandbox) and waits on BRPOP with its
    other slot, comes back on the same port, then the task ends and is acknowledged. Three times; after
    each the worker is alive and consumes a new task. Celery 5.7.0 died here on the first loss with
    kombu's ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (#14; worker/consumer.py)."""
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    folders = truth(sandbox)[30:36]
    worker = OutageWorker(CeleryWorker(stack_env, queues=f"events,{OUTAGE_QUEUE}", concurrency=2,
                                       log_dir=output_dir / "logs").start())

    def send_event(folder) -> tuple[int, str]:
        event_id, task_id = insert_event(connection_id, envelope(folder["externalId"]),
                                         event_type="stagiaire.updated", payload_format="envelope")
        broker.send_task(PROCESS_EVENT, args=[event_id], queue=OUTAGE_QUEUE, task_id=task_id)
        return event_id, task_id

    try:
        for round_, (held, after) in enumerate(zip(folders[::2], folders[1::2], strict=True), start=1):
            sandbox.control("PUT", "/hold", json={"method": "GET", "when": "before", "ms": 120_000, "count": 1,
                                                  "path_contains": f"/registrationFolders/{held['externalId']}"})
            held_event, held_task = send_event(held)
            worker.until(lambda: sandbox.control("GET", "/hold")["hits"] >= 1, f"round {round_}: the held call")
            lost, made = worker.outages()
            redis_server.stop()
            worker.until(lambda n=lost: worker.outages()[0] > n, f"round {round_}: the worker sees the loss")
            time.sleep(3)  # a few reconnection attempts against a Redis that is not there
            redis_server.start()
            worker.until(lambda m=made: worker.outages()[1] > m, f"round {round_}: the worker reconnects")
            sandbox.control("DELETE", "/hold")  # the task ends now, after the reconnection
            worker.until(lambda e=held_event: event_row(e).status in DONE, f"round {round_}: the held event done",
                         timeout=90)
            # Its late ack reached Redis: the message is not handed out again after the visibility timeout.
            worker.until(lambda t=held_task: t not in unacknowledged(stack_env["REDIS_URL"]),
                         f"round {round_}: the held message acknowledged")
            new_event, _ = send_event(after)  # sent after the outage: the worker still consumes
            worker.until(lambda e=new_event: event_row(e).status in DONE,
                         f"round {round_}: a new event consumed after the outage", timeout=90)
            rows = [event_row(held_event), event_row(new_event)]
            assert [(r.status, r.attempts) for r in rows] == [(EventStatus.PROCESSED, 1)] * 2, \
                [r.last_error for r in rows]
        assert "Unrecoverable error" not in worker.log()
    finally:
        sandbox.control("DELETE", "/hold")
        worker.worker.stop()
    assert truth_mismatches(tenant_id, folders) == []


def test_flaky_wedof_with_5xx_and_429_still_converges(stack_env, broker, events_worker, sync_worker, sandbox, faults):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    sandbox.control("POST", "/requests/reset")
    faults(error_rate=0.2, rate_limit_rate=0.05, retry_after=1)
    run = run_sync(broker, connection_id)
    assert run.status == SyncStatus.SUCCEEDED, run.error
    # Changes at Wedof, announced by id-only events (fetched under the same faults), then an hourly run.
    changed = sandbox.control("POST", "/simulate", json={"changes": 15})
    assert changed
    external_ids = [f["externalId"] for f in truth(sandbox)[:8]]
    event_ids = []
    for external_id in external_ids:
        event_id, task_id = insert_event(connection_id, envelope(external_id), event_type="stagiaire.updated",
                                         payload_format="envelope")
        send(broker, PROCESS_EVENT, [event_id], task_id)
        event_ids.append(event_id)
    wait_until(lambda: events_in(event_ids, DONE), timeout=120, message="events done")
    assert [event_row(e).status for e in event_ids] == [EventStatus.PROCESSED] * len(event_ids), \
        [event_row(e).last_error for e in event_ids]
    run = run_sync(broker, connection_id, full=False)
    assert run.status == SyncStatus.SUCCEEDED, run.error
    injected = sandbox.control("GET", "/requests")["faults"]
    assert injected["error"] > 0 and injected["rate_limit"] > 0, injected  # the faults really happened
    assert truth_mismatches(tenant_id, truth(sandbox), complete=True) == []


def test_events_stored_while_the_broker_is_down_are_processed_once_it_is_back(
        stack_env, broker, events_worker, sandbox, redis_server, output_dir):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    folders = truth(sandbox)[10:14]
    beat = CeleryBeat(stack_env, log_dir=output_dir / "logs").start()
    try:
        redis_server.stop()
        # What the receiver leaves behind when it cannot publish: committed rows still "received".
        stored = [insert_event(connection_id, json.dumps(f))[0] for f in folders[:3]]
        # And one row a dead worker left "processing" long ago.
        stuck, _ = insert_event(connection_id, json.dumps(folders[3]))
        with session_scope() as session:
            row = session.get(WebhookEvent, stuck)
            row.status, row.task_id, row.started_at = EventStatus.PROCESSING, "dead-task", utcnow() - timedelta(hours=1)
        redis_server.start()
        event_ids = [*stored, stuck]
        wait_until(lambda: events_in(event_ids, DONE), timeout=90, interval=0.3, message="swept and processed")
    finally:
        beat.stop()
    rows = [event_row(e) for e in event_ids]
    assert [r.status for r in rows] == [EventStatus.PROCESSED] * 4, [r.last_error for r in rows]
    assert rows[3].task_id != "dead-task"
    assert truth_mismatches(tenant_id, folders) == []


def test_dead_letter_reapplied_through_flower_once_the_cause_is_fixed(
        stack_env, broker, events_worker, sandbox, output_dir):
    tenant_id, connection_id = make_connection(sandbox.api_url, "a-revoked-key")
    external_id = truth(sandbox)[20]["externalId"]
    event_id, task_id = insert_event(connection_id, envelope(external_id), event_type="stagiaire.updated",
                                     payload_format="envelope")
    send(broker, PROCESS_EVENT, [event_id], task_id)
    wait_until(lambda: event_row(event_id).status in DONE, timeout=60, message="failed")
    row = event_row(event_id)
    assert row.status == EventStatus.FAILED and "401" in row.status_reason, row.status_reason
    assert row.attempts == 1  # a 4xx is not retried

    with session_scope() as session:  # the admin fixes the cause: the right API key
        session.get(WedofConnection, connection_id).api_key = sandbox.api_key
    with Flower(stack_env, basic_auth=f"admin:{uuid.uuid4().hex[:12]}", log_dir=output_dir / "logs").start() as flower:
        denied = requests.post(f"{flower.url}/api/task/async-apply/{PROCESS_EVENT}", json={"args": [event_id]},
                               timeout=10)
        assert denied.status_code == 401
        response = requests.post(f"{flower.url}/api/task/async-apply/{PROCESS_EVENT}", json={"args": [event_id]},
                                 auth=flower.auth, timeout=10)
        assert response.status_code == 200, response.text
        wait_until(lambda: event_row(event_id).status == EventStatus.PROCESSED, timeout=60, message="re-applied")
    row = event_row(event_id)
    assert row.task_id == response.json()["task-id"] and row.attempts == 1
    assert truth_mismatches(tenant_id, [f for f in truth(sandbox) if f["externalId"] == external_id]) == []
