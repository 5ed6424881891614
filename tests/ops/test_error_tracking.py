"""Optional Sentry error tracking (bdc/error_tracking.py), against a real loopback Sentry ingest.

The ingest is a plain HTTP server on 127.0.0.1 that records the envelopes sentry-sdk posts; the DSN
points at it (``http://public@127.0.0.1:<port>/1``). Errors are raised in a Flask route (test
client), in the real receiver under gunicorn and in a task of a real Celery worker, with a trainee's
personal data and our secrets in the request, the log, the task's arguments and the error message;
the envelopes that arrive must hold the error and none of those values.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import sentry_sdk

from bdc.error_tracking import (
    FILTERED,
    check_settings,
    init_error_tracking,
    scrub,
    scrub_breadcrumb,
    scrub_event,
    scrub_text,
)
from bdc.settings import SettingsError, load_settings
from tests.conftest import fresh_sqlite_url
from tests.support.stack import CeleryBeat, CeleryWorker, Receiver, control_app
from tests.worker.conftest import build_stack_env

# A sandbox trainee and our secrets: none of these may ever reach Sentry.
TRAINEE = {
    "firstName": "Camille", "lastName": "Sandboxier", "birthName": "Testeuse",
    "email": "camille.sandboxier@example.test", "phoneNumber": "+33 6 12 34 56 78",
    "dateOfBirth": "1990-04-12", "nameCityOfBirth": "Montpellier",
    "address": {"roadName": "rue des Essais", "zipCode": "34000"},
}
API_KEY = "wedof-api-key-7f3a9c2e5b8d4f60"
SIGNATURE = "sha256=9d4c2f7a1b3e5d6c8f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e"
SESSION_COOKIE = "session-cookie-5e1d7c"
NEVER_SENT = ["Camille", "Sandboxier", "Testeuse", "camille.sandboxier", "example.test", "6 12 34 56 78",
              "612345678", "1990-04-12", "Montpellier", "rue des Essais", "34000", API_KEY, SIGNATURE.split("=")[1],
              SESSION_COOKIE]


# --- a loopback Sentry ---------------------------------------------------------------------------

def parse_envelope(raw: bytes) -> list[tuple[dict, bytes]]:
    """``[(item header, payload)]`` of a Sentry envelope (header line, then items with a length or a newline)."""
    _header, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_header_line)
        if "length" in item_header:
            payload, rest = rest[: item_header["length"]], rest[item_header["length"]:]
            rest = rest[1:] if rest.startswith(b"\n") else rest
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item_header, payload))
    return items


class SentryIngest:
    """Records what sentry-sdk sends: every envelope, decompressed, as bytes."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self._changed = threading.Condition()
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                with ingest._changed:
                    ingest.envelopes.append(raw)
                    ingest._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server.server_address[1]}/1"

    def events(self) -> list[dict]:
        return [json.loads(payload) for raw in list(self.envelopes) for header, payload in parse_envelope(raw)
                if header.get("type") == "event"]

    def wait_for_event(self, predicate, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [event for event in self.events() if predicate(event)]
                if found:
                    return found[0]
                if time.monotonic() > deadline:
                    raise AssertionError(f"no such event after {timeout}s; received: {self.events()}")
                self._changed.wait(0.5)

    def leaks(self) -> list[str]:
        """The personal or secret values found in anything received, whatever its kind."""
        text = b"\n".join(self.envelopes).decode("utf-8", "replace").casefold()
        return [value for value in NEVER_SENT if value.casefold() in text]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ingest():
    server = SentryIngest()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_sentry_left_behind():
    """Each test starts and ends with Sentry off in this process, whatever a failed test left."""
    _sentry_off()
    yield
    _sentry_off()


def _sentry_off() -> None:
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=2)
    for scope in (sentry_sdk.get_global_scope(), sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
        scope.clear()
    sentry_sdk.get_global_scope().set_client(None)


def exception_types(event: dict) -> list[str]:
    return [value.get("type") for value in event.get("exception", {}).get("values", [])]


# --- the web application --------------------------------------------------------------------------

def add_failing_route(app) -> None:
    """A route that logs, adds context and fails with the trainee in all of it."""

    @app.post("/_test/fail")
    def fail():
        from flask import request

        trainee = request.get_json()
        logging.getLogger("webapp").info("mapping the attendee %s", trainee)
        sentry_sdk.set_extra("attendee", trainee)
        raise ValueError(f"cannot map the attendee {trainee!r}")


def send_failing_request(client_post, path: str, token: str = "header.payload.jwt-signature-4242"):
    return client_post(
        f"{path}?token={token}&page=2", json=TRAINEE,
        headers={"X-Api-Key": API_KEY, "Authorization": f"Bearer {token}", "X-Wedof-Signature": SIGNATURE,
                 "Cookie": f"session={SESSION_COOKIE}"})


def test_without_a_dsn_sentry_is_never_started(app_env, ingest, sqlite_db_url):
    app_env(database_url=sqlite_db_url, sentry_dsn="")
    from webapp.app import create_app

    app = create_app()
    add_failing_route(app)
    response = send_failing_request(app.test_client().post, "/_test/fail")

    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert not sentry_sdk.get_client().is_active()  # sentry_sdk.init was never called
    sentry_sdk.flush(timeout=2)
    assert ingest.envelopes == []


def test_a_flask_error_reaches_sentry_without_personal_data(app_env, ingest, sqlite_db_url, caplog):
    caplog.set_level(logging.INFO, logger="webapp")  # the route's INFO line becomes a breadcrumb
    app_env(database_url=sqlite_db_url, sentry_dsn=ingest.dsn, sentry_environment="ops-test")
    from webapp.app import create_app

    app = create_app()
    add_failing_route(app)
    client = sentry_sdk.get_client()
    assert client.is_active() and not client.should_send_default_pii()
    assert {"flask", "celery"} <= set(client.integrations)

    response = send_failing_request(app.test_client().post, "/_test/fail")
    assert response.status_code == 500
    sentry_sdk.flush(timeout=10)

    event = ingest.wait_for_event(lambda e: "ValueError" in exception_types(e))
    assert event["environment"] == "ops-test"
    assert event["tags"]["component"] == "webapp"
    assert event["request"]["url"].endswith("/_test/fail")
    assert "page=2" in event["request"]["query_string"]  # kept: only the token is removed
    headers = event["request"]["headers"]
    assert headers["Authorization"] == FILTERED and headers["X-Wedof-Signature"] == FILTERED
    assert "Cookie" not in headers and "cookies" not in event["request"]
    assert event["request"]["data"]["firstName"] == FILTERED  # the body is there, scrubbed
    assert event["extra"]["attendee"]["email"] == FILTERED
    assert any("mapping the attendee" in crumb.get("message", "") for crumb in event["breadcrumbs"]["values"])
    assert "user" not in event
    assert ingest.leaks() == []


def _admin_token(secret: str) -> str:
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token

    issuer = Flask("token-issuer")
    issuer.config["JWT_SECRET_KEY"] = secret
    JWTManager(issuer)
    with issuer.app_context():
        return create_access_token(identity="7", additional_claims={"role": "super_admin", "tenant_id": None},
                                   expires_delta=timedelta(hours=1))


def test_the_real_receiver_reports_an_unexpected_error_without_personal_data(ingest, redis_server, tmp_path,
                                                                            output_dir):
    # An empty database file (no tables): the admin API's user check fails with an unexpected error.
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    env = build_stack_env(f"sqlite:///{empty}", redis_server.url, tmp_path / "var", SENTRY_DSN=ingest.dsn,
                          SENTRY_ENVIRONMENT="receiver-test")
    token = _admin_token(env["JWT_SECRET_KEY"])
    with Receiver(env, log_dir=output_dir / "logs").start() as receiver:
        response = send_failing_request(
            lambda url, **kw: requests.post(receiver.url + url, timeout=10, **kw),
            "/api/integrations/wedof/stagiaires/1/progression", token=token)
        assert response.status_code == 500, receiver.log_tail()
        assert response.json()["error"] == "internal_error"

        event = ingest.wait_for_event(lambda e: e.get("tags", {}).get("component") == "webapp")

    assert "OperationalError" in exception_types(event)
    assert event["environment"] == "receiver-test"
    assert event["request"]["url"].endswith("/api/integrations/wedof/stagiaires/1/progression")
    assert event["request"]["data"]["lastName"] == FILTERED
    assert token.split(".")[2] not in json.dumps(event)
    assert ingest.leaks() == []


# --- a real Celery worker -----------------------------------------------------------------------

@pytest.fixture
def worker_env(redis_server, sqlite_template, tmp_path):
    def make(**overrides):
        return build_stack_env(fresh_sqlite_url(sqlite_template, tmp_path), redis_server.url, tmp_path / "var",
                               **overrides)
    return make


def start_worker(env, output_dir) -> CeleryWorker:
    return CeleryWorker(env, queues="events", log_dir=output_dir / "logs",
                        extra_args=["--include", "tests.ops.error_tracking_tasks"]).start()


def error_tracking_state(env) -> dict:
    app = control_app(env["REDIS_URL"])
    try:
        return app.send_task("tests.ops.error_tracking_state", queue="events").get(timeout=60)
    finally:
        app.close()


def send_failing_task(env) -> None:
    app = control_app(env["REDIS_URL"])
    try:
        app.send_task("tests.ops.fail_with_personal_data", kwargs={"attendee": TRAINEE}, queue="events")
    finally:
        app.close()


def test_a_task_error_in_a_real_worker_reaches_sentry_without_personal_data(ingest, worker_env, output_dir):
    env = worker_env(SENTRY_DSN=ingest.dsn, SENTRY_ENVIRONMENT="worker-test")
    worker = start_worker(env, output_dir)
    try:
        # Started in the worker's main process, on in the prefork child that runs the tasks.
        assert error_tracking_state(env) == {"active": True, "dsn": ingest.dsn, "component": "worker"}
        send_failing_task(env)
        event = ingest.wait_for_event(lambda e: "ValueError" in exception_types(e))
    finally:
        worker.stop()

    assert event["tags"]["component"] == "worker"
    assert event["environment"] == "worker-test"
    assert event["exception"]["values"][-1]["mechanism"]["type"] == "celery"
    assert event["extra"]["celery-job"]["task_name"] == "tests.ops.fail_with_personal_data"
    assert "'firstName': '[Filtered]'" in event["exception"]["values"][-1]["value"]
    assert any("mapping the attendee" in crumb.get("message", "") for crumb in event["breadcrumbs"]["values"])
    assert ingest.leaks() == []


def test_without_a_dsn_a_real_worker_sends_nothing(ingest, worker_env, output_dir):
    env = worker_env(SENTRY_DSN="")
    worker = start_worker(env, output_dir)
    try:
        assert error_tracking_state(env) == {"active": False, "dsn": None, "component": None}
        send_failing_task(env)
        deadline = time.monotonic() + 60
        while "raised unexpected: ValueError" not in worker.process.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.2)
    finally:
        worker.stop()  # a graceful stop: anything queued for Sentry would be flushed now
    assert ingest.envelopes == []


