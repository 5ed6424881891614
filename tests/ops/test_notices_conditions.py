"""What counts as wrong now (worker.notices.conditions) from real rows on SQLite and PostgreSQL, and the
French words every kind of problem is told in (worker.notices.messages)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bdc.db import session_scope
from bdc.models import (
    ApiDrift,
    ConnectivityCheck,
    EventStatus,
    Notice,
    NoticeKind,
    Problem,
    ProblemKind,
    ProblemStatus,
    ReconciliationReport,
    ReportStatus,
    SyncRun,
    SyncStatus,
    WebhookEvent,
    WedofConnection,
)
from bdc.settings import get_settings
from bdc.types import utcnow
from tests.ops.notices_helpers import make_tenant
from worker.notices import conditions, messages
from worker.notices.conditions import reason_class

HOUR = timedelta(hours=1)


@pytest.fixture
def env(app_env, db_url, redis_url):
    def configure(**values):
        return app_env(database_url=db_url, redis_url=redis_url, wedof_sync_interval="3600", **values)
    return configure


def found(tenant_id: int, now=None) -> dict:
    with session_scope() as session:
        conds = conditions.current(session, now or utcnow(), get_settings()).get(tenant_id, [])
    return {(c.kind, c.key): c.details for c in conds}


def add(*rows) -> None:
    with session_scope() as session:
        session.add_all(rows)


def test_sync_stale_failed_and_revoked(env):
    env(wedof_sync_enabled="true")
    now = utcnow()
    tenant_id, cid = make_tenant()
    key = str(cid)
    with session_scope() as session:
        session.get(WedofConnection, cid).created_at = now - 3 * HOUR
    stale = found(tenant_id, now)
    assert set(stale) == {(ProblemKind.SYNC_STALE, key)} and stale[(ProblemKind.SYNC_STALE, key)]["last_success_at"] is None

    # A sync failed with a 503: "sync failed", with the reason's class only.
    add(SyncRun(connection_id=cid, status=SyncStatus.FAILED, started_at=now - HOUR, finished_at=now - HOUR,
                error="Wedof unavailable: HTTP 503: Service Unavailable (GET /registrationFolders)"))
    assert found(tenant_id, now)[(ProblemKind.SYNC_FAILED, key)]["reason"] == "Wedof unavailable: HTTP 503"
    # A later one failed with 401: the key, not the sync, is the problem.
    add(SyncRun(connection_id=cid, status=SyncStatus.FAILED, started_at=now - HOUR / 2, finished_at=now - HOUR / 2,
                error="Wedof refused: HTTP 401: Invalid API key (GET /registrationFolders)"))
    seen = found(tenant_id, now)
    assert (ProblemKind.SYNC_FAILED, key) not in seen and seen[(ProblemKind.KEY_REVOKED, key)]["source"] == "sync"
    # A newer connectivity check answers 200 (the key was fixed): no longer revoked.
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR / 4, ok=True, status_code=200, latency_ms=12))
    assert (ProblemKind.KEY_REVOKED, key) not in found(tenant_id, now)
    # A successful sync: neither stale nor failed.
    add(SyncRun(connection_id=cid, status=SyncStatus.SUCCEEDED, started_at=now - HOUR / 8, finished_at=now - HOUR / 8))
    with session_scope() as session:
        session.get(WedofConnection, cid).last_sync_at = now - HOUR / 8
    assert found(tenant_id, now) == {}
    # Still stale-free at 1 h 59 after it, stale at 2 h 01 (two sync intervals).
    assert found(tenant_id, now - HOUR / 8 + 2 * HOUR - timedelta(minutes=1)) == {}
    assert set(found(tenant_id, now - HOUR / 8 + 2 * HOUR + timedelta(minutes=1))) == {(ProblemKind.SYNC_STALE, key)}


@pytest.mark.parametrize("enabled,api_key", [(False, "key"), (True, None)])
def test_a_disabled_or_keyless_connection_is_not_watched(env, enabled, api_key):
    env(wedof_sync_enabled="true")
    now = utcnow()
    tenant_id, cid = make_tenant(enabled=enabled, api_key=api_key)
    with session_scope() as session:
        session.get(WedofConnection, cid).created_at = now - 30 * HOUR
    add(ConnectivityCheck(connection_id=cid, checked_at=now, ok=False, status_code=401))
    assert found(tenant_id, now) == {}


def test_checks_revoked_and_unreachable(env):
    env(wedof_sync_enabled="false")
    now = utcnow()
    tenant_id, cid = make_tenant()
    key = str(cid)
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR, ok=False, status_code=None, error="x"))
    assert found(tenant_id, now) == {}  # one check without an answer is a blip
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR / 2, ok=False, status_code=None,
                          error="WedofNetworkError: connection refused (GET /users/me)"))
    unreachable = found(tenant_id, now)[(ProblemKind.WEDOF_UNREACHABLE, key)]
    assert unreachable["checks"] == 2 and unreachable["last_error"] == "WedofNetworkError"
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR / 4, ok=False, status_code=401, error="401"))
    assert set(found(tenant_id, now)) == {(ProblemKind.KEY_REVOKED, key)}
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR / 8, ok=False, status_code=503, error="down"))
    add(ConnectivityCheck(connection_id=cid, checked_at=now - HOUR / 9, ok=False, status_code=502, error="down"))
    assert found(tenant_id, now)[(ProblemKind.WEDOF_UNREACHABLE, key)]["last_error"] == "HTTP 502"
    add(ConnectivityCheck(connection_id=cid, checked_at=now, ok=True, status_code=200))
    assert found(tenant_id, now) == {}


def test_failed_and_stuck_events(env):
    env(wedof_sync_enabled="false")
    now = utcnow()
    tenant_id, cid = make_tenant()
    key = str(cid)

    def event(status, received_ago, **more):
        return WebhookEvent(connection_id=cid, delivery_id=f"d-{utcnow().timestamp()}-{id(more)}-{status}-{received_ago}",
                            event_type="registrationFolder.updated", status=status, headers={},
                            received_at=now - received_ago, **more)

    add(event(EventStatus.QUEUED, timedelta(minutes=4)), event(EventStatus.PROCESSED, HOUR))
    assert found(tenant_id, now) == {}  # four minutes: not stuck yet
    add(event(EventStatus.PROCESSING, timedelta(minutes=6)),
        event(EventStatus.RECEIVED, timedelta(minutes=30), next_attempt_at=now + HOUR),
        event(EventStatus.FAILED, HOUR, status_reason="unexpected error: KeyError: 'attendee'"),
        event(EventStatus.FAILED, 2 * HOUR, status_reason="gave up after 8 attempts: Wedof unavailable: HTTP 503: x"),
        event(EventStatus.FAILED, 3 * HOUR, status_reason=None))
    seen = found(tenant_id, now)
    stuck = seen[(ProblemKind.INBOX_STUCK, key)]
    assert stuck["count"] == 2 and stuck["parked"] == 1
    failed = seen[(ProblemKind.EVENTS_FAILED, key)]
    assert failed["count"] == 3
    assert sorted(failed["reasons"]) == [["Wedof unavailable: HTTP 503", 1], ["raison inconnue", 1],
                                         ["unexpected error: KeyError", 1]]


def test_unacknowledged_notices_group_into_problems(env):
    env(wedof_sync_enabled="false")
    now = utcnow()
    tenant_id, cid = make_tenant()
    other_tenant, _ = make_tenant("Autre")

    def notice(kind, tenant=tenant_id, acknowledged=False):
        return Notice(tenant_id=tenant, kind=kind, message="m", created_at=now - HOUR,
                      acknowledged_at=now if acknowledged else None)

    add(notice(NoticeKind.ACTION_REFUSED), notice(NoticeKind.ACTION_FAILED), notice(NoticeKind.ACTION_FAILED),
        notice(NoticeKind.LATE_ENTRY, acknowledged=True), notice(NoticeKind.BILLING_FAILED, tenant=other_tenant),
        notice(NoticeKind.KEY_REVOKED), notice(NoticeKind.API_CHANGED), notice(NoticeKind.RECONCILIATION_DRIFT),
        ApiDrift(connection_id=cid, observed_at=now - 2 * HOUR, unknown_keys=["old.key"], missing_keys=[]),
        ApiDrift(connection_id=cid, observed_at=now - HOUR, unknown_keys=[f"attendee.new{i}" for i in range(12)],
                 missing_keys=["trainingActionInfo.title"]),
        ReconciliationReport(connection_id=cid, status=ReportStatus.DRIFT, drift=4))
    seen = found(tenant_id, now)
    assert set(seen) == {(ProblemKind.ACTION_FAILED, ""), (ProblemKind.API_CHANGED, ""),
                         (ProblemKind.RECONCILIATION_DRIFT, "")}
    assert seen[(ProblemKind.ACTION_FAILED, "")]["by_kind"] == {"action_refused": 1, "action_failed": 2}
    api = seen[(ProblemKind.API_CHANGED, "")]
    assert api["unknown_keys"] == [f"attendee.new{i}" for i in range(10)] and api["unknown_total"] == 12
    assert api["missing_keys"] == ["trainingActionInfo.title"]
    assert seen[(ProblemKind.RECONCILIATION_DRIFT, "")]["drift"] == 4
    assert set(found(other_tenant, now)) == {(ProblemKind.BILLING_FAILED, "")}


@pytest.mark.parametrize("text,expected", [
    ("folder refused: folder 4270885603: attendee camille@example.org", "folder refused"),
    ("Wedof refused: HTTP 404: Not Found (GET /registrationFolders/1)", "Wedof refused: HTTP 404"),
    ("gave up after 8 attempts: Wedof unavailable: HTTP 503: busy", "Wedof unavailable: HTTP 503"),
    ("unexpected error: IntegrityError: duplicate key", "unexpected error: IntegrityError"),
    ("unreadable delivery (bad_json): Expecting value", "unreadable delivery (bad_json)"),
    ("Jean Dupont jean.dupont@example.org 0612345678", "… [email] …"),
    ("the raw body was purged; the folder will be refreshed", "the raw body was purged; the folder will be refreshed"),
    ("", "raison inconnue"), (None, "raison inconnue"),
])
def test_reason_classes_drop_the_free_text(text, expected):
    assert reason_class(text) == expected


@pytest.mark.parametrize("kind", list(ProblemKind))
def test_every_kind_has_words_in_french_and_a_link(kind):
    facts = {"count": 3, "connection_id": 1, "reasons": [["folder refused", 3]], "since": "2026-12-01T08:00:00+00:00",
             "interval_seconds": 3600, "reason": "Wedof unavailable: HTTP 503", "run_id": 9, "checks": 2,
             "last_error": "WedofNetworkError", "by_kind": {"action_refused": 1, "action_failed": 2}, "drift": 4,
             "unknown_keys": ["attendee.x"], "unknown_total": 1, "missing_keys": [], "missing_total": 0,
             "oldest_received_at": "2026-12-01T08:00:00+00:00", "seen_at": "2026-12-01T08:00:00+00:00"}
    now = utcnow()
    problem = Problem(id=5, tenant_id=1, kind=kind, key="1", status=ProblemStatus.OPEN, summary=messages.summary(kind, facts),
                      details={"condition": facts}, opened_at=now, resolved_at=now, reminders=0)
    link = "https://bdc.test/integrations/wedof"
    for message in (messages.opening("Organisme", [problem], link, 86400), messages.reminder("Organisme", problem, link, 600),
                    messages.resolution("Organisme", problem, link)):
        assert message.subject.startswith("[BDC Wedof] Organisme : ") and messages.TITLES[kind] in message.subject
        assert link in message.body and link in message.chat and "None" not in message.body
    opening = messages.opening("Organisme", [problem], link, 86400)
    assert f"Que faire : {messages.ADVICE[kind]}" in opening.body
    assert all(line.strip() for line in messages.facts_of(kind, facts))


def test_a_tenant_name_cannot_break_the_subject_header():
    problem = Problem(id=1, tenant_id=1, kind=ProblemKind.KEY_REVOKED, key="1", summary="s", details={},
                      opened_at=utcnow(), reminders=0)
    message = messages.opening("Evil\r\nBcc: victim@example.org", [problem], "https://x.test", 60)
    assert "\n" not in message.subject and "\r" not in message.subject


@pytest.mark.parametrize("seconds,words", [(86400, "24 h"), (172800, "2 jours"), (3600, "1 h"), (5400, "1 h 30"),
                                           (600, "10 min")])
def test_periods_read_naturally(seconds, words):
    assert messages.period(seconds) == words
