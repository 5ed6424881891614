"""Wedof API drift: the key catalog (samples and the sandbox population show none), hostile folders, and how
``bdc.api_drift`` records a set per connection on both databases (one row per change, one notice)."""

from __future__ import annotations

import copy
import logging

import pytest
from sqlalchemy import select

from bdc import api_drift
from bdc.db import session_scope
from bdc.models import ApiDrift, AuditLog, Notice, NoticeKind, Tenant, WedofConnection
from wedof import drift
from wedof.drift import Observation, folder_drift, observe, observe_one, still_applies
from wedof.samples import registration_folder_sample
from wedof_sandbox import population

# -- the catalog -------------------------------------------------------------------------------------------


def test_the_published_sample_and_the_sandbox_population_show_no_drift():
    assert observe_one(registration_folder_sample()) == Observation(frozenset(), frozenset(), 1)
    folders = population.generate(3000, 11).folders
    seen = observe(folders)
    assert (seen.unknown, seen.missing, seen.samples) == (frozenset(), frozenset(), 3000)


def test_new_keys_and_missing_expected_keys_are_dotted_paths():
    folder = copy.deepcopy(registration_folder_sample())
    folder["proposal"] = {"code": "X"}
    folder["attendee"]["pronouns"] = "iel"
    folder["attendee"]["address"]["floor"] = 3
    folder["trainingActionInfo"]["address"]["building"] = "B"
    folder["history"]["reopenedDate"] = None
    folder["_links"]["proposal"] = {"href": "/api/proposals/1"}
    del folder["state"], folder["attendee"]["email"], folder["trainingActionInfo"]["totalIncl"]
    unknown, missing = folder_drift(folder)
    assert unknown == {"proposal", "attendee.pronouns", "attendee.address.floor", "trainingActionInfo.address.building",
                       "history.reopenedDate", "_links.proposal"}
    assert missing == {"state", "attendee.email", "trainingActionInfo.totalIncl"}


@pytest.mark.parametrize("folder", [None, [], "folder", 42, {"attendee": None}, {"attendee": [1, 2]},
                                    {"attendee": {"address": "12 rue"}}, {"history": "x", "_links": 3}])
def test_hostile_folders_never_raise(folder):
    observation = observe_one(folder)
    assert observation.samples == 1 and not observation.unknown
    if isinstance(folder, dict):  # a non-object where an object is expected is not "missing" keys inside it
        not_objects = [f"{k}." for k, v in folder.items() if not isinstance(v, dict)] + ["attendee.address."]
        assert not any(p.startswith(tuple(not_objects)) for p in observation.missing), observation.missing


def test_a_folder_of_thousands_of_new_keys_gives_a_bounded_record():
    folder = dict(registration_folder_sample(), **{f"k{i}" + "x" * 300: i for i in range(5000)})
    observation = observe_one(folder)
    assert len(observation.unknown) == drift.MAX_PATHS
    assert max(len(p) for p in observation.unknown) <= drift.MAX_KEY_LENGTH


def test_still_applies_follows_the_catalog():
    assert still_applies("unknown", "attendee.pronouns") and not still_applies("unknown", "attendee.email")
    assert still_applies("missing", "attendee.email") and not still_applies("missing", "attendee.pronouns")
    assert not still_applies("sideways", "state")


# -- recording per connection (both databases) -------------------------------------------------------------

@pytest.fixture
def connection(db_url):
    with session_scope(db_url) as session:
        tenant = Tenant(name="Drift", slug="drift")
        session.add(tenant)
        session.flush()
        row = WedofConnection(tenant_id=tenant.id, base_url="http://127.0.0.1:9/api", api_key="k")
        session.add(row)
        session.flush()
        ids = {"tenant": tenant.id, "connection": row.id, "url": db_url}
    yield ids


def seen(unknown=(), missing=(), samples=1) -> Observation:
    return Observation(frozenset(unknown), frozenset(missing), samples)


def rows(ids) -> list[ApiDrift]:
    with session_scope(ids["url"]) as session:
        found = session.scalars(select(ApiDrift).where(ApiDrift.connection_id == ids["connection"])
                                .order_by(ApiDrift.id)).all()
        session.expunge_all()
        return list(found)


