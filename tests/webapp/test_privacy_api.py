"""The personal-data endpoints of the admin API: export, erase, consent, retention period; tenant scope
and hostile input, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, Beneficiary, BillingMode, BillingSettings, ErasedAttendee, Tenant, User
from tests.privacy.conftest import seed_person


@pytest.fixture
def world(admin_world_any_db, tmp_path):
    world = admin_world_any_db
    tenant_a = world.tenants["a"]
    with session_scope(world.database_url) as session:
        session.add(BillingSettings(tenant_id=tenant_a, mode=BillingMode.AUTO))
    world.person = seed_person(world.database_url, tenant_a, world.connections["a"], 5551, ("7000000001", "7000000002"),
                               email="lea.durand@example.fr", last_name="Durand", file_dir=tmp_path)
    return world


def path(beneficiary_id, action: str = "export") -> str:
    return f"/beneficiaries/{beneficiary_id}/{action}"


def test_an_admin_exports_its_tenants_beneficiary_and_it_is_audited(world):
    person = world.person
    response = world.call("GET", path(person.beneficiary_id), who="admin_a")
    assert response.status_code == 200, response.get_json()
    document = response.get_json()
    assert document["user"]["email"] == person.email and len(document["enrollments"]) == 2
    assert len(document["invoices"]) == 1 and document["raw_bodies_included"] is False
    assert "body" not in document["inbox_events"][0]
    with_bodies = world.call("GET", path(person.beneficiary_id) + "?include_raw_bodies=true", who="admin_a")
    assert person.email in with_bodies.get_json()["inbox_events"][0]["body"]
    with session_scope(world.database_url) as session:
        actors = session.scalars(select(AuditLog.actor).where(AuditLog.action == "beneficiary.exported")).all()
    assert actors == [f"user:{world.ids['a']['admin']}"] * 2


@pytest.mark.parametrize("raw", ["abc", "-1", "1.5", "0x10", "١٢", "1%20", "9" * 13])
def test_garbage_ids_are_400(world, raw):
    for method, action, body in (("GET", "export", None), ("POST", "erase", {"confirm": True}),
                                 ("PUT", "retention-consent", {"consent": True})):
        response = world.call(method, path(raw, action), who="admin_a", json=body)
        assert response.status_code == 400, (method, raw, response.get_json())
        assert response.get_json()["error"] == "invalid_id"


def test_unknown_and_other_tenants_beneficiaries_are_404_and_untouched(world):
    person = world.person
    other = world.ids["b"]["beneficiary"]
    for who, target in (("admin_a", 987654), ("admin_a", 99999999999), ("admin_a", other), ("admin_b", person.beneficiary_id)):
        assert world.call("GET", path(target), who=who).status_code == 404, (who, target)
        assert world.call("POST", path(target, "erase"), who=who, json={"confirm": True}).status_code == 404
    # A super_admin narrowed to tenant b does not see tenant a's beneficiary either.
    assert world.call("GET", path(person.beneficiary_id) + f"?tenant_id={world.tenants['b']}").status_code == 404
    with session_scope(world.database_url) as session:
        user = session.get(User, session.get(Beneficiary, person.beneficiary_id).user_id)
        assert user.email == person.email
        assert session.scalars(select(ErasedAttendee)).all() == []


def test_roles_and_tokens(world):
    target = path(world.person.beneficiary_id)
    assert world.call("GET", target, who=None).status_code == 401
    assert world.call("GET", target, who="garbage").status_code == 401
    assert world.call("GET", target, who="trainer_a").status_code == 403
    assert world.call("POST", path(world.person.beneficiary_id, "erase"), who="trainer_a",
                      json={"confirm": True}).status_code == 403


def test_erasure_needs_confirmation_then_empties_the_person(world):
    person, target = world.person, path(world.person.beneficiary_id, "erase")
    for body in (None, {}, {"confirm": False}, {"confirm": "yes"}, {"confirm": True, "extra": 1}):
        response = world.call("POST", target, who="admin_a", json=body)
        assert response.status_code in (400, 422), (body, response.get_json())
    response = world.call("POST", target, who="admin_a", json={"confirm": True})
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["erased"] is True and answer["invoices_kept"] == 1 and answer["documents_deleted"] == 3
    with session_scope(world.database_url) as session:
        beneficiary = session.get(Beneficiary, person.beneficiary_id)
        user = session.get(User, beneficiary.user_id)
        assert (user.email, user.last_name, beneficiary.phone, beneficiary.address) == (None, None, None, None)
        erased = session.scalars(select(AuditLog).where(AuditLog.action == "beneficiary.erased")).one()
        assert erased.actor == f"user:{world.ids['a']['admin']}" and person.email not in str(erased.details)
    exported = world.call("GET", path(person.beneficiary_id), who="admin_a").get_json()
    assert exported["erasure"]["reason"] == "request" and person.email not in str(exported)


def test_retention_consent_and_the_tenants_period(world):
    person = world.person
    target = path(person.beneficiary_id, "retention-consent")
    assert world.call("PUT", target, who="admin_a", json={"consent": "yes"}).status_code == 422
    assert world.call("PUT", target, who="admin_b", json={"consent": True}).status_code == 404
    response = world.call("PUT", target, who="admin_a", json={"consent": True})
    assert response.get_json() == {"beneficiary_id": person.beneficiary_id, "retention_consent": True}
    assert world.call("GET", "/privacy/settings", who="admin_a").get_json() == {
        "retention_days": 365, "tenant_retention_days": None, "default_retention_days": 365}
    for bad in ({"retention_days": 0}, {"retention_days": "30"}, {"retention_days": True}, {"days": 30}, {}):
        assert world.call("PUT", "/privacy/settings", who="admin_a", json=bad).status_code == 422, bad
    answer = world.call("PUT", "/privacy/settings", who="admin_a", json={"retention_days": 90}).get_json()
    assert answer["retention_days"] == 90 and answer["tenant_retention_days"] == 90
    with session_scope(world.database_url) as session:
        assert session.get(Beneficiary, person.beneficiary_id).retention_consent is True
        assert session.get(Tenant, world.tenants["a"]).settings["personal_data_retention_days"] == 90
        assert session.get(Tenant, world.tenants["b"]).settings.get("personal_data_retention_days") is None
    reset = world.call("PUT", "/privacy/settings", who="admin_a", json={"retention_days": None}).get_json()
    assert reset["retention_days"] == 365 and reset["tenant_retention_days"] is None