# --- bad settings -----------------------------------------------------------------------------

def _settings(**values: str):
    env = {"APP_ENV": "test", "JWT_SECRET_KEY": os.environ["JWT_SECRET_KEY"],
           "SECRET_ENCRYPTION_KEY": os.environ["SECRET_ENCRYPTION_KEY"], "DATABASE_URL": "sqlite:///:memory:"}
    return load_settings({**env, **{k.upper(): v for k, v in values.items()}})


@pytest.mark.parametrize("dsn", [
    "ftp://public@127.0.0.1/1",
    "https://",
    "127.0.0.1:9000/1",
    "http://127.0.0.1:9000/1",  # no public key
    "http://public@127.0.0.1:9000",  # no project
    "http://public@127.0.0.1:9000/project",
    "http://public@127.0.0.1:99999/1",
    "http://public@127.0.0.1:port/1",
    "http://public@127.0.0.1:9000/1\r\nX-Injected: yes",
    "http://public@bad host/1",
    "http://pub<lic>@127.0.0.1/1",
    "http://public@-dash.example/1",
    "http://public@127..0.0.1/1",
])
def test_a_malformed_dsn_is_refused_with_a_clear_message(dsn):
    with pytest.raises(SettingsError, match="SENTRY_DSN") as refused:
        init_error_tracking("webapp", _settings(sentry_dsn=dsn))
    assert "Traceback" not in str(refused.value)
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.parametrize(("name", "value"), [
    ("sentry_environment", "prod/eu"),
    ("sentry_environment", "a b"),
    ("sentry_environment", "None"),
    ("sentry_environment", "x" * 65),
    ("sentry_traces_sample_rate", "-0.05"),
    ("sentry_traces_sample_rate", "1.5"),
    ("sentry_traces_sample_rate", "nan"),
    ("sentry_traces_sample_rate", "half"),
])
def test_other_malformed_sentry_settings_are_refused(name, value):
    with pytest.raises(SettingsError, match=name.upper()):
        init_error_tracking("webapp", _settings(sentry_dsn="http://public@127.0.0.1:9/1", **{name: value}))
    assert not sentry_sdk.get_client().is_active()


