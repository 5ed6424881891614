"""Applying Wedof registration folders to the BDC data layer, on SQLite and PostgreSQL.

The folders are built from the real key set (wedof-api.md §4) and the real Wedof samples; every
check reads the rows back from the database.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import event, func, select

from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Document,
    DocumentType,
    Enrollment,
    EnrollmentStatus,
    Evaluation,
    EvaluationStatus,
    Program,
    Tenant,
    User,
    UserRole,
)
from wedof.mapping import ApplyResult, FolderRejected, apply_folder, apply_folders
from wedof.samples import certification_folder_sample, registration_folder_sample

MODELS = (User, Beneficiary, Program, Enrollment, Evaluation, Document)


def make_folder(
    external_id="4270885603",
    *,
    attendee_id=81234,
    email="Camille.Martin@Example.fr ",
    state="inTraining",
    last_update="2025-02-03T09:12:44.517Z",
    completion_rate=40,
    action_id="12345678900012_bilan-24h-action",
    title="Bilan de compétences - 24h",
    **top,
) -> dict:
    """A registration folder with the real keys (values invented, as in wedof-api.md §4)."""
    folder = {
        "externalId": external_id,
        "type": "cpf",
        "state": state,
        "attendeeState": "serviceDoneNotDeclared",
        "billingState": "notBillable",
        "controlState": "notInControl",
        "completionRate": completion_rate,
        "lastUpdate": last_update,
        "createdOn": "2025-01-06T10:02:11.000Z",
        "updatedOn": last_update,
        "permalink": f"https://www.wedof.fr/dossier-formation-{external_id}",
        "tags": [],
        "files": [],
        "attendee": {
            "id": attendee_id,
            "firstName": "Camille",
            "lastName": "Martin",
            "email": email,
            "phoneNumber": "0612345678",
            "phoneFixed": None,
            "dateOfBirth": "1987-05-14T00:00:00.000Z",
            "gender": None,
            "degree": 6,
            "degreeTitle": "BAC+3/4 (NIVEAU 6)",
            "poleEmploiId": None,
            "address": {
                "number": "12",
                "roadTypeLabel": "Rue",
                "roadName": "des Lilas",
                "zipCode": "69003",
                "city": "Lyon",
                "country": None,
                "countryCode": None,
                "fullAddress": None,
            },
        },
        "trainingActionInfo": {
            "title": title,
            "externalId": action_id,
            "trainingActionId": "12345678900012_bilan-24h/bilan-24h-action",
            "sessionStartDate": "2025-01-20T00:00:00.000Z",
            "sessionEndDate": "2025-03-20T00:00:00.000Z",
            "indicativeDuration": 24,
            "content": "Un bilan en trois phases.",
            "trainingGoal": "string",
        },
        "history": {
            "notProcessedDate": "2025-01-06T10:02:11.000Z",
            "acceptedDate": "2025-01-08T08:00:00.000Z",
            "inTrainingDate": "2025-01-20T09:00:00.000Z",
            "terminatedDate": None,
            "serviceDoneDeclaredDate": None,
        },
    }
    folder.update(top)
    return folder


def add_tenant(session, slug="acme") -> int:
    tenant = Tenant(name=slug.title(), slug=slug)
    session.add(tenant)
    session.flush()
    return tenant.id


@pytest.fixture
def tenant(session) -> int:
    tenant_id = add_tenant(session)
    session.commit()
    return tenant_id


def counts(session) -> dict[str, int]:
    return {model.__name__: session.scalar(select(func.count()).select_from(model)) for model in MODELS}


def snapshot(session) -> dict:
    """Every mapped row by natural key, without surrogate ids or timestamps (comparable across runs)."""
    session.expire_all()
    users = {u.id: u for u in session.scalars(select(User))}
    bens = {b.id: b for b in session.scalars(select(Beneficiary))}
    progs = {p.id: p for p in session.scalars(select(Program))}
    enrs = {e.id: e for e in session.scalars(select(Enrollment))}
    data: dict = {}
    for b in bens.values():
        u = users[b.user_id]
        data[("ben", b.tenant_id, b.external_id)] = (
            u.email,
            u.first_name,
            u.last_name,
            u.role,
            u.tenant_id,
            b.phone,
            b.birth_date,
            b.address,
            b.city,
            b.postal_code,
            b.country,
            b.status,
            b.custom_fields,
        )
    for p in progs.values():
        data[("prog", p.tenant_id, p.external_id)] = (
            p.name,
            p.description,
            p.category,
            p.duration_hours,
            p.start_date,
            p.end_date,
            p.status,
        )
    for e in enrs.values():
        data[("enr", e.tenant_id, e.external_id)] = (
            bens[e.beneficiary_id].external_id,
            progs[e.program_id].external_id,
            e.status,
            e.progress,
            e.wedof_state,
            e.wedof_billing_state,
            e.wedof_last_update,
            e.enrolled_at,
            e.completed_at,
        )
    for v in session.scalars(select(Evaluation)):
        data[("eval", v.tenant_id, v.external_id)] = (
            bens[v.beneficiary_id].external_id,
            enrs[v.enrollment_id].external_id,
            v.title,
            v.score,
            v.status,
        )
    for d in session.scalars(select(Document)):
        data[("doc", d.tenant_id, d.external_id)] = (
            bens[d.beneficiary_id].external_id,
            enrs[d.enrollment_id].external_id,
            d.title,
            d.type,
            d.meta,
        )
    return data


@contextmanager
def statements(session):
    """Record every SQL statement the session's connection sends."""
    seen: list[str] = []
    engine = session.get_bind()

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement.lstrip().split()[0].upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def one(session, model, **where):
    rows = session.scalars(select(model).filter_by(**where)).all()
    assert len(rows) == 1, rows
    return rows[0]


