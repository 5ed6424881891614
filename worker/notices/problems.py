"""The ``problems`` table's one owner: every move of a :class:`~bdc.models.Problem` row is a named
transition here; the notices task and the admin API only call it (or read).

Lifecycle::

    (none) ─observe─▶ open ─observe─▶ open (last_seen_at, occurrences, summary, details move)
                        │   ├─mark_notified──▶ notified_at set (the first message went out)
                        │   ├─mark_reminded──▶ reminded_at, reminders + 1
                        │   └─record_delivery_failure─▶ last_error (tried again next run)
                        └─resolve_absent─▶ resolved ─mark_resolution_notified─▶ resolved_notified_at set

At most one open problem per tenant, kind and key (the partial unique index ``uq_problems_open``):
:func:`observe` opens one with ``INSERT ... ON CONFLICT DO NOTHING`` on that index, so two runs racing
to open the same problem store exactly one row and the loser bumps it. (A SAVEPOINT around a plain
INSERT would do on PostgreSQL, but pysqlite commits a SAVEPOINT that opens a transaction when it is
released, so the single statement is the safe way on both backends.) Every other transition is one
compare-and-set UPDATE guarded by the state it starts from, so a run repeated or racing never sends a
message twice through the same step.

``details`` holds ``{"condition": {...}, "delivery": {...}}``: the facts the condition computed last
(what messages are written from), and this module's own delivery bookkeeping (the channels a pending
message already reached, the first message's Message-ID that later ones thread under).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bdc.models import Problem, ProblemKind, ProblemStatus
from bdc.types import utcnow

OPEN, RESOLVED = ProblemStatus.OPEN, ProblemStatus.RESOLVED
SUMMARY_LENGTH = 1000
ERROR_LENGTH = 1000
KEY_LENGTH = 200
_OPEN_ONLY = "status = 'open'"  # uq_problems_open's predicate


def _short(text: object, limit: int) -> str:
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _update(session: Session, problem_id: int, *conditions, **values) -> bool:
    statement = (update(Problem).where(Problem.id == problem_id, *conditions).values(**values)
                 .execution_options(synchronize_session=False))
    return session.execute(statement).rowcount == 1


def open_problem(session: Session, tenant_id: int, kind: ProblemKind, key: str) -> Problem | None:
    return session.scalars(select(Problem).where(Problem.tenant_id == tenant_id, Problem.kind == kind,
                                                 Problem.key == key, Problem.status == OPEN)).first()


def _insert_open(session: Session, values: dict) -> int | None:
    """Insert an open problem unless one is open already (then nothing): one statement, no race.

    Returns the new row's id, or None when another open problem held the place.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The predicate spelled as the index spells it, so both databases infer that partial index.
    statement = (insert(Problem.__table__).values(**values)
                 .on_conflict_do_nothing(index_elements=["tenant_id", "kind", "key"], index_where=text(_OPEN_ONLY))
                 .returning(Problem.__table__.c.id))
    return session.execute(statement).scalar()


# -- observe / resolve (what is wrong now) ----------------------------------------------------------

def observe(session: Session, tenant_id: int, kind: ProblemKind, key: str, summary: str,
            details: dict | None = None, now: datetime | None = None) -> Problem:
    """The condition ``kind``/``key`` holds now: open a problem for it, or bump the open one.

    Bumping moves ``last_seen_at``, counts one more occurrence (observation) and refreshes the summary
    and the condition's facts; the delivery bookkeeping stays.
    """
    now = now or utcnow()
    key = _short(key, KEY_LENGTH)
    summary = _short(summary, SUMMARY_LENGTH)
    condition = dict(details or {})
    for _ in range(3):  # an open row may be resolved between the insert and the bump: look again
        current = open_problem(session, tenant_id, kind, key)
        if current is not None:
            merged = {**(current.details or {}), "condition": condition}
            moved = _update(session, current.id, Problem.status == OPEN, last_seen_at=now, summary=summary,
                            occurrences=Problem.occurrences + 1, details=merged)
            if moved:
                session.refresh(current)
                return current
            continue
        values = {"tenant_id": tenant_id, "kind": kind, "key": key, "status": OPEN,
                  "summary": summary, "details": {"condition": condition, "delivery": {}}, "occurrences": 1,
                  "opened_at": now, "last_seen_at": now, "reminders": 0}
        new_id = _insert_open(session, values)
        if new_id is not None:
            return session.get(Problem, new_id)
        # Another run opened it between our read and our insert: its row is committed, bump it.
    raise RuntimeError(f"problem {kind.value}/{key} of tenant {tenant_id} kept moving under observe")


