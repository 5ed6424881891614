"""The hold fault over real HTTP: a request waits at an exact point, so a test can kill its client there."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import requests

HOLD = {"method": "POST", "path_contains": "/billing", "when": "before", "ms": 10_000, "count": 1}


def billable(sbx) -> str:
    """A folder whose service the financer has validated (toBill)."""
    external_id = next(f["externalId"] for f in sbx.control("GET", "/truth") if f["state"] == "serviceDoneDeclared")
    sbx.control("PUT", f"/folders/{external_id}", json={"billingState": "notBillable"})
    sbx.control("POST", f"/folders/{external_id}/moves/serviceDoneValidated")
    return external_id


def billing_state(sbx, external_id: str) -> str:
    return sbx.api("GET", f"/registrationFolders/{external_id}").json()["billingState"]


def wait_for(sbx, condition, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hold = sbx.control("GET", "/hold")
        if condition(hold):
            return hold
        time.sleep(0.02)
    raise AssertionError(f"hold never reached the condition: {hold}")


class Call(threading.Thread):
    """One API call in the background: the test runs while the sandbox holds it."""

    def __init__(self, sbx, method: str, path: str, **kwargs) -> None:
        super().__init__(daemon=True)
        self.args, self.response, self.elapsed = (sbx, method, path, kwargs), None, None
        self.start()

    def run(self) -> None:
        sbx, method, path, kwargs = self.args
        started = time.monotonic()
        self.response = sbx.api(method, path, **kwargs)
        self.elapsed = time.monotonic() - started


def bill_in_background(sbx, external_id: str) -> Call:
    return Call(sbx, "POST", f"/registrationFolders/{external_id}/billing", json={"billNumber": "F-1"})


def test_before_the_request_is_not_processed_until_released(sbx):
    external_id = billable(sbx)
    assert sbx.control("PUT", "/hold", json=HOLD)["active"] is True
    call = bill_in_background(sbx, external_id)
    hold = wait_for(sbx, lambda h: h["hits"] >= 1)
    assert (hold["hits"], hold["remaining"]) == (1, 0)
    assert billing_state(sbx, external_id) == "toBill" and call.is_alive()  # GETs are not held
    cleared = sbx.control("DELETE", "/hold")
    assert cleared["active"] is False and cleared["method"] is None
    call.join(5)
    assert call.response.status_code == 200 and call.elapsed < 8  # released early, not after 10 s
    assert billing_state(sbx, external_id) == "billed"


def test_after_the_change_is_made_and_the_answer_waits(sbx):
    external_id = billable(sbx)
    sbx.control("PUT", "/hold", json={**HOLD, "when": "after"})
    call = bill_in_background(sbx, external_id)
    wait_for(sbx, lambda h: h["hits"] >= 1)
    assert billing_state(sbx, external_id) == "billed" and call.is_alive()
    assert sbx.control("GET", "/transitions")[external_id] == {"billing": 1}
    sbx.control("DELETE", "/hold")
    call.join(5)
    assert call.response.status_code == 200 and call.response.json()["billNumber"] == "F-1"


def test_a_hold_ends_after_its_ms(sbx):
    sbx.control("PUT", "/hold", json={**HOLD, "method": "get", "path_contains": "/users/me", "ms": 400})
    call = Call(sbx, "GET", "/users/me")
    call.join(5)
    assert call.response.status_code == 200 and call.elapsed >= 0.4
    hold = sbx.control("GET", "/hold")
    assert (hold["method"], hold["hits"], hold["remaining"], hold["active"]) == ("GET", 1, 0, False)


def test_only_the_next_count_matching_requests_are_held(sbx):
    external_id = billable(sbx)
    sbx.control("PUT", "/hold", json={**HOLD, "ms": 0, "count": 2})
    sbx.api("GET", f"/registrationFolders/{external_id}/billing")  # another method: 405, not held
    sbx.api("POST", f"/registrationFolders/{external_id}/inTraining")  # another path
    assert sbx.control("GET", "/hold")["hits"] == 0
    statuses = [sbx.api("POST", f"/registrationFolders/{external_id}/billing", json={"billNumber": "F-1"}).status_code
                for _ in range(3)]
    assert statuses == [200, 400, 400]
    hold = sbx.control("GET", "/hold")
    assert (hold["hits"], hold["remaining"]) == (2, 0)


KILLED_CLIENT = """
import requests, sys
requests.post(sys.argv[1], json={"billNumber": "F-killed"}, headers={"X-Api-Key": sys.argv[2]}, timeout=60)
"""


def kill_client_while_held(sbx, external_id: str, when: str, ms: int = 10_000) -> None:
    sbx.control("PUT", "/hold", json={**HOLD, "when": when, "ms": ms})
    url = f"{sbx.api_url}/registrationFolders/{external_id}/billing"
    client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url, sbx.api_key])
    try:
        wait_for(sbx, lambda h: h["hits"] >= 1)
    finally:
        client.kill()  # SIGKILL: the process dies with its request in flight
        client.wait(10)


def test_a_client_killed_while_held_before_never_bills(sbx):
    external_id = billable(sbx)
    # Held a minute: only the client going away can end the wait within wait_for's 10 s.
    kill_client_while_held(sbx, external_id, "before", ms=60_000)
    wait_for(sbx, lambda h: h["abandoned"] >= 1)  # the wait ended as the client went away
    assert sbx.control("GET", "/requests")["by_status"].get("444") == 1  # dropped, not processed
    assert billing_state(sbx, external_id) == "toBill"
    assert external_id not in sbx.control("GET", "/transitions")


def test_a_client_killed_while_held_after_has_billed(sbx):
    external_id = billable(sbx)
    kill_client_while_held(sbx, external_id, "after")
    assert billing_state(sbx, external_id) == "billed"
    assert sbx.api("GET", f"/registrationFolders/{external_id}").json()["billNumber"] == "F-killed"
    assert sbx.control("GET", "/transitions")[external_id] == {"billing": 1}
    sbx.control("DELETE", "/hold")


def test_reset_clears_the_hold(sbx):
    sbx.control("PUT", "/hold", json=HOLD)
    sbx.control("POST", "/reset", json={"folders": 60, "seed": 7})
    assert sbx.control("GET", "/hold")["active"] is False


@pytest.mark.parametrize("body", [
    [], "POST", 5, {}, {"path_contains": "/billing", "ms": 10}, {"method": "POST", "ms": 10},
    {"method": "POST", "path_contains": "/billing"},
    {**HOLD, "method": "FETCH"}, {**HOLD, "method": 5}, {**HOLD, "method": None},
    {**HOLD, "path_contains": ""}, {**HOLD, "path_contains": "   "}, {**HOLD, "path_contains": 5},
    {**HOLD, "path_contains": "/" * 201}, {**HOLD, "when": "during"}, {**HOLD, "when": None},
    {**HOLD, "ms": -1}, {**HOLD, "ms": 120_001}, {**HOLD, "ms": "10"}, {**HOLD, "ms": True},
    {**HOLD, "count": 0}, {**HOLD, "count": 101}, {**HOLD, "count": 1.5}, {**HOLD, "count": True},
    {**HOLD, "seconds": 3},
])
def test_bad_hold_bodies_are_400(sbx, body):
    response = requests.put(f"{sbx.url}/_sandbox/hold", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert sbx.control("GET", "/hold")["active"] is False
    assert requests.put(f"{sbx.url}/_sandbox/hold", data=b"{", timeout=10).status_code == 400


def test_replacing_the_hold_releases_the_requests_it_held(sbx):
    sbx.control("PUT", "/hold", json={**HOLD, "method": "GET", "path_contains": "/organisms/me"})
    call = Call(sbx, "GET", "/organisms/me")
    wait_for(sbx, lambda h: h["hits"] >= 1)
    replaced = sbx.control("PUT", "/hold", json={**HOLD, "count": 3})
    assert (replaced["hits"], replaced["remaining"], replaced["path_contains"]) == (0, 3, "/billing")
    call.join(5)
    assert call.response.status_code == 200 and call.elapsed < 8