# -- the real samples -------------------------------------------------------------------------------


def test_real_registration_folder_sample_applies_as_it_is(session, tenant):
    result = apply_folder(session, tenant, registration_folder_sample())
    session.commit()
    assert result.outcome == "created"
    ben = one(session, Beneficiary, external_id="2024")
    user = session.get(User, ben.user_id)
    # Swapped in Wedof's own sample; kept faithfully.
    assert (user.first_name, user.last_name) == ("Doe", "john")
    assert user.email == "john.doe@gmail.com" and user.role == UserRole.STUDENT and user.tenant_id == tenant
    assert ben.phone == "(323) 853-2456"
    # "string" placeholders are no address; a lone number is not one either.
    assert (ben.address, ben.city, ben.postal_code, ben.birth_date) == (None, None, None, None)
    assert ben.custom_fields == {
        "wedof_degree": 7,
        "wedof_degree_title": "BAC+5 : grade master, DEA, DESS, ingénieur... (NIVEAU 7)",
    }
    program = one(session, Program, external_id="53222292400039_scrum-online-action-v2")
    assert (program.name, program.category, program.duration_hours) == ("Titre formation", "formation", 14)
    assert program.description is None  # content and trainingGoal are both "string"
    assert (program.start_date, program.end_date) == (date(2024, 3, 28), date(2024, 3, 29))
    enrollment = one(session, Enrollment, external_id="12345678901234")
    assert (enrollment.status, enrollment.wedof_state, enrollment.wedof_billing_state) == (
        EnrollmentStatus.ENROLLED,
        "accepted",
        "notBillable",
    )
    assert enrollment.progress == 0
    assert enrollment.wedof_last_update == datetime(2024, 3, 15, 14, 26, 51, 842000, tzinfo=UTC)
    assert enrollment.enrolled_at == datetime(2024, 6, 16, 14, 26, 51, tzinfo=UTC)
    assert enrollment.completed_at is None and enrollment.in_training_at is None
    # The folder's own session and duration, what the lifecycle rules check declarations against.
    assert (enrollment.session_start_date, enrollment.session_end_date) == (date(2024, 3, 28), date(2024, 3, 29))
    assert enrollment.indicative_duration_hours == 14
    assert (result.enrollment_id, result.beneficiary_id, result.program_id) == (
        enrollment.id,
        ben.id,
        program.id,
    )
    assert counts(session) == {
        "User": 1,
        "Beneficiary": 1,
        "Program": 1,
        "Enrollment": 1,
        "Evaluation": 0,
        "Document": 0,
    }


def test_certification_folder_sample_is_rejected_and_writes_nothing(session, tenant):
    for kind in ("all", "stagiaires", "formations"):
        with pytest.raises(FolderRejected, match="certification folder"):
            apply_folder(session, tenant, certification_folder_sample(), kind=kind)
    assert set(counts(session).values()) == {0}


# -- outcomes and level triggering ------------------------------------------------------------------


def test_created_then_unchanged_writes_nothing_at_all(session, tenant):
    folder = make_folder()
    assert apply_folder(session, tenant, folder).outcome == "created"
    session.commit()
    before = snapshot(session)
    stamps = {(m.__name__, r.id): r.updated_at for m in MODELS for r in session.scalars(select(m))}
    with statements(session) as seen:
        result = apply_folder(session, tenant, copy.deepcopy(folder))
        session.commit()
    assert result.outcome == "unchanged"
    assert set(seen) == {"SELECT"}, seen
    assert snapshot(session) == before
    assert {(m.__name__, r.id): r.updated_at for m in MODELS for r in session.scalars(select(m))} == stamps


def test_a_newer_folder_updates_and_an_older_one_is_stale(session, tenant):
    v1 = make_folder(state="accepted", completion_rate=None, last_update="2025-01-08T08:00:00.000Z")
    v2 = make_folder(state="inTraining", completion_rate=40, last_update="2025-02-03T09:12:44.517Z")
    assert apply_folder(session, tenant, v1).outcome == "created"
    assert apply_folder(session, tenant, v2).outcome == "updated"
    session.commit()
    after_v2, rows = snapshot(session), counts(session)
    with statements(session) as seen:
        assert apply_folder(session, tenant, v1).outcome == "stale"
    assert set(seen) == {"SELECT"}
    assert snapshot(session) == after_v2 and counts(session) == rows
    enrollment = one(session, Enrollment, external_id="4270885603")
    assert (enrollment.status, enrollment.progress, enrollment.wedof_state) == (
        EnrollmentStatus.ACTIVE,
        40,
        "inTraining",
    )


def test_out_of_order_delivery_keeps_the_newest(session, tenant):
    v1 = make_folder(state="accepted", completion_rate=None, last_update="2025-01-08T08:00:00.000Z")
    v2 = make_folder(state="terminated", completion_rate=100, last_update="2025-03-20T08:00:00.000Z")
    assert apply_folder(session, tenant, v2).outcome == "created"
    assert apply_folder(session, tenant, v1).outcome == "stale"
    assert apply_folder(session, tenant, v2).outcome == "unchanged"
    session.commit()
    assert counts(session) == {
        "User": 1,
        "Beneficiary": 1,
        "Program": 1,
        "Enrollment": 1,
        "Evaluation": 1,
        "Document": 1,
    }
    assert one(session, Enrollment).status == EnrollmentStatus.COMPLETED


def test_equal_last_update_with_other_data_is_applied(session, tenant):
    apply_folder(session, tenant, make_folder(completion_rate=40))
    assert apply_folder(session, tenant, make_folder(completion_rate=55)).outcome == "updated"
    assert one(session, Enrollment).progress == 55


