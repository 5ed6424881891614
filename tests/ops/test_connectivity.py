"""The periodic connectivity check against the Wedof sandbox over HTTP (it answers 401 to a wrong key),
on SQLite and PostgreSQL: rows recorded, the KEY_REVOKED notice created once, the problem opened and
mailed through a real SMTP server, and resolved once the key is fixed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import Reject
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import (
    ConnectivityCheck,
    Notice,
    NoticeKind,
    Problem,
    ProblemKind,
    ProblemStatus,
    WedofConnection,
)
from bdc.types import utcnow
from tests.ops.notices_helpers import SmtpServer, make_tenant
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from worker.notices import service
from worker.tasks.connectivity import KEEP_DAYS, check_connectivity

GOOD_KEY = "sandbox-good-key-5f1e"
WRONG_KEY = "revoked-key-0000-abcd"


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=3, seed=5, api_key=GOOD_KEY) as sbx:
        yield sbx


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def env(app_env, db_url, redis_url, redis_client, smtp):
    return app_env(database_url=db_url, redis_url=redis_url, wedof_sync_enabled="false", bdc_notice_interval="60",
                   **smtp.env())


def checks(connection_id: int) -> list[ConnectivityCheck]:
    with session_scope() as session:
        return list(session.scalars(select(ConnectivityCheck).where(ConnectivityCheck.connection_id == connection_id)
                                    .order_by(ConnectivityCheck.id)))


def key_notices(tenant_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Notice).where(
            Notice.tenant_id == tenant_id, Notice.kind == NoticeKind.KEY_REVOKED))


def test_a_revoked_key_is_recorded_noticed_once_mailed_then_resolved(env, sandbox, smtp):
    tenant_id, connection_id = make_tenant(api_url=sandbox.api_url, api_key=WRONG_KEY)
    result = check_connectivity()
    assert result["checked"] == 1 and result["failed"] == [{"connection_id": connection_id, "status_code": 401}]
    check_connectivity()
    rows = checks(connection_id)
    assert [(r.ok, r.status_code) for r in rows] == [(False, 401), (False, 401)]
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in rows)
    assert "WedofAuthenticationError" in rows[0].error and WRONG_KEY not in rows[0].error
    assert key_notices(tenant_id) == 1  # not one per check while it stays revoked

    t0 = utcnow()
    service.run(now=t0)
    (message,) = smtp.messages
    assert message.subject == "[BDC Wedof] Organisme Test : Clé API Wedof refusée (401)"
    assert "nouvelle clé API" in message.body and WRONG_KEY not in message.body

    # The key is fixed: the next check answers 200 and the problem resolves (one "résolu" message).
    with session_scope() as session:
        session.get(WedofConnection, connection_id).api_key = GOOD_KEY
    assert check_connectivity()["ok"] == 1
    assert checks(connection_id)[-1].status_code == 200 and checks(connection_id)[-1].error is None
    service.run(now=t0 + timedelta(minutes=5))
    assert [m.subject for m in smtp.messages][1:] == ["[BDC Wedof] Organisme Test : Résolu : Clé API Wedof refusée (401)"]
    with session_scope() as session:
        problem = session.scalars(select(Problem).where(Problem.tenant_id == tenant_id)).one()
    assert problem.kind == ProblemKind.KEY_REVOKED and problem.status == ProblemStatus.RESOLVED

    # Revoked again later: a new notice (it became refused again), a new problem, a new message.
    with session_scope() as session:
        session.get(WedofConnection, connection_id).api_key = WRONG_KEY
    check_connectivity()
    assert key_notices(tenant_id) == 2
    service.run(now=t0 + timedelta(minutes=10))
    assert smtp.messages[-1].subject == "[BDC Wedof] Organisme Test : Clé API Wedof refusée (401)"


def test_wedof_unreachable_after_two_checks_without_an_answer(env, smtp):
    tenant_id, connection_id = make_tenant(api_url=f"http://127.0.0.1:{free_port()}/api", api_key="some-key-1234")
    check_connectivity()
    service.run(now=utcnow())
    assert smtp.messages == []  # one failed check is a blip
    check_connectivity()
    rows = checks(connection_id)
    assert [(r.ok, r.status_code) for r in rows] == [(False, None), (False, None)]
    assert rows[-1].error.startswith("WedofNetworkError") and "some-key-1234" not in rows[-1].error
    assert key_notices(tenant_id) == 0
    service.run(now=utcnow())
    (message,) = smtp.messages
    assert message.subject == "[BDC Wedof] Organisme Test : Wedof injoignable"
    assert "WedofNetworkError" in message.body


def test_only_enabled_connections_with_a_key_are_checked_and_old_rows_go(env, sandbox):
    _t1, checked = make_tenant(api_url=sandbox.api_url, api_key=GOOD_KEY)
    _t2, disabled = make_tenant(api_url=sandbox.api_url, api_key=GOOD_KEY, enabled=False)
    _t3, keyless = make_tenant(api_url=sandbox.api_url, api_key=None)
    now = utcnow()
    with session_scope() as session:
        session.add_all([ConnectivityCheck(connection_id=checked, checked_at=now - timedelta(days=KEEP_DAYS, hours=1),
                                           ok=True, status_code=200),
                         ConnectivityCheck(connection_id=disabled, checked_at=now - timedelta(days=KEEP_DAYS + 9),
                                           ok=True, status_code=200),
                         ConnectivityCheck(connection_id=checked, checked_at=now - timedelta(days=KEEP_DAYS - 1),
                                           ok=True, status_code=200)])
    result = check_connectivity()
    assert result["checked"] == 1 and result["ok"] == 1 and result["pruned"] == 2
    assert len(checks(checked)) == 2 and checks(disabled) == [] and checks(keyless) == []
    # "Check now" for one connection checks that one only.
    assert check_connectivity(checked)["checked"] == 1
    assert check_connectivity(str(disabled))["checked"] == 0
    assert len(checks(checked)) == 3


@pytest.mark.parametrize("bad", ["abc", -1, 0, True, 10**20, {"id": 1}, [1], 2**31 - 1])
def test_bad_connection_ids_are_rejected(env, bad):
    with pytest.raises(Reject):
        check_connectivity(bad)
