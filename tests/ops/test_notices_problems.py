"""The problems table and its one owner (worker.notices.problems), on SQLite and PostgreSQL.

The partial unique index allows one open problem per tenant, kind and key, and any number of resolved
ones; two runs observing the same new condition at the same moment store one row (the second bumps it).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from bdc.db import get_engine, get_sessionmaker, session_scope
from bdc.models import Problem, ProblemKind, ProblemStatus
from bdc.types import utcnow
from tests.ops.notices_helpers import make_tenant
from worker.notices import problems

KIND = ProblemKind.EVENTS_FAILED


@pytest.fixture
def tenant_id(app_env, db_url, redis_url):
    app_env(database_url=db_url, redis_url=redis_url)
    return make_tenant()[0]


def count(tenant_id: int, status: ProblemStatus | None = None) -> int:
    with session_scope() as session:
        stmt = select(func.count()).select_from(Problem).where(Problem.tenant_id == tenant_id)
        if status is not None:
            stmt = stmt.where(Problem.status == status)
        return session.scalar(stmt)


def test_observe_opens_once_then_bumps(tenant_id):
    t0 = utcnow()
    with session_scope() as session:
        first = problems.observe(session, tenant_id, KIND, "7", "3 événements", {"count": 3}, t0)
    with session_scope() as session:
        again = problems.observe(session, tenant_id, KIND, "7", "5 événements", {"count": 5}, t0 + timedelta(minutes=1))
        other_key = problems.observe(session, tenant_id, KIND, "8", "1 événement", {"count": 1}, t0)
        other_kind = problems.observe(session, tenant_id, ProblemKind.INBOX_STUCK, "7", "x", {}, t0)
    assert again.id == first.id and again.occurrences == 2 and again.summary == "5 événements"
    assert again.details["condition"] == {"count": 5} and again.last_seen_at == t0 + timedelta(minutes=1)
    assert again.opened_at == t0
    assert len({first.id, other_key.id, other_kind.id}) == 3


def test_the_partial_unique_index_allows_one_open_problem_and_many_resolved(tenant_id):
    with session_scope() as session:
        session.add(Problem(tenant_id=tenant_id, kind=KIND, key="1"))
    with pytest.raises(IntegrityError), session_scope() as session:
        session.add(Problem(tenant_id=tenant_id, kind=KIND, key="1"))
        session.flush()
    now = utcnow()
    for _ in range(3):
        with session_scope() as session:
            assert [p.key for p in problems.resolve_absent(session, tenant_id, [], now)] == ["1"]
        with session_scope() as session:
            problems.observe(session, tenant_id, KIND, "1", "again", {}, now)
    assert count(tenant_id, ProblemStatus.RESOLVED) == 3 and count(tenant_id, ProblemStatus.OPEN) == 1


def test_two_runs_opening_the_same_problem_at_once_store_one_row(tenant_id, db_url):
    """Run A inserts and holds its transaction; run B, which saw nothing open, inserts too: it waits for
    A, finds the row A committed, and bumps it instead of failing on the unique index."""
    engine = get_engine(db_url)
    b_inserting = threading.Event()
    result: dict = {}

    def spot_b(conn, cursor, statement, parameters, context, executemany):
        if threading.current_thread().name == "run-b" and statement.lstrip().upper().startswith("INSERT INTO PROBLEMS"):
            b_inserting.set()

    def run_b():
        try:
            with session_scope() as session:
                result["b"] = problems.observe(session, tenant_id, KIND, "3", "from B", {"by": "b"})
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    event.listen(engine, "before_cursor_execute", spot_b)
    session_a = get_sessionmaker(db_url)()
    try:
        a = problems.observe(session_a, tenant_id, KIND, "3", "from A", {"by": "a"})
        thread = threading.Thread(target=run_b, name="run-b")
        thread.start()
        assert b_inserting.wait(30), "run B never reached its insert"
        session_a.commit()
        thread.join(60)
    finally:
        session_a.close()
        event.remove(engine, "before_cursor_execute", spot_b)
    assert "error" not in result, result.get("error")
    assert result["b"].id == a.id and result["b"].occurrences == 2 and result["b"].summary == "from B"
    assert count(tenant_id) == 1


def test_resolve_absent_waits_out_the_grace_and_keeps_what_was_seen(tenant_id):
    t0 = utcnow()
    with session_scope() as session:
        problems.observe(session, tenant_id, KIND, "1", "a", {}, t0)
        problems.observe(session, tenant_id, ProblemKind.SYNC_STALE, "1", "b", {}, t0)
    with session_scope() as session:
        assert problems.resolve_absent(session, tenant_id, [(ProblemKind.SYNC_STALE, "1")], t0 + timedelta(seconds=60),
                                       grace=120) == []
    with session_scope() as session:
        resolved = problems.resolve_absent(session, tenant_id, [(ProblemKind.SYNC_STALE, "1")],
                                           t0 + timedelta(seconds=121), grace=120)
    assert [(p.kind, p.status) for p in resolved] == [(KIND, ProblemStatus.RESOLVED)]
    assert resolved[0].resolved_at == t0 + timedelta(seconds=121)
    assert count(tenant_id, ProblemStatus.OPEN) == 1


def test_delivery_steps_move_once(tenant_id):
    t0 = utcnow()
    with session_scope() as session:
        problem = problems.observe(session, tenant_id, KIND, "1", "a", {}, t0)
        problems.record_delivery_failure(session, problem, "email: ConnectionRefusedError")
        assert problem.last_error == "email: ConnectionRefusedError"
        problems.record_channel(session, problem, "opened", "chat")
        problems.record_channel(session, problem, "opened", "email", thread="<first@x>")
        assert problems.reached(problem, "opened") == {"chat", "email"} and problems.thread_id(problem) == "<first@x>"
        assert problems.mark_notified(session, problem, t0) is True
        assert problems.mark_notified(session, problem, t0 + timedelta(minutes=1)) is False
        assert problem.notified_at == t0 and problem.last_error is None and problems.reached(problem, "opened") == set()
        # A bump keeps the delivery bookkeeping.
        problem = problems.observe(session, tenant_id, KIND, "1", "b", {"count": 2}, t0)
        assert problems.thread_id(problem) == "<first@x>"
        assert problems.reminder_stage(problem) == "reminder-1"
    with session_scope() as reader:
        stale = reader.get(Problem, problem.id)  # read by a run before another run's reminder
        with session_scope() as session:
            problem = session.get(Problem, problem.id)
            assert problems.mark_reminded(session, problem, t0 + timedelta(days=1)) is True
            assert problem.reminders == 1 and problems.reminder_stage(problem) == "reminder-2"
        assert problems.mark_reminded(reader, stale, t0 + timedelta(days=1)) is False  # that reminder went already
    with session_scope() as session:
        problem = session.get(Problem, problem.id)
        assert problems.mark_resolution_notified(session, problem) is False  # still open
        (resolved,) = problems.resolve_absent(session, tenant_id, [], t0 + timedelta(days=2))
        assert problems.mark_resolution_notified(session, resolved) is True
        assert problems.mark_resolution_notified(session, resolved) is False
        assert resolved.reminders == 1 and resolved.status == ProblemStatus.RESOLVED


def test_long_keys_and_summaries_are_cut_to_fit(tenant_id):
    with session_scope() as session:
        problem = problems.observe(session, tenant_id, KIND, "k" * 500, "s" * 5000, {})
    assert len(problem.key) == 200 and len(problem.summary) == 1000 and problem.summary.endswith("…")
