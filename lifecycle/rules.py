"""The lifecycle rules: from a folder's Wedof state and dates and the BDC's evidence, what Wedof should be told.

Pure: no database, no clock (``today`` is given), no call. :func:`decide` returns at most one
:class:`Decision` per kind, each with the exact body Wedof will receive and the evidence it rests on,
or ``blocked`` with what an admin must set. The CPF rules behind them (lifecycle-billing.md §2):

- **entry** (``inTraining {date}``): only on real attendance, at the first attended date on or after
  the session start, never from planned dates; irreversible, due within 3 working days (else *late*);
- **progress** (``completionRate``): attended hours ÷ ``indicativeDuration`` × 100, a whole number
  rounded down and capped at 100, only in ``inTraining``/``terminated`` and when it differs from
  Wedof's;
- **end** (``serviceDone``): the conclusion session attended and the synthesis handed over; dated
  the last attended day, never after the session end; absence = planned minus attended hours;
- **abandon** (``serviceDone`` with the abandon code): entered, then a recorded withdrawal, or no
  attended session for the inactivity threshold; the remaining hours are the absence;
- **cancel** (``cancel {code, description}``): a recorded withdrawal before the entry, when the
  beneficiary attended nothing since the session started (else the entry is due first, and the
  withdrawal becomes an abandon after it).

A reason code is the organism's own (Wedof's ``/registrationFoldersReasons``): when none is chosen
the decision is ``blocked``, never a guessed code. Dates are days in the tenant's time zone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays

from bdc.models.enums import AppointmentPhase, AppointmentStatus, LifecycleKind, LifecycleMode
from wedof.mapping.states import DECLARATIONS, PROGRESS_ALLOWED_STATES

ENTRY_DELAY_WORKING_DAYS = 3  # Mon Compte Formation: entry and exit declared within 3 working days
ENTERED_STATES = frozenset({"inTraining", "terminated"})
BEFORE_ENTRY_STATES = frozenset({"notProcessed", "validated", "waitingAcceptation", "accepted"})
CANCEL_DESCRIPTION = "Retrait du bénéficiaire avant l'entrée en formation"
# The Wedof states each kind of action applies from: the rules' own preconditions, and what the sender
# checks on the folder it reads just before the call (the folder may have moved on since the decision).
APPLIES_FROM: dict[LifecycleKind, frozenset[str]] = {
    LifecycleKind.ENTRY: DECLARATIONS["inTraining"].allowed_from,
    LifecycleKind.PROGRESS: PROGRESS_ALLOWED_STATES,
    LifecycleKind.END: ENTERED_STATES,
    LifecycleKind.ABANDON: frozenset({"inTraining"}),
    LifecycleKind.CANCEL: BEFORE_ENTRY_STATES,
}


def moved_past(kind: LifecycleKind, state: str | None) -> bool:
    """Whether a folder in ``state`` has gone past where ``kind`` applies (entered, done, cancelled,
    refused): it never will again. A folder not there yet (an end while still ``accepted``) has not:
    Wedof judges that call, and its refusal is shown."""
    return state not in APPLIES_FROM[kind] and state not in BEFORE_ENTRY_STATES


@dataclass(frozen=True)
class Session:
    """One appointment, as the rules see it."""

    id: int
    phase: AppointmentPhase
    status: AppointmentStatus
    starts_at: datetime  # aware
    ends_at: datetime
    attended_minutes: int | None = None

    @property
    def minutes(self) -> float:
        """Attended minutes; the scheduled length when attendance was marked without a duration."""
        if self.attended_minutes is not None:
            return float(self.attended_minutes)
        return max(0.0, (self.ends_at - self.starts_at).total_seconds() / 60)


@dataclass(frozen=True)
class Folder:
    """What the data layer holds of the Wedof folder."""

    state: str | None
    session_start: date | None
    session_end: date | None
    indicative_hours: float | None
    completion_rate: int | None  # what Wedof holds
    in_training_on: date | None = None  # the day Wedof recorded the entry


@dataclass(frozen=True)
class Evidence:
    sessions: tuple[Session, ...] = ()
    synthesis_on: date | None = None
    withdrawn_on: date | None = None
    withdrawal_reason: str | None = None


@dataclass(frozen=True)
class Policy:
    modes: dict[LifecycleKind, LifecycleMode]
    normal_end_code: str | None = None
    abandon_code: str | None = None
    cancel_code: str | None = None
    inactivity_days: int = 30
    time_zone: str = "Europe/Paris"

    def enabled(self, kind: LifecycleKind) -> bool:
        return self.modes.get(kind, LifecycleMode.OFF) != LifecycleMode.OFF


@dataclass(frozen=True)
class Decision:
    kind: LifecycleKind
    body: dict | None  # exactly what Wedof receives; None when blocked
    evidence: dict = field(default_factory=dict)
    blocked: str | None = None  # what an admin must set first
    late: bool = False

    @property
    def verb(self) -> str:
        return VERBS[self.kind]


# The Wedof call each kind makes (``PUT`` for progress, the others a transition ``POST``).
VERBS = {
    LifecycleKind.ENTRY: DECLARATIONS["inTraining"].verb,
    LifecycleKind.PROGRESS: "completionRate",
    LifecycleKind.END: DECLARATIONS["serviceDone"].verb,
    LifecycleKind.ABANDON: DECLARATIONS["serviceDone"].verb,
    LifecycleKind.CANCEL: "cancel",
}


def working_days_after(start: date, end: date) -> int:
    """Working days (Monday to Friday, French public holidays excepted) in (start, end]."""
    if end <= start:
        return 0
    closed = holidays.country_holidays("FR", years=range(start.year, end.year + 1))
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        if day.weekday() < 5 and day not in closed:
            count += 1
    return count


def decide(folder: Folder, evidence: Evidence, policy: Policy, today: date) -> dict[LifecycleKind, Decision]:
    """What Wedof should be told now, per kind (kinds with nothing to tell are absent)."""
    zone = ZoneInfo(policy.time_zone)
    attended = sorted((s for s in evidence.sessions if s.status == AppointmentStatus.ATTENDED),
                      key=lambda s: s.starts_at)
    # Attendance cannot lie in the future (the API refuses it); a row that does is not evidence yet.
    attended = [s for s in attended if _day(s, zone) <= today]
    hours = sum(s.minutes for s in attended) / 60
    decisions: dict[LifecycleKind, Decision] = {}
    rules = (
        (LifecycleKind.ENTRY, lambda: _entry(folder, attended, zone, today)),
        (LifecycleKind.PROGRESS, lambda: _progress(folder, evidence, hours)),
        (LifecycleKind.END, lambda: _end(folder, evidence, attended, hours, policy, zone, today)),
    )
    for kind, rule in rules:
        if policy.enabled(kind) and (decision := rule()) is not None:
            decisions[kind] = decision
    entry_due = _entry(folder, attended, zone, today) is not None  # real attendance: entered, whatever comes next
    if policy.enabled(LifecycleKind.CANCEL) and not entry_due and (cancel := _cancel(folder, evidence, policy)):
        decisions[LifecycleKind.CANCEL] = cancel
    if policy.enabled(LifecycleKind.ABANDON) and LifecycleKind.END not in decisions:
        abandon = _abandon(folder, evidence, attended, hours, policy, zone, today)
        if abandon is not None:
            decisions[LifecycleKind.ABANDON] = abandon
    return decisions


def _day(session: Session, zone: ZoneInfo) -> date:
    return session.starts_at.astimezone(zone).date()


def _entry(folder: Folder, attended: list[Session], zone: ZoneInfo, today: date) -> Decision | None:
    if folder.state not in APPLIES_FROM[LifecycleKind.ENTRY] or not attended:
        return None
    if folder.session_start is None:
        return _blocked(LifecycleKind.ENTRY, "the folder has no sessionStartDate: Wedof refuses an entry without it")
    eligible = [s for s in attended if _day(s, zone) >= folder.session_start]
    if not eligible:
        return None  # attended only before the session started: that is not the entry
    first = eligible[0]
    entered = _day(first, zone)
    return Decision(
        LifecycleKind.ENTRY, {"date": entered.isoformat()},
        evidence={"appointment_id": first.id, "phase": first.phase.value, "attended_on": entered.isoformat(),
                  "session_start": folder.session_start.isoformat()},
        late=working_days_after(entered, today) > ENTRY_DELAY_WORKING_DAYS,
    )


def _progress(folder: Folder, evidence: Evidence, hours: float) -> Decision | None:
    if folder.state not in APPLIES_FROM[LifecycleKind.PROGRESS] or not evidence.sessions:
        return None  # no evidence recorded: nothing to say about progress
    if not folder.indicative_hours or folder.indicative_hours <= 0:
        return _blocked(LifecycleKind.PROGRESS, "the folder has no indicativeDuration to compute a rate against")
    rate = min(100, math.floor(hours / folder.indicative_hours * 100 + 1e-9))
    if rate == folder.completion_rate:
        return None
    return Decision(LifecycleKind.PROGRESS, {"completionRate": rate},
                    evidence={"attended_hours": round(hours, 2), "indicative_hours": folder.indicative_hours,
                              "wedof_rate": folder.completion_rate})


def _end(folder: Folder, evidence: Evidence, attended: list[Session], hours: float, policy: Policy,
         zone: ZoneInfo, today: date) -> Decision | None:
    if folder.state not in APPLIES_FROM[LifecycleKind.END] or evidence.synthesis_on is None:
        return None
    conclusion = [s for s in attended if s.phase == AppointmentPhase.CONCLUSION]
    if not conclusion:
        return None
    return _service_done(LifecycleKind.END, folder, attended, hours, policy.normal_end_code,
                         "choose the reason code meaning a normal end (from Wedof's terminated reasons)",
                         zone, today, {"conclusion_appointment_id": conclusion[-1].id,
                                       "synthesis_on": evidence.synthesis_on.isoformat()})


def _abandon(folder: Folder, evidence: Evidence, attended: list[Session], hours: float, policy: Policy,
             zone: ZoneInfo, today: date) -> Decision | None:
    if folder.state not in APPLIES_FROM[LifecycleKind.ABANDON]:
        return None
    last_attended = _day(attended[-1], zone) if attended else None
    active_on = max(filter(None, (last_attended, folder.in_training_on)), default=None)
    if evidence.withdrawn_on is not None:
        why = {"withdrawn_on": evidence.withdrawn_on.isoformat(), "withdrawal_reason": evidence.withdrawal_reason}
    elif active_on is not None and (today - active_on).days >= policy.inactivity_days:
        why = {"inactive_since": active_on.isoformat(), "inactivity_days": policy.inactivity_days}
    else:
        return None
    return _service_done(LifecycleKind.ABANDON, folder, attended, hours, policy.abandon_code,
                         "choose the reason code meaning an abandon (from Wedof's terminated reasons)",
                         zone, today, why, ended_on=active_on)


def _service_done(kind: LifecycleKind, folder: Folder, attended: list[Session], hours: float, code: str | None,
                  missing_code: str, zone: ZoneInfo, today: date, why: dict,
                  ended_on: date | None = None) -> Decision:
    if code is None:
        return _blocked(kind, missing_code, why)
    if not folder.indicative_hours or folder.indicative_hours <= 0:
        return _blocked(kind, "the folder has no indicativeDuration (Wedof's trainingDuration)", why)
    ended = _day(attended[-1], zone) if attended else ended_on
    if ended is None:
        return _blocked(kind, "no attended session dates the end", why)
    if folder.session_end is not None and ended > folder.session_end:
        ended = folder.session_end  # the exit cannot be after the planned session end
    absence = max(0.0, folder.indicative_hours - hours)
    body = {"date": ended.isoformat(), "code": code, "absenceDuration": round(absence, 2),
            "forceMajeureAbsence": False, "trainingDuration": folder.indicative_hours}
    evidence = {**why, "attended_hours": round(hours, 2), "last_attended_on": ended.isoformat()}
    return Decision(kind, body, evidence=evidence,
                    late=working_days_after(ended, today) > ENTRY_DELAY_WORKING_DAYS)


def _cancel(folder: Folder, evidence: Evidence, policy: Policy) -> Decision | None:
    if folder.state not in APPLIES_FROM[LifecycleKind.CANCEL] or evidence.withdrawn_on is None:
        return None
    why = {"withdrawn_on": evidence.withdrawn_on.isoformat(), "withdrawal_reason": evidence.withdrawal_reason}
    if policy.cancel_code is None:
        return _blocked(LifecycleKind.CANCEL, "choose the reason code for a withdrawal before entry "
                                              "(from Wedof's canceled reasons)", why)
    return Decision(LifecycleKind.CANCEL,
                    {"code": policy.cancel_code, "description": evidence.withdrawal_reason or CANCEL_DESCRIPTION},
                    evidence=why)


def _blocked(kind: LifecycleKind, what: str, evidence: dict | None = None) -> Decision:
    return Decision(kind, None, evidence=evidence or {}, blocked=what)
