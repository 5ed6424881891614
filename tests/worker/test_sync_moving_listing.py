"""A folder that changes while a sync pages through Wedof's listing makes no other folder go missing.

Wedof pages by offset over a listing sorted by ``lastUpdate``. Read oldest first, a folder that
changes moves to the end, every folder behind it moves up one place, and the first folder of the
next page slips into the page just read: that folder is missed, and no later incremental sync
(which reads only what is newer than the cursor) would ever read it. The sync reads newest first:
the changed folder moves to the front, already read; the others only move back one place and come
again, once, at the top of the next page. These tests change folders at exactly that moment,
through the sandbox's real HTTP control API, while a real sync (in this process, against the
sandbox over HTTP and the module's PostgreSQL and Redis) pages through the listing.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Enrollment, WedofConnection
from bdc.settings import get_settings
from tests.support.sandbox import running_sandbox
from tests.worker.helpers import after_page, make_connection, sandbox_truth, truth_mismatches
from wedof.client import WedofClient
from wedof.mapping.values import datetime_utc
from worker.tasks import sync as sync_module

FOLDERS = 250  # three pages of 100


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=11) as sbx:
        yield sbx


def by_age(sandbox) -> list[str]:
    """The folder numbers, oldest ``lastUpdate`` first."""
    return [f["externalId"] for f in sorted(sandbox_truth(sandbox), key=lambda f: f["lastUpdate"])]


@pytest.fixture
def change_after_page_one(monkeypatch, sandbox):
    """Right after the sync reads its first page, change folders at Wedof (which ones: the test's)."""
    plan: dict = {"change": [], "changed": [], "after_seconds": 0}

    def change() -> None:
        time.sleep(plan["after_seconds"])
        for external_id in plan["change"]:
            sandbox.control("PUT", f"/folders/{external_id}", json={"completionRate": 42})
            plan["changed"].append(external_id)

    after_page(monkeypatch, 1, change)
    return plan


def stored(tenant_id: int) -> dict[str, object]:
    with session_scope() as session:
        return dict(session.execute(select(Enrollment.external_id, Enrollment.wedof_last_update)
                                    .where(Enrollment.tenant_id == tenant_id)).all())


def cursor_of(connection_id: int):
    with session_scope() as session:
        return session.get(WedofConnection, connection_id).sync_cursor


def fresh(sandbox) -> tuple[int, int]:
    sandbox.control("POST", "/reset", json={"folders": FOLDERS, "seed": 11})
    return make_connection(sandbox.api_url, sandbox.api_key)


def test_oldest_first_paging_misses_a_folder_when_one_changes(stack_env, sandbox, change_after_page_one,
                                                              monkeypatch):
    """Why the sync reads newest first: the same change, read oldest first, loses a folder."""
    tenant_id, connection_id = fresh(sandbox)
    change_after_page_one["change"] = by_age(sandbox)[:1]  # a folder of page one, read oldest first
    original = WedofClient.iter_pages
    monkeypatch.setattr(WedofClient, "iter_pages",
                        lambda self, **params: original(self, **{**params, "order": "asc"}))
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    assert result["status"] == "succeeded" and change_after_page_one["changed"]
    missing = {f["externalId"] for f in sandbox_truth(sandbox)} - set(stored(tenant_id))
    assert len(missing) == 1  # the folder that moved up into page one after it was read


@pytest.mark.parametrize("which", ["oldest", "on page one", "three of every age"])
def test_no_folder_is_missed_and_the_changed_ones_come_with_the_next_sync(
    stack_env, sandbox, change_after_page_one, which
):
    tenant_id, connection_id = fresh(sandbox)
    ages = by_age(sandbox)
    change_after_page_one["change"] = {
        "oldest": ages[:1],  # not read yet: it moves to the front, ahead of what is left to read
        "on page one": ages[-1:],  # already read: it moves to the front again
        "three of every age": [ages[0], ages[len(ages) // 2], ages[-5]],
    }[which]
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    assert result["status"] == "succeeded" and result["failed"] == 0
    changed = set(change_after_page_one["changed"])
    now_held = stored(tenant_id)
    truth_now = {f["externalId"]: f for f in sandbox_truth(sandbox)}
    # Every folder that did not change is held at its version; none is missing.
    assert {external_id for external_id in truth_now if external_id not in changed} <= set(now_held)
    # A changed folder is held (if at all) at its version from before the change, which the cursor
    # stays below: the next (incremental) sync reads it.
    cursor = cursor_of(connection_id)
    for external_id in changed:
        assert datetime_utc(truth_now[external_id]["lastUpdate"]) > cursor
    again = sync_module.sync_connection(connection_id, "all", False, None, "schedule")
    assert again["status"] == "succeeded"
    assert truth_mismatches(tenant_id, list(truth_now.values()), complete=True) == []


def test_an_incremental_window_keeps_a_folder_that_changes_during_the_run(
    stack_env, sandbox, change_after_page_one
):
    """The window reaches past the run's start: a changed folder moves to its front, not out of it."""
    tenant_id, connection_id = fresh(sandbox)
    ages = by_age(sandbox)
    with session_scope() as session:  # a cursor just after the oldest folder: the window holds nearly all
        session.get(WedofConnection, connection_id).sync_cursor = (
            datetime_utc(sandbox_truth(sandbox)[0]["lastUpdate"]).replace(year=2000) + timedelta(seconds=get_settings().sync_overlap_seconds)
        )
    # A folder already read (on page one) whose change lands a couple of seconds after the run began.
    change_after_page_one["change"] = [ages[0], ages[len(ages) // 2], ages[-5]]
    change_after_page_one["after_seconds"] = 2.5
    result = sync_module.sync_connection(connection_id, "all", False, None, "schedule")
    assert result["status"] == "succeeded"
    changed = set(change_after_page_one["changed"])
    assert {f["externalId"] for f in sandbox_truth(sandbox)} - changed <= set(stored(tenant_id))
    sync_module.sync_connection(connection_id, "all", False, None, "schedule")
    assert truth_mismatches(tenant_id, sandbox_truth(sandbox), complete=True) == []
