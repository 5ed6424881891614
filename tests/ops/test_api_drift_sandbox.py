"""The sandbox's ``/_sandbox/api-changes``: Wedof's API "changes" for tests, and only what it serves does.

In process (the sandbox's Flask app and its test client): keys added to and removed from every folder
served (listing, GET, webhook body, /truth) while the folders kept, their filters and transitions stay
as they were; the listing's X-Total-Count omitted or garbled; hostile bodies refused with nothing changed.
"""

from __future__ import annotations

import json

import pytest

from wedof.drift import observe
from wedof_sandbox.app import create_app
from wedof_sandbox.state import SandboxState

KEY = {"X-Api-Key": "sandbox-key"}
CHANGE = {"add": {"attendee.pronouns": "iel", "proposal": {"code": "P1"}}, "remove": ["attendee.phoneNumber", "permalink"]}


@pytest.fixture
def wedof():
    state = SandboxState(folders=40, seed=4)
    client = create_app(state).test_client()
    yield state, client
    state.close()


def listing(client, query: str = "limit=100"):
    response = client.get(f"/api/registrationFolders?{query}", headers=KEY)
    assert response.status_code == 200
    return response


def test_served_folders_change_and_the_kept_ones_do_not(wedof):
    state, client = wedof
    assert observe(listing(client).json).drifted is False
    answer = client.put("/_sandbox/api-changes", json=CHANGE)
    assert answer.status_code == 200 and answer.json == {**CHANGE, "total_count": "send"}
    served = listing(client).json
    seen = observe(served)
    assert seen.unknown == {"attendee.pronouns", "proposal"} and seen.missing == {"attendee.phoneNumber", "permalink"}
    one = client.get(f"/api/registrationFolders/{served[0]['externalId']}", headers=KEY).json
    assert one["attendee"]["pronouns"] == "iel" and "permalink" not in one
    truth = json.loads(client.get("/_sandbox/truth").data)
    assert all("permalink" not in f and f["proposal"] == {"code": "P1"} for f in truth)
    kept = state.store.records[served[0]["externalId"]].folder  # the store's own folder: untouched
    assert "permalink" in kept and "pronouns" not in kept["attendee"] and "proposal" not in kept
    # Filters and transitions still work on the real folders; a changed folder is served changed.
    accepted = listing(client, "state=accepted&limit=1")
    assert int(accepted.headers["X-Total-Count"]) == sum(1 for r in state.store.records.values() if r.state == "accepted")
    moved = client.post(f"/_sandbox/folders/{accepted.json[0]['externalId']}/moves/canceledByAttendee").json
    assert moved["state"] == "canceledByAttendee" and moved["proposal"] == {"code": "P1"} and "permalink" not in moved

    assert client.delete("/_sandbox/api-changes").json == {"add": {}, "remove": [], "total_count": "send"}
    assert observe(listing(client).json).drifted is False


def test_the_total_count_header_can_be_omitted_or_garbled(wedof):
    _state, client = wedof
    client.post("/_sandbox/api-changes", json={"total_count": "omit"})  # POST is PUT
    response = listing(client, "limit=5")
    assert "X-Total-Count" not in response.headers and len(response.json) == 5
    assert response.headers["X-Item-Per-Page"] == "5"
    client.put("/_sandbox/api-changes", json={"total_count": "garbage"})
    assert listing(client).headers["X-Total-Count"] == "lots"
    assert client.get("/_sandbox/api-changes").json["total_count"] == "garbage"


def test_reset_drops_the_changes(wedof):
    _state, client = wedof
    client.put("/_sandbox/api-changes", json=CHANGE)
    client.post("/_sandbox/reset", json={"folders": 10})
    assert client.get("/_sandbox/api-changes").json == {"add": {}, "remove": [], "total_count": "send"}
    assert observe(listing(client).json).drifted is False


@pytest.mark.parametrize("body", [
    [], "add", {"add": []}, {"remove": "permalink"}, {"remove": [3]}, {"add": {"a..b": 1}}, {"add": {"": 1}},
    {"add": {"a.b.c.d.e": 1}}, {"remove": ["x y"]}, {"total_count": "maybe"}, {"surprise": 1},
    {"add": {f"k{i}": i for i in range(51)}}, {"remove": ["__proto__", "$where"]},
])
def test_hostile_bodies_are_refused_and_change_nothing(wedof, body):
    _state, client = wedof
    client.put("/_sandbox/api-changes", json=CHANGE)
    response = client.put("/_sandbox/api-changes", json=body)
    assert response.status_code == 400 and response.json["detail"]
    assert client.get("/_sandbox/api-changes").json == {**CHANGE, "total_count": "send"}


def test_unreadable_json_is_a_400(wedof):
    _state, client = wedof
    response = client.put("/_sandbox/api-changes", data=b"{not json", content_type="application/json")
    assert response.status_code == 400
    assert client.put("/_sandbox/api-changes", data=b"").status_code == 400
