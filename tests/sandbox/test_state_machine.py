"""Transitions, updates and hostile bodies, exhaustively, on an in-process sandbox (Flask test client)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from wedof_sandbox.states import ORGANISM_TRANSITIONS, SERVICE_DONE_STATES, STATES

KEY = {"X-Api-Key": "sandbox-key"}


def truth(client) -> list[dict]:
    return client.get("/_sandbox/truth").get_json()


def days(delta: int) -> str:
    return (date.today() + timedelta(days=delta)).isoformat()


# A session running around today: entries and ends dated today are within it.
SESSION = {"sessionStartDate": f"{days(-30)}T00:00:00.000Z", "sessionEndDate": f"{days(30)}T00:00:00.000Z"}
# What a careful organism sends with each verb (the codes are the sandbox's terminated reasons).
BODIES = {"terminate": {"code": "8", "absenceDuration": 0},
          "serviceDone": {"code": "8", "absenceDuration": 0, "forceMajeureAbsence": False, "trainingDuration": 24}}


def folder_in(client, state: str, **patch) -> dict:
    """Force the first folder into ``state`` (through the control endpoint), its session around today."""
    external_id = truth(client)[0]["externalId"]
    patch = {"trainingActionInfo": dict(SESSION), **patch}
    response = client.put(f"/_sandbox/folders/{external_id}", json={"state": state, "withPoleEmploi": False, **patch})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("verb", sorted(ORGANISM_TRANSITIONS))
@pytest.mark.parametrize("state", STATES)
def test_every_verb_from_every_state(client, verb, state):
    folder = folder_in(client, state)
    response = client.post(f"/api/registrationFolders/{folder['externalId']}/{verb}", headers=KEY,
                           json=BODIES.get(verb, {}))
    target = ORGANISM_TRANSITIONS[verb].get(state)
    if target is None:
        assert response.status_code == 400
        body = response.get_json()
        assert body["detail"] and body["violations"][0]["propertyPath"] == "state"
        assert client.get(f"/api/registrationFolders/{folder['externalId']}", headers=KEY).get_json() == folder
    else:
        assert response.status_code == 200
        after = response.get_json()
        assert after["state"] == target
        assert after["history"][f"{target}Date"] is not None
        assert after["lastUpdate"] > folder["lastUpdate"] and after["updatedOn"] == after["lastUpdate"]


@pytest.mark.parametrize("billing_state", ["notBillable", "depositPaid"])
def test_service_done_from_in_training_passes_through_terminated(client, billing_state):
    folder = folder_in(client, "inTraining", history={"terminatedDate": None}, billingState=billing_state)
    after = client.post(f"/api/registrationFolders/{folder['externalId']}/serviceDone", headers=KEY,
                        json=BODIES["serviceDone"]).get_json()
    assert after["state"] == "serviceDoneDeclared"
    assert after["history"]["terminatedDate"] and after["history"]["serviceDoneDeclaredDate"]
    # Declaring the service does not make it billable: the financer's validation does (test_billing.py).
    assert after["billingState"] == billing_state


def test_validate_france_travail_folder_needs_indicative_duration(client):
    folder = folder_in(client, "notProcessed", withPoleEmploi=True, type="poleEmploi")
    url = f"/api/registrationFolders/{folder['externalId']}/validate"
    refused = client.post(url, headers=KEY, json={})
    assert refused.status_code == 400 and refused.get_json()["violations"][0]["propertyPath"] == "indicativeDuration"
    accepted = client.post(url, headers=KEY, json={"indicativeDuration": 24, "weeklyDuration": 6})
    assert accepted.get_json()["state"] == "waitingAcceptation"


@pytest.mark.parametrize("state", STATES)
def test_billing_only_from_service_done_to_bill(client, state):
    folder = folder_in(client, state, billingState="toBill")
    response = client.post(f"/api/registrationFolders/{folder['externalId']}/billing", headers=KEY,
                           json={"billNumber": "FAC-1"})
    if state in SERVICE_DONE_STATES:
        body = response.get_json()
        assert response.status_code == 200 and body["billingState"] == "billed" and body["billNumber"] == "FAC-1"
        again = client.post(f"/api/registrationFolders/{folder['externalId']}/billing", headers=KEY)
        assert again.status_code == 400 and again.get_json()["violations"][0]["propertyPath"] == "billingState"
    else:
        assert response.status_code == 400


@pytest.mark.parametrize("state", STATES)
def test_completion_rate_only_in_training_or_terminated(client, state):
    folder = folder_in(client, state)
    response = client.put(f"/api/registrationFolders/{folder['externalId']}", headers=KEY,
                          json={"completionRate": 55})
    if state in ("inTraining", "terminated"):
        body = response.get_json()
        assert response.status_code == 200 and body["completionRate"] == 55
        assert body["history"]["completionRateLastUpdate"] == body["lastUpdate"]
    else:
        assert response.status_code == 400
        assert response.get_json()["violations"] == [{"propertyPath": "completionRate", "title": response.get_json()
                                                      ["violations"][0]["title"]}]


def test_put_replaces_tags_and_edits_notes(client):
    folder = folder_in(client, "accepted", tags=["old", "bdc"])
    url = f"/api/registrationFolders/{folder['externalId']}"
    body = client.put(url, headers=KEY, json={"tags": ["new", "new", "été"], "notes": "Rappel ✓",
                                              "description": "public"}).get_json()
    assert body["tags"] == ["new", "été"] and body["notes"] == "Rappel ✓" and body["description"] == "public"
    unchanged = client.put(url, headers=KEY, json={"tags": ["new", "été"]}).get_json()
    assert unchanged["lastUpdate"] == body["lastUpdate"]  # nothing changed, nothing bumped


@pytest.mark.parametrize("payload,path", [
    ({"completionRate": 101}, "completionRate"), ({"completionRate": -1}, "completionRate"),
    ({"completionRate": "50"}, "completionRate"), ({"completionRate": 50.5}, "completionRate"),
    ({"completionRate": True}, "completionRate"), ({"completionRate": None}, "completionRate"),
    ({"tags": "bdc"}, "tags"), ({"tags": [1]}, "tags"), ({"tags": [""]}, "tags"), ({"notes": 12}, "notes"),
    ({"notes": "x" * 10_001}, "notes"), ({"trainingActionInfo": {"weeklyDuration": 100}}, "weeklyDuration"),
    ({"trainingActionInfo": {"sessionStartDate": "soon"}}, "sessionStartDate"),
])
def test_hostile_update_bodies(client, payload, path):
    folder = folder_in(client, "inTraining")
    response = client.put(f"/api/registrationFolders/{folder['externalId']}", headers=KEY, json=payload)
    assert response.status_code == 400
    assert response.get_json()["violations"][0]["propertyPath"] == path


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"", b"[" * 100_000,
                                  b'{"completionRate": NaN}', b'{"trainingActionInfo": {"weeklyDuration": Infinity}}'])
def test_unreadable_bodies_get_400(client, data):
    folder = folder_in(client, "inTraining")
    response = client.put(f"/api/registrationFolders/{folder['externalId']}", headers={**KEY, "Content-Type":
                                                                                        "application/json"}, data=data)
    assert response.status_code == 400 and "detail" in response.get_json()
    bad_post = client.post(f"/api/registrationFolders/{folder['externalId']}/terminate", headers=KEY,
                           data=b"{oops", content_type="application/json")
    assert bad_post.status_code == 400


@pytest.mark.parametrize("body,path", [({"code": "999"}, "code"), ({"code": "8", "date": "31/12/2024"}, "date"),
                                       ({"code": "8", "absenceDuration": -3}, "absenceDuration"),
                                       ({"absenceDuration": 0}, "code"), ({}, "code")])
def test_hostile_transition_parameters(client, body, path):
    folder = folder_in(client, "inTraining")
    response = client.post(f"/api/registrationFolders/{folder['externalId']}/terminate", headers=KEY, json=body)
    assert response.status_code == 400 and response.get_json()["violations"][0]["propertyPath"] == path


@pytest.mark.parametrize("verb,state,body,path", [
    ("inTraining", "accepted", {"date": days(-31)}, "date"),  # before the session start
    ("inTraining", "accepted", {"date": days(1)}, "date"),  # in the future
    ("serviceDone", "inTraining", {**BODIES["serviceDone"], "date": days(1)}, "date"),
    ("terminate", "inTraining", {**BODIES["terminate"], "date": days(1)}, "date"),
    ("serviceDone", "inTraining", {**BODIES["serviceDone"], "trainingDuration": -1}, "trainingDuration"),
    ("serviceDone", "inTraining", {"code": "8", "absenceDuration": 0}, "trainingDuration"),
    ("serviceDone", "inTraining", {"code": "8", "trainingDuration": 24}, "absenceDuration"),
    ("serviceDone", "inTraining", {**BODIES["serviceDone"], "forceMajeureAbsence": "no"}, "forceMajeureAbsence"),
    ("serviceDone", "inTraining", {**BODIES["serviceDone"], "code": "4"}, "code"),  # a canceled reason
])
def test_declarations_are_checked_as_wedof_checks_them(client, verb, state, body, path):
    folder = folder_in(client, state)
    response = client.post(f"/api/registrationFolders/{folder['externalId']}/{verb}", headers=KEY, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["violations"][0]["propertyPath"] == path
    assert client.get(f"/api/registrationFolders/{folder['externalId']}", headers=KEY).get_json() == folder


def test_an_end_after_the_session_end_is_refused(client):
    ended = {"sessionStartDate": f"{days(-60)}T00:00:00.000Z", "sessionEndDate": f"{days(-10)}T00:00:00.000Z"}
    folder = folder_in(client, "inTraining", trainingActionInfo=ended)
    url = f"/api/registrationFolders/{folder['externalId']}/serviceDone"
    refused = client.post(url, headers=KEY, json={**BODIES["serviceDone"], "date": days(-5)})
    assert refused.status_code == 400 and refused.get_json()["violations"][0]["propertyPath"] == "date"
    accepted = client.post(url, headers=KEY, json={**BODIES["serviceDone"], "date": days(-10)})
    assert accepted.status_code == 200
    assert accepted.get_json()["history"]["serviceDoneDeclaredDate"].startswith(days(-10))


def test_start_and_end_dates_are_ignored_as_wedof_ignores_them(client):
    """A client sending startDate/endDate instead of date gets today's date, silently."""
    folder = folder_in(client, "accepted")
    after = client.post(f"/api/registrationFolders/{folder['externalId']}/inTraining", headers=KEY,
                        json={"startDate": days(-20)}).get_json()
    assert after["history"]["inTrainingDate"][:10] == date.today().isoformat()