def test_sentry_settings_are_not_checked_when_sentry_is_off():
    assert init_error_tracking("webapp", _settings(sentry_environment="prod/eu")) is False
    assert not sentry_sdk.get_client().is_active()


def test_good_sentry_settings_pass():
    check_settings(_settings(sentry_dsn="https://0123abcd@o1.ingest.sentry.io/42", sentry_environment="production",
                             sentry_traces_sample_rate="0.2"))
    check_settings(_settings(sentry_dsn="http://public@[::1]:9000/prefix/7"))


def test_a_malformed_dsn_stops_the_receiver_worker_and_beat_at_start(redis_server, worker_env, tmp_path, output_dir):
    env = worker_env(SENTRY_DSN="http://127.0.0.1:9/1")  # no public key
    receiver = Receiver(env, log_dir=output_dir / "logs")
    try:
        receiver.start(timeout=60)  # gunicorn's master may listen a moment before its worker fails
    except RuntimeError:
        pass
    try:
        assert receiver.process.process.wait(timeout=60) != 0
    finally:
        receiver.stop()
    assert "SENTRY_DSN is not a Sentry DSN (Missing public key)" in receiver.log_tail(200)
    assert "Worker failed to boot" in receiver.log_tail(200)

    worker = CeleryWorker(env, queues="events", log_dir=output_dir / "logs")
    with pytest.raises(RuntimeError, match="exited"):
        worker.start(timeout=60)
    worker.stop()
    assert "Invalid setting: SENTRY_DSN is not a Sentry DSN (Missing public key)" in worker.log_tail(200)

    beat = CeleryBeat(env, log_dir=output_dir / "logs")
    try:
        beat.start(timeout=60)  # beat says "Starting..." just before it reads the settings of Sentry
    except RuntimeError:
        pass
    try:
        assert beat.process.process.wait(timeout=60) != 0
    finally:
        beat.stop()
    assert "Invalid setting: SENTRY_DSN is not a Sentry DSN (Missing public key)" in beat.log_tail(200)


