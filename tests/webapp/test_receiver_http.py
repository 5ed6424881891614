"""The receiver as it runs in production: gunicorn (2 workers), PostgreSQL, real Redis, real HTTP."""

from __future__ import annotations

import http.client
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from sqlalchemy import create_engine, select

from bdc.db import session_scope
from bdc.models import User, UserRole, WebhookEvent, WedofConnection
from bdc.models.enums import EventStatus
from bdc.types import utcnow
from tests.conftest import fresh_postgres_url
from tests.support.browser import admin_token
from tests.support.processes import ManagedProcess, free_port, wait_for_port
from tests.support.services import wait_until
from tests.webapp.conftest import (
    SAMPLE_FOLDER_PATH,
    WEBHOOK_SECRET,
    create_connection,
    folder_body,
    queued_messages,
    wedof_delivery_headers,
)
from worker.task_names import PROCESS_EVENT

MAX_BODY = 16384  # above the real sample (~5 KiB)


class LiveReceiver:
    def __init__(self, url: str, database_url: str, connection_id: int):
        self.url, self.database_url, self.connection_id = url, database_url, connection_id
        self.engine = create_engine(database_url)
        self.session = requests.Session()

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/webhooks/wedof/{self.connection_id}"

    def post(self, body: bytes, **header_options) -> requests.Response:
        return self.session.post(self.endpoint, data=body, headers=wedof_delivery_headers(body, **header_options),
                                 timeout=30)

    def event(self, delivery_id: str):
        with self.engine.connect() as conn:
            return conn.execute(select(WebhookEvent.__table__).where(WebhookEvent.delivery_id == delivery_id)).all()


@pytest.fixture(scope="module")
def live(pg_cluster, pg_template, redis_server, output_dir):
    database_url = fresh_postgres_url(pg_cluster, pg_template)
    connection_id = create_connection(database_url)
    port = free_port()
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_server.url, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "GUNICORN_WORKERS": "2", "WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY)}
    server = ManagedProcess("receiver-gunicorn", [sys.executable, "-m", "gunicorn", "--config", "webapp/gunicorn_conf.py",
                                                  "webapp.wsgi:app"], env=env, log_dir=output_dir / "logs").start()
    try:
        wait_for_port(port, process=server.process)
        receiver = LiveReceiver(f"http://127.0.0.1:{port}", database_url, connection_id)
        receiver.server = server
        yield receiver
    finally:
        if "receiver" in locals():
            receiver.session.close()  # no idle keep-alive connection delays gunicorn's graceful stop
        server.stop()
        assert "Traceback" not in server.log_tail(400), server.log_tail(80)
    receiver.engine.dispose()


def test_real_sample_is_stored_and_enqueued(live, redis_client):
    response = live.post(SAMPLE_FOLDER_PATH.read_bytes(), event="registrationFolder.terminated", delivery="http-sample")

    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    [row] = live.event("http-sample")
    assert (row.id, row.status, row.folder_external_id) == (event_id, EventStatus.QUEUED, "12345678901234")
    assert row.body == SAMPLE_FOLDER_PATH.read_text() and row.headers["X-Wedof-Signature"] == "[redacted]"
    assert queued_messages(redis_client) == [{"task": PROCESS_EVENT, "id": row.task_id, "args": [event_id]}]


def test_envelope_and_duplicate_over_http(live, redis_client):
    body = json.dumps({"id": "evt-http-1", "type": "bilan.completed", "data": {"externalId": "4270885603"}}).encode()
    headers = wedof_delivery_headers(body, event="ignored-by-envelope", delivery=None)
    first = live.session.post(live.endpoint, data=body, headers=headers, timeout=30)
    second = live.session.post(live.endpoint, data=body, headers=headers, timeout=30)

    assert first.status_code == 202 and second.status_code == 200
    assert second.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    [row] = live.event("evt-http-1")
    assert (row.payload_format, row.event_type) == ("envelope", "bilan.completed")
    assert [m["args"] for m in queued_messages(redis_client)] == [[row.id]]


def test_concurrent_identical_deliveries_over_http(live, redis_client):
    body = folder_body(external_id="555")

    def deliver(_):
        with requests.Session() as session:
            return session.post(live.endpoint, data=body, headers=wedof_delivery_headers(body, delivery="http-race"),
                                timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(deliver, range(8)))
    assert codes == [200] * 7 + [202]
    assert len(live.event("http-race")) == 1 and len(queued_messages(redis_client)) == 1


@pytest.mark.parametrize("case", ["tampered", "wrong_secret", "missing"])
def test_bad_signatures_over_http(live, redis_client, case):
    body = folder_body()
    delivery = f"http-bad-{case}"
    headers = wedof_delivery_headers(body, delivery=delivery, secret="nope" if case == "wrong_secret" else WEBHOOK_SECRET)
    if case == "missing":
        del headers["X-Wedof-Signature"]
    if case == "tampered":
        body = body.replace(b"inTraining", b"terminated")
    response = live.session.post(live.endpoint, data=body, headers=headers, timeout=30)
    assert response.status_code == 401 and response.json()["error"] in {"invalid_signature", "missing_signature"}
    assert live.event(delivery) == [] and queued_messages(redis_client) == []


