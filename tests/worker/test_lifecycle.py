"""The lifecycle from evidence to the sandbox's folder, through a real worker, Redis and the sandbox over HTTP,
on PostgreSQL and on SQLite: each rule in each mode, a refusal shown with its violations, a lost answer
after the POST that ends done after a re-read (never a second POST), a folder that moved on at Wedof before
the call (nothing sent), and a refusal because another hand declared it first (done, not refused).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Appointment,
    AppointmentPhase,
    AppointmentStatus,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
    Notice,
    WedofConnection,
)
from lifecycle import actions
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import insert_event, make_connection, send
from wedof.client import WedofClient
from wedof.mapping import apply_folder
from worker.task_names import CARRY_OUT_ACTION, EVALUATE_LIFECYCLE, PROCESS_EVENT
from worker.tasks.lifecycle import Plan, evaluate_lifecycle, read_then_call

TODAY = date.today()
YESTERDAY = TODAY - timedelta(days=1)
SESSION = {"sessionStartDate": f"{TODAY - timedelta(days=30)}T00:00:00.000Z",
           "sessionEndDate": f"{TODAY + timedelta(days=30)}T00:00:00.000Z", "indicativeDuration": 24}
CODES = {"normal_end_code": "8", "abandon_code": "9", "cancel_code": "4"}  # the sandbox's own reasons


@pytest.fixture(scope="module")
def stack_env(stack_env_each_backend):
    return stack_env_each_backend  # every test here runs on PostgreSQL and on SQLite (events_worker follows)


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=60, seed=5) as sbx:
        yield sbx


_used: set[str] = set()


def bilan(sandbox, state: str, kind: LifecycleKind, mode: LifecycleMode, **codes) -> tuple[int, str]:
    """A tenant whose only rule on is ``kind`` in ``mode``, and one of its folders in ``state`` at the sandbox."""
    tenant_id, _connection = make_connection(sandbox.api_url, sandbox.api_key)
    external_id = next(f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})
                       if f["externalId"] not in _used)
    _used.add(external_id)
    folder = sandbox.control("PUT", f"/folders/{external_id}", json={
        "state": state, "withPoleEmploi": False, "completionRate": None, "trainingActionInfo": SESSION,
        "history": {"inTrainingDate": f"{TODAY - timedelta(days=20)}T09:00:00.000Z" if state == "inTraining" else None}})
    with session_scope() as session:
        enrollment_id = apply_folder(session, tenant_id, folder).enrollment_id
        modes = {f"{k.value}_mode": (mode if k == kind else LifecycleMode.OFF) for k in LifecycleKind}
        session.add(LifecycleSettings(tenant_id=tenant_id, **modes, **{**CODES, **codes}))
    return enrollment_id, external_id


def attend(enrollment_id: int, day: date, hours: float = 2, phase=AppointmentPhase.INVESTIGATION,
           status=AppointmentStatus.ATTENDED) -> None:
    with session_scope() as session:
        enrollment = session.get(Enrollment, enrollment_id)
        start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        session.add(Appointment(tenant_id=enrollment.tenant_id, beneficiary_id=enrollment.beneficiary_id,
                                enrollment_id=enrollment_id, phase=phase, status=status, starts_at=start,
                                ends_at=start + timedelta(hours=hours)))


def record(enrollment_id: int, **values) -> None:
    with session_scope() as session:
        for name, value in values.items():
            setattr(session.get(Enrollment, enrollment_id), name, value)


def action_of(enrollment_id: int, kind: LifecycleKind) -> LifecycleAction | None:
    with session_scope() as session:
        return session.scalars(select(LifecycleAction).where(LifecycleAction.enrollment_id == enrollment_id,
                                                             LifecycleAction.kind == kind)
                               .order_by(LifecycleAction.id.desc())).first()


def wait_for(enrollment_id: int, kind: LifecycleKind, statuses) -> LifecycleAction:
    def reached():
        action = action_of(enrollment_id, kind)
        return action if action is not None and action.status in statuses else None

    return wait_until(reached, timeout=60, interval=0.2, message=f"{kind.value} action in {statuses}")


def wedof_folder(sandbox, external_id: str) -> dict:
    return sandbox.api("GET", f"/registrationFolders/{external_id}").json()


# Each rule: the folder's state, the evidence, and what the sandbox's folder shows once it is done.
def _entry(e):
    attend(e, YESTERDAY)


def _progress(e):
    attend(e, TODAY - timedelta(days=3), hours=3)
    attend(e, YESTERDAY, hours=3)


def _end(e):
    attend(e, TODAY - timedelta(days=3), hours=3)
    attend(e, YESTERDAY, hours=3, phase=AppointmentPhase.CONCLUSION)
    record(e, synthesis_delivered_on=TODAY)


def _withdrawal(e):
    attend(e, YESTERDAY)
    record(e, withdrawn_on=TODAY, withdrawal_reason="moved abroad")


def _cancel(e):
    record(e, withdrawn_on=TODAY, withdrawal_reason="found a job")


RULES = {
    LifecycleKind.ENTRY: ("accepted", _entry, lambda f: (f["state"], f["history"]["inTrainingDate"][:10]) == (
        "inTraining", YESTERDAY.isoformat())),
    LifecycleKind.PROGRESS: ("inTraining", _progress, lambda f: f["completionRate"] == 25),
    LifecycleKind.END: ("inTraining", _end, lambda f: (f["state"], f["history"]["serviceDoneDeclaredDate"][:10]) == (
        "serviceDoneDeclared", YESTERDAY.isoformat())),
    LifecycleKind.ABANDON: ("inTraining", _withdrawal, lambda f: f["state"] == "serviceDoneDeclared"),
    LifecycleKind.CANCEL: ("accepted", _cancel, lambda f: f["state"] == "canceledByOrganism"),
}


@pytest.mark.parametrize("mode", list(LifecycleMode), ids=lambda m: m.value)
@pytest.mark.parametrize("kind", list(RULES), ids=lambda k: k.value)
def test_each_rule_in_each_mode(stack_env, broker, events_worker, sandbox, kind, mode):
    state, evidence, in_effect = RULES[kind]
    enrollment_id, external_id = bilan(sandbox, state, kind, mode)
    evidence(enrollment_id)
    before = wedof_folder(sandbox, external_id)
    if mode == LifecycleMode.OFF:
        assert evaluate_lifecycle(enrollment_id)["evaluated"] == 1  # the rules ran, the kind is off
        assert action_of(enrollment_id, kind) is None
        return
    send(broker, EVALUATE_LIFECYCLE, [enrollment_id])
    if mode == LifecycleMode.AUTO:
        wait_for(enrollment_id, kind, {ActionStatus.DONE})
        assert in_effect(wedof_folder(sandbox, external_id)), wedof_folder(sandbox, external_id)
        return
    proposed = wait_for(enrollment_id, kind, {ActionStatus.PROPOSED})
    assert proposed.mode == mode and proposed.body
    assert wedof_folder(sandbox, external_id)["lastUpdate"] == before["lastUpdate"]  # nothing sent yet
    with session_scope() as session:
        approved = actions.approve(session, proposed.id, "user:admin")
    assert approved == (mode == LifecycleMode.APPROVE)  # a dry run is shown, never sent
    if approved:
        send(broker, CARRY_OUT_ACTION, [proposed.id])
        wait_for(enrollment_id, kind, {ActionStatus.DONE})
        assert in_effect(wedof_folder(sandbox, external_id))
    else:
        assert wedof_folder(sandbox, external_id)["lastUpdate"] == before["lastUpdate"]


def test_a_refusal_is_shown_with_its_violations_and_never_sent_again(stack_env, broker, events_worker, sandbox):
    # A code the organism's list no longer holds (settings are checked when saved; Wedof's list moved since).
    enrollment_id, external_id = bilan(sandbox, "inTraining", LifecycleKind.END, LifecycleMode.AUTO,
                                       normal_end_code="77")
    _end(enrollment_id)
    sandbox.control("POST", "/requests/reset")
    send(broker, EVALUATE_LIFECYCLE, [enrollment_id])
    refused = wait_for(enrollment_id, LifecycleKind.END, {ActionStatus.REFUSED})
    assert refused.wedof_answer["violations"][0]["propertyPath"] == "code" and "HTTP 400" in refused.reason
    with session_scope() as session:
        assert session.scalars(select(Notice).where(Notice.target_id == str(refused.id))).one().kind.value == \
            "action_refused"
    send(broker, EVALUATE_LIFECYCLE, [enrollment_id])  # evaluating again proposes nothing new
    wait_until(lambda: sandbox.control("GET", "/requests")["by_route"].get(
        "GET /api/registrationFolders/<external_id>", 0) >= 1, timeout=10, message="folder read")
    posts = sandbox.control("GET", "/requests")["by_route"].get("POST /api/registrationFolders/<external_id>/<verb>")
    assert posts == 1 and action_of(enrollment_id, LifecycleKind.END).id == refused.id
    assert wedof_folder(sandbox, external_id)["state"] == "inTraining"


def test_a_lost_answer_ends_done_after_a_re_read_never_a_second_post(stack_env, broker, events_worker, sandbox,
                                                                      faults):
    enrollment_id, external_id = bilan(sandbox, "accepted", LifecycleKind.ENTRY, LifecycleMode.AUTO)
    _entry(enrollment_id)
    faults(lost_answer_rate=1)  # Wedof applies the entry, then the connection drops before its answer
    send(broker, EVALUATE_LIFECYCLE, [enrollment_id])
    done = wait_for(enrollment_id, LifecycleKind.ENTRY, {ActionStatus.DONE, ActionStatus.FAILED})
    assert done.status == ActionStatus.DONE and done.wedof_answer["outcome"] == "already_there"
    assert sandbox.control("GET", "/requests")["faults"]["lost_answer"] >= 1
    assert sandbox.control("GET", "/transitions")[external_id] == {"inTraining": 1}  # one POST, ever
    assert wedof_folder(sandbox, external_id)["history"]["inTrainingDate"][:10] == YESTERDAY.isoformat()


def test_a_folder_that_moved_on_at_wedof_is_not_sent(stack_env, broker, events_worker, sandbox):
    enrollment_id, external_id = bilan(sandbox, "accepted", LifecycleKind.ENTRY, LifecycleMode.APPROVE)
    _entry(enrollment_id)
    send(broker, EVALUATE_LIFECYCLE, [enrollment_id])
    proposed = wait_for(enrollment_id, LifecycleKind.ENTRY, {ActionStatus.PROPOSED})
    # The attendee cancels on EDOF while the entry waits for its approval; no webhook tells us.
    sandbox.control("PUT", f"/folders/{external_id}", json={"state": "canceledByAttendee"})
    with session_scope() as session:
        assert actions.approve(session, proposed.id, "user:admin")
    send(broker, CARRY_OUT_ACTION, [proposed.id])
    cancelled = wait_for(enrollment_id, LifecycleKind.ENTRY, {ActionStatus.CANCELLED, ActionStatus.REFUSED})
    assert cancelled.status == ActionStatus.CANCELLED and "canceledByAttendee" in cancelled.reason
    assert external_id not in sandbox.control("GET", "/transitions")  # nothing was sent
    with session_scope() as session:
        assert session.get(Enrollment, enrollment_id).wedof_state == "canceledByAttendee"  # our copy follows
        assert not session.scalars(select(Notice).where(Notice.target_id == str(cancelled.id))).all()


def test_a_refusal_once_someone_else_declared_it_is_done_not_refused(sandbox):
    """Two hands at once (a task presumed lost that was not): the second POST is refused; read again, it is done."""
    external_id = next(f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})
                       if f["externalId"] not in _used)
    _used.add(external_id)
    stale = sandbox.control("PUT", f"/folders/{external_id}", json={
        "state": "accepted", "withPoleEmploi": False, "trainingActionInfo": SESSION})
    sandbox.control("POST", "/requests/reset")
    assert sandbox.api("POST", f"/registrationFolders/{external_id}/inTraining",
                       json={"date": YESTERDAY.isoformat()}).status_code == 200  # the other hand
    plan = Plan(1, LifecycleKind.ENTRY, {"date": YESTERDAY.isoformat()}, external_id, 1, 1, trace=False)
    with WedofClient(sandbox.api_url, sandbox.api_key) as client:
        reads = [stale]  # our read happened before the other hand's POST
        fresh_read = client.get_registration_folder
        client.get_registration_folder = lambda eid: reads.pop() if reads else fresh_read(eid)
        outcome, folder = read_then_call(client, plan)
    assert (outcome, folder["state"]) == ("already_there", "inTraining")
    by_status = sandbox.control("GET", "/requests")["by_status"]
    assert by_status.get("400") == 1  # our POST was made, and refused
    assert sandbox.control("GET", "/transitions")[external_id] == {"inTraining": 1}


def test_a_webhook_that_makes_the_evidence_count_proposes_the_entry(stack_env, broker, events_worker, sandbox):
    enrollment_id, external_id = bilan(sandbox, "validated", LifecycleKind.ENTRY, LifecycleMode.APPROVE)
    _entry(enrollment_id)  # attended yesterday, but the folder is not accepted yet: nothing is due
    assert evaluate_lifecycle(enrollment_id)["to_send"] == [] and action_of(enrollment_id, LifecycleKind.ENTRY) is None
    with session_scope() as session:
        tenant_id = session.get(Enrollment, enrollment_id).tenant_id
        connection_id = session.scalars(select(WedofConnection.id).where(WedofConnection.tenant_id == tenant_id)).one()
    accepted = sandbox.control("PUT", f"/folders/{external_id}?event=registrationFolder.accepted",
                               json={"state": "accepted"})
    event_id, task_id = insert_event(connection_id, json.dumps(accepted), "registrationFolder.accepted")
    send(broker, PROCESS_EVENT, [event_id], task_id=task_id)
    proposed = wait_for(enrollment_id, LifecycleKind.ENTRY, {ActionStatus.PROPOSED})  # asked by the event itself
    assert proposed.body == {"date": YESTERDAY.isoformat()}
