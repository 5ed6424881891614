"""GET /api/registrationFolders over real HTTP: paging, headers, filters, sort and the incremental window."""

from __future__ import annotations

import pytest

from wedof_sandbox.timeutil import iso_ms, parse_datetime


def listing(sbx, **params):
    response = sbx.api("GET", "/registrationFolders", params=params)
    assert response.status_code == 200, response.text
    return response


def test_paging_exact_boundaries_and_headers(sbx):
    total = 60
    seen = []
    for page in (1, 2, 3):
        response = listing(sbx, limit=25, page=page, sort="lastUpdate", order="asc")
        assert response.headers["X-Total-Count"] == str(total)
        assert response.headers["X-Current-Page"] == str(page)
        assert response.headers["X-Item-Per-Page"] == "25"
        seen += [f["externalId"] for f in response.json()]
    assert len(seen) == total == len(set(seen))
    assert len(listing(sbx, limit=25, page=3).json()) == 10
    assert listing(sbx, limit=30, page=2).json() and listing(sbx, limit=30, page=3).json() == []
    beyond = listing(sbx, limit=25, page=99)
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == str(total)
    assert len(listing(sbx).json()) == 60  # default limit 100
    assert len(listing(sbx, limit=1000).json()) == 60


def test_default_order_is_last_update_descending(sbx):
    stamps = [f["lastUpdate"] for f in listing(sbx).json()]
    assert stamps == sorted(stamps, reverse=True)
    asc = [f["lastUpdate"] for f in listing(sbx, order="asc").json()]
    assert asc == sorted(asc)


@pytest.mark.parametrize("sort,key", [("id", lambda f: f["externalId"]),
                                      ("lastName", lambda f: f["attendee"]["lastName"].lower())])
def test_other_sorts(sbx, sort, key):
    folders = listing(sbx, sort=sort, order="asc").json()
    assert [key(f) for f in folders] == sorted(key(f) for f in folders)


def test_state_type_and_billing_filters(sbx):
    truth = sbx.control("GET", "/truth")
    wanted = {"inTraining", "terminated"}
    folders = listing(sbx, state="inTraining,terminated").json()
    assert {f["externalId"] for f in folders} == {f["externalId"] for f in truth if f["state"] in wanted}
    assert len(listing(sbx, state="all").json()) == 60
    cpf = listing(sbx, type="cpf").json()
    assert cpf and {f["type"] for f in cpf} == {"cpf"}
    to_bill = listing(sbx, billingState="toBill").json()
    assert {f["externalId"] for f in to_bill} == {f["externalId"] for f in truth if f["billingState"] == "toBill"}


def test_incremental_window_is_inclusive_and_sees_new_changes(sbx):
    truth = sorted(sbx.control("GET", "/truth"), key=lambda f: f["lastUpdate"])
    since, until = truth[10]["lastUpdate"], truth[20]["lastUpdate"]
    window = listing(sbx, period="custom", since=since, until=until, filterOnStateDate="lastUpdate",
                     sort="lastUpdate", order="asc").json()
    assert [f["externalId"] for f in window] == [f["externalId"] for f in truth[10:21]]

    high_water = truth[-1]["lastUpdate"]
    sbx.control("POST", "/simulate", json={"changes": 7})
    changed = listing(sbx, period="custom", since=iso_ms(parse_datetime(high_water) + 1), sort="lastUpdate",
                      order="asc", filterOnStateDate="lastUpdate").json()
    stamps = [f["lastUpdate"] for f in changed]
    assert 1 <= len(changed) <= 7 and stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


@pytest.mark.parametrize("since", ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z", "2024-01-01T00:00:00+00:00",
                                   "2024-01-01T01:00:00+01:00", "2024-01-01"])
def test_since_accepts_wedof_and_iso_formats(sbx, since):
    response = listing(sbx, period="custom", since=since)
    assert 0 < int(response.headers["X-Total-Count"]) <= 60


def test_window_on_a_history_date(sbx):
    truth = sbx.control("GET", "/truth")
    dated = [f for f in truth if f["history"]["acceptedDate"]]
    folders = listing(sbx, period="custom", since="2000-01-01T00:00:00Z", filterOnStateDate="acceptedDate").json()
    assert {f["externalId"] for f in folders} == {f["externalId"] for f in dated}
    bare = listing(sbx, period="custom", since="2000-01-01T00:00:00Z", filterOnStateDate="accepted").json()
    assert len(bare) == len(folders)


@pytest.mark.parametrize("params,path", [
    ({"page": "0"}, "page"), ({"page": "-1"}, "page"), ({"page": "abc"}, "page"), ({"page": "1.5"}, "page"),
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
    ({"state": "done"}, "state"), ({"state": "inTraining,bogus"}, "state"), ({"type": "vip"}, "type"),
    ({"billingState": "free"}, "billingState"), ({"sort": "price"}, "sort"), ({"order": "up"}, "order"),
    ({"period": "custom", "since": "yesterday"}, "since"), ({"period": "custom", "until": "2024-13-45T00:00:00Z"}, "until"),
    ({"period": "custom", "since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
    ({"since": "2024-01-01T00:00:00Z"}, "period"), ({"period": "someday"}, "period"),
    ({"period": "custom", "filterOnStateDate": "birthday"}, "filterOnStateDate"),
])
def test_hostile_parameters_get_400_with_violations(sbx, params, path):
    response = sbx.api("GET", "/registrationFolders", params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] and body["violations"][0]["propertyPath"] == path


def test_get_one_folder_and_unknown_folder(sbx):
    first = listing(sbx, limit=1).json()[0]
    one = sbx.api("GET", f"/registrationFolders/{first['externalId']}")
    assert one.status_code == 200 and one.json() == first
    missing = sbx.api("GET", "/registrationFolders/0000000000")
    assert missing.status_code == 404 and "detail" in missing.json()
    files = sbx.api("GET", f"/registrationFolders/{first['externalId']}/files")
    assert files.status_code == 200 and files.json() == first["files"]
