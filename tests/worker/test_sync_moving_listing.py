"""A folder that changes while a sync pages through Wedof's listing makes no other folder go missing.

Wedof pages by offset over a listing sorted by ``lastUpdate``. When a folder already read changes,
it moves to the end, every folder behind it moves up one place, and the first folder of the next
page slips into the page just read: one pass misses it. The sync reads the listing again when it
moved under a pass. These tests change a folder at exactly that moment, through the sandbox's real
HTTP control API, while a real sync (in this process, against the sandbox over HTTP and the
module's PostgreSQL and Redis) pages through it.
"""

from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Enrollment, WedofConnection
from tests.support.sandbox import running_sandbox
from tests.worker.helpers import make_connection, truth_mismatches
from wedof.client import WedofClient
from worker.tasks import sync as sync_module

FOLDERS = 250  # three pages of 100


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=FOLDERS, seed=11) as sbx:
        yield sbx


def truth(sandbox) -> list[dict]:
    return json.loads(requests.get(f"{sandbox.url}/_sandbox/truth", timeout=60).content)


@pytest.fixture
def change_first_folder_after_page_one(monkeypatch, sandbox):
    """Once, right after the first ascending page is read: change the oldest folder at Wedof."""
    original = WedofClient.iter_pages
    changed: list[str] = []

    def iter_pages(self, **params):
        pages = original(self, **params)
        for page in pages:
            yield page
            number, folders, _total = page
            if params.get("order") == "asc" and number == 1 and not changed:
                oldest = folders[0]["externalId"]
                sandbox.control("PUT", f"/folders/{oldest}", json={"completionRate": 42})
                changed.append(oldest)

    monkeypatch.setattr(WedofClient, "iter_pages", iter_pages)
    return changed


def stored_folder_ids(tenant_id: int) -> set[str]:
    with session_scope() as session:
        return set(session.scalars(select(Enrollment.external_id).where(Enrollment.tenant_id == tenant_id)))


def cursor_of(connection_id: int):
    with session_scope() as session:
        return session.get(WedofConnection, connection_id).sync_cursor


def test_one_pass_over_a_moving_listing_misses_a_folder_and_keeps_the_cursor(
    stack_env, sandbox, change_first_folder_after_page_one, monkeypatch
):
    """What the second pass is for: with a single pass, the folder that slipped is missing."""
    sandbox.control("POST", "/reset", json={"folders": FOLDERS, "seed": 11})
    monkeypatch.setattr(sync_module, "MAX_PASSES", 1)
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    assert result["status"] == "succeeded" and change_first_folder_after_page_one
    assert (result["passes"], result["settled"]) == (1, False)
    missing = {folder["externalId"] for folder in truth(sandbox)} - stored_folder_ids(tenant_id)
    assert len(missing) == 1  # the folder that moved up into page one after it was read
    # The run cannot vouch for its window: the cursor does not move, the next sync reads it again.
    assert cursor_of(connection_id) is None


def test_the_listing_is_read_again_until_it_holds_still(stack_env, sandbox, change_first_folder_after_page_one):
    sandbox.control("POST", "/reset", json={"folders": FOLDERS, "seed": 11})
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    result = sync_module.sync_connection(connection_id, "all", True, None, "manual")
    assert result["status"] == "succeeded" and change_first_folder_after_page_one
    assert (result["passes"], result["settled"]) == (2, True)
    assert result["applied"] == FOLDERS + 1  # each folder once, the changed one again with its change
    assert truth_mismatches(tenant_id, truth(sandbox), complete=True) == []
    assert cursor_of(connection_id) is not None


def test_an_incremental_sync_reads_its_window_again_when_a_folder_leaves_it(
    stack_env, sandbox, change_first_folder_after_page_one
):
    """In a window [since, until], a changed folder leaves it (its lastUpdate passes ``until``):
    the total drops, which shows the move as well."""
    sandbox.control("POST", "/reset", json={"folders": FOLDERS, "seed": 11})
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    with session_scope() as session:  # a cursor older than every folder: the window holds them all
        oldest = min(folder["lastUpdate"] for folder in truth(sandbox))
        from wedof.mapping.values import datetime_utc

        session.get(WedofConnection, connection_id).sync_cursor = datetime_utc(oldest) + sync_module.OVERLAP
    result = sync_module.sync_connection(connection_id, "all", False, None, "manual")
    assert result["status"] == "succeeded" and change_first_folder_after_page_one
    assert result["settled"] and result["passes"] >= 2
    # Every folder that was in the window is stored (the changed one comes with the next sync).
    expected = {f["externalId"] for f in truth(sandbox)} - set(change_first_folder_after_page_one)
    assert expected <= stored_folder_ids(tenant_id)