# --- the scrubber, piece by piece ------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("a firstName=Camille, lastName: Sandboxier; email=x", "a firstName=[Filtered], lastName: [Filtered]; email=[Filtered]"),
    ('json={"firstName":"Camille","n":1}', 'json={"firstName":"[Filtered]","n":1}'),
    ("{'dateOfBirth': '1990-04-12', 'nameCityOfBirth': 'Montpellier'}",
     "{'dateOfBirth': '[Filtered]', 'nameCityOfBirth': '[Filtered]'}"),
    ("write to camille.sandboxier@example.test", "write to [email]"),
    ("call +33 6 12 34 56 78, 06.12.34.56.78 or 0612345678", "call [phone], [phone] or [phone]"),
    ("born 12/04/1990 (1990-04-12)", "born [date] ([date])"),
    ("X-Api-Key: k-123 and Authorization: Bearer abc.def.ghijkl", "X-Api-Key: [Filtered] and Authorization: [Filtered] [Filtered]"),
    ("postgresql://bdc:hunter2@127.0.0.1/bdc", "postgresql://[Filtered]@127.0.0.1/bdc"),
    ("/api?token=abc.def&page=2", "/api?token=[Filtered]&page=2"),
    # What is not personal stays readable.
    ("folder 12345678901234_abc in state inTraining, release bdc-wedof-sync@0.1.0",
     "folder 12345678901234_abc in state inTraining, release bdc-wedof-sync@0.1.0"),
    ("http://127.0.0.1:8000/api/webhooks/wedof/3", "http://127.0.0.1:8000/api/webhooks/wedof/3"),
])
def test_scrub_text(text, expected):
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected  # scrubbing twice changes nothing