def _raw_post(live: LiveReceiver, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict]:
    """A hand-made request, so Content-Length can lie or be absent (chunked)."""
    host, port = live.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", f"/api/webhooks/wedof/{live.connection_id}")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for chunk in chunks:
            try:
                conn.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed early: read its answer
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_oversize_chunked_body_without_content_length_is_413(live):
    body = folder_body(notes="y" * (MAX_BODY * 2))
    headers = {**wedof_delivery_headers(body, delivery="http-chunked"), "Transfer-Encoding": "chunked"}
    chunks = [b"%x\r\n%s\r\n" % (len(part), part) for part in (body[i:i + 1000] for i in range(0, len(body), 1000))]
    status, payload = _raw_post(live, headers, [*chunks, b"0\r\n\r\n"])
    assert status == 413 and payload["error"] == "payload_too_large"
    assert live.event("http-chunked") == []


def test_oversize_declared_body_is_413(live):
    body = folder_body(notes="y" * (MAX_BODY * 2))
    response = live.post(body, delivery="http-big")
    assert response.status_code == 413 and live.event("http-big") == []


def test_lying_content_length_is_read_as_declared_and_refused(live):
    body = folder_body()
    headers = {**wedof_delivery_headers(body, delivery="http-liar"), "Content-Length": "10"}
    status, payload = _raw_post(live, headers, [body])
    assert status == 401 and live.event("http-liar") == []


def test_small_chunked_body_is_accepted(live):
    body = folder_body(external_id="777")
    headers = {**wedof_delivery_headers(body, delivery="http-chunked-ok"), "Transfer-Encoding": "chunked"}
    status, payload = _raw_post(live, headers, [b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)])
    assert status == 202, payload
    assert live.event("http-chunked-ok")[0].body == body.decode()


def test_broker_down_then_back_over_http(live, redis_server, redis_client):
    redis_server.stop()
    try:
        response = live.post(folder_body(), delivery="http-broker-down")
        ready = live.session.get(f"{live.url}/readyz", timeout=30)
    finally:
        redis_server.start()
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    [row] = live.event("http-broker-down")
    assert row.status == EventStatus.RECEIVED and row.queued_at is None
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["broker"] != "ok"

    # Both gunicorn workers publish again once the broker is back.
    for n in range(4):
        assert live.post(folder_body(external_id=f"9{n}"), delivery=f"http-after-{n}").status_code == 202
    statuses = {live.event(f"http-after-{n}")[0].status for n in range(4)}
    assert statuses == {EventStatus.QUEUED}
    assert live.session.get(f"{live.url}/readyz", timeout=30).status_code == 200


def test_health_probes_over_http(live):
    assert live.session.get(f"{live.url}/healthz", timeout=30).json() == {"status": "ok"}
    ready = live.session.get(f"{live.url}/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_a_rotation_over_http_accepts_the_old_secret_for_the_window_then_refuses_it(live, redis_client):
    """Through gunicorn's two workers, each with its own few seconds' cache of the connection."""
    connection_id = create_connection(live.database_url, secret="rotation-old-secret-1")
    with session_scope(live.database_url) as session:
        tenant_id = session.get(WedofConnection, connection_id).tenant_id
        admin = User(tenant_id=tenant_id, email=f"rotation-{connection_id}@bdc.test", role=UserRole.TENANT_ADMIN)
        session.add(admin)
        session.flush()
        admin_id = admin.id
    token = admin_token(admin_id, tenant_id)
    endpoint = f"{live.url}/api/webhooks/wedof/{connection_id}"

    def deliver(secret: str, delivery: str) -> int:
        body = folder_body(external_id=str(4271000000 + len(delivery)))
        # A new TCP connection each time (no keep-alive), so both gunicorn workers answer some.
        return requests.post(endpoint, data=body, headers=wedof_delivery_headers(body, secret=secret,
                                                                                 delivery=delivery),
                             timeout=30).status_code

    def eventually(secret: str, prefix: str, expected: int) -> None:
        deadline = time.monotonic() + 12  # the receivers' connection cache is 5 s
        attempt = 0
        while True:
            attempt += 1
            status = deliver(secret, f"{prefix}-{attempt}")
            if status == expected or time.monotonic() > deadline:
                assert status == expected, (prefix, status)
                return
            time.sleep(0.5)

    for n in range(16):  # both workers now cache the connection with its old secret
        assert deliver("rotation-old-secret-1", f"rot-before-{n}") == 202
    rotated = live.session.post(f"{live.url}/api/integrations/wedof/connection/rotate-secret",
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    # A failed signature reads the connection again when its cached copy is over a second old, so the
    # worker that did not serve the rotation accepts the new secret without waiting out its cache.
    time.sleep(1.1)
    assert [deliver(new, f"rot-new-{n}") for n in range(16)] == [202] * 16
    for n in range(4):  # both workers, whichever answers: the old secret still works in the window
        assert deliver("rotation-old-secret-1", f"rot-old-{n}") == 202
    assert all(row.signed_with_previous_secret for n in range(4) for row in live.event(f"rot-old-{n}"))

    with session_scope(live.database_url) as session:
        session.get(WedofConnection, connection_id).previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    eventually("rotation-old-secret-1", "rot-late", 401)
    assert deliver(new, "rot-new-after") == 202


def test_the_access_log_never_holds_the_token_of_the_page_url(live):
    probe = "eyJhbGciOiJIUzI1NiJ9.access-log-probe.c2lnbmF0dXJl"
    response = live.session.get(f"{live.url}/integrations/wedof?token={probe}", timeout=30)
    assert response.status_code in (200, 401, 422)

    def logged():
        tail = live.server.log_tail(200)
        return tail if '"GET /integrations/wedof HTTP/1.1"' in tail else None

    tail = wait_until(logged, timeout=10, message="the access line of the page request")
    assert probe not in tail and "token=" not in tail
