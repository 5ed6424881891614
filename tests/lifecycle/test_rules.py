"""The lifecycle rules as a table: every rule, every Wedof state, and the edges.

Each row: the folder, the evidence, the policy, today -> exactly what Wedof should be told (the
body) or why it is blocked, per kind. Dates are Paris days; sessions are given in Paris time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bdc.models.enums import AppointmentPhase as Ph
from bdc.models.enums import AppointmentStatus as St
from bdc.models.enums import LifecycleKind as K
from bdc.models.enums import LifecycleMode as M
from lifecycle.rules import Evidence, Folder, Policy, Session, decide, moved_past, working_days_after
from wedof.mapping import FOLDER_STATES

PARIS = ZoneInfo("Europe/Paris")
TODAY = date(2025, 3, 12)  # a Wednesday
ALL_AUTO = {kind: M.AUTO for kind in K}
POLICY = Policy(ALL_AUTO, normal_end_code="7", abandon_code="3", cancel_code="12", inactivity_days=30)
NO_CODES = Policy(ALL_AUTO, inactivity_days=30)


def at(day: date, hour: int = 10, minutes: int = 120, phase=Ph.INVESTIGATION, status=St.ATTENDED,
       attended: int | None = None, id: int = 1) -> Session:
    start = datetime(day.year, day.month, day.day, hour, tzinfo=PARIS)
    return Session(id, phase, status, start, start + timedelta(minutes=minutes), attended)


def folder(state="inTraining", start=date(2025, 2, 3), end=date(2025, 4, 30), hours=24.0, rate=None,
           entered=date(2025, 2, 3)) -> Folder:
    return Folder(state, start, end, hours, rate, entered)


def ev(*sessions, synthesis=None, withdrawn=None, reason=None) -> Evidence:
    return Evidence(tuple(sessions), synthesis, withdrawn, reason)


def bodies(decisions) -> dict:
    return {kind: (d.body if d.blocked is None else f"blocked: {d.blocked}") for kind, d in decisions.items()}


# -- entry -------------------------------------------------------------------------------------------

def test_entry_at_the_first_attended_date_on_or_after_the_session_start():
    sessions = (at(date(2025, 3, 10), id=2), at(date(2025, 3, 5), id=1), at(date(2025, 3, 11), id=3))
    decisions = decide(folder("accepted"), ev(*sessions), POLICY, TODAY)
    entry = decisions[K.ENTRY]
    assert entry.body == {"date": "2025-03-05"} and entry.evidence["appointment_id"] == 1
    assert entry.late  # 6, 7, 10, 11 and 12 March: five working days since


def test_entry_is_late_after_three_working_days():
    # Attended Friday 7 March; Monday 10, Tuesday 11, Wednesday 12: three working days, on time.
    assert not decide(folder("accepted"), ev(at(date(2025, 3, 7))), POLICY, TODAY)[K.ENTRY].late
    # Attended Thursday 6 March: the fourth working day is today, late.
    assert decide(folder("accepted"), ev(at(date(2025, 3, 6))), POLICY, TODAY)[K.ENTRY].late


@pytest.mark.parametrize("sessions, expected", [
    ((), None),  # no evidence
    ((at(date(2025, 3, 5), status=St.SCHEDULED),), None),  # planned only: never an entry
    ((at(date(2025, 3, 5), status=St.MISSED), at(date(2025, 3, 6), status=St.CANCELLED)), None),
    ((at(date(2025, 1, 20)),), None),  # attended before the session start: not the entry
    ((at(date(2025, 1, 20), id=1), at(date(2025, 2, 4), id=2)), {"date": "2025-02-04"}),
    ((at(date(2025, 2, 3), hour=0, minutes=30),), {"date": "2025-02-03"}),  # midnight in Paris is the 3rd
    ((at(date(2025, 3, 20)),), None),  # "attended" in the future: not evidence yet
])
def test_entry_edges(sessions, expected):
    decision = decide(folder("accepted"), ev(*sessions), POLICY, TODAY).get(K.ENTRY)
    assert (decision.body if decision else None) == expected


def test_entry_without_a_session_start_is_blocked_not_guessed():
    decision = decide(folder("accepted", start=None), ev(at(date(2025, 3, 5))), POLICY, TODAY)[K.ENTRY]
    assert decision.body is None and "sessionStartDate" in decision.blocked


@pytest.mark.parametrize("state", [s for s in FOLDER_STATES if s != "accepted"])
def test_no_entry_in_any_other_state(state):
    assert K.ENTRY not in decide(folder(state), ev(at(date(2025, 3, 5))), POLICY, TODAY)


# -- progress ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sessions, rate, expected", [
    ((at(date(2025, 3, 5), minutes=120),), None, {"completionRate": 8}),  # 2 h of 24: 8.33 -> 8
    ((at(date(2025, 3, 5), minutes=120),), 8, None),  # unchanged: nothing sent
    ((at(date(2025, 3, 5), minutes=60, attended=90),), None, {"completionRate": 6}),  # the minutes marked count
    (tuple(at(date(2025, 3, d), minutes=240, id=d) for d in range(3, 11)), 50, {"completionRate": 100}),  # capped
    ((at(date(2025, 3, 5), status=St.MISSED),), 40, {"completionRate": 0}),  # evidence says nothing attended
    ((), 40, None),  # no evidence at all: say nothing
])
def test_progress(sessions, rate, expected):
    decision = decide(folder(rate=rate), ev(*sessions), POLICY, TODAY).get(K.PROGRESS)
    assert (decision.body if decision else None) == expected


@pytest.mark.parametrize("state", FOLDER_STATES)
def test_progress_only_in_training_or_terminated(state):
    decided = K.PROGRESS in decide(folder(state), ev(at(date(2025, 3, 5))), POLICY, TODAY)
    assert decided == (state in ("inTraining", "terminated"))


@pytest.mark.parametrize("hours", [None, 0.0])
def test_progress_with_zero_or_no_duration_is_blocked(hours):
    decision = decide(folder(hours=hours), ev(at(date(2025, 3, 5))), POLICY, TODAY)[K.PROGRESS]
    assert decision.body is None and "indicativeDuration" in decision.blocked


# -- end ---------------------------------------------------------------------------------------------

def _finished(**kwargs):
    return ev(at(date(2025, 2, 10), minutes=600, phase=Ph.PRELIMINAIRE, id=1),
              at(date(2025, 2, 24), minutes=600, id=2),
              at(date(2025, 3, 10), minutes=180, phase=Ph.CONCLUSION, id=3),
              synthesis=date(2025, 3, 11), **kwargs)


def test_normal_end_after_the_conclusion_and_the_synthesis():
    decision = decide(folder(), _finished(), POLICY, TODAY)[K.END]
    assert decision.body == {"date": "2025-03-10", "code": "7", "absenceDuration": 1.0,
                             "forceMajeureAbsence": False, "trainingDuration": 24.0}
    assert decision.evidence["conclusion_appointment_id"] == 3 and not decision.late


@pytest.mark.parametrize("change, expected", [
    ({"synthesis": None}, None),  # no synthesis handed over yet
    ({"conclusion": St.SCHEDULED}, None),  # the conclusion planned, not attended
    ({"end": date(2025, 3, 1)}, "2025-03-01"),  # the exit is never after the session end
    ({"state": "terminated"}, "2025-03-10"),
    ({"state": "accepted"}, None),  # not entered yet: the entry comes first
    ({"state": "serviceDoneDeclared"}, None),
])
def test_end_edges(change, expected):
    sessions = _finished().sessions
    if "conclusion" in change:
        sessions = (*sessions[:2], at(date(2025, 3, 10), phase=Ph.CONCLUSION, status=change["conclusion"], id=3))
    evidence = ev(*sessions, synthesis=change.get("synthesis", date(2025, 3, 11)))
    base = folder(change.get("state", "inTraining"), end=change.get("end", date(2025, 4, 30)))
    decision = decide(base, evidence, POLICY, TODAY).get(K.END)
    assert (decision.body["date"] if decision else None) == expected


def test_absence_is_never_negative():
    more = ev(*_finished().sessions, at(date(2025, 3, 3), minutes=1200, id=9), synthesis=date(2025, 3, 11))
    assert decide(folder(), more, POLICY, TODAY)[K.END].body["absenceDuration"] == 0.0


def test_end_without_a_code_is_blocked_with_what_to_set():
    decision = decide(folder(), _finished(), NO_CODES, TODAY)[K.END]
    assert decision.body is None and "normal end" in decision.blocked


# -- abandon and cancel ------------------------------------------------------------------------------

def test_inactivity_after_entry_is_an_abandon_with_the_remaining_hours():
    sessions = (at(date(2025, 2, 5), minutes=300),)  # 5 h, then nothing for 35 days
    decision = decide(folder(), ev(*sessions), POLICY, TODAY)[K.ABANDON]
    assert decision.body == {"date": "2025-02-05", "code": "3", "absenceDuration": 19.0,
                             "forceMajeureAbsence": False, "trainingDuration": 24.0}
    assert decision.late  # the exit is long past its 3 working days: flagged for the admin
    assert K.ABANDON not in decide(folder(), ev(*sessions), POLICY, date(2025, 3, 6))  # 29 days: not yet


def test_a_recorded_withdrawal_after_entry_is_an_abandon():
    decision = decide(folder(), ev(at(date(2025, 3, 10)), withdrawn=date(2025, 3, 11), reason="moved away"),
                      POLICY, TODAY)[K.ABANDON]
    assert decision.body["code"] == "3" and decision.evidence["withdrawal_reason"] == "moved away"


def test_inactivity_counts_from_the_entry_when_nothing_was_attended():
    assert K.ABANDON in decide(folder(entered=date(2025, 2, 3)), ev(), POLICY, TODAY)
    assert K.ABANDON not in decide(folder(entered=None), ev(), POLICY, TODAY)  # no date to count from


def test_the_normal_end_wins_over_inactivity():
    late_today = TODAY + timedelta(days=60)
    decisions = decide(folder(), _finished(), POLICY, late_today)
    assert K.END in decisions and K.ABANDON not in decisions


@pytest.mark.parametrize("state", FOLDER_STATES)
def test_a_withdrawal_before_entry_is_a_cancel_and_after_it_an_abandon(state):
    decisions = decide(folder(state), ev(withdrawn=date(2025, 3, 11)), POLICY, TODAY)
    assert (K.CANCEL in decisions) == (state in ("notProcessed", "validated", "waitingAcceptation", "accepted"))
    assert (K.ABANDON in decisions) == (state == "inTraining")
    if K.CANCEL in decisions:
        assert decisions[K.CANCEL].body == {"code": "12",
                                            "description": "Retrait du bénéficiaire avant l'entrée en formation"}


def test_attendance_before_a_withdrawal_means_entry_first_never_cancel():
    """The beneficiary came, then withdrew: CPF rights were used; the entry is due, the exit follows it."""
    decisions = decide(folder("accepted"), ev(at(date(2025, 3, 5)), withdrawn=date(2025, 3, 11)), POLICY, TODAY)
    assert K.ENTRY in decisions and K.CANCEL not in decisions
    before_start = ev(at(date(2025, 1, 20)), withdrawn=date(2025, 3, 11))  # only a session before the start
    assert K.CANCEL in decide(folder("accepted"), before_start, POLICY, TODAY)


def test_missing_codes_block_abandon_and_cancel():
    blocked = bodies(decide(folder(), ev(withdrawn=date(2025, 3, 11)), NO_CODES, TODAY))
    assert blocked[K.ABANDON].startswith("blocked: choose the reason code meaning an abandon")
    assert bodies(decide(folder("accepted"), ev(withdrawn=date(2025, 3, 11)), NO_CODES, TODAY))[K.CANCEL] \
        .startswith("blocked: choose the reason code for a withdrawal")


# -- modes, no evidence ------------------------------------------------------------------------------

def test_a_kind_whose_mode_is_off_is_not_evaluated():
    only_progress = Policy({K.PROGRESS: M.AUTO}, normal_end_code="7")
    assert set(decide(folder(), _finished(), only_progress, TODAY)) == {K.PROGRESS}
    assert decide(folder(), _finished(), Policy({}), TODAY) == {}


@pytest.mark.parametrize("state", FOLDER_STATES)
def test_no_evidence_tells_wedof_nothing(state):
    assert decide(folder(state, entered=None), ev(), POLICY, TODAY) == {}


def test_working_days_skip_weekends_and_french_holidays():
    assert working_days_after(date(2025, 3, 7), date(2025, 3, 10)) == 1  # Friday -> Monday
    assert working_days_after(date(2025, 4, 30), date(2025, 5, 2)) == 1  # 1 May is a holiday
    assert working_days_after(date(2025, 3, 12), date(2025, 3, 12)) == 0
    assert working_days_after(date(2025, 3, 12), date(2025, 3, 1)) == 0


MOVED_PAST = [  # (kind, state, gone past where the kind applies)
    (K.ENTRY, "accepted", False), (K.ENTRY, "validated", False), (K.ENTRY, "canceledByAttendee", True),
    (K.ENTRY, "refusedByFinancer", True),
    (K.PROGRESS, "inTraining", False), (K.PROGRESS, "accepted", False), (K.PROGRESS, "serviceDoneDeclared", True),
    (K.END, "terminated", False), (K.END, "accepted", False), (K.END, "canceledByOrganism", True),
    (K.ABANDON, "inTraining", False), (K.ABANDON, "terminated", True),
    (K.CANCEL, "accepted", False), (K.CANCEL, "notProcessed", False), (K.CANCEL, "inTraining", True),
    (K.ENTRY, "aStateWedofAddsLater", True), (K.ENTRY, None, True),
]


@pytest.mark.parametrize(("kind", "state", "past"), MOVED_PAST)
def test_what_the_sender_no_longer_sends(kind, state, past):
    assert moved_past(kind, state) is past