def test_folder_activities(client):
    folder = folder_in(client, "inTraining")
    url = f"/api/activities/RegistrationFolder/{folder['externalId']}"
    created = client.post(url, headers=KEY, json={"title": "Entrée déclarée", "type": "training",
                                                  "eventTime": "2025-03-05T09:00:00Z", "origin": "manual"})
    assert created.status_code == 201 and created.get_json()["title"] == "Entrée déclarée"
    assert [a["id"] for a in client.get(url, headers=KEY).get_json()] == [created.get_json()["id"]]
    for bad in ({"type": "training"}, {"title": "x", "type": "party"}, {"title": "", "type": "training"},
                {"title": "x", "type": "training", "description": 5}):
        response = client.post(url, headers=KEY, json=bad)
        assert response.status_code == 400, bad
    assert client.post("/api/activities/RegistrationFolder/0000000000", headers=KEY,
                       json={"title": "x", "type": "training"}).status_code == 404
    assert client.get(f"/api/activities/CertificationFolder/{folder['externalId']}", headers=KEY).status_code == 404


def test_accepted_transitions_are_counted_per_folder(client):
    folder = folder_in(client, "accepted")
    url = f"/api/registrationFolders/{folder['externalId']}"
    assert client.post(f"{url}/inTraining", headers=KEY).status_code == 200
    assert client.post(f"{url}/inTraining", headers=KEY).status_code == 400  # refused: not counted
    assert client.post(f"{url}/serviceDone", headers=KEY, json=BODIES["serviceDone"]).status_code == 200
    counts = client.get("/_sandbox/transitions").get_json()
    assert counts[folder["externalId"]] == {"inTraining": 1, "serviceDone": 1}


