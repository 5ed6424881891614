"""The admin API of the lifecycle: evidence recorded and corrected, hostile input refused with a clear 400
that writes nothing, actions approved / rejected / retried, settings whose reason codes are checked
against a real Wedof sandbox over HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Appointment,
    AuditLog,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
    User,
    UserRole,
)
from lifecycle import actions
from lifecycle.rules import Decision
from tests.support.sandbox import running_sandbox
from tests.webapp.conftest import TENANT_SECRETS, build_admin_world, queued_messages

NOW = datetime.now(UTC).replace(microsecond=0)


def at(days: float, hours: float = 0) -> str:
    return (NOW + timedelta(days=days, hours=hours)).isoformat()


@pytest.fixture(scope="module")
def wedof():
    with running_sandbox(folders=5, seed=3, api_key=TENANT_SECRETS["a"]["api_key"]) as sandbox:
        yield sandbox


@pytest.fixture
def world(app_env, db_url, redis_url, redis_client, fresh_task_sender, wedof):
    return build_admin_world(app_env, fresh_task_sender, db_url, redis_url, wedof_base_url=wedof.api_url)


def counts(world) -> tuple[int, int, int]:
    with session_scope(world.database_url) as session:
        return (session.scalar(select(func.count()).select_from(Appointment)),
                session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("appointment.%"))),
                session.scalar(select(func.count()).select_from(LifecycleAction)))


def appointment(world, **fields):
    body = {"enrollment_id": world.ids["a"]["bilan_enrollment"], "phase": "investigation",
            "starts_at": at(-2), "ends_at": at(-2, 2), **fields}
    return world.call("POST", "/appointments", who="admin_a", json=body)


def test_an_appointment_is_recorded_attended_corrected_and_cancelled(world, redis_client):
    created = appointment(world)
    assert created.status_code == 201, created.get_data(as_text=True)
    data = created.get_json()
    assert (data["status"], data["phase"], data["evaluation"]) == ("scheduled", "investigation", "queued")
    appointment_id = data["id"]
    attended = world.call("POST", f"/appointments/{appointment_id}/attendance", who="admin_a",
                          json={"status": "attended", "attended_minutes": 90})
    assert attended.status_code == 200 and attended.get_json()["attended_minutes"] == 90
    moved = world.call("PATCH", f"/appointments/{appointment_id}", who="admin_a",
                       json={"phase": "conclusion", "notes": "Synthèse remise en main propre"})
    assert moved.get_json()["phase"] == "conclusion"
    cancelled = world.call("POST", f"/appointments/{appointment_id}/cancel", who="admin_a")
    assert cancelled.get_json()["status"] == "cancelled" and cancelled.get_json()["attended_minutes"] is None
    listed = world.call("GET", f"/bilans/{world.ids['a']['bilan_enrollment']}/appointments", who="admin_a").get_json()
    assert [a["id"] for a in listed["items"]] == [appointment_id]
    # Every change was audited and asked for the rules to run again, by task name.
    assert counts(world)[1] == 4
    evaluations = [m for m in queued_messages(redis_client, "events") if m["task"] == "wedof.evaluate_lifecycle"]
    assert [m["args"] for m in evaluations] == [[world.ids["a"]["bilan_enrollment"]]] * 4


@pytest.mark.parametrize("fields, error", [
    ({"ends_at": at(-2, -1)}, "end_before_start"),
    ({"ends_at": at(-2)}, "end_before_start"),
    ({"starts_at": at(1), "ends_at": at(1, 2), "status": "attended"}, "attendance_in_future"),
    ({"starts_at": at(1), "ends_at": at(1, 2), "status": "missed"}, "attendance_in_future"),
    ({"status": "attended", "attended_minutes": -5}, "absurd_duration"),
    ({"status": "attended", "attended_minutes": 500}, "absurd_duration"),  # longer than the session
    ({"ends_at": at(-1, 4)}, "absurd_duration"),  # a 28-hour session
    ({"attended_minutes": 30}, "minutes_without_attendance"),
    ({"enrollment_id": "other"}, "validation_error"),
    ({"starts_at": "2025-03-05T09:00:00"}, "invalid_datetime"),  # no offset: ambiguous
    ({"starts_at": "tomorrow"}, "invalid_datetime"),
    ({"phase": "lunch"}, "validation_error"),
    ({"status": "maybe"}, "validation_error"),
    ({"trainer_id": 999999}, "unknown_trainer"),
    ({"notes": "x" * 5000}, "validation_error"),
    ({"colour": "red"}, "validation_error"),
])
def test_hostile_appointments_are_refused_with_a_clear_400_and_write_nothing(world, redis_client, fields, error):
    before = counts(world)
    response = appointment(world, **fields)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"] == error and response.get_json()["message"]
    assert counts(world) == before and queued_messages(redis_client, "events") == []


def test_another_tenants_enrollment_and_overlapping_sessions_are_refused(world, redis_client):
    other = appointment(world, enrollment_id=world.ids["b"]["bilan_enrollment"])
    assert other.status_code == 400 and other.get_json()["error"] == "unknown_enrollment"
    assert appointment(world).status_code == 201
    # The beneficiary's other folder, at the same time: one person cannot sit two sessions at once.
    overlap = appointment(world, enrollment_id=world.ids["a"]["accepted_enrollment"], starts_at=at(-2, 1),
                          ends_at=at(-2, 3))
    assert overlap.status_code == 400 and overlap.get_json()["error"] == "overlapping_sessions"
    assert appointment(world, starts_at=at(-2, 2), ends_at=at(-2, 3)).status_code == 201  # back to back is fine
    assert counts(world)[0] == 2


def test_a_correction_that_breaks_the_rules_is_refused_and_the_row_is_unchanged(world):
    appointment_id = appointment(world).get_json()["id"]
    for body, error in (({"ends_at": at(-3)}, "end_before_start"),
                        ({"status": "attended", "attended_minutes": 9999}, "absurd_duration")):
        response = world.call("PATCH", f"/appointments/{appointment_id}", who="admin_a", json=body)
        assert response.status_code == 400 and response.get_json()["error"] == error
    with session_scope(world.database_url) as session:
        row = session.get(Appointment, appointment_id)
        assert (row.status.value, row.attended_minutes, row.ends_at) == ("scheduled", None,
                                                                          NOW + timedelta(days=-2, hours=2))


def test_a_trainer_of_the_tenant_may_run_the_session(world):
    assert appointment(world, trainer_id=world.ids["a"]["trainer"]).status_code == 201
    # Tenant B's trainer is nobody here.
    assert appointment(world, trainer_id=world.ids["b"]["trainer"], starts_at=at(-5), ends_at=at(-5, 1)) \
        .get_json()["error"] == "unknown_trainer"
    with session_scope(world.database_url) as session:
        student = session.scalars(select(User).where(User.role == UserRole.STUDENT)).first()
    assert appointment(world, trainer_id=student.id, starts_at=at(-6), ends_at=at(-6, 1)).status_code == 400


def test_the_synthesis_and_a_withdrawal_are_recorded_corrected_and_checked(world):
    url = f"/bilans/{world.ids['a']['bilan_enrollment']}/evidence"
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    recorded = world.call("PUT", url, who="admin_a", json={"synthesis_delivered_on": yesterday})
    assert recorded.status_code == 200 and recorded.get_json()["synthesis_delivered_on"] == yesterday
    cleared = world.call("PUT", url, who="admin_a", json={"synthesis_delivered_on": None})
    assert cleared.get_json()["synthesis_delivered_on"] is None
    for body in ({"withdrawn_on": "2999-01-01"}, {"withdrawn_on": "01/02/2025"}, {"withdrawal_reason": "left"},
                 {}, {"synthesis": yesterday}, {"withdrawn_on": 20250101}):
        response = world.call("PUT", url, who="admin_a", json=body)
        assert response.status_code == 400, (body, response.get_data(as_text=True))
    withdrawn = world.call("PUT", url, who="admin_a", json={"withdrawn_on": yesterday, "withdrawal_reason": "left"})
    assert withdrawn.get_json()["withdrawal_reason"] == "left"
    assert world.call("PUT", f"/bilans/{world.ids['b']['bilan_enrollment']}/evidence", who="admin_a",
                      json={"withdrawn_on": yesterday}).status_code == 404


# -- actions ---------------------------------------------------------------------------------------------

def propose(world, mode=LifecycleMode.APPROVE, status_after=None) -> int:
    a = world.ids["a"]
    with session_scope(world.database_url) as session:
        action = actions.propose(session, a["tenant"], a["accepted_enrollment"],
                                 Decision(LifecycleKind.ENTRY, {"date": "2025-03-05"}), mode)
        if status_after is not None:
            assert actions.approve(session, action.id, "user:x") and actions.start(session, action.id, "t")
            actions.finish(session, action.id, status_after, reason="HTTP 400: refused")
        return action.id


def test_approve_sends_by_name_and_a_second_approval_is_refused(world, redis_client):
    action_id = propose(world)
    response = world.call("POST", f"/lifecycle/actions/{action_id}/approve", who="admin_a")
    assert response.status_code == 202
    assert [(m["task"], m["args"]) for m in queued_messages(redis_client, "events")] == [
        ("wedof.carry_out_action", [action_id])]
    detail = world.call("GET", f"/lifecycle/actions/{action_id}", who="admin_a").get_json()
    assert detail["status"] == "approved" and detail["decided_by"] == f"user:{world.ids['a']['admin']}"
    assert world.call("POST", f"/lifecycle/actions/{action_id}/approve", who="admin_a").status_code == 409
    assert world.call("POST", f"/lifecycle/actions/{action_id}/approve", who="admin_b").status_code == 404


def test_a_dry_run_is_never_approved_and_a_rejection_says_why(world):
    dry = propose(world, mode=LifecycleMode.DRY_RUN)
    refused = world.call("POST", f"/lifecycle/actions/{dry}/approve", who="admin_a")
    assert refused.status_code == 409 and refused.get_json()["error"] == "dry_run"
    assert world.call("POST", f"/lifecycle/actions/{dry}/reject", who="admin_a", json={"reason": " "}).status_code == 422
    rejected = world.call("POST", f"/lifecycle/actions/{dry}/reject", who="admin_a",
                          json={"reason": "the attendance sheet is not signed"})
    assert rejected.status_code == 200 and rejected.get_json()["status"] == "cancelled"
    assert "not signed" in rejected.get_json()["reason"]


def test_a_refused_action_is_retried_only_on_request(world, redis_client):
    action_id = propose(world, status_after=ActionStatus.REFUSED)
    listed = world.call("GET", "/lifecycle/actions?status=refused", who="admin_a").get_json()
    assert [a["id"] for a in listed["items"]] == [action_id]
    retried = world.call("POST", f"/lifecycle/actions/{action_id}/retry", who="admin_a")
    assert retried.status_code == 202 and queued_messages(redis_client, "events")[0]["args"] == [action_id]
    assert world.call("POST", f"/lifecycle/actions/{action_id}/retry", who="admin_a").status_code == 409
    for bad in ("status=weird", "kind=x", "late=maybe", "enrollment_id=abc"):
        assert world.call("GET", f"/lifecycle/actions?{bad}", who="admin_a").status_code == 400


def test_notices_are_listed_and_acknowledged(world):
    propose(world, status_after=ActionStatus.FAILED)
    notices = world.call("GET", "/notices?open=true", who="admin_a").get_json()["items"]
    assert [n["kind"] for n in notices] == ["action_failed"]
    acknowledged = world.call("POST", f"/notices/{notices[0]['id']}/acknowledge", who="admin_a")
    assert acknowledged.get_json()["acknowledged_at"] is not None
    assert world.call("GET", "/notices?open=true", who="admin_a").get_json()["items"] == []
    assert world.call("POST", f"/notices/{notices[0]['id']}/acknowledge", who="admin_b").status_code == 404


# -- settings --------------------------------------------------------------------------------------------

def test_settings_show_wedofs_live_reasons_and_accept_only_codes_from_them(world):
    shown = world.call("GET", "/lifecycle/settings", who="admin_a").get_json()
    assert shown["configured"] is False and shown["modes"]["abandon"] == "approve"  # defaults, nothing saved
    assert {r["code"] for r in shown["reasons"]["terminated"]} >= {"8", "9"} and shown["reasons_error"] is None
    unknown = world.call("PUT", "/lifecycle/settings", who="admin_a", json={"normal_end_code": "77"})
    assert unknown.status_code == 422 and unknown.get_json()["error"] == "unknown_reason_code"
    wrong_list = world.call("PUT", "/lifecycle/settings", who="admin_a", json={"cancel_code": "8"})  # a terminated one
    assert wrong_list.status_code == 422
    saved = world.call("PUT", "/lifecycle/settings", who="admin_a", json={
        "normal_end_code": "8", "abandon_code": "9", "cancel_code": "4", "entry_mode": "auto",
        "inactivity_days": 21, "time_zone": "Europe/Paris", "trace_activities": True})
    assert saved.status_code == 200 and saved.get_json()["modes"]["entry"] == "auto"
    with session_scope(world.database_url) as session:
        settings = session.scalars(select(LifecycleSettings)).one()
        assert (settings.normal_end_code, settings.inactivity_days, settings.trace_activities) == ("8", 21, True)
    for body in ({"entry_mode": "sometimes"}, {"inactivity_days": 0}, {"time_zone": "Mars/Olympus"},
                 {"trace_activities": "yes"}, {"colour": 1}):
        assert world.call("PUT", "/lifecycle/settings", who="admin_a", json=body).status_code == 422, body


def test_a_code_is_never_accepted_unchecked(world, app_env):
    with session_scope(world.database_url) as session:  # Wedof unreachable: nothing can be checked
        from bdc.models import WedofConnection

        session.scalars(select(WedofConnection).where(
            WedofConnection.tenant_id == world.ids["a"]["tenant"])).one().base_url = "http://127.0.0.1:9/api"
    response = world.call("PUT", "/lifecycle/settings", who="admin_a", json={"normal_end_code": "8"})
    assert response.status_code == 503 and response.get_json()["error"] == "reasons_unavailable"
    assert world.call("PUT", "/lifecycle/settings", who="admin_a", json={"entry_mode": "off"}).status_code == 200
    with session_scope(world.database_url) as session:
        assert session.scalars(select(LifecycleSettings)).one().normal_end_code is None


def test_a_manual_rate_waits_for_one_in_flight(world, redis_client):
    a = world.ids["a"]
    with session_scope(world.database_url) as session:
        action = actions.propose(session, a["tenant"], a["bilan_enrollment"],
                                 Decision(LifecycleKind.PROGRESS, {"completionRate": 20}), LifecycleMode.APPROVE)
        actions.approve(session, action.id, "user:x")
        actions.start(session, action.id, "busy")
    busy = world.call("POST", f"/stagiaires/{a['beneficiary']}/progression", who="admin_a",
                      json={"progress": 50, "enrollment_id": a["bilan_enrollment"]})
    assert busy.status_code == 409 and busy.get_json()["error"] == "action_in_flight"
