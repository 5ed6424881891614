"""The one owner of ``LifecycleAction.status``: every move is a named transition, audited here.

An action is a decision recorded before anything is sent (the exact body, the evidence, who decided),
then a call. Each transition is a compare-and-set UPDATE guarded by the statuses it may start from,
so an evaluation, an admin and the task that carries the action out can race without two of them
winning. At most one *live* action (proposed, approved, sent, blocked) exists per enrollment and kind:
the partial unique index of the table enforces it, so re-evaluating never proposes twice.

::

    (new) ─propose─▶ proposed | blocked | approved (auto mode, or decided by an admin)
    proposed | blocked | approved ─revise─▶ proposed | blocked | approved   (the evidence changed)
    proposed ─approve─▶ approved        proposed | blocked ─reject─▶ cancelled
    proposed | blocked | approved ─withdraw─▶ cancelled   (the evidence no longer supports it)
    approved ─start─▶ sent (the intent is committed before the call; sent ─start─▶ sent: a retry)
    sent ─finish─▶ done | refused | failed        refused | failed ─retry─▶ approved (an admin)
    sent ─moved_on─▶ cancelled   (the folder read before the call no longer allows it: nothing sent)
    refused | failed ─start─▶ sent   (re-applied by hand from Flower: the folder is read first)

Nothing sends a refused or failed action again on its own: only an admin, once the cause is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from bdc.audit import note_transition, record_audit
from bdc.models import ActionStatus, LifecycleAction, LifecycleKind, LifecycleMode, Notice, NoticeKind
from bdc.settings import get_settings
from bdc.types import utcnow
from lifecycle.rules import Decision

PROPOSED, APPROVED, SENT, DONE = ActionStatus.PROPOSED, ActionStatus.APPROVED, ActionStatus.SENT, ActionStatus.DONE
REFUSED, FAILED, BLOCKED, CANCELLED = (ActionStatus.REFUSED, ActionStatus.FAILED, ActionStatus.BLOCKED,
                                       ActionStatus.CANCELLED)
NEW = None


@dataclass(frozen=True)
class Transition:
    sources: frozenset
    targets: frozenset[ActionStatus]


TRANSITIONS: dict[str, Transition] = {
    "propose": Transition(frozenset({NEW}), frozenset({PROPOSED, BLOCKED, APPROVED})),
    "revise": Transition(frozenset({PROPOSED, BLOCKED, APPROVED}), frozenset({PROPOSED, BLOCKED, APPROVED})),
    "approve": Transition(frozenset({PROPOSED}), frozenset({APPROVED})),
    "reject": Transition(frozenset({PROPOSED, BLOCKED}), frozenset({CANCELLED})),
    "withdraw": Transition(frozenset({PROPOSED, BLOCKED, APPROVED}), frozenset({CANCELLED})),
    "start": Transition(frozenset({APPROVED, SENT, REFUSED, FAILED}), frozenset({SENT})),
    "finish": Transition(frozenset({SENT}), frozenset({DONE, REFUSED, FAILED})),
    "moved_on": Transition(frozenset({SENT}), frozenset({CANCELLED})),
    "retry": Transition(frozenset({REFUSED, FAILED}), frozenset({APPROVED})),
}
ALLOWED: frozenset[tuple] = frozenset(
    (source, target) for t in TRANSITIONS.values() for source in t.sources for target in t.targets
)
LIVE = frozenset({PROPOSED, APPROVED, SENT, BLOCKED})
CLOSED_WITHOUT_EFFECT = frozenset({REFUSED, FAILED})  # an identical decision is not proposed again


def lost_after() -> timedelta:
    """How long a sent action's task may hold it (``BDC_ACTION_LOST_AFTER``, 10 min by default).

    Past it the task is presumed lost (its worker died, or its retry could not reach the broker) and
    another task may start the action again; that one reads the folder before anything else, so a lost
    answer is never resent.
    """
    return timedelta(seconds=get_settings().action_lost_after)


def allowed(source: ActionStatus | None, target: ActionStatus) -> bool:
    return (source, target) in ALLOWED


def status_for(decision: Decision, mode: LifecycleMode) -> ActionStatus:
    """Where a decision starts: blocked (a setting is missing), approved (auto mode), else proposed."""
    if decision.blocked is not None:
        return BLOCKED
    return APPROVED if mode == LifecycleMode.AUTO else PROPOSED


def _move(session: Session, action_id: int, name: str, target: ActionStatus, *conditions, **values) -> bool:
    sources = TRANSITIONS[name].sources
    assert target in TRANSITIONS[name].targets, f"{name} cannot lead to {target}"  # a caller bug
    # The status it moves from, for the audit row (locked: on PostgreSQL nobody moves it in between).
    old = session.scalar(select(LifecycleAction.status).where(LifecycleAction.id == action_id).with_for_update())
    if old not in sources:
        return False
    statement = (
        update(LifecycleAction)
        .where(LifecycleAction.id == action_id, LifecycleAction.status.in_(sorted(sources)), *conditions)
        .values(status=target, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    moved = session.execute(statement).rowcount == 1
    if moved:
        note_transition(session, ("lifecycle_action", action_id), old, target)
    return moved


def _audit(session: Session, action: LifecycleAction | int, what: str, actor: str, **details) -> None:
    if isinstance(action, int):
        action = session.get(LifecycleAction, action)
    record_audit(session, actor=actor, action=f"lifecycle.{what}", tenant_id=action.tenant_id,
                 target=("lifecycle_action", action.id),
                 details={"kind": action.kind.value, "enrollment_id": action.enrollment_id, **details})


def propose(session: Session, tenant_id: int, enrollment_id: int, decision: Decision, mode: LifecycleMode,
            actor: str = "rules") -> LifecycleAction:
    """Record a new decision. A decision an admin makes by hand (``actor`` is that admin) starts approved."""
    return propose_many(session, tenant_id, [(enrollment_id, decision, mode)], actor)[0]


def propose_many(session: Session, tenant_id: int, decisions: list[tuple[int, Decision, LifecycleMode]],
                 actor: str = "rules") -> list[LifecycleAction]:
    """Record new decisions ``(enrollment_id, decision, mode)`` in one flush (one INSERT for a page).

    Flushed here, so a concurrent live twin fails on the unique index now, in the caller's transaction.
    """
    by_hand = actor != "rules"
    created = [LifecycleAction(tenant_id=tenant_id, enrollment_id=enrollment_id, kind=decision.kind,
                               status=APPROVED if by_hand else status_for(decision, mode), mode=mode,
                               body=decision.body, evidence=decision.evidence, reason=decision.blocked,
                               late=decision.late, decided_by=actor if by_hand else None,
                               decided_at=utcnow() if by_hand else None)
               for enrollment_id, decision, mode in decisions]
    session.add_all(created)
    session.flush()
    for action, (_enrollment_id, decision, mode) in zip(created, decisions, strict=True):
        _audit(session, action, "proposed", actor, status=action.status.value, body=decision.body, mode=mode.value,
               late=decision.late, blocked=decision.blocked)
        if decision.late and action.status != BLOCKED:
            notify(session, tenant_id, NoticeKind.LATE_ENTRY, action,
                   f"The {decision.kind.value} of enrollment {action.enrollment_id} is due since more than "
                   f"3 working days ({decision.body}).")
    return created


def revise(session: Session, action: LifecycleAction, decision: Decision, mode: LifecycleMode) -> bool:
    """The evidence changed before the action was sent: it now says this (re-approved only in auto mode)."""
    status = status_for(decision, mode)
    moved = _move(session, action.id, "revise", status, body=decision.body, evidence=decision.evidence,
                  reason=decision.blocked, late=decision.late, mode=mode, decided_by=None, decided_at=None)
    if moved:
        _audit(session, action, "revised", "rules", status=status.value, body=decision.body,
               blocked=decision.blocked, previous_body=action.body)
    return moved


def approve(session: Session, action_id: int, actor: str) -> bool:
    """An admin releases a proposed action (never a dry-run one: that mode shows, it does not send)."""
    moved = _move(session, action_id, "approve", APPROVED, LifecycleAction.mode != LifecycleMode.DRY_RUN,
                  decided_by=actor, decided_at=utcnow())
    if moved:
        _audit(session, action_id, "approved", actor)
    return moved


def reject(session: Session, action_id: int, actor: str, reason: str) -> bool:
    moved = _move(session, action_id, "reject", CANCELLED, decided_by=actor, decided_at=utcnow(),
                  reason=f"rejected: {reason}"[:2000], finished_at=utcnow())
    if moved:
        _audit(session, action_id, "rejected", actor, reason=reason)
    return moved


def withdraw(session: Session, action_id: int, reason: str) -> bool:
    moved = _move(session, action_id, "withdraw", CANCELLED, reason=reason, finished_at=utcnow())
    if moved:
        _audit(session, action_id, "withdrawn", "rules", reason=reason)
    return moved


def start(session: Session, action_id: int, task_id: str) -> LifecycleAction | None:
    """Commit the intent before the call: approved → sent, held by ``task_id``.

    A sent action is started again only by its own task (a retry) or once presumed lost, so two tasks
    never carry out one action at the same time. A refused or failed one starts again when re-applied
    by hand (Flower): the task reads the folder before anything is sent.
    """
    now = utcnow()
    mine_or_lost = or_(LifecycleAction.status.in_((APPROVED, REFUSED, FAILED)), LifecycleAction.task_id == task_id,
                       LifecycleAction.sent_at <= now - lost_after())
    if not _move(session, action_id, "start", SENT, mine_or_lost, task_id=task_id, sent_at=now):
        return None
    action = session.get(LifecycleAction, action_id)
    session.refresh(action)
    _audit(session, action, "sent", "worker", body=action.body, task_id=task_id)
    return action


def finish(session: Session, action_id: int, status: ActionStatus, *, answer: dict | None = None,
           reason: str | None = None) -> bool:
    moved = _move(session, action_id, "finish", status, wedof_answer=answer, reason=reason, finished_at=utcnow())
    if moved:
        _audit(session, action_id, status.value, "worker", reason=reason, answer=answer)
        if status in (REFUSED, FAILED):
            action = session.get(LifecycleAction, action_id)
            kind = NoticeKind.ACTION_REFUSED if status == REFUSED else NoticeKind.ACTION_FAILED
            notify(session, action.tenant_id, kind, action,
                   f"The {action.kind.value} of enrollment {action.enrollment_id} was {status.value}: {reason}")
    return moved


def mark_queued(session: Session, action_ids: list[int]) -> None:
    """Their task is queued: evaluations leave them to it until it is presumed lost (not a status move)."""
    if action_ids:
        session.execute(update(LifecycleAction).where(LifecycleAction.id.in_(action_ids),
                                                      LifecycleAction.status.in_((APPROVED, SENT)))
                        .values(queued_at=utcnow()).execution_options(synchronize_session=False))


def awaits_its_task(action: LifecycleAction) -> bool:
    """Whether an approved or sent action's task may still be on its way (queued or running recently)."""
    recent = utcnow() - lost_after()
    return any(at is not None and at > recent for at in (action.queued_at, action.sent_at))


