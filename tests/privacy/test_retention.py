"""Retention: only beneficiaries whose every bilan ended longer ago than their tenant's period, and who
gave no consent to keep their data, are anonymised (by the daily task, run here in-process)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from celery.exceptions import Reject
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Beneficiary, ErasedAttendee, Invoice, Tenant, User
from tests.privacy.conftest import make_tenant, person_folders, seed_person
from wedof.mapping import apply_folder
from worker.schedule import build_beat_schedule
from worker.task_names import APPLY_RETENTION
from worker.tasks.privacy import apply_personal_data_retention


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ended_person(database_url, tenant_id, connection_id, attendee_id, numbers, days_ago, tmp_path, *, running=False):
    """A person whose two bilans ended ``days_ago`` (or whose second one still runs)."""
    ended = iso(datetime.now(UTC) - timedelta(days=days_ago))
    email = f"p{attendee_id}@example.fr"
    person = seed_person(database_url, tenant_id, connection_id, attendee_id, numbers, email=email,
                         last_name=f"Nom{attendee_id}", file_dir=tmp_path, ended=ended)
    if not running:
        second = copy.deepcopy(person_folders(attendee_id, numbers, email=email, last_name=f"Nom{attendee_id}")[1])
        second.update(state="canceledByAttendee", lastUpdate=ended)
        with session_scope(database_url) as session:
            apply_folder(session, tenant_id, second)
    return person


@pytest.fixture
def population(db_url, tmp_path, app_env, redis_url):
    app_env(database_url=db_url, redis_url=redis_url)
    with session_scope(db_url) as session:
        default_tenant = make_tenant(session, "org-default")
        short_tenant = make_tenant(session, "org-short")
        session.get(Tenant, short_tenant[0]).settings = {"personal_data_retention_days": 5}
    people = {
        "old": ended_person(db_url, *default_tenant, 1, ("8000000001", "8000000002"), 400, tmp_path),
        "old_consent": ended_person(db_url, *default_tenant, 2, ("8000000003", "8000000004"), 400, tmp_path),
        "recent": ended_person(db_url, *default_tenant, 3, ("8000000005", "8000000006"), 10, tmp_path),
        "running": ended_person(db_url, *default_tenant, 4, ("8000000007", "8000000008"), 400, tmp_path, running=True),
        "recent_short": ended_person(db_url, *short_tenant, 5, ("8000000009", "8000000010"), 10, tmp_path),
    }
    with session_scope(db_url) as session:
        session.get(Beneficiary, people["old_consent"].beneficiary_id).retention_consent = True
    return db_url, people


def anonymised(database_url, people) -> set[str]:
    with session_scope(database_url) as session:
        found = set()
        for name, person in people.items():
            beneficiary = session.get(Beneficiary, person.beneficiary_id)
            email = session.get(User, beneficiary.user_id).email
            if beneficiary.anonymised_at is not None:
                assert email is None and beneficiary.phone is None, name
                found.add(name)
            else:
                assert email == person.email, name
        return found


def test_retention_anonymises_only_the_long_ended_without_consent(population):
    database_url, people = population
    result = apply_personal_data_retention.apply().get()
    assert result["status"] == "ok" and sum(result["anonymised"].values()) == 2
    assert anonymised(database_url, people) == {"old", "recent_short"}
    with session_scope(database_url) as session:
        reasons = dict(session.execute(select(ErasedAttendee.attendee_id, ErasedAttendee.reason)).all())
        assert reasons == {"1": "retention", "5": "retention"}
        invoice = session.scalars(select(Invoice).where(Invoice.folder_number == "8000000001")).one()
        assert invoice.number and invoice.amount_incl is not None  # kept, without the person
        assert invoice.document["beneficiary_name"] == "Bénéficiaire effacé"
    again = apply_personal_data_retention.apply().get()
    assert again["anonymised"] == {}  # done once


def test_one_tenant_at_a_time_and_bad_arguments(population):
    database_url, people = population
    with session_scope(database_url) as session:
        short_tenant = session.scalar(select(Tenant.id).where(Tenant.slug == "org-short"))
    assert apply_personal_data_retention.apply(args=[short_tenant]).get()["anonymised"] == {str(short_tenant): 1}
    assert anonymised(database_url, people) == {"recent_short"}
    for bad in ("abc", -1, 987654):
        result = apply_personal_data_retention.apply(args=[bad])  # rejected: never retried, nothing changed
        assert result.state == "REJECTED" and isinstance(result.result, Reject), (bad, result.state)
    assert anonymised(database_url, people) == {"recent_short"}


def test_beat_runs_it_daily(app_env, sqlite_db_url):
    from bdc.settings import get_settings

    app_env(database_url=sqlite_db_url)
    entry = build_beat_schedule(get_settings())["apply-personal-data-retention"]
    assert entry["task"] == APPLY_RETENTION and entry["schedule"] == 24 * 3600 and entry["options"]["expires"] < 24 * 3600