def test_unknown_folder_and_unknown_verb(client):
    assert client.post("/api/registrationFolders/0000000000/validate", headers=KEY).status_code == 404
    assert client.put("/api/registrationFolders/0000000000", headers=KEY, json={"notes": ""}).status_code == 404
    external_id = truth(client)[0]["externalId"]
    assert client.post(f"/api/registrationFolders/{external_id}/accept", headers=KEY).status_code == 404


def test_reasons(client):
    for kind in ("terminated", "refused", "canceled"):
        reasons = client.get(f"/api/registrationFoldersReasons?type={kind}", headers=KEY).get_json()
        assert reasons and all(set(r) == {"code", "label"} for r in reasons)
    for bad in ("", "?type=other"):
        assert client.get(f"/api/registrationFoldersReasons{bad}", headers=KEY).status_code == 400


def test_last_update_strictly_increases_across_all_changes(client):
    folders = truth(client)
    stamps = []
    for i in range(60):
        folder = folders[i % 5]
        response = client.put(f"/_sandbox/folders/{folder['externalId']}", json={"notes": f"n{i}"})
        stamps.append(response.get_json()["lastUpdate"])
    summary = client.post("/_sandbox/simulate", json={"changes": 40}).get_json()
    assert summary["applied"] > 0 and summary["first_lastUpdate"] > stamps[-1]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    all_stamps = [f["lastUpdate"] for f in truth(client)]
    assert len(set(all_stamps)) == len(all_stamps)


def test_force_patch_keeps_the_key_set(client):
    external_id = truth(client)[0]["externalId"]
    for patch, path in (({"unknownKey": 1}, "unknownKey"), ({"attendee": {"shoeSize": 42}}, "attendee.shoeSize"),
                        ({"externalId": "1"}, "externalId"), ({"state": "happy"}, "state")):
        response = client.put(f"/_sandbox/folders/{external_id}", json=patch)
        assert response.status_code == 400 and response.get_json()["violations"][0]["propertyPath"] == path
