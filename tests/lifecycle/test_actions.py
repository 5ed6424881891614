"""The lifecycle actions' one owner and the evaluation, on SQLite and PostgreSQL (no worker, no Wedof).

The pairs below are the specification written out by hand: the module's table must agree with it,
and each named transition must move a row along exactly those pairs in the database.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from bdc import db as bdc_db
from bdc.models import (
    ActionStatus,
    Appointment,
    AppointmentPhase,
    AppointmentStatus,
    AuditLog,
    Beneficiary,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
    Notice,
    Program,
    Tenant,
    User,
    UserRole,
)
from bdc.types import utcnow
from lifecycle import actions
from lifecycle.evaluate import evaluate_page, worth_evaluating
from lifecycle.rules import Decision

P, A, S, D = ActionStatus.PROPOSED, ActionStatus.APPROVED, ActionStatus.SENT, ActionStatus.DONE
R, F, B, C = ActionStatus.REFUSED, ActionStatus.FAILED, ActionStatus.BLOCKED, ActionStatus.CANCELLED
EXPECTED_PAIRS = {
    (None, P), (None, B), (None, A),  # propose (approved: auto mode, or decided by an admin)
    *((x, y) for x in (P, B, A) for y in (P, B, A)),  # revise, before anything was sent
    (P, A),  # approve
    (P, C), (B, C), (A, C),  # reject (proposed, blocked), withdraw (also approved)
    (A, S), (S, S), (R, S), (F, S),  # start; a retry; a re-apply by hand
    (S, D), (S, R), (S, F),  # finish
    (S, C),  # moved on: the folder read before the call no longer allows it, nothing sent
    (R, A), (F, A),  # retry by an admin
}


def test_the_transition_table_is_the_specification():
    for source, target in itertools.product([None, *ActionStatus], ActionStatus):
        assert actions.allowed(source, target) == ((source, target) in EXPECTED_PAIRS), (source, target)


@pytest.fixture
def world(db_url, app_env):
    app_env(database_url=db_url)
    with bdc_db.session_scope() as session:
        tenant = Tenant(name="Lifecycle", slug="lifecycle")
        session.add(tenant)
        session.flush()
        enrollments = []
        for n in range(3):
            user = User(tenant_id=tenant.id, email=f"b{n}@x.fr", role=UserRole.STUDENT)
            session.add(user)
            session.flush()
            beneficiary = Beneficiary(tenant_id=tenant.id, user_id=user.id, external_id=f"att-{n}")
            program = Program(tenant_id=tenant.id, name=f"Bilan {n}", external_id=f"ta-{n}")
            session.add_all([beneficiary, program])
            session.flush()
            enrollment = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=program.id,
                                    external_id=f"900000000{n}", wedof_state="accepted",
                                    session_start_date=date.today() - timedelta(days=20),
                                    session_end_date=date.today() + timedelta(days=40), indicative_duration_hours=24)
            session.add(enrollment)
            enrollments.append(enrollment)
        session.flush()
        return tenant.id, [e.id for e in enrollments]


def _action(world, status: ActionStatus, **values) -> int:
    tenant_id, (enrollment_id, *_) = world
    with bdc_db.session_scope() as session:
        action = LifecycleAction(tenant_id=tenant_id, enrollment_id=enrollment_id, kind=LifecycleKind.ENTRY,
                                 status=status, body={"date": "2025-03-05"},
                                 **{"mode": LifecycleMode.APPROVE, "task_id": "t", "sent_at": utcnow(), **values})
        session.add(action)
        session.flush()
        return action.id


DECISION = Decision(LifecycleKind.ENTRY, {"date": "2025-03-06"})


def _in_session(work):
    def run(action_id):
        with bdc_db.session_scope() as session:
            return work(session, action_id)
    return run


OPERATIONS = {  # name: (target, operation, the statuses it may start from)
    "revise to proposed": (P, _in_session(lambda s, i: actions.revise(s, s.get(LifecycleAction, i), DECISION,
                                                                        LifecycleMode.APPROVE)), {P, B, A}),
    "approve": (A, _in_session(lambda s, i: actions.approve(s, i, "user:1")), {P}),
    "reject": (C, _in_session(lambda s, i: actions.reject(s, i, "user:1", "no")), {P, B}),
    "withdraw": (C, _in_session(lambda s, i: actions.withdraw(s, i, "gone")), {P, B, A}),
    "start": (S, _in_session(lambda s, i: actions.start(s, i, "t") is not None), {A, S, R, F}),
    "finish done": (D, _in_session(lambda s, i: actions.finish(s, i, D)), {S}),
    "finish refused": (R, _in_session(lambda s, i: actions.finish(s, i, R, reason="400")), {S}),
    "retry": (A, _in_session(lambda s, i: actions.retry(s, i, "user:1")), {R, F}),
    "moved on": (C, _in_session(lambda s, i: actions.moved_on(s, i, "canceledByAttendee")), {S}),
}


def test_every_operation_moves_exactly_the_allowed_pairs(world):
    for (name, (target, operation, sources)), source in itertools.product(OPERATIONS.items(), ActionStatus):
        # One live action per enrollment and kind: clear the way for this row.
        with bdc_db.session_scope() as session:
            session.execute(LifecycleAction.__table__.delete())
            session.execute(AuditLog.__table__.delete())  # SQLite reuses the ids of deleted rows
        action_id = _action(world, source)
        moved = operation(action_id)
        assert moved == (source in sources), (name, source)
        with bdc_db.session_scope() as session:
            assert session.get(LifecycleAction, action_id).status == (target if moved else source), (name, source)
            # The audit row of a move carries the status it left and the one it reached.
            audited = session.scalars(select(AuditLog).where(AuditLog.target_id == str(action_id))
                                      .order_by(AuditLog.id.desc())).first()
            if moved and source != target:
                assert audited.details["changes"]["status"] == {"old": source.value, "new": target.value}, name
            elif not moved:
                assert audited is None, (name, source)


def test_a_sent_action_is_started_again_only_by_its_task_or_once_lost(world):
    fresh = _action(world, S, task_id="mine")
    with bdc_db.session_scope() as session:
        assert actions.start(session, fresh, "another") is None  # two tasks never send one action
        assert actions.start(session, fresh, "mine") is not None  # its own retry
    with bdc_db.session_scope() as session:
        session.execute(LifecycleAction.__table__.delete())
    lost = _action(world, S, task_id="dead", sent_at=utcnow() - actions.lost_after() - timedelta(seconds=1))
    with bdc_db.session_scope() as session:
        assert actions.start(session, lost, "another") is not None


def test_how_long_a_task_may_hold_a_sent_action_is_a_setting(world, app_env, db_url):
    app_env(database_url=db_url, BDC_ACTION_LOST_AFTER="30")
    assert actions.lost_after() == timedelta(seconds=30)
    held = _action(world, S, task_id="dead", sent_at=utcnow() - timedelta(seconds=31))
    with bdc_db.session_scope() as session:
        assert actions.start(session, held, "another") is not None  # presumed lost after 30 s, not 10 min


def test_a_dry_run_action_is_never_approved(world):
    action_id = _action(world, P, mode=LifecycleMode.DRY_RUN)
    with bdc_db.session_scope() as session:
        assert not actions.approve(session, action_id, "user:1")


def test_one_live_action_per_enrollment_and_kind(world):
    tenant_id, (enrollment_id, *_) = world
    with bdc_db.session_scope() as session:
        actions.propose(session, tenant_id, enrollment_id, DECISION, LifecycleMode.APPROVE)
    with pytest.raises(IntegrityError), bdc_db.session_scope() as session:
        actions.propose(session, tenant_id, enrollment_id, DECISION, LifecycleMode.APPROVE)
    with bdc_db.session_scope() as session:  # a finished one does not count
        live = actions.live_action(session, enrollment_id, LifecycleKind.ENTRY)
        actions.withdraw(session, live.id, "test")
    with bdc_db.session_scope() as session:
        actions.propose(session, tenant_id, enrollment_id, DECISION, LifecycleMode.APPROVE)


def test_refusals_failures_and_late_entries_notify_and_everything_is_audited(world):
    tenant_id, (enrollment_id, *_) = world
    with bdc_db.session_scope() as session:
        late = Decision(LifecycleKind.ENTRY, {"date": "2025-01-06"}, late=True)
        action = actions.propose(session, tenant_id, enrollment_id, late, LifecycleMode.AUTO)
        actions.start(session, action.id, "t")
        actions.finish(session, action.id, R, reason="HTTP 400: no")
    with bdc_db.session_scope() as session:
        kinds = [n.kind.value for n in session.scalars(select(Notice).order_by(Notice.id))]
        audited = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert kinds == ["late_entry", "action_refused"]
    assert audited == ["lifecycle.proposed", "lifecycle.sent", "lifecycle.refused"]


# -- the evaluation ----------------------------------------------------------------------------------------

def _settings(world, **values):
    tenant_id, _ = world
    with bdc_db.session_scope() as session:
        modes = {"entry_mode": LifecycleMode.APPROVE, **{f"{k}_mode": LifecycleMode.OFF
                                                         for k in ("progress", "end", "abandon", "cancel")}}
        settings = LifecycleSettings(tenant_id=tenant_id, **{**modes, **values})
        session.add(settings)
        session.flush()
        return settings.id


def _attend(world, index: int, day: date, status=AppointmentStatus.ATTENDED) -> int:
    tenant_id, enrollments = world
    with bdc_db.session_scope() as session:
        enrollment = session.get(Enrollment, enrollments[index])
        start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        appointment = Appointment(tenant_id=tenant_id, beneficiary_id=enrollment.beneficiary_id,
                                  enrollment_id=enrollment.id, phase=AppointmentPhase.PRELIMINAIRE,
                                  starts_at=start, ends_at=start + timedelta(hours=2), status=status)
        session.add(appointment)
        session.flush()
        return appointment.id


def _evaluate(settings_id):
    with bdc_db.session_scope() as session:
        return evaluate_page(session, session.get(LifecycleSettings, settings_id))


def _live(world):
    with bdc_db.session_scope() as session:
        return {(a.enrollment_id, a.kind.value): (a.status.value, a.body) for a in session.scalars(
            select(LifecycleAction).where(LifecycleAction.status.in_(sorted(actions.LIVE))))}


def test_evaluating_again_proposes_nothing_twice_and_follows_the_evidence(world):
    _tenant, (first, second, third) = world
    settings_id = _settings(world)
    yesterday = date.today() - timedelta(days=1)
    appointment = _attend(world, 0, yesterday)
    _attend(world, 1, yesterday, status=AppointmentStatus.SCHEDULED)  # planned only: nothing
    outcome = _evaluate(settings_id)
    assert (outcome.evaluated, outcome.proposed, outcome.to_send) == (3, 1, [])
    assert _live(world) == {(first, "entry"): ("proposed", {"date": yesterday.isoformat()})}
    assert _evaluate(settings_id).proposed == 0 and len(_live(world)) == 1  # level-triggered: same data, same rows
    # The evidence is corrected: an earlier attended session. The proposal follows it.
    earlier = date.today() - timedelta(days=3)
    with bdc_db.session_scope() as session:
        moved = session.get(Appointment, appointment)
        moved.starts_at, moved.ends_at = (datetime(earlier.year, earlier.month, earlier.day, 9, tzinfo=UTC),
                                          datetime(earlier.year, earlier.month, earlier.day, 11, tzinfo=UTC))
    assert _evaluate(settings_id).revised == 1
    assert _live(world)[(first, "entry")] == ("proposed", {"date": earlier.isoformat()})
    # The evidence is removed: the proposal is withdrawn, not sent.
    with bdc_db.session_scope() as session:
        session.get(Appointment, appointment).status = AppointmentStatus.CANCELLED
    assert _evaluate(settings_id).withdrawn == 1 and _live(world) == {}


def test_auto_mode_hands_approved_actions_over_and_refused_ones_are_not_proposed_again(world):
    _tenant, (first, *_rest) = world
    settings_id = _settings(world, entry_mode=LifecycleMode.AUTO)
    _attend(world, 0, date.today() - timedelta(days=1))
    outcome = _evaluate(settings_id)
    [action_id] = outcome.to_send
    assert _live(world)[(first, "entry")][0] == "approved"
    assert _evaluate(settings_id).to_send == [action_id]  # not queued (the broker was away): handed over again
    with bdc_db.session_scope() as session:
        actions.mark_queued(session, [action_id])
    assert _evaluate(settings_id).to_send == []  # queued: left to its task, not queued again every tick
    with bdc_db.session_scope() as session:
        session.get(LifecycleAction, action_id).queued_at = utcnow() - actions.lost_after() - timedelta(seconds=1)
    assert _evaluate(settings_id).to_send == [action_id]  # its message presumed lost: queued again
    with bdc_db.session_scope() as session:
        actions.start(session, action_id, "t")
        actions.finish(session, action_id, R, reason="HTTP 400")
    assert _evaluate(settings_id).proposed == 0 and _live(world) == {}  # the same body: not again
    _attend(world, 0, date.today() - timedelta(days=2))  # corrected evidence: a new decision
    assert _evaluate(settings_id).proposed == 1


def test_an_admins_approval_stands_and_an_admins_own_decision_is_left_alone(world):
    tenant_id, (first, second, _third) = world
    settings_id = _settings(world)
    _attend(world, 0, date.today() - timedelta(days=1))
    _evaluate(settings_id)
    with bdc_db.session_scope() as session:
        live = actions.live_action(session, first, LifecycleKind.ENTRY)
        actions.approve(session, live.id, "user:1")
        by_hand = actions.decide_by_hand(session, tenant_id, second, LifecycleKind.ENTRY,
                                         {"date": (date.today() - timedelta(days=5)).isoformat()}, "user:1")
    outcome = _evaluate(settings_id)
    assert sorted(outcome.to_send) == sorted([live.id, by_hand.id]) and outcome.withdrawn == 0
    assert _live(world)[(first, "entry")][0] == "approved" and _live(world)[(second, "entry")][0] == "approved"


def test_a_page_costs_the_same_reads_whatever_its_size(world, db_url):
    settings_id = _settings(world, progress_mode=LifecycleMode.APPROVE)
    for index in range(3):
        _attend(world, index, date.today() - timedelta(days=index + 1))
    engine = bdc_db.get_engine()
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with bdc_db.session_scope() as session:
            evaluate_page(session, session.get(LifecycleSettings, settings_id), limit=1)
        one = len(statements)
        statements.clear()
        with bdc_db.session_scope() as session:
            evaluate_page(session, session.get(LifecycleSettings, settings_id), limit=3)
        three = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert three == one, (one, three)


def test_an_applied_folder_asks_for_an_evaluation_only_when_the_rules_could_say_something(world):
    tenant_id, (plain, attended, handed_over) = world

    def worth(enrollment_id):
        with bdc_db.session_scope() as session:
            return worth_evaluating(session, tenant_id, enrollment_id)

    assert not worth(attended)  # no settings: the rules are off
    settings_id = _settings(world, entry_mode=LifecycleMode.OFF)
    assert not worth(attended)  # every rule off
    with bdc_db.session_scope() as session:
        session.get(LifecycleSettings, settings_id).entry_mode = LifecycleMode.APPROVE
    assert not worth(plain) and not worth(attended)  # no evidence: nothing to say
    _attend(world, 1, date.today() - timedelta(days=1))
    with bdc_db.session_scope() as session:
        session.get(Enrollment, handed_over).synthesis_delivered_on = date.today()
    assert (worth(plain), worth(attended), worth(handed_over)) == (False, True, True)
    _action(world, P)  # a live action on the first one (its evidence gone): it may have to be withdrawn
    assert worth(plain)
