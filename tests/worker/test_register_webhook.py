"""The webhook registration through a real worker against the sandbox, and hostile task arguments.

Declarations and completion rates are lifecycle actions: see test_lifecycle.py.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, WedofConnection
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.worker.helpers import make_connection, send
from worker.task_names import CARRY_OUT_ACTION, EVALUATE_LIFECYCLE, REGISTER_WEBHOOK


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=10, seed=31) as sbx:
        yield sbx


def test_register_webhook_creates_it_at_wedof_and_stores_its_id(stack_env, broker, events_worker, sandbox):
    _tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key)
    send(broker, REGISTER_WEBHOOK, [connection_id])

    def stored():
        with session_scope() as session:
            return session.get(WedofConnection, connection_id).wedof_webhook_id

    webhook_id = wait_until(stored, timeout=60, message="webhook id stored")
    hooks = sandbox.control("GET", "/webhooks")
    hook = next(h for h in hooks if str(h["id"]) == webhook_id)
    assert hook["url"].endswith(f"/api/webhooks/wedof/{connection_id}")
    assert "registrationFolder.inTraining" in hook["events"] and hook["enabled"] is True
    assert "registrationFolderBilling.billed" in hook["events"]  # billing changes carry the folder too


def test_registering_again_after_a_rotation_replaces_the_old_webhook(stack_env, broker, events_worker, sandbox):
    _tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key, secret="first-secret-123")

    def stored():
        with session_scope() as session:
            return session.get(WedofConnection, connection_id).wedof_webhook_id

    send(broker, REGISTER_WEBHOOK, [connection_id])
    first = wait_until(stored, timeout=60, message="first webhook id stored")
    with session_scope() as session:  # what POST connection/rotate-secret stores
        connection = session.get(WedofConnection, connection_id)
        connection.previous_webhook_secret, connection.webhook_secret = connection.webhook_secret, "second-secret-456"
    send(broker, REGISTER_WEBHOOK, [connection_id])
    second = wait_until(lambda: stored() if stored() != first else None, timeout=60, message="second webhook")

    hooks = {str(h["id"]): h for h in sandbox.control("GET", "/webhooks")}
    assert first not in hooks, "the replaced webhook (old secret) must be deleted at Wedof"
    assert hooks[second]["secret"] == "second-secret-456"
    with session_scope() as session:
        actions = [(a.action, a.details.get("webhook_id")) for a in session.scalars(
            select(AuditLog).where(AuditLog.target_id == str(connection_id)).order_by(AuditLog.id))]
    assert actions == [("wedof.webhook_registered", first), ("wedof.webhook_registered", second),
                       ("wedof.webhook_deleted", first)]


@pytest.mark.parametrize("name", [CARRY_OUT_ACTION, EVALUATE_LIFECYCLE, REGISTER_WEBHOOK])
def test_bad_arguments_do_not_crash_the_worker(broker, events_worker, name):
    for bad in ("abc", None, -1, 987654321):
        send(broker, name, [bad])
    wait_until(lambda: broker.control.ping(destination=[events_worker.node], timeout=1), timeout=20,
               message="worker alive")
    assert events_worker.alive()
