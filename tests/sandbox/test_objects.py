"""Folders look like the real ones: exact key sets of Wedof's samples, date format, realistic quirks."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import pytest

from wedof_sandbox import population
from wedof_sandbox.states import STATES

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NESTED = ("attendee", "trainingActionInfo", "history", "_links")


def assert_same_keys(obj: dict, sample: dict) -> None:
    assert set(obj) == set(sample)
    for part in NESTED:
        if part in sample:
            assert set(obj[part]) == set(sample[part]), part
    assert set(obj["attendee"]["address"]) == set(sample["attendee"]["address"])


@pytest.fixture(scope="module")
def big_population():
    return population.generate(1500, 11)


def test_served_folders_have_the_sample_key_sets(sbx, registration_sample):
    folders = sbx.control("GET", "/truth")
    assert len(folders) == 60
    for folder in folders:
        assert_same_keys(folder, registration_sample)
        assert set(folder["trainingActionInfo"]["address"]) == set(registration_sample["trainingActionInfo"]["address"])
        for key in ("lastUpdate", "createdOn", "updatedOn"):
            assert ISO_MS.match(folder[key]), folder[key]
        assert all(v is None or ISO_MS.match(v) for v in folder["history"].values())
        assert re.fullmatch(r"\d{10}", folder["externalId"])
        assert folder["_links"]["self"]["href"] == f"/api/registrationFolders/{folder['externalId']}"


def test_certification_folders_have_the_sample_key_sets(sbx, certification_sample):
    response = sbx.api("GET", "/certificationFolders", params={"limit": 100})
    assert response.status_code == 200
    folders = response.json()
    assert folders and int(response.headers["X-Total-Count"]) == len(folders)
    for folder in folders:
        assert set(folder) == set(certification_sample)
        for part in ("attendee", "history", "_links"):
            assert set(folder[part]) == set(certification_sample[part]), part
        one = sbx.api("GET", f"/certificationFolders/{folder['externalId']}")
        assert one.json() == folder
    assert sbx.api("GET", "/certificationFolders/0000-0000000000").status_code == 404


def test_population_covers_every_state_and_the_quirks_of_real_data(big_population):
    folders = big_population.folders
    assert {f["state"] for f in folders} == set(STATES)
    attendees = [f["attendee"] for f in folders]
    assert any(a["email"] is None for a in attendees)
    assert any(a["dateOfBirth"] is None for a in attendees)
    assert any(a["address"]["city"] == "string" for a in attendees)
    assert any(f["completionRate"] is None and f["state"] == "inTraining" for f in folders)
    assert any(not re.fullmatch(r"0\d{9}", a["phoneNumber"] or "") for a in attendees)
    text = json.dumps(attendees, ensure_ascii=False)
    for name in ("Hélène", "Françoise", "Béatrice", "Jérôme", "Noël", "O'Brien"):
        assert name in text
    assert any("-" in a["lastName"] or "-" in a["firstName"] for a in attendees)
    titles = {f["trainingActionInfo"]["title"] for f in folders}
    assert sum(t.startswith("Bilan de compétences") for t in titles) >= 3
    assert any(not t.startswith("Bilan") for t in titles)


def test_attendee_ids_identify_one_person_who_may_hold_two_folders(big_population):
    by_id = defaultdict(list)
    for folder in big_population.folders:
        by_id[folder["attendee"]["id"]].append(folder["attendee"])
    assert any(len(v) == 2 for v in by_id.values())
    assert all(len(v) <= 2 for v in by_id.values())
    for same_person in by_id.values():
        assert all(a == same_person[0] for a in same_person)
    assert len({f["externalId"] for f in big_population.folders}) == len(big_population.folders)


def test_population_is_deterministic_per_seed():
    first, again, other = population.generate(300, 5), population.generate(300, 5), population.generate(300, 6)
    assert json.dumps(first.folders) == json.dumps(again.folders)
    assert json.dumps(first.certification_folders) == json.dumps(again.certification_folders)
    assert json.dumps(first.folders) != json.dumps(other.folders)


def test_same_seed_gives_the_same_truth_over_http(sbx):
    before = sbx.control("GET", "/truth")
    sbx.control("POST", "/simulate", json={"changes": 5})
    assert sbx.control("GET", "/truth") != before
    sbx.control("POST", "/reset", json={"folders": 60, "seed": 7})
    assert sbx.control("GET", "/truth") == before


def test_initial_last_updates_are_unique(big_population):
    stamps = [f["lastUpdate"] for f in big_population.folders]
    assert len(set(stamps)) == len(stamps)


def test_simulation_is_reproducible_after_a_reset(sbx):
    first = sbx.control("POST", "/simulate", json={"changes": 15})
    truth_after_first = sbx.control("GET", "/truth", params={"compact": 1})
    sbx.control("POST", "/reset", json={"folders": 60, "seed": 7})
    again = sbx.control("POST", "/simulate", json={"changes": 15})
    assert first["by_event"] == again["by_event"]
    strip = [{k: v for k, v in f.items() if k != "lastUpdate"} for f in truth_after_first]
    assert strip == [{k: v for k, v in f.items() if k != "lastUpdate"}
                     for f in sbx.control("GET", "/truth", params={"compact": 1})]
    assert set(truth_after_first[0]) == {"externalId", "state", "lastUpdate", "completionRate", "attendeeId",
                                         "trainingActionExternalId", "billingState"}
