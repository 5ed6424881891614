"""The operations view of the admin API: ``GET /operations`` (reports, API drift, deliveries and failures
per hour, sync durations) scoped to the caller's tenant, and ``POST /reconcile`` (really published on
Redis). Deliveries per hour are grouped in SQL: checked on SQLite and PostgreSQL. Hostile parameters and
bodies get a clear 400/422 and publish nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete

from bdc.db import session_scope
from bdc.models import (
    ApiDrift,
    EventStatus,
    ReconciliationReport,
    ReportStatus,
    WebhookEvent,
    WedofConnection,
)
from tests.webapp.conftest import queued_messages


def _hour(at: datetime) -> str:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0).isoformat()


def seed_operations(w) -> dict:
    """Reports, API drift and deliveries for tenant a (and a little for b, which a must never see)."""
    now = datetime.now(UTC)
    at = {"recent": now - timedelta(hours=30, minutes=10), "old": now - timedelta(hours=60)}
    with session_scope(w.database_url) as session:
        a, b = w.connections["a"], w.connections["b"]
        reports = [
            ReconciliationReport(connection_id=a, created_at=now - timedelta(hours=3), status=ReportStatus.OK,
                                 wedof_states={"inTraining": 1}, local_states={"inTraining": 1}, drift=0),
            ReconciliationReport(connection_id=a, created_at=now - timedelta(hours=2), status=ReportStatus.DRIFT,
                                 wedof_states={"inTraining": 2}, local_states={"inTraining": 1},
                                 wedof_billing={"notBillable": 2}, local_billing={"notBillable": 1}, drift=2,
                                 details={"streak": 1, "total": {"wedof": 2, "local": 1}}),
            ReconciliationReport(connection_id=a, created_at=now - timedelta(hours=1), status=ReportStatus.FAILED,
                                 error="Wedof sent no X-Total-Count header"),
            ReconciliationReport(connection_id=b, created_at=now, status=ReportStatus.DRIFT, drift=99),
        ]
        drifts = [ApiDrift(connection_id=a, observed_at=now - timedelta(days=2), unknown_keys=["old"], samples=9),
                  ApiDrift(connection_id=a, observed_at=now - timedelta(hours=5), unknown_keys=["attendee.pronouns"],
                           missing_keys=["attendee.phoneNumber"], samples=120),
                  ApiDrift(connection_id=b, unknown_keys=["tenant-b-only"], samples=1)]
        events = []
        for n, status in enumerate((EventStatus.FAILED, EventStatus.FAILED, EventStatus.PROCESSED)):
            events.append(WebhookEvent(connection_id=a, delivery_id=f"ops-recent-{n}", event_type="registrationFolder.updated",
                                       status=status, received_at=at["recent"] + timedelta(minutes=n)))
        events.append(WebhookEvent(connection_id=a, delivery_id="ops-old", event_type="registrationFolder.updated",
                                   status=EventStatus.FAILED, received_at=at["old"]))
        events.append(WebhookEvent(connection_id=b, delivery_id="ops-b", event_type="registrationFolder.updated",
                                   status=EventStatus.FAILED, received_at=at["recent"]))
        session.add_all([*reports, *drifts, *events])
        session.flush()
        return {"reports": [r.id for r in reports], "at": at, "now": now}


def test_operations_shows_the_tenants_reports_drift_deliveries_and_syncs(admin_world_any_db):
    w = admin_world_any_db
    seeded = seed_operations(w)
    response = w.call("GET", "/operations", who="admin_a")
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert data["connection_id"] == w.connections["a"] and data["tenant"]["id"] == w.tenants["a"]

    last = data["reconciliation"]["last"]
    assert (last["id"], last["status"], last["error"]) == (seeded["reports"][2], "failed",
                                                           "Wedof sent no X-Total-Count header")
    assert [(r["status"], r["drift"]) for r in data["reconciliation"]["series"]] == [("ok", 0), ("drift", 2),
                                                                                     ("failed", 0)]
    current = data["api_drift"]["current"]
    assert (current["unknown_keys"], current["missing_keys"], current["samples"]) == (
        ["attendee.pronouns"], ["attendee.phoneNumber"], 120)
    assert [h["unknown_keys"] for h in data["api_drift"]["history"]] == [["attendee.pronouns"], ["old"]]

    # Every hour of the window is there, oldest first; the seeded hour holds 3 deliveries, 2 failed.
    series = data["deliveries"]["series"]
    assert data["deliveries"]["hours"] == 48 and len(series) == 48
    assert series[-1]["hour"] == _hour(datetime.now(UTC)) or series[-1]["hour"] == _hour(seeded["now"])
    by_hour = {point["hour"]: point for point in series}
    recent = by_hour[_hour(seeded["at"]["recent"])]
    assert (recent["deliveries"], recent["failures"]) == (3, 2)
    # The admin world's own five deliveries (2 h ago, one failed); the 60-hour-old one is outside the window.
    assert sum(p["deliveries"] for p in series) == 3 + 5 and sum(p["failures"] for p in series) == 2 + 1

    [run] = data["sync_runs"]
    assert run["id"] == w.ids["a"]["run"] and run["duration_seconds"] == pytest.approx(60, abs=1)
    assert "tenant-b-only" not in response.get_data(as_text=True)

    wider = w.call("GET", "/operations?hours=72&reports=2&runs=1&drift_changes=1", who="admin_a").get_json()
    assert len(wider["deliveries"]["series"]) == 72
    assert sum(p["failures"] for p in wider["deliveries"]["series"]) == 2 + 1 + 1
    assert [r["status"] for r in wider["reconciliation"]["series"]] == ["drift", "failed"]
    assert len(wider["api_drift"]["history"]) == 1


def test_each_tenant_sees_its_own_and_other_tenants_are_not_found(admin_world):
    w = admin_world
    seed_operations(w)
    b = w.call("GET", "/operations", who="admin_b").get_json()
    assert b["reconciliation"]["last"]["drift"] == 99 and b["api_drift"]["current"]["unknown_keys"] == ["tenant-b-only"]
    assert w.call("GET", f"/operations?tenant_id={w.tenants['b']}", who="admin_a").status_code == 404
    assert w.call("GET", "/operations", who="super").get_json()["error"] == "tenant_required"
    as_super = w.call("GET", f"/operations?tenant_id={w.tenants['b']}", who="super").get_json()
    assert as_super["connection_id"] == w.connections["b"]
    assert w.call("GET", "/operations", who="trainer_a").status_code == 403
    assert w.call("GET", "/operations", who=None).status_code == 401
    assert w.call("GET", "/operations", who="forged").status_code == 401


def test_a_tenant_without_connection_gets_an_empty_view(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        session.execute(delete(WedofConnection).where(WedofConnection.id == w.connections["a"]))
    data = w.call("GET", "/operations", who="admin_a").get_json()
    assert data["connection_id"] is None and data["reconciliation"] == {"last": None, "series": []}
    assert data["api_drift"] == {"current": None, "history": []} and data["deliveries"]["series"] == []
    assert w.call("POST", "/reconcile", who="admin_a").status_code == 404


@pytest.mark.parametrize("query", ["hours=0", "hours=-1", "hours=abc", "hours=169", "hours=1e2", "hours=٣",
                                   "hours=" + "9" * 20, "hours=%204", "hours=4.5", "reports=0", "reports=501",
                                   "runs=101", "runs=x", "drift_changes=0", "drift_changes=%00"])
def test_hostile_parameters_are_a_clear_400(admin_world, query):
    response = admin_world.call("GET", f"/operations?{query}", who="admin_a")
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "invalid_parameter" and "must be a whole number" in body["message"]


def test_reconcile_publishes_the_task_by_name(admin_world, redis_client):
    w = admin_world
    response = w.call("POST", "/reconcile", who="admin_a")
    assert response.status_code == 202, response.get_data(as_text=True)
    data = response.get_json()
    assert queued_messages(redis_client, "sync") == [{"task": "bdc.reconcile", "id": data["task_id"],
                                                      "args": [w.connections["a"]]}]
    assert data["connection_id"] == w.connections["a"]
    # A super_admin names the tenant; the empty JSON object is accepted too.
    response = w.call("POST", f"/reconcile?tenant_id={w.tenants['b']}", who="super", json={})
    assert response.status_code == 202
    assert queued_messages(redis_client, "sync")[-1]["args"] == [w.connections["b"]]


@pytest.mark.parametrize("body,status", [("not json", 400), ("[1]", 400), ('"now"', 400), ('{"connection_id": 2}', 422),
                                         ('{"full": true}', 422)])
def test_reconcile_rejects_bad_bodies_and_publishes_nothing(admin_world, redis_client, body, status):
    w = admin_world
    response = w.client.post("/api/integrations/wedof/reconcile", data=body,
                             headers={**w.headers("admin_a"), "Content-Type": "application/json"})
    assert response.status_code == status and set(response.get_json()) >= {"error", "message"}
    assert queued_messages(redis_client, "sync") == []


def test_reconcile_needs_a_usable_connection_and_a_broker(admin_world, app_env, fresh_task_sender, redis_client):
    from tests.support.processes import free_port

    w = admin_world
    with session_scope(w.database_url) as session:
        session.get(WedofConnection, w.connections["a"]).enabled = False
    refused = w.call("POST", "/reconcile", who="admin_a")
    assert refused.status_code == 409 and refused.get_json()["error"] == "connection_not_usable"
    with session_scope(w.database_url) as session:
        connection = session.get(WedofConnection, w.connections["a"])
        connection.enabled, connection.api_key = True, None
    assert w.call("POST", "/reconcile", who="admin_a").get_json()["error"] == "connection_not_usable"
    assert w.call("POST", "/reconcile", who="admin_b", json={"x": 1}).status_code == 422
    assert w.call("POST", f"/reconcile?tenant_id={w.tenants['a']}", who="admin_b").status_code == 404
    assert w.call("POST", "/reconcile", who="trainer_a").status_code == 403
    assert queued_messages(redis_client, "sync") == []
    app_env(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fresh_task_sender()
    response = w.call("POST", "/reconcile", who="admin_b")
    assert response.status_code == 503 and response.get_json()["error"] == "broker_unavailable"