def test_missing_last_update_applies_only_when_nothing_dated_is_stored(session, tenant):
    undated = make_folder(last_update=None, completion_rate=10)
    assert apply_folder(session, tenant, undated).outcome == "created"
    assert (
        apply_folder(session, tenant, make_folder(last_update="garbage", completion_rate=20)).outcome
        == "updated"
    )
    assert one(session, Enrollment).progress == 20
    dated = make_folder(last_update="2025-02-03T09:12:44.517Z", completion_rate=30)
    assert apply_folder(session, tenant, dated).outcome == "updated"
    assert apply_folder(session, tenant, undated).outcome == "stale"
    assert one(session, Enrollment).progress == 30


def test_last_update_with_offset_is_compared_in_utc(session, tenant):
    apply_folder(
        session, tenant, make_folder(last_update="2025-02-03T10:00:00.000+02:00", completion_rate=10)
    )
    # 09:00Z is later than 08:00Z (10:00+02:00).
    assert (
        apply_folder(
            session, tenant, make_folder(last_update="2025-02-03T09:00:00Z", completion_rate=20)
        ).outcome
        == "updated"
    )
    assert (
        apply_folder(
            session, tenant, make_folder(last_update="2025-02-03T08:30:00Z", completion_rate=5)
        ).outcome
        == "stale"
    )


# -- progress, evaluation, report -------------------------------------------------------------------


RATES = [  # (completionRate sent, Enrollment.progress, Evaluation.score)
    (40, 40, 40.0),
    (0, 0, 0.0),
    (100, 100, 100.0),
    (150, 100, 100.0),
    (-5, 0, 0.0),
    ("62", 62, 62.0),
    (33.5, 34, 33.5),
    ("99,5", 100, 99.5),
]


def test_completion_rate_sets_progress_and_evaluation(session, tenant):
    for rate, progress, score in RATES:
        session.rollback()
        apply_folder(session, tenant, make_folder(completion_rate=rate))
        assert one(session, Enrollment).progress == progress, rate
        evaluation = one(session, Evaluation, external_id="4270885603:completion")
        assert evaluation.score == score, rate
        assert evaluation.title == "Taux de réalisation — Bilan de compétences - 24h"
        assert evaluation.status == (
            EvaluationStatus.COMPLETED if score == 100 else EvaluationStatus.IN_PROGRESS
        )


def test_unusable_completion_rate_keeps_what_we_hold(session, tenant):
    for rate in [None, "n/a", "abc", True, [], {"v": 1}, float("nan"), float("inf"), "1e999"]:
        session.rollback()
        apply_folder(session, tenant, make_folder(completion_rate=35, last_update="2025-02-01T00:00:00Z"))
        result = apply_folder(
            session, tenant, make_folder(completion_rate=rate, last_update="2025-02-02T00:00:00Z")
        )
        assert result.outcome == "updated", rate  # lastUpdate moved on
        assert one(session, Enrollment).progress == 35, rate
        assert one(session, Evaluation).score == 35, rate


def test_no_rate_no_evaluation(session, tenant):
    apply_folder(session, tenant, make_folder(completion_rate=None))
    assert counts(session)["Evaluation"] == 0


def test_evaluation_follows_the_rate(session, tenant):
    apply_folder(session, tenant, make_folder(completion_rate=40, last_update="2025-02-01T00:00:00Z"))
    apply_folder(session, tenant, make_folder(completion_rate=100, last_update="2025-02-02T00:00:00Z"))
    evaluation = one(session, Evaluation)
    assert (evaluation.score, evaluation.status) == (100, EvaluationStatus.COMPLETED)


def test_bilan_report_is_created_once_and_kept(session, tenant):
    apply_folder(session, tenant, make_folder(state="inTraining", last_update="2025-02-01T00:00:00Z"))
    assert counts(session)["Document"] == 0
    terminated = make_folder(state="terminated", completion_rate=100, last_update="2025-03-01T00:00:00Z")
    terminated["history"]["terminatedDate"] = "2025-03-01T00:00:00.000Z"
    apply_folder(session, tenant, terminated)
    session.commit()
    document = one(session, Document, external_id="4270885603:bilan-report")
    first = (document.id, document.title, document.meta, document.updated_at)
    assert document.type == DocumentType.BILAN_REPORT
    assert document.title == "Rapport de bilan — Camille Martin"
    assert document.meta["wedof_state"] == "terminated"
    assert document.meta["state_date"] == "2025-03-01T00:00:00.000Z"
    assert document.meta["permalink"] == "https://www.wedof.fr/dossier-formation-4270885603"
    enrollment = one(session, Enrollment)
    assert enrollment.completed_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert document.enrollment_id == enrollment.id and document.beneficiary_id == enrollment.beneficiary_id
    for state, when in [("serviceDoneDeclared", "2025-03-05"), ("serviceDoneValidated", "2025-03-09")]:
        moved = copy.deepcopy(terminated)
        moved.update(state=state, lastUpdate=f"{when}T00:00:00Z")
        assert apply_folder(session, tenant, moved).outcome == "updated"
    session.commit()
    session.expire_all()
    document = one(session, Document)
    assert (document.id, document.title, document.meta, document.updated_at) == first


def test_report_created_when_first_seen_already_done(session, tenant):
    apply_folder(session, tenant, make_folder(state="serviceDoneValidated"))
    document = one(session, Document)
    assert document.meta["wedof_state"] == "serviceDoneValidated"
    assert one(session, Beneficiary).status == BeneficiaryStatus.COMPLETED


# -- attendee values --------------------------------------------------------------------------------


