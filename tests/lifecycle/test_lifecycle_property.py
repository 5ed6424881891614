"""A property test of the whole lifecycle: random sequences of evidence changes, folder changes at Wedof and
re-evaluations, with every decision carried out against the sandbox over HTTP (all rules in auto mode).

Whatever the sequence:
- at most one entry, one end and one cancel per folder is ever sent (the sandbox's own count);
- an entry is never sent before the first attended date, nor from a planned date alone;
- every completion rate sent equals the evidence at the time it was sent.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from bdc import db as bdc_db
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
)
from lifecycle.evaluate import evaluate_page
from tests.support.sandbox import running_sandbox
from tests.worker.helpers import make_connection
from wedof.mapping import apply_folder
from worker.tasks.lifecycle import carry_out_action

TODAY = date.today()
START = TODAY - timedelta(days=30)
SESSION = {"sessionStartDate": f"{START}T00:00:00.000Z", "sessionEndDate": f"{TODAY + timedelta(days=30)}T00:00:00.000Z",
           "indicativeDuration": 24}
WEDOF_MOVES = ("accepted", "inTraining", "canceledByAttendee", "terminated")


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=600, seed=17) as sbx:
        yield sbx


class LifecycleMachine(RuleBasedStateMachine):
    sandbox = None
    folders: list[str] = []
    sent: Counter = Counter()  # what the whole run sent, by kind: the properties were really exercised

    @initialize()
    def a_bilan(self):
        self.tenant_id, _ = make_connection(self.sandbox.api_url, self.sandbox.api_key)
        self.external_id = self.folders.pop()
        self.baseline = self._transitions()
        folder = self._force("accepted")
        with bdc_db.session_scope() as session:
            self.enrollment_id = apply_folder(session, self.tenant_id, folder).enrollment_id
            session.add(LifecycleSettings(tenant_id=self.tenant_id, **{f"{k.value}_mode": LifecycleMode.AUTO
                                                                       for k in LifecycleKind},
                                          normal_end_code="8", abandon_code="9", cancel_code="4", inactivity_days=10))
        self.appointments: list[int] = []

    def _transitions(self) -> dict:
        return self.sandbox.control("GET", "/transitions").get(self.external_id, {})

    def _force(self, state: str) -> dict:
        history = {"inTrainingDate": f"{START}T09:00:00.000Z" if state != "accepted" else None}
        return self.sandbox.control("PUT", f"/folders/{self.external_id}", json={
            "state": state, "withPoleEmploi": False, "completionRate": None, "trainingActionInfo": SESSION,
            "history": history})

    @rule(days_ago=st.integers(-35, 25), hours=st.sampled_from([1, 2, 3, 4]),
          status=st.sampled_from(list(AppointmentStatus)), phase=st.sampled_from(list(AppointmentPhase)))
    def record_a_session(self, days_ago, hours, status, phase):
        day = TODAY - timedelta(days=max(days_ago, 0) if status in (AppointmentStatus.ATTENDED,
                                                                    AppointmentStatus.MISSED) else days_ago)
        start = datetime(day.year, day.month, day.day, 9, tzinfo=UTC)
        with bdc_db.session_scope() as session:
            enrollment = session.get(Enrollment, self.enrollment_id)
            appointment = Appointment(tenant_id=self.tenant_id, beneficiary_id=enrollment.beneficiary_id,
                                      enrollment_id=self.enrollment_id, phase=phase, status=status, starts_at=start,
                                      ends_at=start + timedelta(hours=hours))
            session.add(appointment)
            session.flush()
            self.appointments.append(appointment.id)

    @rule(data=st.data())
    def correct_a_session(self, data):
        if not self.appointments:
            return
        appointment_id = data.draw(st.sampled_from(self.appointments))
        status = data.draw(st.sampled_from([AppointmentStatus.CANCELLED, AppointmentStatus.MISSED]))
        with bdc_db.session_scope() as session:
            session.get(Appointment, appointment_id).status = status

    @rule(days_ago=st.integers(0, 10))
    def the_conclusion_and_the_synthesis(self, days_ago):
        """Staff record the conclusion session attended and hand the synthesis over, in one go."""
        self.record_a_session(days_ago, 2, AppointmentStatus.ATTENDED, AppointmentPhase.CONCLUSION)
        self.synthesis(True)

    @rule(handed_over=st.booleans())
    def synthesis(self, handed_over):
        with bdc_db.session_scope() as session:
            session.get(Enrollment, self.enrollment_id).synthesis_delivered_on = TODAY if handed_over else None

    @rule()
    def withdrawal(self):
        with bdc_db.session_scope() as session:
            session.get(Enrollment, self.enrollment_id).withdrawn_on = TODAY

    @rule(state=st.sampled_from(WEDOF_MOVES))
    def the_folder_moves_at_wedof(self, state):
        """Someone else moved it (EDOF, another tool): the webhook brings the folder."""
        folder = self._force(state)
        with bdc_db.session_scope() as session:
            apply_folder(session, self.tenant_id, folder)

    @rule()
    def evaluate_and_carry_out(self):
        with bdc_db.session_scope() as session:
            outcome = evaluate_page(session, session.get(LifecycleSettings, self._settings_id()),
                                    enrollment_ids=[self.enrollment_id])
        for action_id in outcome.to_send:
            evidence = self._evidence()
            try:
                carry_out_action(action_id)
            except Exception:  # noqa: BLE001 - a refusal ends the task; the row says so
                pass
            with bdc_db.session_scope() as session:
                action = session.get(LifecycleAction, action_id)
                if action.status == ActionStatus.DONE and action.wedof_answer.get("outcome") == "sent":
                    self._check_sent(action, evidence)
                    self.sent[action.kind.value] += 1

    def _settings_id(self) -> int:
        with bdc_db.session_scope() as session:
            return session.query(LifecycleSettings.id).filter_by(tenant_id=self.tenant_id).scalar()

    def _evidence(self) -> dict:
        with bdc_db.session_scope() as session:
            attended = [a for a in session.query(Appointment).filter_by(enrollment_id=self.enrollment_id)
                        if a.status == AppointmentStatus.ATTENDED and a.starts_at.date() <= TODAY]
            return {"first_attended": min((a.starts_at.date() for a in attended if a.starts_at.date() >= START),
                                          default=None),
                    "hours": sum((a.ends_at - a.starts_at).total_seconds() / 3600 for a in attended)}

    @staticmethod
    def _check_sent(action: LifecycleAction, evidence: dict) -> None:
        if action.kind == LifecycleKind.ENTRY:
            # Never from planned dates, never before the first attended session (on or after the start).
            assert evidence["first_attended"] is not None, action.body
            assert action.body["date"] == evidence["first_attended"].isoformat() >= START.isoformat()
        if action.kind == LifecycleKind.PROGRESS:
            assert action.body["completionRate"] == min(100, math.floor(evidence["hours"] / 24 * 100 + 1e-9))

    @invariant()
    def never_declared_twice(self):
        if not hasattr(self, "baseline"):
            return
        now = self._transitions()
        for verb in ("inTraining", "serviceDone", "cancel"):
            assert now.get(verb, 0) - self.baseline.get(verb, 0) <= 1, (verb, now, self.baseline)


def test_random_histories_never_declare_early_twice_or_wrong(sandbox, sqlite_db_url, app_env, redis_url, redis_client):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, bdc_retry_backoff_base="0.05")
    LifecycleMachine.sandbox = sandbox
    LifecycleMachine.folders = [f["externalId"] for f in sandbox.control("GET", "/truth", params={"compact": 1})]
    hunt = int(os.environ.get("LIFECYCLE_EXAMPLES", "0"))  # a longer, randomized hunt when set
    run_state_machine_as_test(LifecycleMachine, settings=settings(
        max_examples=hunt or 150, stateful_step_count=16, deadline=None, derandomize=not hunt, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    assert len(LifecycleMachine.folders) <= 600 - (hunt or 150)  # the examples really ran, one folder each
    assert set(LifecycleMachine.sent) >= {"entry", "progress", "end", "cancel"}, LifecycleMachine.sent