def moved_on(session: Session, action_id: int, wedof_state: str) -> bool:
    """Wedof's folder no longer allows the action (the attendee cancelled, someone declared by hand)."""
    reason = f"nothing sent: the folder is now {wedof_state!r} at Wedof"
    moved = _move(session, action_id, "moved_on", CANCELLED, reason=reason, finished_at=utcnow())
    if moved:
        _audit(session, action_id, "moved_on", "worker", reason=reason)
    return moved


def retry(session: Session, action_id: int, actor: str) -> bool:
    """An admin sends a refused or failed action again, once the cause is fixed."""
    moved = _move(session, action_id, "retry", APPROVED, decided_by=actor, decided_at=utcnow(), reason=None,
                  finished_at=None)
    if moved:
        _audit(session, action_id, "retried", actor)
    return moved


def notify(session: Session, tenant_id: int, kind: NoticeKind, action: LifecycleAction, message: str) -> Notice:
    notice = Notice(tenant_id=tenant_id, kind=kind, message=message[:4000], target_type="lifecycle_action",
                    target_id=str(action.id))
    session.add(notice)
    return notice


def live_action(session: Session, enrollment_id: int, kind: LifecycleKind) -> LifecycleAction | None:
    return session.scalars(select(LifecycleAction).where(
        LifecycleAction.enrollment_id == enrollment_id, LifecycleAction.kind == kind,
        LifecycleAction.status.in_(sorted(LIVE)))).first()


class InFlight(RuntimeError):
    """An action of that kind is being sent right now: a new one waits for its outcome."""


def decide_by_hand(session: Session, tenant_id: int, enrollment_id: int, kind: LifecycleKind, body: dict,
                   actor: str, evidence: dict | None = None) -> LifecycleAction:
    """An admin's own decision, approved at once; it supersedes what the rules proposed for that kind.

    Marked ``by_hand`` in its evidence, so the rules leave it alone until it is done.
    """
    live = live_action(session, enrollment_id, kind)
    if live is not None:
        if live.status == SENT:
            raise InFlight(f"a {kind.value} action ({live.id}) is being sent; wait for its outcome")
        withdraw(session, live.id, f"superseded by {actor}'s own decision")
    decision = Decision(kind, body, evidence={"by_hand": actor, **(evidence or {})})
    return propose(session, tenant_id, enrollment_id, decision, LifecycleMode.APPROVE, actor=actor)