def test_accents_kept_and_placeholders_dropped(session, tenant):
    folder = make_folder()
    folder["attendee"].update(
        firstName="Hélène",
        lastName="Françoise-Noël",
        email="  ",
        phoneNumber="N/A",
        phoneFixed="04 78 00 00 00",
        dateOfBirth="not a date",
        gender="F",
    )
    folder["attendee"]["address"] = {
        "number": "null",
        "roadTypeLabel": "Allée",
        "roadName": "des Érables",
        "zipCode": "",
        "city": "Saint-Étienne",
        "country": "string",
        "countryCode": "FR",
        "fullAddress": None,
    }
    apply_folder(session, tenant, folder)
    ben = one(session, Beneficiary)
    user = session.get(User, ben.user_id)
    assert (user.first_name, user.last_name, user.email) == ("Hélène", "Françoise-Noël", None)
    assert (ben.phone, ben.birth_date) == ("04 78 00 00 00", None)
    assert (ben.address, ben.city, ben.postal_code, ben.country) == (
        "Allée des Érables",
        "Saint-Étienne",
        None,
        "FR",
    )
    assert ben.custom_fields["wedof_gender"] == "F"


def test_full_address_and_birth_date(session, tenant):
    folder = make_folder()
    folder["attendee"]["address"]["fullAddress"] = "12 rue des Lilas, 69003 Lyon"
    apply_folder(session, tenant, folder)
    ben = one(session, Beneficiary)
    assert ben.address == "12 rue des Lilas, 69003 Lyon"
    assert ben.birth_date == date(1987, 5, 14)
    assert session.get(User, ben.user_id).email == "camille.martin@example.fr"


def test_invalid_email_is_null(session, tenant):
    for email in [
        "not-an-email",
        "a@b",
        "two@@x.fr",
        "sp ace@x.fr",
        "x" * 250 + "@x.fr",
        12,
        ["a@b.fr"],
        None,
    ]:
        session.rollback()
        apply_folder(session, tenant, make_folder(email=email))
        assert session.scalar(select(User.email)) is None, email
        assert "wedof_email" not in one(session, Beneficiary).custom_fields


def test_program_category_and_fallback_name(session, tenant):
    folders = [
        make_folder("1", action_id="a1", title="BILAN DE COMPETENCES complet"),
        make_folder("2", action_id="a2", title="Anglais professionnel"),
        make_folder("3", action_id="a3", title=None),
    ]
    apply_folders(session, tenant, folders)
    programs = {p.external_id: p for p in session.scalars(select(Program))}
    assert programs["a1"].category == "bilan_competences"
    assert programs["a2"].category == "formation"
    assert (programs["a3"].name, programs["a3"].category) == ("Formation a3", "formation")


def test_training_action_id_is_the_fallback_key(session, tenant):
    folder = make_folder()
    folder["trainingActionInfo"]["externalId"] = None
    result = apply_folder(session, tenant, folder)
    assert session.get(Program, result.program_id).external_id == "12345678900012_bilan-24h/bilan-24h-action"


# -- email collisions -------------------------------------------------------------------------------


def test_email_taken_in_another_tenant_is_kept_aside(session, tenant):
    other = add_tenant(session, "other")
    apply_folder(session, other, make_folder())
    apply_folder(session, tenant, make_folder())
    session.commit()
    users = {u.tenant_id: u for u in session.scalars(select(User))}
    assert users[other].email == "camille.martin@example.fr"
    assert users[tenant].email is None
    ben = one(session, Beneficiary, tenant_id=tenant)
    assert ben.custom_fields["wedof_email"] == "camille.martin@example.fr"
    assert apply_folder(session, tenant, make_folder()).outcome == "unchanged"


def test_email_of_another_attendee_in_the_same_page(session, tenant):
    results = apply_folders(
        session, tenant, [make_folder("1", attendee_id=1), make_folder("2", attendee_id=2)]
    )
    session.commit()
    assert [r.outcome for r in results] == ["created", "created"]
    emails = {
        b.external_id: (session.get(User, b.user_id).email, b.custom_fields.get("wedof_email"))
        for b in session.scalars(select(Beneficiary))
    }
    assert emails == {"1": ("camille.martin@example.fr", None), "2": (None, "camille.martin@example.fr")}


def test_email_released_and_claimed_in_one_page(session, tenant):
    apply_folders(
        session,
        tenant,
        [make_folder("1", attendee_id=1, email="a@x.fr"), make_folder("2", attendee_id=2, email="b@x.fr")],
    )
    session.commit()
    # Attendee 1 moves to c@x.fr, attendee 2 takes a@x.fr: valid only if the release is written first.
    apply_folders(
        session,
        tenant,
        [
            make_folder("1", attendee_id=1, email="c@x.fr", last_update="2025-03-01T00:00:00Z"),
            make_folder("2", attendee_id=2, email="a@x.fr", last_update="2025-03-01T00:00:00Z"),
        ],
    )
    session.commit()
    emails = {b.external_id: session.get(User, b.user_id).email for b in session.scalars(select(Beneficiary))}
    assert emails == {"1": "c@x.fr", "2": "a@x.fr"}
    # Swapped back, c@x.fr and a@x.fr released and re-claimed in the same page.
    apply_folders(
        session,
        tenant,
        [
            make_folder("2", attendee_id=2, email="b@x.fr", last_update="2025-04-01T00:00:00Z"),
            make_folder("1", attendee_id=1, email="a@x.fr", last_update="2025-04-01T00:00:00Z"),
        ],
    )
    session.commit()
    emails = {b.external_id: session.get(User, b.user_id).email for b in session.scalars(select(Beneficiary))}
    assert emails == {"1": "a@x.fr", "2": "b@x.fr"}
    # Wanting an address whose holder gives it up only later in the page: like one by one, kept aside.
    apply_folders(
        session,
        tenant,
        [
            make_folder("1", attendee_id=1, email="b@x.fr", last_update="2025-05-01T00:00:00Z"),
            make_folder("2", attendee_id=2, email="d@x.fr", last_update="2025-05-01T00:00:00Z"),
        ],
    )
    session.commit()
    bens = {b.external_id: b for b in session.scalars(select(Beneficiary))}
    assert session.get(User, bens["1"].user_id).email is None
    assert bens["1"].custom_fields["wedof_email"] == "b@x.fr"
    assert session.get(User, bens["2"].user_id).email == "d@x.fr"
    # The next delivery of the same folder finds the address free and takes it.
    apply_folder(
        session, tenant, make_folder("1", attendee_id=1, email="b@x.fr", last_update="2025-05-01T00:00:00Z")
    )
    session.commit()
    assert session.get(User, bens["1"].user_id).email == "b@x.fr"
    assert "wedof_email" not in bens["1"].custom_fields


