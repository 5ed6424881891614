"""The page writer (wedof.mapping.bulk) stores exactly what the ORM would, on SQLite and PostgreSQL.

Each check writes plain rows through ``insert_rows`` / ``update_rows`` and reads them back through
the ORM, with values that are easy to get wrong when rows travel as one JSON text: quotes,
backslashes, accents, emoji, JSON-looking strings, nested JSON, microseconds, non-UTC offsets,
dates, floats, NULLs and enums.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from bdc.db import get_sessionmaker
from bdc.models import (
    Beneficiary,
    BeneficiaryStatus,
    Enrollment,
    EnrollmentStatus,
    Program,
    ProgramStatus,
    Tenant,
    User,
    UserRole,
)
from wedof.mapping import bulk

NOW = datetime(2026, 3, 15, 14, 26, 51, 842123, tzinfo=UTC)
HOSTILE = [
    "O'Brien \"Le Grand\"",
    "back\\slash \\n not a newline",
    "Zoë Ñúñez — ça va ? 🎓",
    '{"json": "lookalike"}',
    "%(rows)s %s $1 :name",
    "  spaced  ",
    "",
]


def _tenant(session) -> int:
    tenant = Tenant(name="Bulk", slug="bulk")
    session.add(tenant)
    session.flush()
    return tenant.id


def _user_rows(tenant_id: int, count: int) -> list[dict]:
    return [
        {
            "tenant_id": tenant_id,
            "role": UserRole.STUDENT,
            "is_active": True,
            "first_name": HOSTILE[i % len(HOSTILE)],
            "last_name": None if i % 3 == 0 else f"Nom {i}",
            "email": f"person.{i}@example.fr",
        }
        for i in range(count)
    ]


def test_insert_returns_ids_in_row_order_and_stores_what_the_orm_reads(session):
    tenant_id = _tenant(session)
    rows = _user_rows(tenant_id, 25)
    ids = bulk.insert_rows(session, User.__table__, rows, NOW)
    assert len(ids) == len(set(ids)) == 25
    for row, row_id in zip(rows, ids, strict=True):
        user = session.get(User, row_id)
        assert (user.first_name, user.last_name, user.email) == (row["first_name"], row["last_name"], row["email"])
        assert user.role is UserRole.STUDENT and user.is_active is True
        assert user.created_at == NOW and user.updated_at == NOW  # microseconds kept, aware UTC


def test_json_dates_floats_and_enums_round_trip(session):
    tenant_id = _tenant(session)
    (user_id,) = bulk.insert_rows(session, User.__table__, _user_rows(tenant_id, 1), NOW)
    fields = {
        "wedof_degree": 6,
        "note": HOSTILE[2],
        "nested": {"list": [1, 2.5, None, True], "quote": HOSTILE[0], "slash": HOSTILE[1]},
    }
    (beneficiary_id,) = bulk.insert_rows(session, Beneficiary.__table__, [{
        "tenant_id": tenant_id, "user_id": user_id, "external_id": "A-1", "phone": None,
        "birth_date": date(1980, 2, 29), "address": HOSTILE[4], "city": "Saint-Étienne",
        "postal_code": "42000", "country": "France", "custom_fields": fields, "status": BeneficiaryStatus.ACTIVE,
    }], NOW)
    (program_id,) = bulk.insert_rows(session, Program.__table__, [{
        "tenant_id": tenant_id, "external_id": "P-1", "status": ProgramStatus.ACTIVE, "name": HOSTILE[3],
        "description": "x" * 4000, "category": "formation", "duration_hours": 24.75,
        "start_date": None, "end_date": date(2026, 12, 31),
    }], NOW)
    paris = timezone(timedelta(hours=2))
    (enrollment_id,) = bulk.insert_rows(session, Enrollment.__table__, [{
        "tenant_id": tenant_id, "external_id": "F-1", "beneficiary_id": beneficiary_id, "program_id": program_id,
        "status": EnrollmentStatus.ACTIVE, "wedof_state": "inTraining", "wedof_billing_state": None,
        "wedof_last_update": datetime(2026, 3, 15, 16, 26, 51, 842000, tzinfo=paris), "progress": 37,
        "enrolled_at": None, "completed_at": None,
    }], NOW)
    session.expire_all()
    beneficiary = session.get(Beneficiary, beneficiary_id)
    assert beneficiary.custom_fields == fields
    assert beneficiary.birth_date == date(1980, 2, 29) and beneficiary.address == HOSTILE[4]
    assert beneficiary.city == "Saint-Étienne" and beneficiary.status is BeneficiaryStatus.ACTIVE
    program = session.get(Program, program_id)
    assert (program.name, program.duration_hours, program.start_date, program.end_date) == (
        HOSTILE[3], 24.75, None, date(2026, 12, 31))
    assert len(program.description) == 4000
    enrollment = session.get(Enrollment, enrollment_id)
    assert enrollment.status is EnrollmentStatus.ACTIVE and enrollment.progress == 37
    assert enrollment.wedof_last_update == datetime(2026, 3, 15, 14, 26, 51, 842000, tzinfo=UTC)
    assert enrollment.wedof_billing_state is None and enrollment.enrolled_at is None


def test_update_writes_only_the_given_rows_and_fields(session):
    tenant_id = _tenant(session)
    ids = bulk.insert_rows(session, User.__table__, _user_rows(tenant_id, 5), NOW)
    later = NOW + timedelta(minutes=5)
    changed = [
        {"id": ids[1], "first_name": HOSTILE[2], "last_name": None},
        {"id": ids[3], "first_name": HOSTILE[1], "last_name": HOSTILE[0]},
    ]
    bulk.update_rows(session, User.__table__, ("first_name", "last_name"), changed, later)
    session.expire_all()
    users = {user.id: user for user in session.scalars(select(User).where(User.id.in_(ids)))}
    assert (users[ids[1]].first_name, users[ids[1]].last_name, users[ids[1]].updated_at) == (HOSTILE[2], None, later)
    assert (users[ids[3]].first_name, users[ids[3]].last_name) == (HOSTILE[1], HOSTILE[0])
    for untouched in (ids[0], ids[2], ids[4]):
        assert users[untouched].updated_at == NOW
        assert users[untouched].email == f"person.{ids.index(untouched)}@example.fr"


def test_empty_batches_send_nothing(session):
    assert bulk.insert_rows(session, User.__table__, [], NOW) == []
    bulk.update_rows(session, User.__table__, ("first_name",), [], NOW)


def test_a_naive_datetime_is_refused_as_by_the_orm(session):
    tenant_id = _tenant(session)
    rows = _user_rows(tenant_id, 1)
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        bulk.insert_rows(session, User.__table__, rows, NOW.replace(tzinfo=None))


def test_a_unique_violation_fails_the_whole_statement(session):
    """One statement per table: a page that breaks a constraint writes none of its rows."""
    tenant_id = _tenant(session)
    rows = _user_rows(tenant_id, 3)
    rows[2]["email"] = rows[0]["email"]
    with pytest.raises(Exception, match="(?i)unique"):
        bulk.insert_rows(session, User.__table__, rows, NOW)
    session.rollback()
    assert session.scalars(select(User)).all() == []


@pytest.mark.parametrize("keys", [[], ["only"], ["a", "b", "a"], [HOSTILE[0], HOSTILE[2], "x" * 64]])
def test_among_matches_exactly_the_given_keys(session, keys):
    tenant_id = _tenant(session)
    stored = ["a", "b", "c", HOSTILE[0], HOSTILE[2], "x" * 64]
    bulk.insert_rows(session, Program.__table__, [
        {"tenant_id": tenant_id, "external_id": key, "status": ProgramStatus.ACTIVE, "name": key or "?",
         "description": None, "category": None, "duration_hours": None, "start_date": None, "end_date": None}
        for key in stored
    ], NOW)
    dialect = session.get_bind().dialect.name
    query = select(Program.external_id).where(bulk.among(dialect, Program.external_id, "keys"))
    found = session.scalars(query, {"keys": sorted(set(keys))})
    assert sorted(found) == sorted(set(keys) & set(stored))


def test_a_none_json_value_is_stored_as_json_null_as_by_the_orm(session):
    tenant_id = _tenant(session)
    (user_id,) = bulk.insert_rows(session, User.__table__, _user_rows(tenant_id, 1), NOW)
    row = {"tenant_id": tenant_id, "user_id": user_id, "external_id": "A-2", "phone": None, "birth_date": None,
           "address": None, "city": None, "postal_code": None, "country": None, "custom_fields": None,
           "status": BeneficiaryStatus.ACTIVE}
    (beneficiary_id,) = bulk.insert_rows(session, Beneficiary.__table__, [row], NOW)
    orm = Beneficiary(tenant_id=tenant_id, user=User(tenant_id=tenant_id, role=UserRole.STUDENT),
                      external_id="A-3", custom_fields=None)
    session.add(orm)
    session.flush()
    raw = "SELECT external_id, custom_fields IS NULL FROM beneficiaries WHERE external_id IN ('A-2', 'A-3')"
    stored = dict(session.execute(text(raw)).all())
    assert stored["A-2"] == stored["A-3"]  # the same storage as the ORM's for None
    bulk.update_rows(session, Beneficiary.__table__, ("custom_fields",),
                     [{"id": beneficiary_id, "custom_fields": {"k": "é"}}], NOW)
    session.expire_all()
    assert session.get(Beneficiary, beneficiary_id).custom_fields == {"k": "é"}


def test_a_non_finite_float_is_refused_before_postgresql_sees_it(pg_db_url):
    with get_sessionmaker(pg_db_url)() as session:
        tenant_id = _tenant(session)
        row = {"tenant_id": tenant_id, "external_id": "P-nan", "status": ProgramStatus.ACTIVE, "name": "n",
               "description": None, "category": None, "duration_hours": float("nan"),
               "start_date": None, "end_date": None}
        with pytest.raises(ValueError, match="JSON compliant"):
            bulk.insert_rows(session, Program.__table__, [row], NOW)
