"""Run the lifecycle rules over a tenant's enrollments, a page at a time, and bring the actions in line.

Level-triggered: whatever changed (evidence, a folder applied from Wedof, a setting, the calendar),
evaluating again from the data gives the same actions. A page costs a fixed number of reads, whatever
its size: the enrollments, their appointments, their actions. Per enrollment and kind:

- a decision and no live action → :func:`lifecycle.actions.propose` (unless the same body was already
  refused or failed: a corrected decision is proposed, the same one is not sent again);
- a decision and a live action not sent yet that says something else → ``revise``;
- no decision any more and a live action the rules made, not sent yet → ``withdraw`` (the evidence
  was removed, or the rule switched off); an action an admin decided by hand stays his;
- approved actions, and sent ones whose task is presumed lost, are handed back to be carried out;
- a declaration Wedof accepted (an entry, an end, a cancel) is never proposed again for that folder,
  whatever the folder does afterwards: it is irreversible (only completion rates repeat).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from bdc.models import (
    ActionStatus,
    Appointment,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
)
from lifecycle import actions
from lifecycle.rules import BEFORE_ENTRY_STATES, ENTERED_STATES, Decision, Evidence, Folder, Policy, decide
from lifecycle.rules import Session as Sitting

PAGE_SIZE = 500
# Declared once per folder: an accepted entry, end (normal or abandon: both serviceDone) or cancel.
ONCE_ONLY = {LifecycleKind.ENTRY: {LifecycleKind.ENTRY},
             LifecycleKind.END: {LifecycleKind.END, LifecycleKind.ABANDON},
             LifecycleKind.ABANDON: {LifecycleKind.END, LifecycleKind.ABANDON},
             LifecycleKind.CANCEL: {LifecycleKind.CANCEL}}
EVALUATED_STATES = sorted(BEFORE_ENTRY_STATES | ENTERED_STATES)


def policy_of(settings: LifecycleSettings) -> Policy:
    modes = {LifecycleKind.ENTRY: settings.entry_mode, LifecycleKind.PROGRESS: settings.progress_mode,
             LifecycleKind.END: settings.end_mode, LifecycleKind.ABANDON: settings.abandon_mode,
             LifecycleKind.CANCEL: settings.cancel_mode}
    return Policy(modes, normal_end_code=settings.normal_end_code, abandon_code=settings.abandon_code,
                  cancel_code=settings.cancel_code, inactivity_days=settings.inactivity_days,
                  time_zone=settings.time_zone)


def tenant_today(settings: LifecycleSettings) -> date:
    return datetime.now(ZoneInfo(settings.time_zone)).date()


def by_hand(action: LifecycleAction) -> bool:
    return bool((action.evidence or {}).get("by_hand"))


@dataclass
class Outcome:
    evaluated: int = 0
    proposed: int = 0
    revised: int = 0
    withdrawn: int = 0
    to_send: list[int] = field(default_factory=list)  # approved actions to carry out (after the commit)
    last_id: int | None = None  # the page's last enrollment id: where the next page starts

    def add(self, other: Outcome) -> None:
        self.evaluated += other.evaluated
        self.proposed += other.proposed
        self.revised += other.revised
        self.withdrawn += other.withdrawn
        self.to_send += other.to_send


def evaluate_page(session: Session, settings: LifecycleSettings, *, after_id: int = 0,
                  enrollment_ids: list[int] | None = None, limit: int = PAGE_SIZE,
                  today: date | None = None) -> Outcome:
    """Evaluate one page of the tenant's enrollments (by id after ``after_id``, or the given ones)."""
    tenant_id, policy = settings.tenant_id, policy_of(settings)
    today = today or tenant_today(settings)
    live_here = select(LifecycleAction.enrollment_id).where(LifecycleAction.tenant_id == tenant_id,
                                                            LifecycleAction.status.in_(sorted(actions.LIVE)))
    query = (select(Enrollment).where(Enrollment.tenant_id == tenant_id, Enrollment.external_id.is_not(None),
                                      or_(Enrollment.wedof_state.in_(EVALUATED_STATES), Enrollment.id.in_(live_here)))
             .order_by(Enrollment.id))
    if enrollment_ids is not None:
        query = query.where(Enrollment.id.in_(enrollment_ids))
    else:
        query = query.where(Enrollment.id > after_id).limit(limit)
    enrollments = list(session.scalars(query))
    outcome = Outcome(last_id=enrollments[-1].id if enrollments else None)
    if not enrollments:
        return outcome
    ids = [e.id for e in enrollments]
    sittings: dict[int, list[Sitting]] = defaultdict(list)
    for row in session.execute(select(Appointment.id, Appointment.enrollment_id, Appointment.phase, Appointment.status,
                                      Appointment.starts_at, Appointment.ends_at, Appointment.attended_minutes)
                               .where(Appointment.enrollment_id.in_(ids))):
        sittings[row.enrollment_id].append(Sitting(row.id, row.phase, row.status, row.starts_at, row.ends_at,
                                                   row.attended_minutes))
    live: dict[tuple[int, LifecycleKind], LifecycleAction] = {}
    closed: dict[tuple[int, LifecycleKind], LifecycleAction] = {}
    declared: dict[int, set[LifecycleKind]] = defaultdict(set)  # once-only declarations Wedof accepted
    for action in session.scalars(select(LifecycleAction).where(
            LifecycleAction.enrollment_id.in_(ids),
            or_(LifecycleAction.status.in_(sorted(actions.LIVE | actions.CLOSED_WITHOUT_EFFECT)),
                and_(LifecycleAction.status == ActionStatus.DONE, LifecycleAction.kind != LifecycleKind.PROGRESS)))
            .order_by(LifecycleAction.id)):
        if action.status == ActionStatus.DONE:
            declared[action.enrollment_id] |= ONCE_ONLY.get(action.kind, set())
        else:
            (live if action.status in actions.LIVE else closed)[(action.enrollment_id, action.kind)] = action
    new: list[tuple[int, Decision, LifecycleMode]] = []
    for enrollment in enrollments:
        decisions = decide(_folder(enrollment), _evidence(enrollment, sittings[enrollment.id]), policy, today)
        for kind in declared[enrollment.id]:
            decisions.pop(kind, None)
        for kind in LifecycleKind:
            _reconcile(session, enrollment, kind, decisions.get(kind), policy.modes.get(kind, LifecycleMode.OFF),
                       live.get((enrollment.id, kind)), closed.get((enrollment.id, kind)), outcome, new)
        outcome.evaluated += 1
    if new:
        created = actions.propose_many(session, tenant_id, new)
        outcome.proposed += len(created)
        outcome.to_send += [a.id for a in created if a.status == ActionStatus.APPROVED]
    return outcome


