"""Erasure in the data layer: what goes, what stays, and that later folders never bring the person back."""

from __future__ import annotations

import copy
import json

from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import (
    Appointment,
    AuditLog,
    Beneficiary,
    Document,
    Enrollment,
    ErasedAttendee,
    Evaluation,
    Invoice,
    LifecycleAction,
    Notice,
    User,
    WebhookEvent,
)
from privacy import ERASED_NAME, erase_beneficiary
from tests.privacy.conftest import person_folders
from tests.privacy.pdf_text import pdf_text
from wedof.mapping import apply_folder, apply_folders

PERSONAL = ("lea.durand@example.fr", "Durand", "0611223344", "Tanneurs", "1984-03-09", "PE-7788123")


def erase(world, person) -> dict:
    with session_scope(world.database_url) as session:
        return erase_beneficiary(session, session.get(Beneficiary, person.beneficiary_id), actor="user:7")


def invoice_of(session, person) -> Invoice:
    return session.scalars(select(Invoice).where(Invoice.tenant_id == person.tenant_id,
                                                 Invoice.folder_number == person.folders[0])).one()


def profile(session, person) -> tuple:
    beneficiary = session.get(Beneficiary, person.beneficiary_id)
    user = session.get(User, beneficiary.user_id)
    return (user.first_name, user.last_name, user.email, beneficiary.phone, beneficiary.birth_date,
            beneficiary.address, beneficiary.city, beneficiary.postal_code, beneficiary.country,
            beneficiary.custom_fields)


def test_erasure_empties_the_person_and_removes_documents_and_raw_bodies(world):
    person = world.person
    with session_scope(world.database_url) as session:
        invoice = invoice_of(session, person)
        kept_invoice = (invoice.number, invoice.issue_date, invoice.amount_excl, invoice.vat_amount,
                        invoice.amount_incl, invoice.status)
        assert b"Durand" in pdf_text(invoice.pdf)  # what the erasure must print again
    assert person.file.exists()

    done = erase(world, person)

    assert done["documents_deleted"] == 3 and done["files_deleted"] == 1 and done["raw_bodies_deleted"] == 1
    assert not person.file.exists()
    with session_scope(world.database_url) as session:
        assert profile(session, person) == (None,) * 9 + ({},)
        beneficiary = session.get(Beneficiary, person.beneficiary_id)
        assert beneficiary.anonymised_at is not None and beneficiary.external_id == person.attendee_id
        assert session.get(User, beneficiary.user_id).is_active is False
        assert session.scalar(select(func.count()).select_from(Document)
                              .where(Document.beneficiary_id == person.beneficiary_id)) == 0
        # Only Wedof's completion rates remain (the folders' progress), not the host's results.
        titles = session.scalars(select(Evaluation.title).where(Evaluation.beneficiary_id == person.beneficiary_id))
        assert all(t.startswith("Taux de réalisation") for t in titles)
        assert session.scalars(select(Appointment.notes)
                               .where(Appointment.beneficiary_id == person.beneficiary_id)).all() == [None]
        enrollments = session.scalars(select(Enrollment).where(Enrollment.beneficiary_id == person.beneficiary_id)
                                      .order_by(Enrollment.external_id)).all()
        assert [(e.external_id, e.wedof_state) for e in enrollments] == [(person.folders[0], "serviceDoneValidated"),
                                                                         (person.folders[1], "inTraining")]
        invoice = invoice_of(session, person)
        assert (invoice.number, invoice.issue_date, invoice.amount_excl, invoice.vat_amount, invoice.amount_incl,
                invoice.status) == kept_invoice
        assert invoice.document["beneficiary_name"] == ERASED_NAME and invoice.document["beneficiary_address"] is None
        printed = pdf_text(invoice.pdf)
        assert b"Durand" not in printed and invoice.number.encode() in printed
        (action,) = session.scalars(select(LifecycleAction)
                                    .where(LifecycleAction.enrollment_id == enrollments[0].id)).all()
        assert action.body == {"date": "2025-02-28", "code": "8", "absenceDuration": 0.0}  # the declaration stays
        assert action.evidence == {"conclusion": "attended", "contact": "[effacé]"}
        (event,) = session.scalars(select(WebhookEvent).where(WebhookEvent.folder_external_id == person.folders[0])
                                   .join(WebhookEvent.connection)).all()
        assert event.body is None and event.body_purged_at is not None
        assert set(event.headers) == {"Content-Type", "X-Wedof-Delivery", "X-Wedof-Event"}
        rows = [json.dumps(e.details) for e in session.scalars(select(AuditLog).where(AuditLog.tenant_id ==
                                                                                      person.tenant_id))]
        rows += list(session.scalars(select(Notice.message).where(Notice.tenant_id == person.tenant_id)))
        for value in ("lea.durand@example.fr", "Durand"):
            assert not any(value in row for row in rows), value
        tombstone = session.scalars(select(ErasedAttendee).where(ErasedAttendee.tenant_id == person.tenant_id)).one()
        assert (tombstone.attendee_id, tombstone.reason) == (person.attendee_id, "request")
        erased = session.scalars(select(AuditLog).where(AuditLog.action == "beneficiary.erased")).one()
        assert erased.actor == "user:7" and erased.target_id == str(person.beneficiary_id)


