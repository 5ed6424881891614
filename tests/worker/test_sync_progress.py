"""What a sync run's row shows an admin: its counters at the end, and what was done before a failure.

A real sync (in this process) against the sandbox over HTTP and the module's PostgreSQL and Redis;
the failure is a real Wedof 5xx answered by the sandbox's fault injection after the first page.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import SyncRun, SyncStatus
from tests.support.sandbox import running_sandbox
from tests.worker.helpers import after_page, make_connection
from worker.policy import TaskFailed
from worker.tasks import sync as sync_module

FOLDERS = 250  # three pages of 100


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=13) as sbx:
        yield sbx


def run_row(run_id: int) -> SyncRun:
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        session.expunge(run)
        return run


def test_an_unchanged_resync_records_its_counters_at_the_end(stack_env, sandbox):
    _tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    first = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    again = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    run = run_row(again["run_id"])
    assert run.status == SyncStatus.SUCCEEDED
    assert (run.pages, run.fetched, run.applied, run.unchanged, run.failed, run.total) == (
        3, FOLDERS, 0, FOLDERS, 0, FOLDERS)
    assert run_row(first["run_id"]).applied == FOLDERS


@pytest.mark.parametrize("held", [False, True], ids=["first sync", "unchanged re-sync"])
def test_a_failed_run_shows_what_was_done_before_the_failure(stack_env, sandbox, monkeypatch, held):
    """Pages that wrote nothing record progress at most every second: a failure records the rest."""
    _tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    if held:
        assert sync_module.sync_connection(connection_id, "all", True, None, "manual")["status"] == "succeeded"
    # From page three on, every API call answers a 5xx.
    after_page(monkeypatch, 2, lambda: sandbox.control("PUT", "/faults", json={"error_rate": 1.0}))
    try:
        with pytest.raises(TaskFailed, match="Wedof unavailable: HTTP 5"):
            sync_module.sync_connection(connection_id, "all", True, None, "manual")
    finally:
        sandbox.control("PUT", "/faults", json={"error_rate": 0.0})
    with session_scope() as session:
        run_id = session.scalar(select(func.max(SyncRun.id)).where(SyncRun.connection_id == connection_id))
    run = run_row(run_id)
    assert run.status == SyncStatus.FAILED and "HTTP 5" in run.error
    done = (0, 200) if held else (200, 0)  # (applied, unchanged) of the two pages read
    assert (run.pages, run.fetched, run.applied, run.unchanged) == (2, 200, *done)