def resolve_absent(session: Session, tenant_id: int, seen: Iterable[tuple[ProblemKind, str]],
                   now: datetime | None = None, grace: float = 0.0) -> list[Problem]:
    """Resolve the tenant's open problems whose condition was not seen this run.

    ``grace`` (seconds): a problem is resolved only once it has gone unseen that long, so a condition
    that flickers (a stuck inbox draining and filling again) does not mail "open, resolved, open".
    """
    now = now or utcnow()
    seen_keys = {(ProblemKind(kind), _short(key, KEY_LENGTH)) for kind, key in seen}
    resolved = []
    candidates = session.scalars(select(Problem).where(Problem.tenant_id == tenant_id, Problem.status == OPEN)
                                 .order_by(Problem.id)).all()
    for problem in candidates:
        if (problem.kind, problem.key) in seen_keys:
            continue
        if problem.last_seen_at > now - timedelta(seconds=grace):
            continue
        if _update(session, problem.id, Problem.status == OPEN, status=RESOLVED, resolved_at=now):
            session.refresh(problem)
            resolved.append(problem)
    return resolved


# -- delivery bookkeeping (what staff were told) ----------------------------------------------------

def reached(problem: Problem, stage: str) -> set[str]:
    """The channels the message of ``stage`` ("opened", "reminder-2", "resolved") already reached."""
    return set(((problem.details or {}).get("delivery") or {}).get("reached", {}).get(stage, []))


def thread_id(problem: Problem) -> str | None:
    """The Message-ID of the first email about this problem, when one went out."""
    return ((problem.details or {}).get("delivery") or {}).get("thread")


def _delivery(problem: Problem) -> dict:
    return dict((problem.details or {}).get("delivery") or {})


def _with_delivery(problem: Problem, delivery: dict) -> dict:
    return {**(problem.details or {}), "delivery": delivery}


def record_channel(session: Session, problem: Problem, stage: str, channel: str,
                   thread: str | None = None) -> None:
    """The message of ``stage`` reached ``channel`` (the stage is complete only once every channel has)."""
    delivery = _delivery(problem)
    stages = {name: list(channels) for name, channels in (delivery.get("reached") or {}).items()}
    stages[stage] = sorted({*stages.get(stage, []), channel})
    delivery["reached"] = stages
    if thread and not delivery.get("thread"):
        delivery["thread"] = thread
    _update(session, problem.id, details=_with_delivery(problem, delivery))
    session.refresh(problem)


def _stage_done(problem: Problem, stage: str) -> dict:
    delivery = _delivery(problem)
    stages = dict(delivery.get("reached") or {})
    stages.pop(stage, None)
    delivery["reached"] = stages
    return _with_delivery(problem, delivery)


def mark_notified(session: Session, problem: Problem, now: datetime | None = None) -> bool:
    """The opening message reached every channel: it is never sent again."""
    moved = _update(session, problem.id, Problem.notified_at.is_(None), notified_at=now or utcnow(),
                    last_error=None, details=_stage_done(problem, "opened"))
    session.refresh(problem)
    return moved


def mark_reminded(session: Session, problem: Problem, now: datetime | None = None) -> bool:
    """Reminder number ``reminders + 1`` reached every channel (guarded by the count it started from)."""
    stage = reminder_stage(problem)
    moved = _update(session, problem.id, Problem.status == OPEN, Problem.reminders == problem.reminders,
                    reminded_at=now or utcnow(), reminders=Problem.reminders + 1, last_error=None,
                    details=_stage_done(problem, stage))
    session.refresh(problem)
    return moved


def mark_resolution_notified(session: Session, problem: Problem, now: datetime | None = None) -> bool:
    """The "résolu" message went out (or nobody was there to tell): the problem is closed for good."""
    moved = _update(session, problem.id, Problem.status == RESOLVED, Problem.resolved_notified_at.is_(None),
                    resolved_notified_at=now or utcnow(), last_error=None, details=_stage_done(problem, "resolved"))
    session.refresh(problem)
    return moved


def record_delivery_failure(session: Session, problem: Problem, error: str) -> None:
    """A message could not be delivered: kept for the admin to read; the next run tries again."""
    _update(session, problem.id, last_error=_short(error, ERROR_LENGTH))
    session.refresh(problem)


def reminder_stage(problem: Problem) -> str:
    return f"reminder-{problem.reminders + 1}"


# -- what is due -------------------------------------------------------------------------------------

def due_openings(session: Session) -> list[Problem]:
    return list(session.scalars(select(Problem).where(Problem.status == OPEN, Problem.notified_at.is_(None))
                                .order_by(Problem.tenant_id, Problem.id)))


def due_reminders(session: Session, now: datetime, period_of) -> list[Problem]:
    """Open problems told about whose last message is older than ``period_of(tenant_id)`` seconds."""
    rows = session.scalars(select(Problem).where(Problem.status == OPEN, Problem.notified_at.is_not(None))
                           .order_by(Problem.tenant_id, Problem.id)).all()
    return [p for p in rows if (p.reminded_at or p.notified_at) <= now - timedelta(seconds=period_of(p.tenant_id))]


def due_resolutions(session: Session) -> list[Problem]:
    return list(session.scalars(select(Problem).where(Problem.status == RESOLVED,
                                                      Problem.resolved_notified_at.is_(None))
                                .order_by(Problem.tenant_id, Problem.id)))


def tenants_with_open_problems(session: Session) -> set[int]:
    return set(session.scalars(select(Problem.tenant_id).where(Problem.status == OPEN).distinct()))