def api_notices(ids) -> list[Notice]:
    with session_scope(ids["url"]) as session:
        found = session.scalars(select(Notice).where(Notice.tenant_id == ids["tenant"],
                                                     Notice.kind == NoticeKind.API_CHANGED).order_by(Notice.id)).all()
        session.expunge_all()
        return list(found)


def note(ids, observation):
    return api_drift.note(ids["connection"], observation, url=ids["url"])


def test_clean_folders_record_nothing(connection):
    assert note(connection, seen(samples=1)) is None
    assert note(connection, seen(samples=100)) is None
    assert rows(connection) == [] and api_notices(connection) == []


def test_a_change_is_recorded_once_with_one_notice_and_the_same_set_again_only_counts(connection):
    first = note(connection, seen({"newKey", "attendee.pronouns"}, {"attendee.phoneNumber"}, samples=100))
    assert first.changed and first.notice_id is not None
    [row] = rows(connection)
    assert (row.unknown_keys, row.missing_keys, row.samples) == (["attendee.pronouns", "newKey"],
                                                                  ["attendee.phoneNumber"], 100)
    [notice] = api_notices(connection)
    assert notice.message.startswith("Wedof's API changed")
    assert "attendee.pronouns, newKey" in notice.message and "attendee.phoneNumber" in notice.message
    assert notice.target_type == "wedof_connection" and notice.target_id == str(connection["connection"])

    again = note(connection, seen({"newKey", "attendee.pronouns"}, {"attendee.phoneNumber"}, samples=20))
    subset = note(connection, seen({"newKey"}, samples=1))  # one folder showing part of it: the same set
    assert note(connection, seen(samples=1)) is None  # a single clean folder proves nothing: not even read
    assert not again.changed and not subset.changed
    [row_after] = rows(connection)
    assert row_after.samples == 121 and row_after.last_seen_at >= row.last_seen_at
    assert len(api_notices(connection)) == 1
    with session_scope(connection["url"]) as session:
        audits = session.scalars(select(AuditLog).where(AuditLog.action == "wedof.api_drift_changed")).all()
        assert len(audits) == 1 and audits[0].details["entered_unknown"] == ["attendee.pronouns", "newKey"]


def test_a_new_key_adds_to_the_set_and_its_notice_names_it_alone(connection):
    note(connection, seen({"newKey"}, samples=3))
    grown = note(connection, seen({"otherKey"}, samples=1))
    assert grown.changed
    assert [r.unknown_keys for r in rows(connection)] == [["newKey"], ["newKey", "otherKey"]]
    first, second = api_notices(connection)
    assert "otherKey" in second.message and "newKey" not in second.message


def test_a_large_clean_page_clears_the_set_and_a_quick_return_is_not_announced_twice(connection):
    note(connection, seen({"newKey"}, samples=100))
    cleared = note(connection, seen(samples=api_drift.CLEAR_MIN_SAMPLES))
    assert cleared.changed and cleared.notice_id is None
    assert [(r.unknown_keys, r.missing_keys) for r in rows(connection)] == [(["newKey"], []), ([], [])]
    assert note(connection, seen(samples=1)) is None  # no drift now: a clean folder costs nothing
    back = note(connection, seen({"newKey"}, samples=1))
    assert back.changed and back.notice_id is None  # announced within NOTICE_QUIET already
    assert len(rows(connection)) == 3 and len(api_notices(connection)) == 1


def test_keys_the_code_has_learnt_leave_the_set_without_a_notice(connection):
    with session_scope(connection["url"]) as session:  # recorded by an older catalog that did not know "notes"
        session.add(ApiDrift(connection_id=connection["connection"], unknown_keys=["notes", "newKey"],
                             missing_keys=["attendee.pronouns"], samples=5))
    noted = note(connection, seen({"newKey"}, samples=1))
    assert noted.changed and noted.notice_id is None
    assert (rows(connection)[-1].unknown_keys, rows(connection)[-1].missing_keys) == (["newKey"], [])


def test_noting_never_raises(connection, caplog):
    caplog.set_level(logging.WARNING, logger="bdc.api_drift")
    assert api_drift.note(connection["connection"], seen({"x"}), url="postgresql+psycopg://u:p@127.0.0.1:1/none") is None
    assert "not recorded" in caplog.text
    assert note(connection | {"connection": 987654}, seen({"x"})) is None  # unknown connection: nothing written
    assert api_drift.note(connection["connection"], object()) is None  # not an observation at all
    assert rows(connection) == []