def test_scrub_replaces_sensitive_keys_at_any_depth_in_any_spelling():
    scrubbed = scrub({"folder": {"attendee": {"first_name": "Camille", "Last-Name": "Sandboxier",
                                              "phoneFixed": "0466123456", "codeCityOfBirth": "34172",
                                              "degree": 5, "gender": None}},
                      "items": [{"webhook_secret": "s"}, ("x", "camille.sandboxier@example.test")],
                      "state": "inTraining"})
    assert scrubbed == {"folder": {"attendee": {"first_name": FILTERED, "Last-Name": FILTERED, "phoneFixed": FILTERED,
                                                "codeCityOfBirth": FILTERED, "degree": 5, "gender": None}},
                        "items": [{"webhook_secret": FILTERED}, ["x", "[email]"]], "state": "inTraining"}


def test_scrub_event_drops_the_user_cookies_and_client_address_and_keeps_timestamps():
    event = scrub_event({
        "timestamp": "2026-01-05T10:00:00Z", "release": "bdc-wedof-sync@0.1.0",
        "user": {"ip_address": "192.0.2.7", "email": "camille.sandboxier@example.test"},
        "request": {"cookies": {"session": SESSION_COOKIE}, "env": {"REMOTE_ADDR": "192.0.2.7"},
                    "headers": {"X-Api-Key": API_KEY, "Content-Type": "application/json"},
                    "data": json.dumps(TRAINEE)},
        "breadcrumbs": {"values": [{"timestamp": "2026-01-05T09:59:59Z", "message": "email=x@example.test"}]},
    })
    assert event == {
        "timestamp": "2026-01-05T10:00:00Z", "release": "bdc-wedof-sync@0.1.0",
        "request": {"headers": {"X-Api-Key": FILTERED, "Content-Type": "application/json"},
                    "data": json.dumps({key: FILTERED if key != "address" else FILTERED for key in TRAINEE},
                                       ensure_ascii=False)},
        "breadcrumbs": {"values": [{"timestamp": "2026-01-05T09:59:59Z", "message": "email=[Filtered]"}]},
    }
    assert scrub_breadcrumb({"category": "httplib", "data": {"url": "http://x/a?email=c@d.fr"}}) == {
        "category": "httplib", "data": {"url": "http://x/a?email=[Filtered]"}}


def test_the_list_of_never_sent_values_really_appears_in_what_the_tests_send():
    # The leak check is only as good as its list: every value must be in the data the tests send.
    sent = json.dumps(TRAINEE) + API_KEY + SIGNATURE + SESSION_COOKIE
    missing = [value for value in NEVER_SENT if value not in sent and value not in re.sub(r"\D", "", sent)]
    assert missing == []
