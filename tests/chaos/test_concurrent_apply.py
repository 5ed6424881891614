"""Regression found by the chaos run: two workers applying two versions of one folder at once.

An out-of-order delivery is released right after the newer one, so two workers often apply the
two versions of a folder concurrently. Both read the stored enrollment before either commits; the
newer one commits first; the older one, whose stale check passed against the old stored row, then
overwrote it: the data layer ended up older than a version the receiver had acknowledged. The apply
must read the enrollments it compares against under a row lock (PostgreSQL: FOR UPDATE), so the
second writer waits and re-reads what the first committed.
"""

from __future__ import annotations

import threading

from sqlalchemy import select, text

from bdc.db import get_sessionmaker
from bdc.models import Enrollment, Tenant
from tests.support.services import wait_until
from tests.wedof.test_mapping_apply import make_folder
from wedof.mapping import apply as apply_module
from wedof.mapping import apply_folder

OLD = "2025-02-03T09:12:44.517Z"
NEW = "2025-02-03T09:12:46.517Z"


def _blocked_on_a_lock(maker) -> bool:
    with maker() as session:
        return bool(session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")))


def test_an_older_version_applied_concurrently_never_overwrites_a_newer_one(pg_db_url, monkeypatch):
    maker = get_sessionmaker(pg_db_url)
    with maker() as session:
        tenant = Tenant(name="Race", slug="race")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
        apply_folder(session, tenant_id, make_folder(last_update="2025-02-03T09:00:00.000Z", completion_rate=10))
        session.commit()

    newer = maker()
    # Worker 1 applies the NEWER version and holds its transaction open (row written, not committed).
    apply_folder(newer, tenant_id, make_folder(last_update=NEW, completion_rate=60))
    newer.flush()

    # Worker 2 applies the OLDER version: pause it between reading the stored rows and writing.
    loaded, go = threading.Event(), threading.Event()
    original_apply = apply_module._Page.apply

    def paused_apply(page):
        loaded.set()
        assert go.wait(30)
        return original_apply(page)

    monkeypatch.setattr(apply_module._Page, "apply", paused_apply)
    outcome: dict = {}

    def older_worker():
        with maker() as session:
            try:
                outcome["result"] = apply_folder(session, tenant_id, make_folder(last_update=OLD, completion_rate=40))
                session.commit()
            except Exception as exc:  # reported by the assertion below
                outcome["error"] = exc

    thread = threading.Thread(target=older_worker)
    thread.start()
    # Either it read the rows (no lock: the race window is open) or it waits for worker 1's lock.
    wait_until(lambda: loaded.is_set() or _blocked_on_a_lock(maker), timeout=30, message="older worker reading")
    newer.commit()
    newer.close()
    go.set()
    thread.join(30)
    assert not thread.is_alive() and "error" not in outcome, outcome

    with maker() as session:
        enrollment = session.scalars(select(Enrollment).where(Enrollment.tenant_id == tenant_id)).one()
        assert enrollment.wedof_last_update.isoformat().startswith("2025-02-03T09:12:46.517")
        assert enrollment.progress == 60
    assert outcome["result"].outcome == "stale"
