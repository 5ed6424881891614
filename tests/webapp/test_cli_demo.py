"""``python -m webapp.cli demo``: what make run's demo mode does, against a real receiver answer and the real broker."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import User, UserRole
from tests.support.processes import free_port
from tests.webapp.conftest import queued_messages
from webapp.cli import DEMO_ADMIN_EMAIL, main
from worker.task_names import REGISTER_WEBHOOK, SYNC_CONNECTION


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def ready_receiver():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_demo_creates_an_admin_queues_webhook_and_sync_and_is_idempotent(app_env, sqlite_db_url, redis_url, redis_client,
                                                                         ready_receiver, fresh_task_sender, capsys):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, public_base_url=ready_receiver,
            wedof_api_key="sandbox-key", wedof_webhook_secret="sandbox-webhook-secret")
    fresh_task_sender()  # publish to the broker just configured
    assert main(["demo", "--wait", "10"]) == 0
    assert main(["demo", "--wait", "10"]) == 0
    out = capsys.readouterr().out
    assert "/integrations/wedof?token=" in out and "sandbox-webhook-secret" not in out
    with session_scope(sqlite_db_url) as session:
        admins = session.scalars(select(User).where(User.email == DEMO_ADMIN_EMAIL)).all()
        assert len(admins) == 1 and admins[0].role == UserRole.TENANT_ADMIN and admins[0].tenant_id is not None
    events = queued_messages(redis_client, "events")
    syncs = queued_messages(redis_client, "sync")
    assert [m["task"] for m in events] == [REGISTER_WEBHOOK, REGISTER_WEBHOOK]
    assert [(m["task"], m["args"][1:3]) for m in syncs] == [(SYNC_CONNECTION, ["all", True])] * 2


def test_demo_without_a_configured_connection_refuses_clearly(app_env, sqlite_db_url, redis_url, capsys):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, wedof_api_key="", wedof_webhook_secret="")
    assert main(["demo", "--wait", "1"]) == 2
    assert "needs WEDOF_API_KEY" in capsys.readouterr().err


def test_demo_gives_up_when_the_receiver_never_answers(app_env, sqlite_db_url, redis_url, capsys):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, public_base_url=f"http://127.0.0.1:{free_port()}",
            wedof_api_key="sandbox-key", wedof_webhook_secret="sandbox-webhook-secret")
    assert main(["demo", "--wait", "1.5"]) == 1
    assert "was not ready" in capsys.readouterr().err
