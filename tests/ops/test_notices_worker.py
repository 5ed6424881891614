"""The notices and connectivity tasks in a real ``celery worker`` process (PostgreSQL, Redis broker, the
Wedof sandbox over HTTP, a real SMTP server): real failing deliveries end as one grouped mail, and an
admin's "check now" through the admin API finds a revoked key that is mailed without waiting for beat.
"""

from __future__ import annotations

import importlib
import json

import pytest
from flask_jwt_extended import create_access_token
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import ConnectivityCheck, EventStatus
from tests.conftest import fresh_postgres_url, process_environment
from tests.ops.notices_helpers import STAFF, SmtpServer, make_tenant
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker, control_app
from tests.worker.conftest import build_stack_env
from tests.worker.helpers import DONE, events_in, insert_event, send
from worker.task_names import PROCESS_EVENT, SEND_NOTICES

SANDBOX_KEY = "sandbox-key-notices-77"


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer(port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=3, seed=9, api_key=SANDBOX_KEY) as sbx:
        yield sbx


@pytest.fixture(scope="module")
def stack(redis_server, pg_cluster, pg_template, tmp_path_factory, smtp, output_dir):
    env = build_stack_env(fresh_postgres_url(pg_cluster, pg_template), redis_server.url, tmp_path_factory.mktemp("var"),
                          SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_TLS="none",
                          SMTP_SENDER="alertes@bdc-wedof.test", PUBLIC_BASE_URL="https://bdc.organisme-test.fr")
    with process_environment(env):
        worker = CeleryWorker(env, queues="events", concurrency=2, log_dir=output_dir / "logs").start()
        broker = control_app(env["REDIS_URL"])
        try:
            yield env, worker, broker
        finally:
            broker.close()
            worker.stop()


def run_notices(broker) -> dict:
    """One bdc.send_notices run in the worker, waited for through the result backend."""
    return broker.send_task(SEND_NOTICES, queue="events", ignore_result=False).get(timeout=60)


def mails_to(smtp, tenant_name: str) -> list:
    return [m for m in smtp.messages if f" {tenant_name} : " in m.subject]


def test_real_failing_deliveries_give_one_grouped_notice(stack, smtp, sandbox):
    _env, worker, broker = stack
    _tenant_id, connection_id = make_tenant("Organisme Rafale", api_url=sandbox.api_url, api_key=SANDBOX_KEY)
    refused = {"state": "inTraining", "lastUpdate": "2025-01-01T00:00:00.000Z", "attendee": "not an object",
               "trainingActionInfo": None}
    event_ids = []
    for number in range(6):
        event_id, task_id = insert_event(connection_id, json.dumps({**refused, "externalId": f"99900011{number}"}))
        send(broker, PROCESS_EVENT, [event_id], task_id)
        event_ids.append(event_id)
    wait_until(lambda: events_in(event_ids, DONE), timeout=60, message="events processed")
    assert events_in(event_ids, {EventStatus.FAILED})

    first = run_notices(broker)
    assert first["status"] == "ok" and first["sent"]["email"] == 1, first
    (mail,) = mails_to(smtp, "Organisme Rafale")
    # Refused folders may also show Wedof's API drift (the mapping's own notice): then both problems,
    # opened in the same run, share this one message.
    assert mail.subject in ("[BDC Wedof] Organisme Rafale : Événements Wedof en échec",
                            "[BDC Wedof] Organisme Rafale : 2 problèmes détectés"), mail.subject
    assert "■ Événements Wedof en échec" in mail.body and mail.rcpt_tos == STAFF
    assert "6 notifications envoyées par Wedof" in mail.body and "folder refused (6)" in mail.body
    assert "999000110" not in mail.body
    assert run_notices(broker)["sent"]["email"] == 0
    assert len(mails_to(smtp, "Organisme Rafale")) == 1
    assert worker.alive()


def test_check_now_finds_a_revoked_key_and_the_mail_follows(stack, smtp, sandbox):
    env, _worker, _broker = stack
    tenant_id, connection_id = make_tenant("Organisme Clé", api_url=sandbox.api_url, api_key="revoked-key-abcdef")
    import celeryconfig
    from webapp import dispatch
    from webapp.app import create_app

    dispatch.task_sender.cache_clear()  # publish to this module's broker
    importlib.reload(celeryconfig)
    app = create_app({"TESTING": True})
    with app.app_context():
        token = create_access_token(identity="ops-admin", additional_claims={"role": "tenant_admin",
                                                                             "tenant_id": tenant_id})
    response = app.test_client().post("/api/integrations/wedof/connectivity/check",
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 202, response.get_data(as_text=True)

    def recorded():
        with session_scope() as session:
            return session.scalars(select(ConnectivityCheck).where(
                ConnectivityCheck.connection_id == connection_id)).all()

    (check,) = wait_until(recorded, timeout=60, message="connectivity check recorded")
    assert (check.ok, check.status_code) == (False, 401) and "revoked-key" not in (check.error or "")
    # The check changed the connection's state: the worker queued the notices run itself.
    (mail,) = wait_until(lambda: mails_to(smtp, "Organisme Clé"), timeout=60, message="key revoked mail")
    assert mail.subject == "[BDC Wedof] Organisme Clé : Clé API Wedof refusée (401)"
    dispatch.task_sender.cache_clear()
    assert env["REDIS_URL"]