def _reconcile(session: Session, enrollment: Enrollment, kind: LifecycleKind, decision, mode: LifecycleMode,
               action: LifecycleAction | None, last_closed: LifecycleAction | None, outcome: Outcome,
               new: list) -> None:
    if action is not None and (action.status == ActionStatus.SENT or by_hand(action)):
        if _to_hand_back(action):
            outcome.to_send.append(action.id)
        return  # in flight, or an admin's own decision: not the rules' to change
    if decision is None:
        if action is not None and actions.withdraw(session, action.id, "the evidence no longer supports it"
                                                   if mode != LifecycleMode.OFF else "the rule was switched off"):
            outcome.withdrawn += 1
        return
    if action is None:
        if last_closed is not None and last_closed.body == decision.body and decision.blocked is None:
            return  # the same decision was refused (or failed): not again until the evidence changes
        new.append((enrollment.id, decision, mode))  # proposed with the page's others, in one INSERT
        return
    target = actions.status_for(decision, mode)
    says_else = (action.body, action.reason, action.mode, action.late) != (decision.body, decision.blocked, mode,
                                                                          decision.late)
    # An admin's approval stands as long as the decision says the same thing.
    moves = action.status != target and (action.status, target) != (ActionStatus.APPROVED, ActionStatus.PROPOSED)
    if says_else or moves:
        if actions.revise(session, action, decision, mode):
            outcome.revised += 1
            if target == ActionStatus.APPROVED and _to_hand_back(action):
                outcome.to_send.append(action.id)  # a task already queued reads the revised body
    elif _to_hand_back(action):
        outcome.to_send.append(action.id)  # approved but not queued yet (or its task was lost): again


def _to_hand_back(action: LifecycleAction) -> bool:
    """An approved action not queued yet, or one whose task is presumed lost: queued again (once)."""
    return action.status in (ActionStatus.APPROVED, ActionStatus.SENT) and not actions.awaits_its_task(action)


def _folder(enrollment: Enrollment) -> Folder:
    in_training = enrollment.in_training_at.date() if enrollment.in_training_at else None
    return Folder(enrollment.wedof_state, enrollment.session_start_date, enrollment.session_end_date,
                  enrollment.indicative_duration_hours, enrollment.progress, in_training)


def _evidence(enrollment: Enrollment, sittings: list[Sitting]) -> Evidence:
    return Evidence(tuple(sittings), enrollment.synthesis_delivered_on, enrollment.withdrawn_on,
                    enrollment.withdrawal_reason)


def settings_of(session: Session, tenant_id: int) -> LifecycleSettings | None:
    return session.scalars(select(LifecycleSettings).where(LifecycleSettings.tenant_id == tenant_id)).first()


def enabled(settings: LifecycleSettings | None) -> bool:
    return settings is not None and any(mode != LifecycleMode.OFF for mode in policy_of(settings).modes.values())


def worth_evaluating(session: Session, tenant_id: int, enrollment_id: int) -> bool:
    """Whether a folder's change may change a decision: the rules are on, and the bilan has evidence
    (a session, the synthesis, a withdrawal) or a live action. Without either the rules say nothing,
    so most applied folders ask for no evaluation; the beat's pass covers every enrollment anyway."""
    if not enabled(settings_of(session, tenant_id)):
        return False
    has_evidence = or_(
        select(Appointment.id).where(Appointment.enrollment_id == enrollment_id).exists(),
        select(LifecycleAction.id).where(LifecycleAction.enrollment_id == enrollment_id,
                                         LifecycleAction.status.in_(sorted(actions.LIVE))).exists(),
        select(Enrollment.id).where(Enrollment.id == enrollment_id,
                                    or_(Enrollment.synthesis_delivered_on.is_not(None),
                                        Enrollment.withdrawn_on.is_not(None))).exists(),
    )
    return bool(session.scalar(select(has_evidence)))
