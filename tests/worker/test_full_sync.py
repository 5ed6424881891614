"""A full sync of 2,000 sandbox folders through a real sync worker equals the sandbox's ground truth,
field by field; an unchanged re-sync changes nothing; a concurrent sync is skipped; bad arguments
are answered, not crashed on."""

from __future__ import annotations

import pytest
from celery.exceptions import Reject
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, Enrollment, SyncRun, SyncStatus, WedofConnection
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import make_connection, sandbox_truth, send, truth_mismatches
from worker.task_names import SYNC_CONNECTION

FOLDERS = 2000


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=5) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def tenant(stack_env, sandbox):
    return make_connection(sandbox.api_url, sandbox.api_key)


def sync(broker, args, timeout=300) -> tuple[str, SyncRun]:
    task_id = send(broker, SYNC_CONNECTION, args)

    def finished():
        with session_scope() as session:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
            done = (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SKIPPED)
            return run if run is not None and run.status in done else None

    return task_id, wait_until(finished, timeout=timeout, interval=0.5, message="sync finished")


def test_full_sync_of_2000_folders_equals_the_ground_truth(stack_env, broker, sync_worker, sandbox, tenant):
    tenant_id, connection_id = tenant
    task_id, run = sync(broker, [connection_id, "all", True, None, "manual"])
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert (run.fetched, run.applied, run.failed, run.total) == (FOLDERS, FOLDERS, 0, FOLDERS)
    assert run.pages == FOLDERS // 100
    assert truth_mismatches(tenant_id, sandbox_truth(sandbox), complete=True) == []
    # The task's final state is kept for Flower/the admin API (results are kept for syncs only).
    result = broker.AsyncResult(task_id).get(timeout=10)
    assert result["status"] == "succeeded" and result["applied"] == FOLDERS
    with session_scope() as session:
        connection = session.get(WedofConnection, connection_id)
        assert connection.sync_cursor is not None and connection.last_sync_at is not None
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "sync.succeeded",
                                                       AuditLog.target_id == str(run.id))).one()
        assert audit.details["applied"] == FOLDERS


def test_incremental_resync_picks_up_changes_and_nothing_else(stack_env, broker, sync_worker, sandbox, tenant):
    tenant_id, connection_id = tenant
    sandbox.control("POST", "/simulate", json={"changes": 50})
    _task, run = sync(broker, [connection_id])  # what beat sends: incremental, trigger "schedule"
    assert run.status == SyncStatus.SUCCEEDED, run.error
    assert run.trigger.value == "schedule" and not run.full and run.cursor_from is not None
    assert 0 < run.fetched < FOLDERS  # the window, not everything
    assert run.failed == 0
    assert truth_mismatches(tenant_id, sandbox_truth(sandbox), complete=True) == []
    with session_scope() as session:
        stamps = dict(session.execute(select(Enrollment.external_id, Enrollment.updated_at)
                                      .where(Enrollment.tenant_id == tenant_id)).all())
    _task, again = sync(broker, [connection_id, "all", True, None, "manual"])
    assert again.status == SyncStatus.SUCCEEDED and again.fetched == FOLDERS and again.failed == 0
    # Nothing changed at Wedof: every folder is unchanged (programs do not flip between sessions).
    assert (again.applied, again.unchanged) == (0, FOLDERS)
    with session_scope() as session:  # nothing changed at Wedof: no enrollment row was written
        assert dict(session.execute(select(Enrollment.external_id, Enrollment.updated_at)
                                    .where(Enrollment.tenant_id == tenant_id)).all()) == stamps


def test_a_second_concurrent_sync_is_skipped(stack_env, broker, sync_worker, sandbox, tenant, redis_server):
    import redis

    _tenant_id, connection_id = tenant
    client = redis.Redis.from_url(stack_env["REDIS_URL"])
    client.set(f"bdc:sync-lock:{connection_id}", b"another-running-task", ex=60)  # a sync holds the lock
    try:
        _task, run = sync(broker, [connection_id, "all", False, None, "manual"])
    finally:
        client.delete(f"bdc:sync-lock:{connection_id}")
    assert run.status == SyncStatus.SKIPPED and "another sync" in run.error


@pytest.mark.parametrize("args", [
    ["not-an-id"], [None], [-1], [987654321], [1, "everything"], [1, "all", "yes"], [1, "all", False, "x"],
    [1, "all", False, None, "whenever"],
])
def test_bad_sync_arguments_are_rejected_not_crashed_on(stack_env, broker, sync_worker, args):
    result = broker.send_task(SYNC_CONNECTION, args=args, queue="sync")
    with pytest.raises(Reject) as rejected:
        result.get(timeout=30)
    # The result backend records the Reject as the task's exception; Flower shows the task REJECTED.
    assert rejected.value.requeue is False and ("must be" in rejected.value.reason or "unknown" in rejected.value.reason)
    assert sync_worker.alive()


# -- Prefetch: the next page downloads while this one is applied ------------------------------------


def test_prefetch_yields_every_page_in_order_and_stays_one_page_ahead():
    from worker.tasks.sync import Prefetch

    produced: list[int] = []

    def pages():
        for number in range(5):
            produced.append(number)
            yield number

    with Prefetch(pages(), ahead=1) as prefetched:
        seen = []
        for number in prefetched:
            # Bounded: one page waiting in the queue and at most one being fetched.
            wait_until(lambda n=number: len(produced) >= min(5, n + 2), timeout=10, message="prefetch")
            assert len(produced) <= number + 3
            seen.append(number)
    assert seen == [0, 1, 2, 3, 4]


def test_prefetch_raises_the_fetch_error_where_the_pages_are_used():
    from worker.tasks.sync import Prefetch

    def pages():
        yield 1
        raise ConnectionError("Wedof went away")

    seen = []
    with pytest.raises(ConnectionError, match="went away"), Prefetch(pages()) as prefetched:
        for page in prefetched:
            seen.append(page)
    assert seen == [1]


def test_prefetch_stops_fetching_when_the_sync_stops():
    import itertools

    from worker.tasks.sync import Prefetch

    closed = []

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    prefetched = Prefetch(endless())
    for page in prefetched:
        if page == 3:
            break
    prefetched.close()
    assert not prefetched._thread.is_alive() and closed == [True]
