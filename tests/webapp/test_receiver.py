"""The webhook receiver through the Flask test client: every outcome, on the real Redis broker."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from bdc.models.enums import EventStatus
from tests.support.processes import free_port
from tests.webapp.conftest import (
    SAMPLE_FOLDER_PATH,
    WEBHOOK_SECRET,
    build_receiver,
    create_connection,
    folder_body,
    queued_messages,
    wedof_delivery_headers,
)
from webapp.receiver.connections import forget_cached_connections
from wedof.signatures import compute_signature
from worker.task_names import PROCESS_EVENT


def test_real_format_delivery_is_stored_then_enqueued(receiver_any_db, redis_client):
    body = SAMPLE_FOLDER_PATH.read_bytes()
    response = receiver_any_db.post(body, event="registrationFolder.terminated", delivery="wedof-7f3a")

    assert response.status_code == 202, response.get_json()
    event_id = response.get_json()["event_id"]
    assert response.get_json() == {"status": "accepted", "event_id": event_id}
    [event] = receiver_any_db.events()
    assert (event.id, event.connection_id, event.delivery_id, event.event_type, event.payload_format) == (
        event_id, receiver_any_db.connection_id, "wedof-7f3a", "registrationFolder.terminated", "wedof")
    assert event.body == body.decode() and event.folder_external_id == "12345678901234"
    assert event.status == EventStatus.QUEUED and event.queued_at is not None and event.task_id
    assert event.headers["X-Wedof-Event"] == "registrationFolder.terminated"
    assert event.headers["X-Wedof-Signature"] == "[redacted]"
    assert compute_signature(WEBHOOK_SECRET, body) not in json.dumps(event.headers)
    assert queued_messages(redis_client) == [{"task": PROCESS_EVENT, "id": event.task_id, "args": [event_id]}]


def test_envelope_delivery_is_stored_for_fetching(receiver_any_db, redis_client):
    body = json.dumps({"type": "stagiaire.progression.updated", "data": {"id": "4270885603"}}).encode()
    headers = {"Content-Type": "application/json", "X-Wedof-Signature": compute_signature(WEBHOOK_SECRET, body)}
    response = receiver_any_db.client.post(receiver_any_db.path, data=body, headers=headers)

    assert response.status_code == 202, response.get_json()
    [event] = receiver_any_db.events()
    assert (event.payload_format, event.event_type, event.folder_external_id) == (
        "envelope", "stagiaire.progression.updated", "4270885603")
    assert event.delivery_id.startswith("sha256:")
    assert [m["args"] for m in queued_messages(redis_client)] == [[event.id]]


def test_duplicate_delivery_is_answered_200_and_stored_once(receiver_any_db, redis_client):
    body = folder_body()
    first = receiver_any_db.post(body, delivery="same")
    second = receiver_any_db.post(body, delivery="same")

    assert first.status_code == 202 and second.status_code == 200
    assert second.get_json() == {"status": "duplicate", "event_id": first.get_json()["event_id"]}
    assert len(receiver_any_db.events()) == 1
    assert len(queued_messages(redis_client)) == 1


def test_identical_delivery_without_id_dedupes_on_derived_id(receiver, redis_client):
    body = folder_body()
    assert receiver.post(body, delivery=None).status_code == 202
    assert receiver.post(body, delivery=None).get_json()["status"] == "duplicate"
    assert receiver.post(folder_body(completionRate=50), delivery=None).status_code == 202
    assert len(receiver.events()) == 2


def test_concurrent_identical_deliveries_store_one_row(app_env, pg_db_url, redis_url, redis_client, fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, pg_db_url, redis_url)
    body = folder_body()
    barrier = threading.Barrier(6)
    codes: list[int] = []

    def deliver():
        client = receiver.app.test_client()
        headers = wedof_delivery_headers(body, delivery="raced")
        barrier.wait()
        codes.append(client.post(receiver.path, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(codes) == [200] * 5 + [202]
    assert len(receiver.events()) == 1
    assert len(queued_messages(redis_client)) == 1


def test_unknown_event_type_is_stored_ignored_and_not_enqueued(receiver, redis_client):
    response = receiver.post(b'{"id": 5, "state": "whatever"}', event="workingContract.signed")
    assert response.status_code == 202
    assert response.get_json()["status"] == "ignored"
    [event] = receiver.events()
    assert event.status == EventStatus.IGNORED and "workingContract.signed" in event.status_reason
    assert event.task_id is None and queued_messages(redis_client) == []


def test_certification_event_is_ignored(receiver, redis_client):
    body = (SAMPLE_FOLDER_PATH.parent / "certification-folder.activepieces-sample.json").read_bytes()
    assert receiver.post(body, event="certificationFolder.success").get_json()["status"] == "ignored"
    assert receiver.events()[0].status == EventStatus.IGNORED


@pytest.mark.parametrize("encoding", ["hex", "prefixed", "base64"])
def test_signature_encodings_seen_in_the_wild_are_accepted(receiver, encoding):
    body = folder_body()
    headers = {"Content-Type": "application/json", "X-Wedof-Event": "registrationFolder.updated",
               "X-Wedof-Signature": compute_signature(WEBHOOK_SECRET, body, encoding=encoding)}
    assert receiver.client.post(receiver.path, data=body, headers=headers).status_code == 202


def test_sha512_connection(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url)
    connection_id = create_connection(sqlite_db_url, algorithm="sha512", slug="sha512")
    body = folder_body()
    path = f"/api/webhooks/wedof/{connection_id}"
    assert receiver.post(body, path=path, algorithm="sha512").status_code == 202
    assert receiver.post(body, path=path, delivery="other", algorithm="sha256").status_code == 401


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "missing", "empty", "garbage", "other_body"])
def test_bad_signatures_are_refused_and_nothing_is_stored(receiver, redis_client, case):
    body = folder_body()
    headers = wedof_delivery_headers(body)
    if case == "tampered":
        body = body.replace(b"inTraining", b"terminated")
    elif case == "wrong_secret":
        headers = wedof_delivery_headers(body, secret="not-the-secret")
    elif case == "missing":
        del headers["X-Wedof-Signature"]
    elif case == "empty":
        headers["X-Wedof-Signature"] = ""
    elif case == "garbage":
        headers["X-Wedof-Signature"] = "sha256=" + "zz" * 32
    elif case == "other_body":
        headers["X-Wedof-Signature"] = compute_signature(WEBHOOK_SECRET, b"{}")
    response = receiver.client.post(receiver.path, data=body, headers=headers)

    assert response.status_code == 401
    assert response.get_json()["error"] in {"invalid_signature", "missing_signature"}
    assert receiver.events() == [] and queued_messages(redis_client) == []


def test_connection_without_secret_refuses_everything(receiver):
    connection_id = create_connection(receiver.database_url, secret=None, slug="nosecret")
    body = folder_body()
    response = receiver.client.post(f"/api/webhooks/wedof/{connection_id}", data=body,
                                    headers=wedof_delivery_headers(body, secret=None))
    assert response.status_code == 401
    payload = response.get_json()
    assert payload["error"] == "webhook_secret_not_configured" and "secret" in payload["message"]
    assert receiver.events() == []


def test_disabled_connection_answers_409_only_to_the_signer(receiver):
    connection_id = create_connection(receiver.database_url, enabled=False, slug="disabled")
    path = f"/api/webhooks/wedof/{connection_id}"
    body = folder_body()
    assert receiver.post(body, path=path).status_code == 409
    assert receiver.post(body, path=path).get_json()["error"] == "connection_disabled"
    assert receiver.post(body, path=path, secret="wrong").status_code == 401
    assert receiver.events() == []


@pytest.mark.parametrize("path", ["/api/webhooks/wedof/999999", "/api/webhooks/wedof/99999999999999999999"])
def test_unknown_connection_is_404_and_nothing_stored(receiver, path):
    response = receiver.post(folder_body(), path=path)
    assert response.status_code == 404 and response.get_json()["error"] == "unknown_connection"
    assert receiver.events() == []


def test_env_default_route(receiver, redis_client):
    body = folder_body()
    response = receiver.post(body, path="/api/webhooks/wedof")
    assert response.status_code == 404 and response.get_json()["error"] == "no_default_connection"

    env_connection = create_connection(receiver.database_url, is_env_default=True, secret="env-secret", slug="env")
    response = receiver.post(body, path="/api/webhooks/wedof", secret="env-secret")
    assert response.status_code == 202
    assert [e.connection_id for e in receiver.events()] == [env_connection]


def test_oversize_body_is_413(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url, webhook_max_body_bytes="2048")
    fits = folder_body(notes="x" * 1500)
    assert receiver.post(fits).status_code == 202
    response = receiver.post(folder_body(notes="x" * 3000), delivery="big")
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"
    assert len(receiver.events()) == 1


@pytest.mark.parametrize("body, code", [
    (b"{broken", "invalid_json"),
    (b"", "empty_body"),
    (b"[1, 2]", "invalid_shape"),
    (b'{"state": "accepted"}', "missing_external_id"),
])
def test_unreadable_bodies_are_400(receiver, body, code):
    response = receiver.post(body)
    assert response.status_code == 400 and response.get_json()["error"] == code
    assert receiver.events() == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
def test_wrong_content_type_is_415(receiver, content_type):
    response = receiver.post(folder_body(), content_type=content_type)
    assert response.status_code == 415 and response.get_json()["error"] == "unsupported_media_type"
    assert receiver.events() == []


def test_json_with_charset_is_accepted(receiver):
    assert receiver.post(folder_body(), content_type="application/json; charset=utf-8").status_code == 202


def test_get_is_405_json(receiver):
    response = receiver.client.get(receiver.path)
    assert response.status_code == 405 and "error" in response.get_json()


def test_broker_down_keeps_the_event_received(receiver, redis_server):
    redis_server.stop()
    try:
        response = receiver.post(folder_body())
    finally:
        redis_server.start()
    assert response.status_code == 202 and response.get_json()["status"] == "accepted"
    [event] = receiver.events()
    assert event.status == EventStatus.RECEIVED and event.queued_at is None
    # Once the broker is back, the next delivery is published again by the same process.
    assert receiver.post(folder_body(external_id="2"), delivery="after").status_code == 202
    assert receiver.events()[1].status == EventStatus.QUEUED


def test_database_unreachable_is_503(app_env, sqlite_db_url, redis_url, fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url)
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    receiver.app.config["DATABASE_URL"] = dead
    response = receiver.post(folder_body())
    assert response.status_code == 503 and response.get_json()["error"] == "database_unavailable"


def test_database_lost_after_connection_lookup_is_503(app_env, pg_db_url, pg_cluster, redis_url, redis_client,
                                                        fresh_task_sender):
    receiver = build_receiver(app_env, fresh_task_sender, pg_db_url, redis_url)
    assert receiver.post(folder_body(), delivery="before").status_code == 202  # caches the connection
    name = pg_db_url.rsplit("/", 1)[1]
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        response = receiver.post(folder_body(), delivery="during")
        assert response.status_code == 503 and response.get_json()["error"] == "database_unavailable"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    assert receiver.post(folder_body(), delivery="during").status_code == 202
    assert [e.delivery_id for e in receiver.events()] == ["before", "during"]


def test_a_bad_signature_during_a_database_outage_is_401_not_a_5xx(app_env, pg_db_url, pg_cluster, redis_url,
                                                                   redis_client, fresh_task_sender):
    # A failed signature reads the connection again (its secret may have just been rotated); with the
    # database down that read fails, and the cached copy's refusal must stand.
    receiver = build_receiver(app_env, fresh_task_sender, pg_db_url, redis_url)
    assert receiver.post(folder_body(), delivery="before").status_code == 202  # caches the connection
    time.sleep(1.1)  # old enough to be read again after a failed signature
    name = pg_db_url.rsplit("/", 1)[1]
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        response = receiver.post(folder_body(), delivery="forged", secret="not-the-secret-value")
        assert response.status_code == 401 and response.get_json()["error"] == "invalid_signature"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


def test_delivery_log_line_has_no_secret_body_or_signature(receiver, caplog):
    body = folder_body(notes="PERSONAL-DATA-MARKER")
    signature = compute_signature(WEBHOOK_SECRET, body)
    with caplog.at_level(logging.INFO, logger="webapp.receiver"):
        assert receiver.post(body, delivery="logged-1").status_code == 202
        assert receiver.post(body, delivery="logged-2", secret="wrong-secret-value").status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "webapp.receiver"]
    assert len(lines) == 2
    accepted, refused = (json.loads(line) for line in lines)
    assert accepted["delivery"] == "logged-1" and accepted["outcome"] == "accepted" and accepted["status"] == 202
    assert accepted["event"] == "registrationFolder.updated" and accepted["connection"] == receiver.connection_id
    assert "duration_ms" in accepted and refused["outcome"] == "invalid_signature"
    captured = caplog.text + "\n".join(lines)
    for forbidden in (WEBHOOK_SECRET, "wrong-secret-value", signature, "PERSONAL-DATA-MARKER", "4270885603"):
        assert forbidden not in captured


def test_admin_change_is_seen_after_forgetting_the_cache(receiver):
    from sqlalchemy import update

    from bdc.db import session_scope
    from bdc.models import WedofConnection

    assert receiver.post(folder_body(), delivery="a").status_code == 202
    with session_scope(receiver.database_url) as session:
        session.execute(update(WedofConnection).where(WedofConnection.id == receiver.connection_id).values(enabled=False))
    forget_cached_connections()
    assert receiver.post(folder_body(), delivery="b").status_code == 409