def test_email_held_by_a_non_student_user(session, tenant):
    session.add(User(tenant_id=None, email="camille.martin@example.fr", role=UserRole.SUPER_ADMIN))
    session.flush()
    apply_folder(session, tenant, make_folder())
    ben = one(session, Beneficiary)
    assert session.get(User, ben.user_id).email is None
    assert ben.custom_fields["wedof_email"] == "camille.martin@example.fr"


# -- tenants and kinds ------------------------------------------------------------------------------


def test_same_ids_in_two_tenants_are_separate_rows(session, tenant):
    other = add_tenant(session, "other")
    a = apply_folder(session, tenant, make_folder(email="a@x.fr"))
    b = apply_folder(session, other, make_folder(email="b@x.fr", completion_rate=70))
    session.commit()
    assert a.outcome == b.outcome == "created"
    assert len({a.enrollment_id, b.enrollment_id}) == 2
    assert len({a.beneficiary_id, b.beneficiary_id}) == 2 and len({a.program_id, b.program_id}) == 2
    assert session.get(Enrollment, a.enrollment_id).progress == 40
    assert session.get(Enrollment, b.enrollment_id).progress == 70
    assert counts(session) == {
        "User": 2,
        "Beneficiary": 2,
        "Program": 2,
        "Enrollment": 2,
        "Evaluation": 2,
        "Document": 0,
    }


def test_kind_stagiaires_writes_only_the_attendee(session, tenant):
    result = apply_folder(session, tenant, make_folder(), kind="stagiaires")
    assert result.outcome == "created" and result.enrollment_id is None and result.program_id is None
    assert counts(session) == {
        "User": 1,
        "Beneficiary": 1,
        "Program": 0,
        "Enrollment": 0,
        "Evaluation": 0,
        "Document": 0,
    }
    assert apply_folder(session, tenant, make_folder(), kind="stagiaires").outcome == "unchanged"
    # A folder without a training action still carries an attendee.
    folder = make_folder("55", trainingActionInfo=None)
    assert apply_folder(session, tenant, folder, kind="stagiaires").outcome == "unchanged"


def test_kind_formations_writes_only_the_program(session, tenant):
    folder = make_folder(attendee=None)
    result = apply_folder(session, tenant, folder, kind="formations")
    assert result.outcome == "created" and result.beneficiary_id is None and result.enrollment_id is None
    assert counts(session) == {
        "User": 0,
        "Beneficiary": 0,
        "Program": 1,
        "Enrollment": 0,
        "Evaluation": 0,
        "Document": 0,
    }
    assert apply_folder(session, tenant, folder, kind="formations").outcome == "unchanged"


def test_kind_all_then_partial_kinds_are_unchanged(session, tenant):
    apply_folder(session, tenant, make_folder(state="terminated", completion_rate=100))
    for kind in ("stagiaires", "formations", "all"):
        assert (
            apply_folder(
                session, tenant, make_folder(state="terminated", completion_rate=100), kind=kind
            ).outcome
            == "unchanged"
        )


def test_unknown_kind_is_a_caller_error(session, tenant):
    with pytest.raises(ValueError) as info:
        apply_folder(session, tenant, make_folder(), kind="bilans")
    assert not isinstance(info.value, FolderRejected)


# -- rejection --------------------------------------------------------------------------------------


UNUSABLE_FOLDERS = [
    None,
    [],
    "folder",
    42,
    {},
    {"externalId": None},
    {"externalId": ""},
    {"externalId": "  "},
    {"externalId": True},
    {"externalId": "../../users/me"},
    {"externalId": "x" * 53},
    make_folder(attendee=None),
    make_folder(attendee={"id": None}),
    make_folder(attendee={"id": True}),
    make_folder(attendee="81234"),
    make_folder(trainingActionInfo=None),
    make_folder(trainingActionInfo={"externalId": None, "trainingActionId": None, "title": "x"}),
    make_folder(trainingActionInfo={"externalId": "y" * 201}),
]


def test_unusable_folders_are_rejected_without_writing(session, tenant):
    for folder in UNUSABLE_FOLDERS:
        with pytest.raises(FolderRejected):
            apply_folder(session, tenant, folder)
        assert set(counts(session).values()) == {0}, folder
    results = apply_folders(session, tenant, UNUSABLE_FOLDERS)
    assert all(isinstance(result, FolderRejected) for result in results)
    assert set(counts(session).values()) == {0}


def test_rejected_folder_names_its_external_id(session, tenant):
    with pytest.raises(FolderRejected) as info:
        apply_folder(session, tenant, make_folder("777", attendee=None))
    assert info.value.external_id == "777" and "attendee" in info.value.reason


# -- batch ------------------------------------------------------------------------------------------


