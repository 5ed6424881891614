"""The staff-notices admin API: notification settings (addresses and the chat webhook checked, the webhook
write-only), problems, connectivity checks and "check now", with every kind of caller and hostile input.

The two-tenant admin world of the webapp tests (SQLite, or each backend where it matters), the real
Redis as the broker: "check now" is checked by reading its message from the ``events`` queue.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from bdc.db import session_scope
from bdc.models import AuditLog, ConnectivityCheck, NotificationSettings, ProblemKind, WedofConnection
from bdc.types import utcnow
from tests.support.processes import free_port
from tests.webapp.conftest import build_admin_world, queued_messages
from worker.notices import problems

SETTINGS = "/notifications/settings"
HOOK = "http://127.0.0.1:8765/hooks/T01-B02-very-secret"


@pytest.fixture
def world(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    return build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url)


@pytest.fixture
def world_any_db(app_env, db_url, redis_url, redis_client, fresh_task_sender):
    return build_admin_world(app_env, fresh_task_sender, db_url, redis_url)


def a(w) -> str:
    return f"?tenant_id={w.tenants['a']}"


def error_of(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) >= {"error", "message"}, body
    if field is not None:
        assert field in body.get("fields", {}) and field in body["message"], body
    return body


# -- settings ------------------------------------------------------------------------------------------------

def test_settings_round_trip_with_a_write_only_webhook(world_any_db):
    w = world_any_db
    initial = w.call("GET", SETTINGS, who="admin_a").get_json()
    assert initial == {"configured": False, "email_enabled": True, "recipients": [], "chat_webhook_configured": False,
                       "reminder_after_seconds": None, "reminder_after_default": 86400, "smtp_configured": False,
                       "updated_at": None}
    response = w.call("PUT", SETTINGS, who="admin_a", json={
        "recipients": [" Direction@Organisme-A.FR ", "direction@organisme-a.fr", "compta+bdc@organisme-a.fr"],
        "chat_webhook_url": HOOK, "reminder_after_seconds": 3600, "email_enabled": True})
    assert response.status_code == 200, response.get_data(as_text=True)
    saved = response.get_json()
    assert saved["recipients"] == ["Direction@organisme-a.fr", "compta+bdc@organisme-a.fr"]
    assert saved["chat_webhook_configured"] is True and saved["reminder_after_seconds"] == 3600
    assert saved["changed"] == ["chat_webhook_url", "recipients", "reminder_after_seconds"]
    assert "T01-B02" not in response.get_data(as_text=True)
    again = w.call("GET", SETTINGS, who="admin_a")
    assert again.get_json()["configured"] is True and "T01-B02" not in again.get_data(as_text=True)
    # Tenant B sees its own (empty) settings.
    assert w.call("GET", SETTINGS, who="admin_b").get_json()["configured"] is False

    with session_scope(w.database_url) as session:
        row = session.scalars(select(NotificationSettings).where(NotificationSettings.tenant_id == w.tenants["a"])).one()
        assert row.chat_webhook_url == HOOK  # decrypted by the model
        raw = session.execute(text("SELECT chat_webhook_url FROM notification_settings WHERE id = :id"),
                              {"id": row.id}).scalar()
        assert "T01-B02" not in raw  # encrypted at rest
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "notifications.settings_changed")).all()
    assert len(audit) == 1 and audit[0].actor == f"user:{w.ids['a']['admin']}"
    assert audit[0].details["after"]["chat_webhook_configured"] is True and "T01-B02" not in json.dumps(audit[0].details)

    # Clearing the webhook (null or ""), switching email off; a PUT that changes nothing writes no audit row.
    cleared = w.call("PUT", SETTINGS, who="admin_a", json={"chat_webhook_url": None, "email_enabled": False}).get_json()
    assert cleared["chat_webhook_configured"] is False and cleared["email_enabled"] is False
    assert w.call("PUT", SETTINGS, who="admin_a", json={"chat_webhook_url": ""}).get_json()["changed"] == []
    with session_scope(w.database_url) as session:
        assert len(session.scalars(select(AuditLog).where(AuditLog.action == "notifications.settings_changed")).all()) == 2


def test_smtp_configured_says_whether_email_can_go_out(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    w = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, smtp_host="127.0.0.1")
    assert w.call("GET", SETTINGS, who="admin_a").get_json()["smtp_configured"] is True


HOSTILE = [
    ({"recipients": "direction@organisme-a.fr"}, "recipients"),
    ({"recipients": ["not-an-email"]}, "recipients"),
    ({"recipients": ["a@b"]}, "recipients"),
    ({"recipients": ["x@organisme-a.fr\r\nBcc: victim@example.org"]}, "recipients"),
    ({"recipients": ["<x@organisme-a.fr>"]}, "recipients"),
    ({"recipients": ["x@organisme-a.fr, y@organisme-a.fr"]}, "recipients"),
    ({"recipients": ["Jean Dupont <x@organisme-a.fr>"]}, "recipients"),
    ({"recipients": ["x@-bad-.fr"]}, "recipients"),
    ({"recipients": ["x" * 65 + "@organisme-a.fr"]}, "recipients"),
    ({"recipients": ["x@" + "a" * 250 + ".fr"]}, "recipients"),
    ({"recipients": [12]}, "recipients"),
    ({"recipients": ["\ud800@organisme-a.fr"]}, "recipients"),
    ({"recipients": [None]}, "recipients"),
    ({"recipients": [["x@y.fr"]]}, "recipients"),
    ({"recipients": [f"u{i}@organisme-a.fr" for i in range(21)]}, "recipients"),
    ({"recipients": ["u@organisme-a.fr"] * 1000}, "recipients"),
    ({"recipients": None}, "recipients"),
    ({"chat_webhook_url": "javascript:alert(1)"}, "chat_webhook_url"),
    ({"chat_webhook_url": "JavaScript://hooks.slack.com/%0aalert(1)"}, "chat_webhook_url"),
    ({"chat_webhook_url": "data:text/plain,hello"}, "chat_webhook_url"),
    ({"chat_webhook_url": "ftp://hooks.slack.com/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "http://hooks.slack.com/services/T/B/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://user:pw@hooks.slack.com/services/T/B/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://169.254.169.254/latest/meta-data"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://10.0.0.7/hooks/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://[fd00::1]/hooks/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://0x7f.1/hooks/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://intranet/hooks/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://hooks.localhost/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://hooks.slack.com:99999/x"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://hooks.slack.com/a b"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://hooks.slack.com/\x00"}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://hooks.slack.com/" + "x" * 1000}, "chat_webhook_url"),
    ({"chat_webhook_url": "https://"}, "chat_webhook_url"),
    ({"chat_webhook_url": 42}, "chat_webhook_url"),
    ({"chat_webhook_url": ["https://hooks.slack.com/x"]}, "chat_webhook_url"),
    ({"reminder_after_seconds": 10}, "reminder_after_seconds"),
    ({"reminder_after_seconds": -1}, "reminder_after_seconds"),
    ({"reminder_after_seconds": 10**12}, "reminder_after_seconds"),
    ({"reminder_after_seconds": "3600"}, "reminder_after_seconds"),
    ({"reminder_after_seconds": 3600.5}, "reminder_after_seconds"),
    ({"reminder_after_seconds": True}, "reminder_after_seconds"),
    ({"email_enabled": "yes"}, "email_enabled"),
    ({"email_enabled": 1}, "email_enabled"),
    ({"email_enabled": None}, "email_enabled"),
    ({"smtp_host": "evil.example.org"}, "smtp_host"),
]


@pytest.mark.parametrize("body,field", HOSTILE, ids=[f"{f}-{i}" for i, (_b, f) in enumerate(HOSTILE)])
def test_hostile_settings_are_refused_naming_the_field_and_change_nothing(world, body, field):
    before = world.call("GET", SETTINGS, who="admin_a").get_json()
    error_of(world.call("PUT", SETTINGS, who="admin_a", json=body), 422, field)
    assert world.call("GET", SETTINGS, who="admin_a").get_json() == before
    with session_scope(world.database_url) as session:
        assert session.scalars(select(AuditLog).where(AuditLog.action == "notifications.settings_changed")).all() == []


@pytest.mark.parametrize("raw", [b"", b"not json", b"[]", b'"text"', b"null", b"{", b"\xff\xfe{}"])
def test_unreadable_bodies_are_400(world, raw):
    response = world.client.put("/api/integrations/wedof" + SETTINGS, data=raw, headers={
        **world.headers("admin_a"), "Content-Type": "application/json"})
    error_of(response, 400)


def test_a_huge_body_is_refused_before_it_is_read(world):
    error_of(world.call("PUT", SETTINGS, who="admin_a", json={"recipients": ["u@organisme-a.fr"] * 100_000}), 413)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765/hook", "https://127.0.0.1/hook", "https://localhost/x"])
def test_loopback_webhooks_are_refused_in_production(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender, url):
    w = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, APP_ENV="production")
    error_of(w.call("PUT", SETTINGS, who="admin_a", json={"chat_webhook_url": url}), 422, "chat_webhook_url")
    ok = w.call("PUT", SETTINGS, who="admin_a", json={"chat_webhook_url": "https://hooks.slack.com/services/T/B/x"})
    assert ok.status_code == 200 and ok.get_json()["chat_webhook_configured"] is True


# -- problems ----------------------------------------------------------------------------------------------

def test_problems_are_listed_per_tenant_with_filters_and_pages(world_any_db):
    w = world_any_db
    now = utcnow()
    with session_scope(w.database_url) as session:
        for key in ("1", "2", "3"):
            problems.observe(session, w.tenants["a"], ProblemKind.EVENTS_FAILED, key, f"{key} événements",
                             {"count": int(key)}, now)
        problems.observe(session, w.tenants["b"], ProblemKind.KEY_REVOKED, "9", "clé", {}, now)
        problems.resolve_absent(session, w.tenants["a"], [(ProblemKind.EVENTS_FAILED, "1"),
                                                          (ProblemKind.EVENTS_FAILED, "2")], now)
    listed = w.call("GET", "/problems", who="admin_a").get_json()
    assert listed["total"] == 3 and {p["tenant_id"] for p in listed["items"]} == {w.tenants["a"]}
    item = next(p for p in listed["items"] if p["key"] == "3")
    assert item["status"] == "resolved" and item["details"] == {"count": 3} and item["summary"] == "3 événements"
    assert set(item) >= {"opened_at", "notified_at", "reminders", "resolved_at", "last_error", "occurrences"}
    assert "delivery" not in json.dumps(listed)
    assert w.call("GET", "/problems?status=open", who="admin_a").get_json()["total"] == 2
    assert w.call("GET", "/problems?kind=key_revoked", who="admin_a").get_json()["total"] == 0
    page = w.call("GET", "/problems?per_page=2&page=2", who="admin_a").get_json()
    assert page["pages"] == 2 and len(page["items"]) == 1
    assert w.call("GET", "/problems" + a(w), who="super").get_json()["total"] == 3
    for bad in ("?status=closed", "?kind=nope", "?per_page=1000", "?page=0", "?status=%00"):
        error_of(w.call("GET", "/problems" + bad, who="admin_a"), 400)


# -- connectivity ----------------------------------------------------------------------------------------

def test_connectivity_checks_are_listed_newest_first(world):
    now = utcnow()
    with session_scope(world.database_url) as session:
        for minutes, status in ((30, 200), (20, 401), (10, None)):
            session.add(ConnectivityCheck(connection_id=world.connections["a"], checked_at=now - timedelta(minutes=minutes),
                                          ok=status == 200,
                                          status_code=status, latency_ms=12.5, error=None if status == 200 else "e"))
        session.add(ConnectivityCheck(connection_id=world.connections["b"], checked_at=now, ok=True, status_code=200))
    listed = world.call("GET", "/connectivity", who="admin_a").get_json()
    assert [c["status_code"] for c in listed["items"]] == [None, 401, 200] and listed["total"] == 3
    assert set(listed["items"][0]) == {"id", "connection_id", "checked_at", "ok", "status_code", "latency_ms", "error"}


def test_check_now_sends_the_task_by_name(world, redis_client):
    response = world.call("POST", "/connectivity/check", who="admin_a")
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    (message,) = [m for m in queued_messages(redis_client, "events") if m["task"] == "bdc.check_connectivity"]
    assert message["args"] == [world.connections["a"]] and message["id"] == body["task_id"]
    with session_scope(world.database_url) as session:
        assert session.scalars(select(AuditLog).where(AuditLog.action == "connectivity.check_requested")).one()
    error_of(world.call("POST", "/connectivity/check", who="admin_a", json={"connection_id": 5}), 422)
    with session_scope(world.database_url) as session:
        session.get(WedofConnection, world.connections["a"]).enabled = False
    assert error_of(world.call("POST", "/connectivity/check", who="admin_a"), 409)["error"] == "connection_not_usable"


def test_check_now_without_a_broker_is_503(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    w = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, f"redis://127.0.0.1:{free_port()}/0")
    error_of(w.call("POST", "/connectivity/check", who="admin_a"), 503)


# -- who may call ------------------------------------------------------------------------------------------

ENDPOINTS = [("GET", SETTINGS, None, 200), ("PUT", SETTINGS, {"email_enabled": False}, 200),
             ("GET", "/problems", None, 200), ("GET", "/connectivity", None, 200),
             ("POST", "/connectivity/check", None, 202)]


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_every_endpoint_with_every_caller(world, method, path, body, ok):
    for who, status in {"trainer_a": 403, None: 401, "expired": 401, "forged": 401, "garbage": 401}.items():
        error_of(world.call(method, path, who=who, json=body), status)
    error_of(world.call(method, path + a(world), who="admin_b", json=body), 404)  # another tenant: not found
    error_of(world.call(method, path, who="super", json=body), 400)  # two tenants: choose one
    for who, suffix in (("admin_a", ""), ("admin_b", ""), ("super", a(world)), ("bdc_only_admin_a", "")):
        response = world.call(method, path + suffix, who=who, json=body)
        assert response.status_code == ok, (who, response.get_data(as_text=True))
