"""The liveness and readiness probes the receiver is deployed behind."""

from __future__ import annotations

from tests.support.processes import free_port
from tests.webapp.conftest import build_receiver


def test_healthz_is_ok_without_touching_dependencies(app_env, sqlite_db_url, fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, sqlite_db_url, f"redis://127.0.0.1:{free_port()}/0")
    response = receiver.client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_database_and_broker_answer(receiver):
    response = receiver.client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_redis_is_down(receiver, redis_server):
    redis_server.stop()
    try:
        response = receiver.client.get("/readyz")
    finally:
        redis_server.start()
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready" and body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")
    assert receiver.client.get("/readyz").status_code == 200


def test_readyz_is_503_when_database_is_down(receiver):
    receiver.app.config["DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    response = receiver.client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("unreachable")
