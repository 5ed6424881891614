"""The right of access, in the data layer: every kind of row held about one person, and nobody else's."""

from __future__ import annotations

import json

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, Beneficiary
from privacy import EXPORT_FORMAT, export_beneficiary


def export(world, person, **options) -> dict:
    with session_scope(world.database_url) as session:
        return export_beneficiary(session, session.get(Beneficiary, person.beneficiary_id), actor="user:7", **options)


def test_the_export_holds_every_kind_of_row_about_the_person(world):
    person = world.person
    document = export(world, person)
    assert document["format"] == EXPORT_FORMAT and document["tenant"]["slug"] == "org-a"
    assert document["beneficiary"]["id"] == person.beneficiary_id
    assert (document["beneficiary"]["phone"], document["beneficiary"]["birth_date"]) == ("0611223344", "1984-03-09")
    assert document["beneficiary"]["address"] == "7 Rue des Tanneurs"
    assert document["user"]["email"] == person.email and document["user"]["last_name"] == person.last_name
    assert sorted(e["external_id"] for e in document["enrollments"]) == person.folders
    # Wedof's completion rate for each folder, and the result the host recorded.
    assert len(document["evaluations"]) == 3
    assert any(e["title"].startswith("Résultats du bilan") for e in document["evaluations"])
    assert [a["notes"] for a in document["appointments"]] == [f"Léa Durand vise une reconversion ({person.email})"]
    kinds = sorted(d["type"] for d in document["documents"])
    assert kinds == ["bilan_report", "invoice", "other"] and document["document_contents_included"] is False
    (action,) = document["lifecycle_actions"]
    assert action["kind"] == "end" and action["body"]["code"] == "8"
    (invoice,) = document["invoices"]
    assert invoice["number"].startswith("F-") and invoice["amount_incl"] == "1290.00"
    assert invoice["has_pdf"] is True and "pdf" not in invoice
    assert invoice["document"]["beneficiary_name"] == "Léa Durand"
    assert [a["action"] for a in document["audit_log"]] == ["billing.reserved", "stagiaire.updated"]
    assert [n["message"] for n in document["notices"]] == ["Entrée tardive pour Léa Durand"]
    (event,) = document["inbox_events"]
    assert event["folder_external_id"] == person.folders[0] and event["has_body"] is True
    assert "body" not in event and document["raw_bodies_included"] is False
    assert document["erasure"] is None


def test_the_export_holds_nothing_of_anyone_else(world):
    text = json.dumps(export(world, world.person))
    for other in (world.neighbour, world.stranger):
        assert other.email not in text
        for folder in other.folders:
            assert folder not in text
    assert "Petit" not in text


def test_raw_bodies_are_included_only_when_asked(world):
    (event,) = export(world, world.person, include_raw_bodies=True)["inbox_events"]
    assert json.loads(event["body"])["attendee"]["email"] == world.person.email


def test_the_export_is_audited_without_personal_data(world):
    export(world, world.person)
    with session_scope(world.database_url) as session:
        (entry,) = session.scalars(select(AuditLog).where(AuditLog.action == "beneficiary.exported")).all()
        assert (entry.actor, entry.target_type, entry.target_id) == ("user:7", "beneficiary",
                                                                    str(world.person.beneficiary_id))
        assert entry.details["counts"]["enrollments"] == 2 and entry.details["counts"]["invoices"] == 1
        recorded = json.dumps(entry.details)
        for value in (world.person.email, world.person.last_name, "0611223344", "Tanneurs"):
            assert value not in recorded
