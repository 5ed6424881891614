"""What each admin endpoint does: rows written, tasks really published on the real Redis, 409s, 400/422s."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import (
    AuditLog,
    Enrollment,
    EventStatus,
    LifecycleAction,
    SyncRun,
    WebhookEvent,
    WedofConnection,
)
from tests.webapp.conftest import queued_messages


def _audit_actions(database_url: str) -> list[str]:
    with session_scope(database_url) as session:
        return list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


# -- sync ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("requested,kind", [("all", "all"), ("stagiaires", "stagiaires"), ("beneficiaries", "stagiaires"),
                                            ("formations", "formations"), ("programs", "formations")])
def test_sync_creates_a_run_and_publishes_the_task(admin_world, redis_client, requested, kind):
    w = admin_world
    response = w.call("POST", "/sync", who="admin_a", json={"type": requested, "full": True})
    assert response.status_code == 202
    data = response.get_json()
    [message] = queued_messages(redis_client, "sync")
    assert message == {"task": "wedof.sync_connection", "id": data["task_id"],
                       "args": [w.connections["a"], kind, True, data["run_id"], "manual"]}
    with session_scope(w.database_url) as session:
        run = session.get(SyncRun, data["run_id"])
        assert (run.status.value, run.trigger.value, run.kind.value, run.full, run.task_id) == (
            "queued", "manual", kind, True, data["task_id"])
    assert "sync.requested" in _audit_actions(w.database_url)


def test_sync_defaults_to_incremental_all(admin_world, redis_client):
    response = admin_world.call("POST", "/sync", who="admin_a")
    assert response.status_code == 202
    assert queued_messages(redis_client, "sync")[0]["args"][1:3] == ["all", False]


@pytest.mark.parametrize("body,status", [
    ("not json", 400), ("[1, 2]", 400), ('"all"', 400), ('{"type": "everything"}', 422), ('{"type": 3}', 422),
    ('{"full": "yes"}', 422), ('{"full": 1}', 422), ('{"type": "all", "extra": 1}', 422), ('{"type": null}', 422),
])
def test_sync_rejects_bad_input(admin_world, redis_client, body, status):
    w = admin_world
    response = w.client.post("/api/integrations/wedof/sync", data=body, headers={
        **w.headers("admin_a"), "Content-Type": "application/json"})
    assert response.status_code == status, response.get_data(as_text=True)
    assert set(response.get_json()) >= {"error", "message"}
    assert queued_messages(redis_client, "sync") == []


def test_sync_with_broker_down_marks_the_run_failed(admin_world, app_env, fresh_task_sender, redis_client):
    from tests.support.processes import free_port

    w = admin_world
    app_env(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fresh_task_sender()
    response = w.call("POST", "/sync", who="admin_a", json={"type": "all"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == "broker_unavailable"
    with session_scope(w.database_url) as session:
        run = session.get(SyncRun, body["run_id"])
        assert run.status.value == "failed" and "broker" in run.error and run.finished_at is not None
    # The status page still answers, saying the broker is unreachable.
    status = w.call("GET", "/status", who="admin_a").get_json()
    assert status["queues"]["events"] is None and "unreachable" in status["queues"]["error"]


def test_sync_needs_an_api_key(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        session.get(WedofConnection, w.connections["a"]).api_key = None
    response = w.call("POST", "/sync", who="admin_a", json={})
    assert response.status_code == 409


def test_sync_runs_list_and_live_progress(admin_world, redis_client):
    w = admin_world
    run_id = w.call("POST", "/sync", who="admin_a", json={"type": "formations"}).get_json()["run_id"]
    page = w.call("GET", "/sync-runs", who="admin_a").get_json()
    assert page["total"] == 2 and page["items"][0]["id"] == run_id and page["pages"] == 1
    assert [r["id"] for r in w.call("GET", "/sync-runs?status=succeeded", who="admin_a").get_json()["items"]] == [
        w.ids["a"]["run"]]
    live = w.call("GET", f"/sync-runs/{run_id}", who="admin_a").get_json()
    assert live["status"] == "queued" and live["task"]["state"] == "PENDING"
    # The worker reports PROGRESS in the result backend; the API shows it beside the row.
    import json

    meta = {"run_id": run_id, "page": 2, "fetched": 40, "applied": 30, "unchanged": 10, "failed": 0, "total": 90}
    redis_client.set(f"celery-task-meta-{live['task_id']}", json.dumps(
        {"status": "PROGRESS", "result": meta, "traceback": None, "children": [], "task_id": live["task_id"]}))
    live = w.call("GET", f"/sync-runs/{run_id}", who="admin_a").get_json()
    assert live["task"] == {"state": "PROGRESS", "meta": meta}
    finished = w.call("GET", f"/sync-runs/{w.ids['a']['run']}", who="admin_a").get_json()
    assert finished["task"] is None and finished["progress"] == 100
    assert w.call("GET", "/sync-runs/999999", who="admin_a").status_code == 404


# -- status -------------------------------------------------------------------------------------------

def test_status_when_wedof_is_unreachable(admin_world, redis_client):
    data = admin_world.call("GET", "/status", who="admin_a").get_json()
    assert data["configured"] is True and data["connected"] is False
    assert "network" in data["error"]
    assert data["webhook_url"] == f"http://127.0.0.1:8000/api/webhooks/wedof/{admin_world.connections['a']}"
    assert data["events_by_status"]["failed"] == 1 and data["events_by_status"]["queued"] == 2
    assert data["last_sync"]["id"] == admin_world.ids["a"]["run"]
    assert data["queues"] == {"events": 0, "sync": 0, "error": None}


def test_status_live_check_against_the_sandbox(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    from tests.support.sandbox import running_sandbox
    from tests.webapp.conftest import build_admin_world

    with running_sandbox(folders=3, api_key="sandbox-key") as sandbox:
        w = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, wedof_base_url=sandbox.api_url)
        with session_scope(w.database_url) as session:
            session.get(WedofConnection, w.connections["a"]).api_key = "sandbox-key"
        ok = w.call("GET", "/status", who="admin_a").get_json()
        assert ok["connected"] is True and ok["error"] is None
        refused = w.call("GET", "/status", who="admin_b").get_json()  # tenant B's key is not the sandbox's
        assert refused["connected"] is False and "401" in refused["error"]
    # Queue depth is read from the real lists.
    w.call("POST", "/sync", who="admin_a")
    assert w.call("GET", "/status", who="admin_a").get_json()["queues"]["sync"] == 1


def test_status_without_connection(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        session.delete(session.get(WedofConnection, w.connections["a"]))
    data = w.call("GET", "/status", who="admin_a").get_json()
    assert data["configured"] is False and data["connection"] is None
    assert w.call("GET", "/connection", who="admin_a").status_code == 404
    assert w.call("POST", "/sync", who="admin_a").status_code == 404


# -- events -------------------------------------------------------------------------------------------

def test_events_list_filters_and_hides_bodies(admin_world):
    w = admin_world
    page = w.call("GET", "/events?per_page=2", who="admin_a").get_json()
    assert page["total"] == 5 and page["pages"] == 3 and len(page["items"]) == 2
    assert all("body" not in e and "body_preview" not in e and "headers" not in e for e in page["items"])
    failed = w.call("GET", "/events?status=failed", who="admin_a").get_json()["items"]
    assert [e["id"] for e in failed] == [w.ids["a"]["events"]["failed"]]
    assert w.call("GET", "/events?type=registrationFolder.updated", who="admin_a").get_json()["total"] == 5
    assert w.call("GET", "/events?type=nothing.like.this", who="admin_a").get_json()["total"] == 0
    for bad in ("status=weird", "page=0", "page=-1", "per_page=101", "per_page=x", "type=" + "x" * 200):
        response = w.call("GET", f"/events?{bad}", who="admin_a")
        assert response.status_code == 400, bad


def test_event_detail(admin_world):
    w = admin_world
    event_id = w.ids["a"]["events"]["failed"]
    data = w.call("GET", f"/events/{event_id}", who="admin_a").get_json()
    assert data["last_error"] == "HTTP 404 folder not found" and data["attempts"] == 3
    assert data["headers"]["X-Wedof-Signature"] == "[redacted]"
    assert data["headers"]["X-Wedof-Event"] == "registrationFolder.updated"
    assert '"externalId"' in data["body_preview"]
    assert data["flower_url"] == "http://127.0.0.1:5555/task/old-task-a-failed"
    assert w.call("GET", "/events/0", who="admin_a").status_code == 404
    assert w.call("GET", "/events/abc", who="admin_a").status_code == 404


def test_event_detail_truncates_a_long_body(admin_world):
    w = admin_world
    event_id = w.ids["a"]["events"]["processed"]
    with session_scope(w.database_url) as session:
        session.get(WebhookEvent, event_id).body = "x" * 50_000
    data = w.call("GET", f"/events/{event_id}", who="admin_a").get_json()
    assert len(data["body_preview"]) < 2100 and data["body_size"] == 50_000


def test_retry_requeues_with_a_fresh_task_id(admin_world_any_db, redis_client):
    w = admin_world_any_db
    event_id = w.ids["a"]["events"]["failed"]
    response = w.call("POST", f"/events/{event_id}/retry", who="admin_a")
    assert response.status_code == 202
    task_id = response.get_json()["task_id"]
    uuid.UUID(task_id)
    assert queued_messages(redis_client, "events") == [{"task": "wedof.process_event", "id": task_id,
                                                        "args": [event_id]}]
    with session_scope(w.database_url) as session:
        event = session.get(WebhookEvent, event_id)
        assert (event.status, event.task_id, event.status_reason, event.attempts) == (
            EventStatus.QUEUED, task_id, "manual retry", 0)
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "event.retry")).one()
        assert audit.target_id == str(event_id) and audit.actor == f"user:{w.ids['a']['admin']}"
        assert audit.details == {"from_status": "failed", "previous_attempts": 3, "task_id": task_id}
    # Now queued and fresh: a second retry is refused until it is stuck.
    assert w.call("POST", f"/events/{event_id}/retry", who="admin_a").status_code == 409


@pytest.mark.parametrize("label,status", [("processed", 409), ("processing", 409), ("fresh", 409), ("stuck", 202)])
def test_retry_only_from_failed_or_stuck(admin_world, redis_client, label, status):
    w = admin_world
    response = w.call("POST", f"/events/{w.ids['a']['events'][label]}/retry", who="admin_a")
    assert response.status_code == status, response.get_data(as_text=True)
    assert len(queued_messages(redis_client, "events")) == (1 if status == 202 else 0)


def test_retry_with_broker_down_keeps_the_event_queued_for_the_sweeper(admin_world, app_env, fresh_task_sender):
    from tests.support.processes import free_port

    w = admin_world
    app_env(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fresh_task_sender()
    event_id = w.ids["a"]["events"]["failed"]
    response = w.call("POST", f"/events/{event_id}/retry", who="admin_a")
    assert response.status_code == 503
    with session_scope(w.database_url) as session:
        assert session.get(WebhookEvent, event_id).status == EventStatus.QUEUED


def test_retry_failed_requeues_every_failed_event_of_the_tenant(admin_world, redis_client):
    w = admin_world
    extra = []
    with session_scope(w.database_url) as session:
        for n in range(3):
            event = WebhookEvent(connection_id=w.connections["a"], delivery_id=f"more-{n}", event_type="x",
                                 status=EventStatus.FAILED)
            session.add(event)
            session.flush()
            extra.append(event.id)
    data = w.call("POST", "/events/retry-failed", who="admin_a").get_json()
    expected = sorted([w.ids["a"]["events"]["failed"], *extra])
    assert data["retried"] == 4 and sorted(data["event_ids"]) == expected and data["not_published"] == []
    assert sorted(m["args"][0] for m in queued_messages(redis_client, "events")) == expected
    assert _audit_actions(w.database_url).count("event.retry") == 4
    assert w.call("POST", "/events/retry-failed", who="admin_a").get_json()["retried"] == 0
    assert w.call("POST", "/events/retry-failed", who="admin_a", json={"x": 1}).status_code == 422


# -- records ------------------------------------------------------------------------------------------

def test_stagiaires_formations_bilans(admin_world):
    w = admin_world
    [stagiaire] = w.call("GET", "/stagiaires", who="admin_a").get_json()["items"]
    assert stagiaire["email"] == "stagiaire-a@bdc.test" and stagiaire["last_name"] == "Martin-a"
    assert {e["wedof_state"] for e in stagiaire["enrollments"]} == {"inTraining", "accepted"}
    assert w.call("GET", "/stagiaires?status=archived", who="admin_a").get_json()["total"] == 0
    assert w.call("GET", "/stagiaires?q=martin", who="admin_a").get_json()["total"] == 1
    assert w.call("GET", "/stagiaires?q=nobody", who="admin_a").get_json()["total"] == 0
    formations = w.call("GET", "/formations", who="admin_a").get_json()["items"]
    assert sorted(f["name"] for f in formations) == ["Anglais a", "Bilan de compétences a"]
    assert all(f["enrollment_count"] == 1 for f in formations)
    [bilan] = w.call("GET", "/bilans", who="admin_a").get_json()["items"]
    assert (bilan["wedof_state"], bilan["progress"], bilan["email"]) == ("inTraining", 10, "stagiaire-a@bdc.test")
    assert w.call("GET", "/bilans?wedof_state=terminated", who="admin_a").get_json()["total"] == 0
    for bad in ("/stagiaires?status=x", "/formations?status=x", "/bilans?status=x"):
        assert w.call("GET", bad, who="admin_a").status_code == 400


def _actions(database_url) -> list[LifecycleAction]:
    with session_scope(database_url) as session:
        rows = session.scalars(select(LifecycleAction).order_by(LifecycleAction.id)).all()
        session.expunge_all()
        return list(rows)


def test_progression_is_recorded_as_an_approved_action_then_queued(admin_world, redis_client):
    w = admin_world
    a = w.ids["a"]
    response = w.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                      json={"progress": 75, "enrollment_id": a["bilan_enrollment"]})
    assert response.status_code == 202, response.get_data(as_text=True)
    data = response.get_json()
    [message] = queued_messages(redis_client, "events")
    assert (message["task"], message["args"], message["id"]) == ("wedof.carry_out_action", [data["action_id"]],
                                                                 data["task_id"])
    [action] = _actions(w.database_url)
    assert (action.kind.value, action.status.value, action.body) == ("progress", "approved", {"completionRate": 75})
    assert action.evidence == {"by_hand": f"user:{a['admin']}", "previous_rate": 10}
    with session_scope(w.database_url) as session:  # our copy follows Wedof's answer, not the request
        assert session.get(Enrollment, a["bilan_enrollment"]).progress == 10
    assert "lifecycle.proposed" in _audit_actions(w.database_url)
    # A second value supersedes the first, which was not sent yet.
    again = w.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                   json={"progress": 80, "enrollment_id": a["bilan_enrollment"]})
    assert again.status_code == 202
    first, second = _actions(w.database_url)
    assert (first.status.value, second.status.value, second.body) == ("cancelled", "approved", {"completionRate": 80})


def test_progression_refused_when_the_folder_state_does_not_allow_it(admin_world, redis_client):
    w = admin_world
    a = w.ids["a"]
    response = w.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                      json={"progress": 30, "enrollment_id": a["accepted_enrollment"]})
    assert response.status_code == 409 and response.get_json()["wedof_state"] == "accepted"
    # Two folders and no enrollment_id: which one is meant?
    assert w.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                  json={"progress": 30}).status_code == 422
    # Another tenant's enrollment through our beneficiary: not found.
    assert w.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                  json={"progress": 30, "enrollment_id": w.ids["b"]["bilan_enrollment"]}).status_code == 404
    assert queued_messages(redis_client, "events") == [] and _actions(w.database_url) == []


@pytest.mark.parametrize("body", [{"progress": 101}, {"progress": -1}, {"progress": 50.5}, {"progress": "50"},
                                  {"progress": True}, {}, {"progress": 10, "enrollment_id": "1"},
                                  {"progress": 10, "enrollment_id": 0}, {"progress": 10, "other": 1}])
def test_progression_rejects_bad_input(admin_world, redis_client, body):
    w = admin_world
    response = w.call("POST", f"/stagiaires/{w.ids['a']['beneficiary']}/progression", who="admin_a", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert queued_messages(redis_client, "events") == [] and _actions(w.database_url) == []


YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


@pytest.fixture
def bilan_with_session(admin_world):
    with session_scope(admin_world.database_url) as session:
        for key in ("bilan_enrollment", "accepted_enrollment"):
            enrollment = session.get(Enrollment, admin_world.ids["a"][key])
            enrollment.session_start_date = date.today() - timedelta(days=30)
            enrollment.session_end_date = date.today() + timedelta(days=30)
            enrollment.indicative_duration_hours = 24.0
    return admin_world


@pytest.mark.parametrize("enrollment,body,status,expected", [
    ("accepted_enrollment", {"to": "inTraining", "date": YESTERDAY}, 202, ("entry", {"date": YESTERDAY})),
    ("bilan_enrollment", {"to": "serviceDone", "date": YESTERDAY, "code": "7", "absence_duration": 2}, 202,
     ("end", {"date": YESTERDAY, "code": "7", "absenceDuration": 2.0, "forceMajeureAbsence": False,
              "trainingDuration": 24.0})),
    ("bilan_enrollment", {"to": "serviceDone", "date": YESTERDAY, "absence_duration": 2}, 422, "code_required"),
    ("bilan_enrollment", {"to": "terminated", "date": YESTERDAY}, 422, "use_service_done"),
    ("bilan_enrollment", {"to": "inTraining", "date": YESTERDAY}, 409, "invalid_transition"),
    ("accepted_enrollment", {"to": "serviceDone", "date": YESTERDAY, "code": "7", "absence_duration": 0}, 409,
     "invalid_transition"),
    ("accepted_enrollment", {"to": "inTraining", "date": "2000-01-01"}, 422, "before_session_start"),
    ("accepted_enrollment", {"to": "inTraining", "date": "2999-01-01"}, 422, "date_in_future"),
    ("accepted_enrollment", {"to": "inTraining"}, 422, "validation_error"),  # never today's date by default
    ("bilan_enrollment", {"to": "serviceDone", "date": "2999-01-01", "code": "7", "absence_duration": 0}, 422,
     "date_in_future"),
    ("bilan_enrollment", {"to": "serviceDone", "date": YESTERDAY, "code": "7", "absence_duration": -1}, 422,
     "validation_error"),
])
def test_bilan_transitions_by_hand(bilan_with_session, redis_client, enrollment, body, status, expected):
    w = bilan_with_session
    enrollment_id = w.ids["a"][enrollment]
    response = w.call("POST", f"/bilans/{enrollment_id}/transition", who="admin_a", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    messages = queued_messages(redis_client, "events")
    if status == 202:
        [action] = _actions(w.database_url)
        assert (action.kind.value, action.body, action.status.value) == (*expected, "approved")
        assert [(m["task"], m["args"]) for m in messages] == [("wedof.carry_out_action", [action.id])]
        assert response.get_json()["task_id"] == messages[0]["id"]
    else:
        assert response.get_json()["error"] == expected
        assert messages == [] and _actions(w.database_url) == []


@pytest.mark.parametrize("body", [{"to": "accepted", "date": YESTERDAY}, {"to": "", "date": YESTERDAY}, {},
                                  {"to": 1}, {"to": "inTraining", "date": YESTERDAY, "x": 1},
                                  {"to": "inTraining", "date": "05/03/2025"}, {"to": "inTraining", "date": 20250305}])
def test_transition_rejects_bad_input(admin_world, body):
    w = admin_world
    response = w.call("POST", f"/bilans/{w.ids['a']['accepted_enrollment']}/transition", who="admin_a", json=body)
    assert response.status_code == 422


# -- connection ---------------------------------------------------------------------------------------

def test_create_connection_returns_a_generated_secret_once(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        session.delete(session.get(WedofConnection, w.connections["a"]))
    response = w.call("POST", "/connection", who="admin_a", json={
        "base_url": "http://127.0.0.1:9/api/", "api_key": "a-brand-new-api-key", "organism_siret": "12345678901234"})
    assert response.status_code == 201
    data = response.get_json()
    assert data["api_key_set"] is True and data["webhook_secret_set"] is True and "api_key" not in data
    secret = data["webhook_secret"]
    assert len(secret) >= 32 and data["base_url"] == "http://127.0.0.1:9/api"
    again = w.call("GET", "/connection", who="admin_a").get_json()
    assert "webhook_secret" not in again and secret not in str(again)
    with session_scope(w.database_url) as session:
        connection = session.get(WedofConnection, data["id"])
        assert connection.webhook_secret == secret and connection.api_key == "a-brand-new-api-key"
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "connection.created")).one()
        assert audit.details == {"fields": ["api_key", "base_url", "organism_siret", "webhook_secret"],
                                 "changes": {"api_key": "changed", "webhook_secret": "changed",
                                             "base_url": {"old": "https://www.wedof.fr/api",
                                                          "new": "http://127.0.0.1:9/api"},
                                             "organism_siret": {"old": None, "new": "12345678901234"}}}
        assert secret not in str(audit.details) and "a-brand-new-api-key" not in str(audit.details)


@pytest.mark.parametrize("body", [
    {"base_url": 42},
    {"api_key": "short"}, {"api_key": "has space inside"}, {"api_key": 12345678}, {"signature_algorithm": "md5"},
    {"organism_siret": "123"}, {"enabled": "true"}, {"rate_limit_per_second": 0}, {"rate_limit_per_second": "5"},
    {"unknown_field": 1}, {"name": "x" * 201},
])
def test_patch_connection_rejects_bad_input(admin_world, body):
    w = admin_world
    response = w.call("PATCH", "/connection", who="admin_a", json=body)
    assert response.status_code == 422, (body, response.get_data(as_text=True))
    assert "changed" not in response.get_json()


def test_patch_connection_audits_old_and_new_values_and_secrets_as_changed(admin_world):
    w = admin_world
    response = w.call("PATCH", "/connection", who="admin_a", json={
        "api_key": "new-key-value-123456", "enabled": False, "rate_limit_per_second": 2.5})
    data = response.get_json()
    assert response.status_code == 200 and data["changed"] == ["api_key", "enabled", "rate_limit_per_second"]
    assert data["enabled"] is False and data["rate_limit_per_second"] == 2.5
    with session_scope(w.database_url) as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "connection.updated")).one()
        assert audit.details == {"fields": ["api_key", "enabled", "rate_limit_per_second"],
                                 "changes": {"api_key": "changed", "enabled": {"old": True, "new": False},
                                             "rate_limit_per_second": {"old": None, "new": 2.5}}}
        assert audit.actor == f"user:{w.ids['a']['admin']}"
        assert session.get(WedofConnection, w.connections["a"]).api_key == "new-key-value-123456"
    assert w.call("PATCH", "/connection", who="admin_a", json={"enabled": False}).get_json()["changed"] == []


def test_rotate_secret(admin_world):
    w = admin_world
    first = w.call("POST", "/connection/rotate-secret", who="admin_a").get_json()
    second = w.call("POST", "/connection/rotate-secret", who="admin_a").get_json()
    assert first["webhook_secret"] != second["webhook_secret"]
    with session_scope(w.database_url) as session:
        assert session.get(WedofConnection, w.connections["a"]).webhook_secret == second["webhook_secret"]
    assert _audit_actions(w.database_url).count("connection.secret_rotated") == 2


def test_register_webhook_queues_the_task(admin_world, redis_client):
    w = admin_world
    response = w.call("POST", "/connection/register-webhook", who="admin_a")
    assert response.status_code == 202
    assert [(m["task"], m["args"]) for m in queued_messages(redis_client, "events")] == [
        ("wedof.register_webhook", [w.connections["a"]])]
    with session_scope(w.database_url) as session:
        session.get(WedofConnection, w.connections["a"]).webhook_secret = None
    assert w.call("POST", "/connection/register-webhook", who="admin_a").status_code == 409


def test_env_default_connection_uses_the_short_webhook_url(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        session.get(WedofConnection, w.connections["a"]).is_env_default = True
    assert w.call("GET", "/connection", who="admin_a").get_json()["webhook_url"] == (
        "http://127.0.0.1:8000/api/webhooks/wedof")


def test_audit_log_lists_the_tenants_actions(admin_world):
    w = admin_world
    w.call("POST", "/connection/rotate-secret", who="admin_a")
    w.call("POST", "/connection/rotate-secret", who="admin_b")
    page = w.call("GET", "/audit-log", who="admin_a").get_json()
    assert [e["action"] for e in page["items"]] == ["connection.secret_rotated"]
    assert page["items"][0]["tenant_id"] == w.tenants["a"]
    assert w.call("GET", "/audit-log?action=nothing", who="admin_a").get_json()["total"] == 0


@pytest.mark.parametrize("method,path", [("POST", "/sync"), ("PATCH", "/connection"), ("POST", "/connection"),
                                         ("POST", "/bilans/1/transition"), ("POST", "/stagiaires/1/progression")])
@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"null", b"123", b"[]"])
def test_unreadable_bodies_are_400(admin_world, method, path, raw):
    w = admin_world
    response = w.client.open("/api/integrations/wedof" + path, method=method, data=raw,
                             headers={**w.headers("admin_a"), "Content-Type": "application/json"})
    assert response.status_code in (400, 404), response.get_data(as_text=True)
    assert set(response.get_json()) >= {"error", "message"}


def test_unknown_routes_and_methods_answer_json(admin_world):
    w = admin_world
    assert w.call("GET", "/nope", who="admin_a").get_json()["error"] == "not_found"
    response = w.call("DELETE", "/connection", who="admin_a")
    assert response.status_code == 405 and response.get_json()["error"]


def test_ids_no_row_can_have_are_404_on_both_backends(admin_world_any_db):
    # Found by the schemathesis run: SQLite and PostgreSQL both raise on ids beyond their integer range.
    w = admin_world_any_db
    huge = 2**63 + 5
    for method, path, body in (("GET", f"/events/{huge}", None), ("GET", f"/sync-runs/{2**40}", None),
                               ("POST", f"/events/{huge}/retry", None),
                               ("POST", f"/stagiaires/{huge}/progression", {"progress": 1}),
                               ("POST", f"/bilans/{2**31}/transition", {"to": "inTraining", "date": YESTERDAY}),
                               ("GET", "/status?tenant_id=999999999999", None)):
        response = w.call(method, path, who="super", json=body)
        assert response.status_code == 404, (path, response.get_data(as_text=True))


def test_retry_failed_with_broker_down_reports_what_was_not_published(admin_world, app_env, fresh_task_sender):
    from tests.support.processes import free_port

    w = admin_world
    app_env(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    fresh_task_sender()
    data = w.call("POST", "/events/retry-failed", who="admin_a").get_json()
    assert data["retried"] == 1 and data["not_published"] == data["event_ids"] == [w.ids["a"]["events"]["failed"]]
    with session_scope(w.database_url) as session:
        assert session.get(WebhookEvent, data["event_ids"][0]).status == EventStatus.QUEUED  # the sweeper's now


def test_the_admin_retry_and_the_sweeper_share_one_stuck_rule(admin_world, redis_client, monkeypatch):
    """One definition of "stuck", read when used: the admin API obeys the sweeper's own setting."""
    from bdc import inbox
    from bdc.settings import reset_settings_cache

    w = admin_world
    stuck = w.ids["a"]["events"]["stuck"]  # queued an hour ago

    def swept() -> bool:
        with session_scope(w.database_url) as session:
            return stuck in {event.id for event in inbox.due_for_sweep(session, 100)}

    monkeypatch.setenv("BDC_SWEEP_QUEUED_AFTER", str(2 * 3600))
    reset_settings_cache()
    assert not swept() and w.call("POST", f"/events/{stuck}/retry", who="admin_a").status_code == 409
    monkeypatch.setenv("BDC_SWEEP_QUEUED_AFTER", "1800")
    reset_settings_cache()
    assert swept() and w.call("POST", f"/events/{stuck}/retry", who="admin_a").status_code == 202