def test_erasure_leaves_everyone_else_as_they_were(world):
    with session_scope(world.database_url) as session:
        before = {p.beneficiary_id: profile(session, p) for p in (world.neighbour, world.stranger)}
    erase(world, world.person)
    with session_scope(world.database_url) as session:
        assert {p.beneficiary_id: profile(session, p) for p in (world.neighbour, world.stranger)} == before
        # The stranger has the same Wedof attendee id in another tenant: its tombstone is not theirs.
        assert session.scalar(select(func.count()).select_from(ErasedAttendee)
                              .where(ErasedAttendee.tenant_id == world.stranger.tenant_id)) == 0
        bodies = session.scalars(select(WebhookEvent.body).where(WebhookEvent.body.is_not(None))).all()
        assert len(bodies) == 2 and all("Durand" not in b or "other.example" in b for b in bodies)
    assert world.neighbour.file.exists() and world.stranger.file.exists()


def test_erasing_twice_changes_nothing_more(world):
    erase(world, world.person)
    again = erase(world, world.person)
    assert again["documents_deleted"] == again["raw_bodies_deleted"] == 0
    with session_scope(world.database_url) as session:
        assert session.scalar(select(func.count()).select_from(ErasedAttendee)) == 1


def newer(folder: dict, **changes) -> dict:
    folder = copy.deepcopy(folder)
    folder.update({"lastUpdate": "2025-06-01T08:00:00.000Z", **changes})
    folder["attendee"].update(phoneNumber="0699999999", firstName="Léa-Marie")
    return folder


def test_later_folders_keep_the_person_empty_while_their_state_flows(world):
    person = world.person
    erase(world, person)
    done, running = person_folders(int(person.attendee_id), tuple(person.folders), email=person.email,
                                   last_name=person.last_name)
    with session_scope(world.database_url) as session:
        result = apply_folder(session, person.tenant_id, newer(running, state="terminated", completionRate=90))
        assert result.erased and result.outcome == "updated"
    with session_scope(world.database_url) as session:
        assert profile(session, person) == (None,) * 9 + ({},)
        enrollment = session.get(Enrollment, result.enrollment_id)
        assert (enrollment.wedof_state, enrollment.progress) == ("terminated", 90)
        # Reaching an end state makes no bilan report for an erased person.
        assert session.scalar(select(func.count()).select_from(Document)
                              .where(Document.beneficiary_id == person.beneficiary_id)) == 0


def test_a_page_skips_only_the_erased_attendee_and_a_sync_page_too(world):
    person, neighbour = world.person, world.neighbour
    erase(world, person)
    mine = person_folders(int(person.attendee_id), tuple(person.folders), email=person.email,
                          last_name=person.last_name)
    theirs = person_folders(int(neighbour.attendee_id), tuple(neighbour.folders), email=neighbour.email,
                            last_name=neighbour.last_name)
    for trust_last_update, month in ((False, 6), (True, 7)):  # the webhook path, then a sync's
        page = [newer(f, billingState="billed", lastUpdate=f"2025-0{month}-01T08:00:00.000Z") for f in (*mine, *theirs)]
        with session_scope(world.database_url) as session:
            results = apply_folders(session, person.tenant_id, page, trust_last_update=trust_last_update)
            assert [r.erased for r in results] == [True, True, False, False]
        with session_scope(world.database_url) as session:
            assert profile(session, person) == (None,) * 9 + ({},)
            assert profile(session, neighbour)[:4] == ("Léa-Marie", "Petit", neighbour.email, "0699999999")
            states = session.scalars(select(Enrollment.wedof_billing_state)
                                     .where(Enrollment.beneficiary_id == person.beneficiary_id)).all()
            assert states == ["billed", "billed"]


def test_a_new_folder_of_an_erased_attendee_links_to_it_without_personal_data(world):
    person = world.person
    erase(world, person)
    (fresh, _) = person_folders(int(person.attendee_id), ("7000000099", "7000000098"), email=person.email,
                                last_name=person.last_name)
    with session_scope(world.database_url) as session:
        result = apply_folder(session, person.tenant_id, fresh)
        assert result.beneficiary_id == person.beneficiary_id and result.erased
    with session_scope(world.database_url) as session:
        assert profile(session, person) == (None,) * 9 + ({},)
        text = json.dumps([list(map(str, row)) for row in session.execute(select(User.first_name, User.last_name,
                                                                                   User.email)).all()])
        assert person.email not in text
