"""The data layer's guarantees, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from bdc.models import (
    AuditLog,
    Beneficiary,
    Document,
    Enrollment,
    EnrollmentStatus,
    Evaluation,
    EventStatus,
    Program,
    Tenant,
    User,
    UserRole,
    WebhookEvent,
    WedofConnection,
)


def _tenant(session, slug="acme") -> Tenant:
    tenant = Tenant(name=slug.title(), slug=slug)
    session.add(tenant)
    session.flush()
    return tenant


def _beneficiary(session, tenant, external_id="81234", email=None) -> Beneficiary:
    user = User(tenant_id=tenant.id, email=email, first_name="Hélène", last_name="Lefèvre", role=UserRole.STUDENT)
    session.add(user)
    session.flush()
    beneficiary = Beneficiary(tenant_id=tenant.id, user_id=user.id, external_id=external_id, birth_date=date(1987, 5, 14))
    session.add(beneficiary)
    session.flush()
    return beneficiary


def _graph(session, tenant):
    beneficiary = _beneficiary(session, tenant)
    program = Program(tenant_id=tenant.id, name="Bilan de compétences", external_id="12345678900012_bilan-24h")
    session.add(program)
    session.flush()
    enrollment = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=program.id,
                            external_id="4270885603", status=EnrollmentStatus.ACTIVE, progress=40)
    session.add(enrollment)
    session.flush()
    session.add_all([
        Evaluation(tenant_id=tenant.id, beneficiary_id=beneficiary.id, enrollment_id=enrollment.id, title="Progression",
                   score=40, external_id="4270885603:completion"),
        Document(tenant_id=tenant.id, beneficiary_id=beneficiary.id, enrollment_id=enrollment.id, title="Rapport",
                 external_id="4270885603:report", meta={"source": "wedof"}),
    ])
    session.flush()
    return beneficiary, program, enrollment


@pytest.mark.parametrize("model", ["beneficiary", "program", "enrollment", "evaluation", "document"])
def test_external_ids_are_unique_per_tenant_but_may_repeat_across_tenants(session, model):
    acme, other = _tenant(session, "acme"), _tenant(session, "other")
    _graph(session, acme)
    _graph(session, other)  # the same Wedof ids in another tenant are fine
    session.commit()

    beneficiary, program, enrollment = session.scalars(select(Beneficiary).where(Beneficiary.tenant_id == acme.id)).one(), \
        session.scalars(select(Program).where(Program.tenant_id == acme.id)).one(), \
        session.scalars(select(Enrollment).where(Enrollment.tenant_id == acme.id)).one()
    duplicate = {
        "beneficiary": lambda: _beneficiary(session, acme, external_id="81234"),
        "program": lambda: session.add(Program(tenant_id=acme.id, name="x", external_id=program.external_id)),
        "enrollment": lambda: session.add(Enrollment(tenant_id=acme.id, beneficiary_id=beneficiary.id,
                                                     program_id=program.id, external_id=enrollment.external_id)),
        "evaluation": lambda: session.add(Evaluation(tenant_id=acme.id, beneficiary_id=beneficiary.id, title="x",
                                                     external_id="4270885603:completion")),
        "document": lambda: session.add(Document(tenant_id=acme.id, beneficiary_id=beneficiary.id, title="x",
                                                 external_id="4270885603:report")),
    }[model]
    with pytest.raises(IntegrityError):
        duplicate()
        session.flush()


def test_deleting_a_tenant_cascades_to_everything_it_owns(session):
    acme, other = _tenant(session, "acme"), _tenant(session, "other")
    _graph(session, acme)
    _graph(session, other)
    connection = WedofConnection(tenant_id=acme.id, api_key="k", webhook_secret="s")
    session.add(connection)
    session.flush()
    session.add(WebhookEvent(connection_id=connection.id, delivery_id="d1", event_type="registrationFolder.updated"))
    session.add(AuditLog(tenant_id=acme.id, actor="system", action="test"))
    session.commit()

    # Delete through SQL, not the ORM, to prove the database itself cascades.
    session.execute(text("DELETE FROM tenants WHERE id = :id"), {"id": acme.id})
    session.commit()
    for model in (User, Beneficiary, Program, Enrollment, Evaluation, Document, WedofConnection, AuditLog):
        remaining = session.scalar(select(func.count()).select_from(model).where(model.tenant_id == acme.id))
        assert remaining == 0, model.__name__
    assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
    assert session.scalar(select(func.count()).select_from(Enrollment).where(Enrollment.tenant_id == other.id)) == 1


def test_deleting_a_beneficiary_removes_its_enrollments_evaluations_and_documents_only(session):
    acme = _tenant(session)
    beneficiary, program, _ = _graph(session, acme)
    session.commit()
    session.delete(beneficiary)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Enrollment)) == 0
    assert session.scalar(select(func.count()).select_from(Evaluation)) == 0
    assert session.scalar(select(func.count()).select_from(Document)) == 0
    assert session.get(Program, program.id) is not None  # the program outlives its participants


def test_secrets_are_encrypted_in_the_raw_table_and_readable_through_the_model(session):
    acme = _tenant(session)
    session.add(WedofConnection(tenant_id=acme.id, api_key="live-key-123456", webhook_secret="whsecret-abcdef"))
    session.commit()
    raw = session.execute(text("SELECT api_key, webhook_secret FROM wedof_connections")).one()
    assert "live-key-123456" not in raw.api_key and "whsecret-abcdef" not in raw.webhook_secret
    assert raw.api_key.startswith("gAAAA")  # a Fernet token
    session.expire_all()
    connection = session.scalars(select(WedofConnection)).one()
    assert (connection.api_key, connection.webhook_secret) == ("live-key-123456", "whsecret-abcdef")
    assert "live-key" not in repr(connection)


def test_status_values_are_checked_by_the_database(session):
    acme = _tenant(session)
    beneficiary, program, enrollment = _graph(session, acme)
    session.commit()
    with pytest.raises((IntegrityError, StatementError)):
        session.execute(text("UPDATE enrollments SET status = 'teleported' WHERE id = :id"), {"id": enrollment.id})
        session.flush()
    session.rollback()
    with pytest.raises((IntegrityError, StatementError)):
        session.execute(text("UPDATE enrollments SET progress = 140 WHERE id = :id"), {"id": enrollment.id})
    session.rollback()
    with pytest.raises(StatementError):
        session.add(User(tenant_id=acme.id, email="x@example.fr", role="wizard"))
        session.flush()


def test_one_inbox_row_per_connection_and_delivery_id(session):
    acme, other = _tenant(session, "acme"), _tenant(session, "other")
    first = WedofConnection(tenant_id=acme.id)
    second = WedofConnection(tenant_id=other.id)
    session.add_all([first, second])
    session.flush()
    session.add(WebhookEvent(connection_id=first.id, delivery_id="abc", event_type="registrationFolder.updated"))
    session.add(WebhookEvent(connection_id=second.id, delivery_id="abc", event_type="registrationFolder.updated"))
    session.commit()
    session.add(WebhookEvent(connection_id=first.id, delivery_id="abc", event_type="registrationFolder.updated"))
    with pytest.raises(IntegrityError):
        session.flush()


def test_timestamps_come_back_timezone_aware_in_utc(session):
    acme = _tenant(session)
    connection = WedofConnection(tenant_id=acme.id, sync_cursor=datetime(2025, 2, 3, 9, 12, 44, 517000, tzinfo=UTC))
    session.add(connection)
    session.commit()
    session.expire_all()
    stored = session.scalars(select(WedofConnection)).one()
    assert stored.sync_cursor == datetime(2025, 2, 3, 9, 12, 44, 517000, tzinfo=UTC)
    assert stored.created_at.tzinfo is not None
    event = WebhookEvent(connection_id=stored.id, delivery_id="x", event_type="t")
    assert event.status is None or event.status == EventStatus.RECEIVED
    with pytest.raises(StatementError):
        stored.sync_cursor = datetime(2025, 1, 1)  # naive datetimes are refused, not silently shifted
        session.flush()
