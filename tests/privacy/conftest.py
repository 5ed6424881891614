"""A beneficiary with every kind of row the data layer can hold about a person, written through the
product's own paths (the mapping, billing's reservation, the audit helper), on both backends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Appointment,
    AppointmentPhase,
    AppointmentStatus,
    BillingMode,
    BillingSettings,
    Document,
    DocumentType,
    Enrollment,
    Evaluation,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    Notice,
    NoticeKind,
    Tenant,
    WebhookEvent,
    WedofConnection,
)
from billing import evaluate
from billing.issued import attach_pdf
from tests.wedof.test_mapping_apply import make_folder
from wedof.mapping import apply_folder

PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}


@dataclass
class Person:
    tenant_id: int
    connection_id: int
    beneficiary_id: int
    attendee_id: str
    folders: list[str]  # [billed folder, folder in training]
    email: str
    last_name: str
    file: Path  # a document stored here (file: URL)


def person_folders(attendee_id: int, numbers: tuple[str, str], *, email: str, last_name: str,
                   ended: str = "2025-02-28T17:00:00.000Z") -> list[dict]:
    """Two folders of one attendee: a finished bilan due an invoice, and one in training."""
    attendee = {"email": email, "lastName": last_name, "firstName": "Léa", "phoneNumber": "0611223344",
                "dateOfBirth": "1984-03-09T00:00:00.000Z", "poleEmploiId": "PE-7788123",
                "address": {"number": "7", "roadTypeLabel": "Rue", "roadName": "des Tanneurs", "zipCode": "67000",
                            "city": "Strasbourg", "country": "France", "countryCode": "FR", "fullAddress": None}}
    done = make_folder(numbers[0], attendee_id=attendee_id, email=email, state="serviceDoneValidated",
                       completion_rate=100, last_update="2025-03-02T10:00:00.000Z", billingState="toBill")
    done["trainingActionInfo"].update(PRICE)
    done["history"].update(terminatedDate=ended, serviceDoneDeclaredDate=ended, serviceDoneValidatedDate=ended)
    running = make_folder(numbers[1], attendee_id=attendee_id, email=email, state="inTraining", completion_rate=30,
                          action_id="action-2", title="Bilan de compétences - 12h")
    for folder in (done, running):
        folder["attendee"].update(attendee, address=dict(attendee["address"]))
    return [done, running]


def make_tenant(session, slug: str) -> tuple[int, int]:
    tenant = Tenant(name=f"Organisme {slug}", slug=slug)
    session.add(tenant)
    session.flush()
    connection = WedofConnection(tenant_id=tenant.id, api_key="key", webhook_secret="hook-secret-123")
    session.add(connection)
    session.add(BillingSettings(tenant_id=tenant.id, mode=BillingMode.AUTO, seller_address="1 rue de Paris"))
    session.flush()
    return tenant.id, connection.id


def seed_person(database_url: str, tenant_id: int, connection_id: int, attendee_id: int, numbers: tuple[str, str],
                *, email: str, last_name: str, file_dir: Path, ended: str = "2025-02-28T17:00:00.000Z") -> Person:
    folders = person_folders(attendee_id, numbers, email=email, last_name=last_name, ended=ended)
    now = datetime.now(UTC)
    stored = file_dir / f"synthese-{tenant_id}-{attendee_id}.pdf"
    stored.write_bytes(b"%PDF-1.4 synthese")
    with session_scope(database_url) as session:
        results = [apply_folder(session, tenant_id, folder) for folder in folders]
        beneficiary_id, done_id = results[0].beneficiary_id, results[0].enrollment_id
        session.add_all([
            Evaluation(tenant_id=tenant_id, beneficiary_id=beneficiary_id, enrollment_id=done_id,
                       title=f"Résultats du bilan de Léa {last_name}", score=7.5),
            Document(tenant_id=tenant_id, beneficiary_id=beneficiary_id, enrollment_id=done_id,
                     title="Document de synthèse", type=DocumentType.OTHER, url=stored.as_uri(),
                     meta={"pages": 6}),
            Appointment(tenant_id=tenant_id, beneficiary_id=beneficiary_id, enrollment_id=done_id,
                        phase=AppointmentPhase.CONCLUSION, starts_at=now - timedelta(days=300),
                        ends_at=now - timedelta(days=300, hours=-2), status=AppointmentStatus.ATTENDED,
                        attended_minutes=120, notes=f"Léa {last_name} vise une reconversion ({email})"),
        ])
        action = LifecycleAction(tenant_id=tenant_id, enrollment_id=done_id, kind=LifecycleKind.END,
                                 status=ActionStatus.DONE, mode=LifecycleMode.AUTO,
                                 body={"date": "2025-02-28", "code": "8", "absenceDuration": 0.0},
                                 evidence={"conclusion": "attended", "contact": email},
                                 wedof_answer={"state": "serviceDoneDeclared"}, finished_at=now)
        session.add(action)
        session.flush()
        settings = evaluate.settings_of(session, tenant_id)
        (invoice,) = evaluate.reserve_due(session, settings,
                                          evaluate.due(session, tenant_id, enrollment_ids=[done_id], to_invoice=True),
                                          actor="auto")
        attach_pdf(session, invoice)
        session.add(WebhookEvent(connection_id=connection_id, delivery_id=f"dlv-{attendee_id}",
                                 event_type="registrationFolder.serviceDoneValidated", body=json.dumps(folders[0]),
                                 folder_external_id=numbers[0],
                                 headers={"Content-Type": "application/json", "X-Wedof-Delivery": f"dlv-{attendee_id}",
                                          "X-Wedof-Event": "registrationFolder.serviceDoneValidated",
                                          "X-Contact": email}))
        session.add(Notice(tenant_id=tenant_id, kind=NoticeKind.LATE_ENTRY, target_type="lifecycle_action",
                           target_id=str(action.id), message=f"Entrée tardive pour Léa {last_name}"))
        record_audit(session, actor="user:1", action="stagiaire.updated", tenant_id=tenant_id,
                     target=("enrollment", done_id), details={"changes": {"email": {"old": email, "new": None}}})
    return Person(tenant_id, connection_id, beneficiary_id, str(attendee_id), list(numbers), email, last_name, stored)


@dataclass
class World:
    database_url: str
    person: Person  # the one the tests export or erase
    neighbour: Person  # same tenant: must be left as it is
    stranger: Person  # another tenant


@pytest.fixture
def world(db_url, tmp_path) -> World:
    with session_scope(db_url) as session:
        tenant_a, connection_a = make_tenant(session, "org-a")
        tenant_b, connection_b = make_tenant(session, "org-b")
    person = seed_person(db_url, tenant_a, connection_a, 5551, ("7000000001", "7000000002"),
                         email="lea.durand@example.fr", last_name="Durand", file_dir=tmp_path)
    neighbour = seed_person(db_url, tenant_a, connection_a, 5552, ("7000000003", "7000000004"),
                            email="noe.petit@example.fr", last_name="Petit", file_dir=tmp_path)
    stranger = seed_person(db_url, tenant_b, connection_b, 5551, ("7000000005", "7000000006"),
                           email="lea.durand@other.example", last_name="Durand", file_dir=tmp_path)
    return World(db_url, person, neighbour, stranger)


def enrollment_ids(session, beneficiary_id: int) -> list[int]:
    return list(session.scalars(select(Enrollment.id).where(Enrollment.beneficiary_id == beneficiary_id)
                                .order_by(Enrollment.id)))
