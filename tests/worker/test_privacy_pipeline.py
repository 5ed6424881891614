"""Erasure end to end: a beneficiary erased, then their folders' webhooks replayed through the real
receiver and events worker, the sandbox changing their folders (its own signed deliveries), and a full
sync through the sync worker. Their personal data stays gone; their folders' states keep landing.
Real gunicorn receiver, Celery workers, Redis, PostgreSQL and the Wedof sandbox over HTTP.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Beneficiary, Enrollment, EventStatus, SyncRun, SyncStatus, User, WebhookEvent
from privacy import erase_beneficiary
from privacy.retention import ENDED
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import Receiver
from tests.worker.helpers import DONE, make_connection, sandbox_truth, send, truth_mismatches
from wedof.signatures import compute_signature
from worker.task_names import APPLY_RETENTION, SYNC_CONNECTION

SECRET = "privacy-hook-secret-7f3a"


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=40, seed=23) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def receiver(stack_env, output_dir):
    server = Receiver(stack_env, log_dir=output_dir / "logs").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tenant(stack_env, sandbox, receiver):
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key, secret=SECRET)
    hook = sandbox.api("POST", "/webhooks", json={"url": f"{receiver.url}/api/webhooks/wedof/{connection_id}",
                                                  "secret": SECRET, "events": [], "name": "privacy"})
    assert hook.status_code in (200, 201), hook.text
    return tenant_id, connection_id


def full_sync(broker, connection_id) -> SyncRun:
    task_id = send(broker, SYNC_CONNECTION, [connection_id, "all", True, None, "manual"])

    def finished():
        with session_scope() as session:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
            return run if run is not None and run.status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED) else None

    run = wait_until(finished, timeout=180, interval=0.5, message="sync finished")
    assert run.status == SyncStatus.SUCCEEDED, run.error
    return run


def deliver(receiver, connection_id, folder: dict, event: str) -> None:
    body = json.dumps(folder).encode()
    response = requests.post(f"{receiver.url}/api/webhooks/wedof/{connection_id}", data=body, timeout=30, headers={
        "Content-Type": "application/json", "X-Wedof-Event": event, "X-Wedof-Delivery": f"replay-{uuid.uuid4()}",
        "X-Wedof-Signature": compute_signature(SECRET, body)})
    assert response.status_code == 202, response.text


def events_of(connection_id, folders) -> list[WebhookEvent]:
    with session_scope() as session:
        rows = session.scalars(select(WebhookEvent).where(WebhookEvent.connection_id == connection_id,
                                                          WebhookEvent.folder_external_id.in_(folders))).all()
        session.expunge_all()
        return list(rows)


def the_person(beneficiary_id) -> tuple:
    with session_scope() as session:
        beneficiary = session.get(Beneficiary, beneficiary_id)
        user = session.get(User, beneficiary.user_id)
        return (user.first_name, user.last_name, user.email, beneficiary.phone, beneficiary.birth_date,
                beneficiary.address, beneficiary.city, beneficiary.postal_code, beneficiary.custom_fields)


def test_an_erased_beneficiary_stays_erased_while_their_folders_keep_updating(
        stack_env, broker, events_worker, sync_worker, sandbox, receiver, tenant):
    tenant_id, connection_id = tenant
    full_sync(broker, connection_id)
    truth = sandbox_truth(sandbox)
    assert truth_mismatches(tenant_id, truth, complete=True) == []
    attendee_id = str(truth[0]["attendee"]["id"])
    theirs = [f for f in truth if str(f["attendee"]["id"]) == attendee_id]
    folders = [f["externalId"] for f in theirs]
    with session_scope() as session:
        beneficiary = session.scalars(select(Beneficiary).where(Beneficiary.tenant_id == tenant_id,
                                                                Beneficiary.external_id == attendee_id)).one()
        beneficiary_id = beneficiary.id
        assert the_person(beneficiary_id)[1] == theirs[0]["attendee"]["lastName"]  # held before the erasure
        erase_beneficiary(session, beneficiary, actor="user:1")
    erased = the_person(beneficiary_id)
    assert erased == (None,) * 8 + ({},)

    # 1. The same deliveries again (Wedof retries, or an admin replays them): applied, nothing personal kept.
    for folder in theirs:
        deliver(receiver, connection_id, folder, f"registrationFolder.{folder['state']}")
    # 2. Wedof moves each folder (state, rate, and a new phone number): the sandbox's own signed webhooks.
    moved = {}
    for folder in theirs:
        target = "terminated" if folder["state"] != "terminated" else "serviceDoneDeclared"
        changed = sandbox.control("PUT", f"/folders/{folder['externalId']}",
                                  json={"state": target, "attendee": {"phoneNumber": "0700000001"}})
        moved[folder["externalId"]] = changed["state"]
    sandbox.control("POST", "/deliveries/drain", json={"timeout": 60})
    wait_until(lambda: len(events_of(connection_id, folders)) >= 2 * len(folders)
               and all(e.status in DONE for e in events_of(connection_id, folders)), timeout=90,
               message="replayed and new deliveries processed")
    events = events_of(connection_id, folders)
    assert all(e.status == EventStatus.PROCESSED for e in events), [(e.status, e.last_error) for e in events]
    assert all(e.body is None for e in events), "a delivery for an erased attendee keeps no raw body"
    assert the_person(beneficiary_id) == erased
    with session_scope() as session:
        states = dict(session.execute(select(Enrollment.external_id, Enrollment.wedof_state)
                                      .where(Enrollment.external_id.in_(folders))).all())
    assert states == moved  # their folders' states landed

    # 3. A full sync reads every folder again (the erased person's with their new phone number).
    full_sync(broker, connection_id)
    assert the_person(beneficiary_id) == erased
    truth = sandbox_truth(sandbox)
    others = [f for f in truth if str(f["attendee"]["id"]) != attendee_id]
    assert truth_mismatches(tenant_id, others) == []  # everyone else is exactly as Wedof says
    with session_scope() as session:
        rows = session.execute(select(Enrollment.external_id, Enrollment.wedof_state, Enrollment.progress)
                               .where(Enrollment.beneficiary_id == beneficiary_id)).all()
    expected = {f["externalId"]: f["state"] for f in truth if f["externalId"] in folders}
    assert {number: state for number, state, _ in rows} == expected


def test_the_retention_task_anonymises_long_ended_bilans_on_a_real_worker(stack_env, broker, sync_worker, tenant):
    tenant_id, _connection_id = tenant
    long_ago = datetime.now(UTC) - timedelta(days=800)
    with session_scope() as session:
        ended = [b for b in session.scalars(select(Beneficiary).where(Beneficiary.tenant_id == tenant_id,
                                                                      Beneficiary.anonymised_at.is_(None))
                                            .order_by(Beneficiary.id))
                 if b.enrollments and all(e.status in ENDED for e in b.enrollments)]
        assert len(ended) >= 2, "the seeded sandbox has finished bilans"
        due, consenting = ended[0], ended[1]
        consenting.retention_consent = True
        for enrollment in (*due.enrollments, *consenting.enrollments):  # as if they had ended long ago
            enrollment.completed_at = enrollment.wedof_last_update = long_ago
        due_id, consenting_id = due.id, consenting.id
    kept = the_person(consenting_id)
    broker.send_task(APPLY_RETENTION, args=[tenant_id], queue="sync")

    def anonymised():
        with session_scope() as session:
            return session.get(Beneficiary, due_id).anonymised_at is not None

    wait_until(anonymised, timeout=60, message="retention applied")
    assert the_person(due_id) == (None,) * 8 + ({},)
    assert the_person(consenting_id) == kept
