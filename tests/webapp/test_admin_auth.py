"""Every admin endpoint × every kind of caller: who gets in, who gets 401/403/404, and the error shape.

One world per endpoint (fresh SQLite, real Redis); the roles are tried in turn on it. A super_admin
acts on tenant B's objects (it crosses tenants), tenant A's admin on its own, tenant B's admin on
tenant A's objects (404: other tenants' objects do not exist for it).
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from flask_jwt_extended import create_access_token

from bdc.db import session_scope
from bdc.models import User

# (method, path with {tenant}-relative placeholders, body, success status, scope)
# scope "tenant": the tenant comes from the caller; "object": the path names tenant A's (or B's) object.
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()
ENDPOINTS = [
    ("GET", "/status", None, 200, "tenant"),
    ("POST", "/sync", {"type": "all"}, 202, "tenant"),
    ("GET", "/sync-runs", None, 200, "tenant"),
    ("GET", "/sync-runs/{run}", None, 200, "object"),
    ("GET", "/events", None, 200, "tenant"),
    ("GET", "/events/{failed}", None, 200, "object"),
    ("POST", "/events/{failed}/retry", None, 202, "object"),
    ("POST", "/events/retry-failed", None, 202, "tenant"),
    ("GET", "/stagiaires", None, 200, "tenant"),
    ("POST", "/stagiaires/{beneficiary}/progression", {"progress": 40, "enrollment_id": "{bilan_enrollment}"}, 202,
     "object"),
    ("GET", "/formations", None, 200, "tenant"),
    ("GET", "/bilans", None, 200, "tenant"),
    ("POST", "/bilans/{accepted_enrollment}/transition", {"to": "inTraining", "date": YESTERDAY}, 202, "object"),
    ("GET", "/bilans/{bilan_enrollment}/appointments", None, 200, "object"),
    ("PUT", "/bilans/{bilan_enrollment}/evidence", {"synthesis_delivered_on": YESTERDAY}, 200, "object"),
    ("POST", "/bilans/{bilan_enrollment}/evaluate", None, 202, "object"),
    ("GET", "/lifecycle/actions", None, 200, "tenant"),
    ("GET", "/lifecycle/settings", None, 200, "tenant"),
    ("PUT", "/lifecycle/settings", {"inactivity_days": 21}, 200, "tenant"),
    ("GET", "/notices", None, 200, "tenant"),
    ("GET", "/connection", None, 200, "tenant"),
    ("POST", "/connection", {"name": "again"}, 409, "tenant"),  # each tenant already has one
    ("PATCH", "/connection", {"name": "Wedof prod"}, 200, "tenant"),
    ("POST", "/connection/rotate-secret", None, 200, "tenant"),
    ("POST", "/connection/register-webhook", None, 202, "tenant"),
    ("GET", "/audit-log", None, 200, "tenant"),
]
DENIED = {"trainer_a": 403, None: 401, "expired": 401, "forged": 401, "garbage": 401}


def _fill(template, ids: dict):
    if isinstance(template, str):
        if template.startswith("{") and template.endswith("}") and template[1:-1] in ids:
            return ids[template[1:-1]]
        flat = {**ids, **ids["events"]}
        return template.format(**{k: v for k, v in flat.items() if not isinstance(v, dict)})
    if isinstance(template, dict):
        return {key: _fill(value, ids) for key, value in template.items()}
    return template


def _assert_error(response, status: int):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) >= {"error", "message"} and isinstance(body["message"], str), body


@pytest.mark.parametrize("method,path,body,ok,scope", ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_every_endpoint_with_every_caller(admin_world, method, path, body, ok, scope):
    w = admin_world
    a, b = w.ids["a"], w.ids["b"]

    for who, status in DENIED.items():
        response = w.call(method, _fill(path, a), who=who, json=_fill(body, a))
        _assert_error(response, status)
    expired = w.call(method, _fill(path, a), who="expired", json=_fill(body, a)).get_json()
    assert expired["error"] == "token_expired"

    if scope == "object":
        # Tenant B's admin asking for tenant A's object: 404, as if it did not exist.
        _assert_error(w.call(method, _fill(path, a), who="admin_b", json=_fill(body, a)), 404)
        response = w.call(method, _fill(path, a), who="admin_a", json=_fill(body, a))
        assert response.status_code == ok, response.get_data(as_text=True)
        response = w.call(method, _fill(path, b), who="super", json=_fill(body, b))
        assert response.status_code == ok, response.get_data(as_text=True)
        # A super_admin narrowed to tenant A does not reach tenant B's object.
        narrowed = _fill(path, b) + f"?tenant_id={w.tenants['a']}"
        _assert_error(w.call(method, narrowed, who="super", json=_fill(body, b)), 404)
    else:
        # Naming another tenant is a 404 for a tenant_admin.
        other = _fill(path, a) + f"?tenant_id={w.tenants['a']}"
        _assert_error(w.call(method, other, who="admin_b", json=_fill(body, b)), 404)
        for who in ("admin_a", "admin_b"):
            response = w.call(method, _fill(path, a), who=who, json=_fill(body, a))
            assert response.status_code == ok, (who, response.get_data(as_text=True))
        # Two tenants exist: a super_admin must choose (query or header).
        _assert_error(w.call(method, _fill(path, a), who="super", json=_fill(body, a)), 400)
        response = w.call(method, _fill(path, b) + f"?tenant_id={w.tenants['b']}", who="super", json=_fill(body, b))
        assert response.status_code == ok, response.get_data(as_text=True)
        response = w.client.open("/api/integrations/wedof" + _fill(path, b), method=method, json=_fill(body, b),
                                 headers={**w.headers("super"), "X-Tenant-Id": str(w.tenants["b"])})
        assert response.status_code == ok, response.get_data(as_text=True)


def test_tenant_views_only_show_own_tenant(admin_world):
    w = admin_world
    for who, mine, theirs in (("admin_a", "a", "b"), ("admin_b", "b", "a")):
        events = w.call("GET", "/events?per_page=100", who=who).get_json()["items"]
        assert {e["connection_id"] for e in events} == {w.connections[mine]}
        names = [s["last_name"] for s in w.call("GET", "/stagiaires", who=who).get_json()["items"]]
        assert names == [f"Martin-{mine}"]
        assert w.call("GET", "/connection", who=who).get_json()["tenant_id"] == w.tenants[mine]
        assert all(e["tenant_id"] == w.tenants[mine] for e in w.call("GET", "/audit-log", who=who).get_json()["items"])
        assert w.tenants[theirs] != w.tenants[mine]


def test_tenant_admin_cannot_retry_other_tenants_events(admin_world, redis_client):
    from tests.webapp.conftest import queued_messages

    w = admin_world
    b_failed = w.ids["b"]["events"]["failed"]
    _assert_error(w.call("POST", f"/events/{b_failed}/retry", who="admin_a"), 404)
    response = w.call("POST", "/events/retry-failed", who="admin_a")
    assert response.status_code == 202
    retried = response.get_json()["event_ids"]
    assert retried == [w.ids["a"]["events"]["failed"]]
    published = [m["args"] for m in queued_messages(redis_client, "events")]
    assert published == [[w.ids["a"]["events"]["failed"]]]
    assert w.call("GET", f"/events/{b_failed}", who="admin_b").get_json()["status"] == "failed"


def test_single_tenant_install_needs_no_tenant_parameter(admin_world):
    w = admin_world
    with session_scope(w.database_url) as session:
        from bdc.models import Tenant

        session.delete(session.get(Tenant, w.tenants["b"]))
    response = w.call("GET", "/status", who="super")
    assert response.status_code == 200 and response.get_json()["tenant"]["id"] == w.tenants["a"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999999999999", " "])
def test_hostile_tenant_id(admin_world, value):
    response = admin_world.call("GET", f"/status?tenant_id={value}", who="super")
    if value.strip() == "":
        assert response.status_code == 400  # blank: not chosen, and two tenants exist
    else:
        _assert_error(response, 400)
    _assert_error(admin_world.call("GET", "/status?tenant_id=424242", who="super"), 404)


def test_deactivated_user_is_refused(admin_world):
    w = admin_world
    assert w.call("GET", "/status", who="admin_a").status_code == 200
    with session_scope(w.database_url) as session:
        session.get(User, w.ids["a"]["admin"]).is_active = False
    response = w.call("GET", "/status", who="admin_a")
    _assert_error(response, 401)
    assert response.get_json()["error"] == "user_inactive"


def test_bdc_token_without_local_user_row_is_trusted(admin_world):
    response = admin_world.call("GET", "/events", who="bdc_only_admin_a")
    assert response.status_code == 200
    assert {e["connection_id"] for e in response.get_json()["items"]} == {admin_world.connections["a"]}


@pytest.mark.parametrize("claims", [
    {"role": "tenant_admin"},                       # no tenant
    {"role": "tenant_admin", "tenant_id": None},
    {"role": "student", "tenant_id": 1},
    {"role": "SUPER_ADMIN"},                        # roles are exact
    {},                                             # no role at all
    {"role": ["super_admin"]},
])
def test_tokens_with_wrong_claims(admin_world, claims):
    with admin_world.app.app_context():
        token = create_access_token(identity="777", additional_claims=claims, expires_delta=timedelta(minutes=5))
    response = admin_world.client.get("/api/integrations/wedof/status", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (401, 403)
    assert set(response.get_json()) >= {"error", "message"}


def test_tenant_id_claim_that_is_not_a_number(admin_world):
    with admin_world.app.app_context():
        token = create_access_token(identity="777", additional_claims={"role": "tenant_admin", "tenant_id": "x1"})
    response = admin_world.client.get("/api/integrations/wedof/status", headers={"Authorization": f"Bearer {token}"})
    _assert_error(response, 401)


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", "Token x", "Bearer a b c"])
def test_malformed_authorization_headers(admin_world, header):
    response = admin_world.client.get("/api/integrations/wedof/status", headers={"Authorization": header})
    _assert_error(response, 401)


def test_token_in_query_string_also_works(admin_world):
    token = admin_world.tokens["admin_a"]
    assert admin_world.client.get(f"/api/integrations/wedof/status?token={token}").status_code == 200
