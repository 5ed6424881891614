"""The inbox's one owner (bdc.inbox): every allowed and every forbidden move, on SQLite and PostgreSQL.

The pairs below are the specification, written out by hand; the module's TRANSITIONS table must
agree with it, and every named transition must move a row along exactly those pairs in the database.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select

from bdc import db as bdc_db
from bdc import inbox
from bdc.models import EventStatus, Tenant, WebhookEvent, WedofConnection
from bdc.settings import reset_settings_cache
from bdc.types import utcnow

R, Q, P = EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING
DONE, F, IGN = EventStatus.PROCESSED, EventStatus.FAILED, EventStatus.IGNORED
STATUSES = list(EventStatus)
_deliveries = itertools.count()

# Every move the inbox may make; anything else is forbidden.
EXPECTED_PAIRS = {
    (None, Q), (None, IGN),  # store: to process, or ignored at once
    (Q, R),  # the receiver could not publish
    (R, P), (Q, P), (P, P), (F, P),  # claim (processing: its own task again; failed: a re-apply)
    (P, DONE), (P, IGN), (P, F),  # finish
    (P, Q), (P, R),  # defer: a countdown, or parked for the sweeper
    (R, Q), (Q, Q), (F, Q),  # requeue by the sweeper or an admin (and (P, Q): a stuck worker)
}


def test_the_transition_table_is_the_specification():
    for source, target in itertools.product([None, *STATUSES], STATUSES):
        assert inbox.allowed(source, target) == ((source, target) in EXPECTED_PAIRS), (source, target)
    assert inbox.ALLOWED == EXPECTED_PAIRS


@pytest.fixture
def connection_id(db_url, app_env):
    app_env(database_url=db_url)
    with bdc_db.session_scope() as session:
        tenant = Tenant(name="Inbox", slug="inbox")
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, webhook_secret="s")
        session.add(connection)
        session.flush()
        return connection.id


def _row(connection_id: int, status: EventStatus, **values) -> int:
    """A row in ``status`` whose other guards all hold: held by task "t", long stuck, not parked."""
    long_ago = utcnow() - timedelta(days=1)
    defaults = dict(task_id="t", received_at=long_ago, queued_at=long_ago, started_at=long_ago, attempts=1)
    with bdc_db.session_scope() as session:
        event = WebhookEvent(connection_id=connection_id, delivery_id=f"d-{next(_deliveries)}",
                             event_type="registrationFolder.updated", body="{}", status=status,
                             **{**defaults, **values})
        session.add(event)
        session.flush()
        return event.id


def _status(event_id: int) -> EventStatus:
    with bdc_db.session_scope() as session:
        return session.get(WebhookEvent, event_id).status


def _unpublished(event_id):
    with bdc_db.get_engine().begin() as conn:
        return inbox.unpublished(conn, event_id, "t")


def _in_session(work):
    def run(event_id):
        with bdc_db.session_scope() as session:
            return work(session, event_id)
    return run


def _requeue(failed_too):
    def work(session, event_id):
        return inbox.requeue(session, session.get(WebhookEvent, event_id), failed_too=failed_too) is not None
    return _in_session(work)


# Each named transition, with the target it leads to.
OPERATIONS = {
    "unpublished": (R, _unpublished),
    "claim": (P, _in_session(lambda s, e: isinstance(inbox.claim(s, e, "t"), inbox.ClaimedEvent))),
    "finish processed": (DONE, _in_session(lambda s, e: inbox.finish(s, e, "t", DONE, "ok"))),
    "finish ignored": (IGN, _in_session(lambda s, e: inbox.finish(s, e, "t", IGN, "not ours"))),
    "finish failed": (F, _in_session(lambda s, e: inbox.finish(s, e, "t", F, "refused", error="refused"))),
    "defer countdown": (Q, _in_session(lambda s, e: inbox.defer(s, e, "t", 5, "5xx", countdown=True))),
    "defer parked": (R, _in_session(lambda s, e: inbox.defer(s, e, "t", 3600, "429", countdown=False))),
    "requeue by the sweeper": (Q, _requeue(failed_too=False)),
    "requeue by an admin": (Q, _requeue(failed_too=True)),
}
SOURCES = {  # what each operation may start from (the sweeper never takes a failed row)
    "unpublished": {Q}, "claim": {R, Q, P, F}, "finish processed": {P}, "finish ignored": {P},
    "finish failed": {P}, "defer countdown": {P}, "defer parked": {P},
    "requeue by the sweeper": {R, Q, P}, "requeue by an admin": {R, Q, P, F},
}


def test_every_operation_moves_exactly_the_allowed_pairs(connection_id):
    moved_pairs = set()
    for (name, (target, operation)), source in itertools.product(OPERATIONS.items(), STATUSES):
        event_id = _row(connection_id, source)
        moved = operation(event_id)
        assert moved == (source in SOURCES[name]), (name, source)
        assert _status(event_id) == (target if moved else source), (name, source)
        if moved:
            moved_pairs.add((source, target))
    # Walked together, the operations make every allowed move between stored rows, and no other.
    assert moved_pairs == {pair for pair in EXPECTED_PAIRS if pair[0] is not None}


def test_store_inserts_queued_or_ignored_and_finds_duplicates(connection_id):
    def delivery(delivery_id, ignore_reason=None):
        return inbox.NewDelivery(connection_id=connection_id, delivery_id=delivery_id, event_type="x.y",
                                 payload_format="wedof", folder_external_id=None, ignore_reason=ignore_reason,
                                 headers={"X-Wedof-Event": "x.y"}, body="{}")

    with bdc_db.get_engine().begin() as conn:
        stored = inbox.store(conn, delivery("one"))
        ignored = inbox.store(conn, delivery("two", ignore_reason="not ours"))
        again = inbox.store(conn, delivery("one"))
    assert (stored.status, stored.duplicate, bool(stored.task_id)) == (Q, False, True)
    assert (ignored.status, ignored.task_id) == (IGN, None)
    assert (again.event_id, again.duplicate, again.task_id) == (stored.event_id, True, stored.task_id)


def test_a_row_held_by_another_task_is_neither_claimed_nor_finished(connection_id):
    event_id = _row(connection_id, P, task_id="other")
    with bdc_db.session_scope() as session:
        assert isinstance(inbox.claim(session, event_id, "t"), inbox.NotClaimed)
        assert not inbox.finish(session, event_id, "t", DONE)
        assert not inbox.defer(session, event_id, "t", 1, "x", countdown=True)
    with bdc_db.session_scope() as session:
        not_claimed = inbox.claim(session, 10**9, "t")
    assert not_claimed == inbox.NotClaimed("unknown event id", None)


def test_only_a_stuck_row_is_requeued(connection_id):
    now = utcnow()
    fresh = _row(connection_id, Q, queued_at=now, received_at=now)
    parked = _row(connection_id, R, next_attempt_at=now + timedelta(hours=1))
    due = _row(connection_id, R, next_attempt_at=now - timedelta(seconds=1))
    working = _row(connection_id, P, started_at=now)
    with bdc_db.session_scope() as session:
        stuck = {row.id for row in inbox.due_for_sweep(session, 100)}
    assert due in stuck and not {fresh, parked, working} & stuck
    for event_id in (fresh, parked, working):
        assert not _requeue(failed_too=True)(event_id)
    assert _requeue(failed_too=False)(due)


def test_attempts_count_claims_and_a_reapplied_failure_starts_afresh(connection_id):
    event_id = _row(connection_id, Q, attempts=2)
    with bdc_db.session_scope() as session:
        assert inbox.claim(session, event_id, "t").attempts == 3
        inbox.finish(session, event_id, "t", F, "refused")
    with bdc_db.session_scope() as session:  # re-applied from Flower: claimed straight from failed
        assert inbox.claim(session, event_id, "t2").attempts == 1
        inbox.finish(session, event_id, "t2", F, "refused")
    with bdc_db.session_scope() as session:  # retried by an admin: requeued, then claimed
        requeued = inbox.requeue(session, session.get(WebhookEvent, event_id), failed_too=True)
        assert requeued.previous_attempts == 1
        assert session.scalar(select(WebhookEvent.attempts).where(WebhookEvent.id == event_id)) == 0
    with bdc_db.session_scope() as session:
        assert inbox.claim(session, event_id, requeued.task_id).attempts == 1


def test_the_rules_read_the_settings_when_used(connection_id, monkeypatch):
    """No frozen copies: a changed setting applies to the next call (as in a restarted process)."""
    queued = _row(connection_id, Q, queued_at=utcnow() - timedelta(minutes=10))
    monkeypatch.setenv("BDC_SWEEP_QUEUED_AFTER", "3600")
    monkeypatch.setenv("BDC_MAX_EVENT_ATTEMPTS", "3")
    reset_settings_cache()
    assert inbox.thresholds().queued_after == 3600 and not _requeue(failed_too=True)(queued)
    assert inbox.attempt_allowed(3) and not inbox.attempt_allowed(4)
    monkeypatch.setenv("BDC_SWEEP_QUEUED_AFTER", "60")
    reset_settings_cache()
    assert _requeue(failed_too=True)(queued)