def test_batch_isolates_bad_folders_in_their_slots(session, tenant):
    page = [
        make_folder("1", attendee_id=1, email="a@x.fr"),
        "garbage",
        make_folder(None),
        make_folder("4", attendee_id=4, email="b@x.fr"),
    ]
    results = apply_folders(session, tenant, page)
    assert isinstance(results[0], ApplyResult) and results[0].outcome == "created"
    assert isinstance(results[1], FolderRejected) and isinstance(results[2], FolderRejected)
    assert isinstance(results[3], ApplyResult) and results[3].outcome == "created"
    assert counts(session)["Enrollment"] == 2


def test_batch_keeps_the_newest_copy_of_a_folder(session, tenant):
    old = make_folder("1", completion_rate=10, last_update="2025-02-01T00:00:00Z")
    new = make_folder("1", completion_rate=90, last_update="2025-02-05T00:00:00Z")
    for page in ([old, new], [new, old]):
        session.rollback()
        results = apply_folders(session, tenant, page)
        assert sorted(r.outcome for r in results) == ["created", "stale"]
        assert len({r.enrollment_id for r in results}) == 1
        assert one(session, Enrollment).progress == 90
        assert counts(session)["Evaluation"] == 1


def test_empty_page(session, tenant):
    with statements(session) as seen:
        assert apply_folders(session, tenant, []) == []
    assert seen == []


def page_of(n: int, offset: int = 0) -> list[dict]:
    """n distinct folders; attendees and programs shared by pairs, a few in end states."""
    states = ["accepted", "inTraining", "terminated", "serviceDoneDeclared", "canceledByAttendee"]
    return [
        make_folder(
            str(1000 + offset + i),
            attendee_id=offset + i // 2,
            email=f"p{(offset + i) // 2}@x.fr",
            state=states[i % len(states)],
            completion_rate=(i * 7) % 101,
            action_id=f"action-{i % 3}",
            title=f"Formation {i % 3}",
        )
        for i in range(n)
    ]


def test_batch_equals_one_by_one(session, tenant):
    page = page_of(12) + [
        make_folder(
            "1003", attendee_id=1, email="p1@x.fr", state="terminated", last_update="2025-01-01T00:00:00Z"
        )
    ]  # an older duplicate
    page.append(make_folder("2000", attendee_id=99, email="p3@x.fr"))  # email held by attendee 3
    for i, folder in enumerate(page_of(4, offset=100)):  # folders already stored, some updated
        apply_folder(session, tenant, folder)
        page.append(dict(folder, lastUpdate="2025-06-01T00:00:00Z", state="inTraining") if i % 2 else folder)
    session.commit()
    for folder in page:
        try:
            apply_folder(session, tenant, folder)
        except FolderRejected:
            pass
    one_by_one = snapshot(session)
    session.rollback()
    apply_folders(session, tenant, page)
    assert snapshot(session) == one_by_one


def test_batch_query_count_does_not_grow_with_the_page(session, tenant):
    """A handful of statements per page. Reads: one per table. Writes: one batch per table on
    PostgreSQL; SQLAlchemy sends SQLite inserts that must return new ids one row at a time
    (in-process, cheap), so there only the reads and updates are bounded."""
    postgres = session.get_bind().dialect.name == "postgresql"

    def run(page):
        with statements(session) as seen:
            apply_folders(session, tenant, page)
        session.commit()
        return seen

    def check(seen, inserted_rows):
        assert seen.count("SELECT") <= 7, (
            seen
        )  # beneficiaries+users, email holders, programs, enrollments, evaluations, documents, erased attendees
        assert len([s for s in seen if s not in ("SELECT", "INSERT")]) <= 6, (
            seen
        )  # one UPDATE batch per table
        assert seen.count("INSERT") <= (6 if postgres else inserted_rows), seen

    small, big = run(page_of(4)), run(page_of(40, offset=10))
    check(small, inserted_rows=4 * 3 + 2 * 2 + 2 + 2)
    check(big, inserted_rows=40 * 3 + 20 * 2 + 3 + 16)
    if postgres:
        assert abs(len(big) - len(small)) <= 1, (small, big)
    updated = [
        dict(f, lastUpdate="2025-06-01T00:00:00Z", completionRate=100, state="serviceDoneValidated")
        for f in page_of(40, offset=10)
    ]
    again = run(updated)
    check(again, inserted_rows=40)  # the reports not created yet
    assert "UPDATE" in again
    unchanged = run(updated)
    assert set(unchanged) == {"SELECT"} and len(unchanged) <= 6, unchanged


def _one_by_one_then_batch(session, tenant, page):
    for folder in page:
        apply_folder(session, tenant, folder)
    one_by_one = snapshot(session)
    session.rollback()
    results = apply_folders(session, tenant, page)
    assert snapshot(session) == one_by_one
    return one_by_one, results


def test_older_copies_in_a_page_leave_what_they_would_have_left(session, tenant):
    reached_end = make_folder(state="terminated", completion_rate=80, last_update="2025-03-01T00:00:00Z")
    reached_end["history"]["terminatedDate"] = "2025-03-01T00:00:00Z"
    newest = make_folder(
        state="serviceDoneDeclared", completion_rate=None, last_update="2025-03-02T00:00:00Z"
    )
    rows, results = _one_by_one_then_batch(session, tenant, [reached_end, newest])
    assert [r.outcome for r in results] == ["stale", "created"]
    assert rows[("enr", tenant, "4270885603")][3] == 80  # progress from the older copy
    assert rows[("eval", tenant, "4270885603:completion")][3] == 80
    assert rows[("doc", tenant, "4270885603:bilan-report")][4]["wedof_state"] == "terminated"


def test_titles_name_the_program_as_their_own_folder_does(session, tenant):
    page = [
        make_folder("1", attendee_id=1, email="a@x.fr", title="Bilan de compétences", state="terminated"),
        make_folder("2", attendee_id=2, email="b@x.fr", title="Bilan de compétences 24h", state="terminated"),
    ]
    rows, _ = _one_by_one_then_batch(session, tenant, page)
    assert rows[("eval", tenant, "1:completion")][2] == "Taux de réalisation — Bilan de compétences"
    assert rows[("eval", tenant, "2:completion")][2] == "Taux de réalisation — Bilan de compétences 24h"
    assert rows[("prog", tenant, "12345678900012_bilan-24h-action")][0] == "Bilan de compétences 24h"


def test_beneficiary_status_follows_all_its_enrollments(session, tenant):
    def status():
        session.expire_all()
        return one(session, Beneficiary).status

    apply_folder(session, tenant, make_folder("1", state="terminated", last_update="2025-03-01T00:00:00Z"))
    assert status() == BeneficiaryStatus.COMPLETED
    apply_folder(session, tenant, make_folder("2", state="inTraining"))  # a second bilan starts
    assert status() == BeneficiaryStatus.ACTIVE
    apply_folder(
        session, tenant, make_folder("2", state="canceledByAttendee", last_update="2025-04-01T00:00:00Z")
    )
    assert status() == BeneficiaryStatus.COMPLETED  # the withdrawn one does not count
    session.execute(Beneficiary.__table__.update().values(status=BeneficiaryStatus.ARCHIVED.value))
    apply_folder(session, tenant, make_folder("3", state="inTraining"))
    assert status() == BeneficiaryStatus.ARCHIVED  # staff archived it: their decision stands


def test_partial_kinds_respect_a_newer_stored_folder(session, tenant):
    apply_folder(session, tenant, make_folder(last_update="2025-03-01T00:00:00Z"))
    older = make_folder(last_update="2025-01-01T00:00:00Z", email="old@x.fr")
    older["trainingActionInfo"]["title"] = "Ancien titre"
    for kind in ("stagiaires", "formations"):
        assert apply_folder(session, tenant, older, kind=kind).outcome == "stale"
    assert session.scalar(select(User.email)) == "camille.martin@example.fr"
    assert session.scalar(select(Program.name)) == "Bilan de compétences - 24h"


def test_bilan_category_ignores_accents_and_case(session, tenant):
    for i, title in enumerate(
        [
            "Bilan de compétences",
            "BILAN DE COMPÉTENCES - 24h",
            "bilan  de  competence",
            "Mon bilan de Compétences",
        ]
    ):
        result = apply_folder(
            session, tenant, make_folder(str(i), attendee_id=i, email=None, action_id=f"a{i}", title=title)
        )
        assert session.get(Program, result.program_id).category == "bilan_competences", title


def test_two_writers_racing_on_one_new_folder_resolve_by_retry(pg_db_url):
    """Two workers apply the same new folder at once: the loser meets the unique index, rolls back,
    and its retry finds the winner's rows (nothing doubled). PostgreSQL only: SQLite has one writer."""
    import threading

    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from bdc.db import get_sessionmaker
    from tests.support.services import wait_until

    maker = get_sessionmaker(pg_db_url)
    with maker() as setup:
        tenant_id = add_tenant(setup)
        setup.commit()
    outcome: dict = {}
    with maker() as first, maker() as second:
        apply_folder(first, tenant_id, make_folder())  # flushed, not committed: holds the unique keys

        def race():
            try:
                apply_folder(second, tenant_id, make_folder())
                outcome["error"] = None
            except IntegrityError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=race)
        thread.start()

        def second_is_blocked() -> bool:
            # A fresh transaction per look: PostgreSQL freezes pg_stat_activity within one.
            with maker() as observer:
                return bool(
                    observer.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                        )
                    )
                )

        # Wait until the second writer is really blocked on the first's keys.
        wait_until(second_is_blocked, timeout=30, message="second writer waiting on the unique index")
        first.commit()  # now the second writer fails on the unique index
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert isinstance(outcome["error"], IntegrityError)
        second.rollback()
        assert apply_folder(second, tenant_id, make_folder()).outcome == "unchanged"
        second.commit()
        assert counts(second) == {
            "User": 1,
            "Beneficiary": 1,
            "Program": 1,
            "Enrollment": 1,
            "Evaluation": 1,
            "Document": 0,
        }


# -- syncs: trust lastUpdate, programs converge -------------------------------------------------------


def test_trusted_last_update_answers_unchanged_from_one_query(session, tenant):
    page = page_of(12)
    apply_folders(session, tenant, page)
    session.commit()
    before = snapshot(session)
    # Other data under the same lastUpdate is not even read: Wedof moves lastUpdate on every change.
    edited = [dict(folder, completionRate=3) for folder in page]
    with statements(session) as seen:
        results = apply_folders(session, tenant, edited, trust_last_update=True)
    assert [r.outcome for r in results] == ["unchanged"] * len(page)
    assert seen == ["SELECT"]
    assert snapshot(session) == before
    stored = {e.external_id: e for e in session.scalars(select(Enrollment))}
    assert [(r.enrollment_id, r.beneficiary_id, r.program_id) for r in results] == [
        (
            stored[f["externalId"]].id,
            stored[f["externalId"]].beneficiary_id,
            stored[f["externalId"]].program_id,
        )
        for f in page
    ]
    # A folder served twice: its last copy is unchanged, the earlier one stale (as one by one).
    twice = apply_folders(session, tenant, [page[0], edited[1], page[0]], trust_last_update=True)
    assert [r.outcome for r in twice] == ["stale", "unchanged", "unchanged"]
    assert twice[0].enrollment_id == twice[2].enrollment_id == results[0].enrollment_id
    # Without the trust, the same page is compared and applied.
    assert {r.outcome for r in apply_folders(session, tenant, edited)} == {"updated"}


def test_trusted_last_update_still_applies_newer_unknown_and_new_folders(session, tenant):
    apply_folders(session, tenant, page_of(3))
    session.commit()
    page = page_of(3)
    page[0] = dict(page[0], lastUpdate="2025-06-01T00:00:00Z", completionRate=90)  # newer
    page[1] = dict(page[1], lastUpdate=None)  # unknown age against a dated one: compared, stale
    page.append(make_folder("5555", attendee_id=55, email="new@x.fr"))  # new
    results = apply_folders(session, tenant, page, trust_last_update=True)
    assert [r.outcome for r in results] == ["updated", "stale", "unchanged", "created"]
    older = dict(page_of(3)[0], lastUpdate="2025-01-01T00:00:00Z")
    assert apply_folder(session, tenant, older, trust_last_update=True).outcome == "stale"
    for kind in ("stagiaires", "formations"):
        result = apply_folder(session, tenant, page[2], kind=kind, trust_last_update=True)
        assert result.outcome == "unchanged"
        assert (result.enrollment_id is None, result.program_id is None) == (True, kind == "stagiaires")


def test_trusted_last_update_takes_an_address_freed_since(session, tenant):
    holder = make_folder("1", attendee_id=1, email="a@x.fr")
    wanting = make_folder("2", attendee_id=2, email="a@x.fr")
    apply_folders(session, tenant, [holder, wanting])
    session.commit()
    # Still held: unchanged, nothing written.
    with statements(session) as seen:
        assert apply_folder(session, tenant, wanting, trust_last_update=True).outcome == "unchanged"
    assert set(seen) == {"SELECT"}
    # The holder moves to another address: the next sync of the unchanged folder takes the freed one.
    apply_folder(
        session, tenant, make_folder("1", attendee_id=1, email="b@x.fr", last_update="2025-06-01T00:00:00Z")
    )
    assert apply_folder(session, tenant, wanting, trust_last_update=True).outcome == "updated"
    session.commit()
    ben = one(session, Beneficiary, external_id="2")
    assert session.get(User, ben.user_id).email == "a@x.fr" and "wedof_email" not in ben.custom_fields


def _sessions(action_id: str, count: int) -> list[dict]:
    """Folders of one training action, each in its own session (different dates), like Wedof sends them."""
    folders = []
    for i in range(count):
        folder = make_folder(str(7000 + i), attendee_id=700 + i, email=f"s{i}@x.fr", action_id=action_id)
        folder["trainingActionInfo"]["sessionStartDate"] = f"2025-0{1 + i}-10T00:00:00.000Z"
        folder["trainingActionInfo"]["sessionEndDate"] = f"2025-0{2 + i}-20T00:00:00.000Z"
        folders.append(folder)
    return folders


@pytest.mark.parametrize("order", [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]])
def test_a_program_spans_its_sessions_and_does_not_flip(session, tenant, order):
    folders = _sessions("shared-action", 4)
    apply_folders(session, tenant, folders[:2])  # one page
    apply_folders(session, tenant, folders[2:])  # the next page widens the span
    session.commit()
    program = one(session, Program, external_id="shared-action")
    assert (program.start_date, program.end_date) == (date(2025, 1, 10), date(2025, 5, 20))
    stamp = program.updated_at
    # The same population again, in any order, page by page or one by one: the program stays.
    for folder in [folders[i] for i in order]:
        assert apply_folder(session, tenant, folder).outcome == "unchanged"
    assert {r.outcome for r in apply_folders(session, tenant, [folders[i] for i in order])} == {"unchanged"}
    session.commit()
    session.expire_all()
    program = one(session, Program, external_id="shared-action")
    assert (program.start_date, program.end_date, program.updated_at) == (
        date(2025, 1, 10),
        date(2025, 5, 20),
        stamp,
    )


def test_orm_objects_the_caller_holds_see_what_was_written(session, tenant):
    apply_folder(session, tenant, make_folder(completion_rate=10, last_update="2025-02-01T00:00:00Z"))
    session.commit()
    held = one(session, Enrollment)
    assert held.progress == 10
    apply_folder(session, tenant, make_folder(completion_rate=70, last_update="2025-02-02T00:00:00Z"))
    assert held.progress == 70  # expired by the apply, reloaded on access


def test_each_folder_keeps_its_own_session_and_its_entry_date(session, tenant):
    """Two folders of one training action, two sessions: the program spans them, each enrollment keeps its own."""
    first = registration_folder_sample()
    second = copy.deepcopy(first)
    second.update(externalId="12345678909999", state="inTraining", lastUpdate="2024-04-15T10:00:00.000Z")
    second["attendee"]["id"] = 2025
    second["attendee"]["email"] = "other@example.fr"
    second["trainingActionInfo"].update(sessionStartDate="2024-04-08T00:00:00.000Z",
                                        sessionEndDate="2024-05-31T00:00:00.000Z", indicativeDuration=24)
    second["history"]["inTrainingDate"] = "2024-04-09T08:30:00.000Z"
    apply_folders(session, tenant, [first, second])
    session.commit()
    a = one(session, Enrollment, external_id="12345678901234")
    b = one(session, Enrollment, external_id="12345678909999")
    assert (a.session_start_date, a.session_end_date, a.indicative_duration_hours) == (date(2024, 3, 28), date(2024, 3, 29), 14)
    assert (b.session_start_date, b.session_end_date, b.indicative_duration_hours) == (date(2024, 4, 8), date(2024, 5, 31), 24)
    assert b.in_training_at == datetime(2024, 4, 9, 8, 30, tzinfo=UTC) and a.in_training_at is None
