"""Fault injection on /api/* (never on /_sandbox/*), over real HTTP, with the counters that prove it."""

from __future__ import annotations

import pytest
import requests


def faults(sbx, **settings) -> None:
    sbx.control("PUT", "/faults", json=settings)
    sbx.control("POST", "/requests/reset")


def test_error_rate_gives_5xx_json_and_is_counted(sbx):
    faults(sbx, error_rate=1)
    statuses = [sbx.api("GET", "/users/me") for _ in range(6)]
    assert {r.status_code for r in statuses} <= {500, 502, 503}
    assert all("detail" in r.json() for r in statuses)
    counters = sbx.control("GET", "/requests")
    assert counters["faults"]["error"] == 6 and counters["total"] == 6 and counters["served"] == 0
    assert sbx.control("GET", "/health")["status"] == "ok"  # control endpoints are never faulted


def test_rate_limit_answers_429_with_retry_after(sbx):
    faults(sbx, rate_limit_rate=1, retry_after=7)
    response = sbx.api("GET", "/registrationFolders")
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert sbx.control("GET", "/requests")["faults"]["rate_limit"] == 1


def test_drop_closes_the_connection_without_a_response(sbx):
    faults(sbx, drop_rate=1)
    with pytest.raises(requests.ConnectionError):
        sbx.api("GET", "/registrationFolders")
    faults(sbx, drop_rate=0)  # back to normal: the server survived the drop
    assert sbx.api("GET", "/users/me").status_code == 200


def test_partial_error_rate_is_reproducible_and_counted(sbx):
    faults(sbx, error_rate=0.5)
    codes = [sbx.api("GET", "/organisms/me").status_code for _ in range(40)]
    counters = sbx.control("GET", "/requests")
    assert 0 < codes.count(200) < 40
    assert counters["faults"]["error"] == 40 - codes.count(200) == counters["total"] - counters["served"]


def test_latency_is_applied_and_counted(sbx):
    faults(sbx, latency_ms=5)
    assert sbx.api("GET", "/users/me").status_code == 200
    assert sbx.control("GET", "/requests")["faults"]["latency"] == 1


@pytest.mark.parametrize("bad", [{"error_rate": 1.5}, {"error_rate": "high"}, {"retry_after": -1},
                                 {"latency_ms": True}, {"unknown": 1}])
def test_fault_settings_are_validated(sbx, bad):
    response = requests.put(f"{sbx.url}/_sandbox/faults", json=bad, timeout=10)
    assert response.status_code == 400 and response.json()["violations"]
    assert sbx.control("GET", "/faults")["error_rate"] == 0


def test_a_lost_answer_applies_the_change_then_drops_the_connection(sbx):
    """What a client must survive before it sends a declaration again: Wedof did it, the answer never came."""
    folder = next(f for f in sbx.control("GET", "/truth") if f["state"] == "inTraining")
    faults(sbx, lost_answer_rate=1)
    with pytest.raises(requests.ConnectionError):
        sbx.api("PUT", f"/registrationFolders/{folder['externalId']}", json={"completionRate": 37})
    assert sbx.api("GET", f"/registrationFolders/{folder['externalId']}").json()["completionRate"] == 37  # GETs answer
    assert sbx.control("GET", "/requests")["faults"]["lost_answer"] == 1


def test_a_lost_answer_on_billing_bills_once_and_the_retry_is_refused(sbx):
    """The client's worst case: Wedof billed, the answer was lost; sending the bill again must not bill twice."""
    external_id = next(f["externalId"] for f in sbx.control("GET", "/truth") if f["state"] == "serviceDoneDeclared")
    sbx.control("PUT", f"/folders/{external_id}", json={"billingState": "notBillable"})
    sbx.control("POST", f"/folders/{external_id}/moves/serviceDoneValidated")
    faults(sbx, lost_answer_rate=1)
    url = f"/registrationFolders/{external_id}/billing"
    with pytest.raises(requests.ConnectionError):
        sbx.api("POST", url, json={"billNumber": "FAC-LOST"})
    folder = sbx.api("GET", f"/registrationFolders/{external_id}").json()
    assert (folder["billingState"], folder["billNumber"]) == ("billed", "FAC-LOST")
    assert sbx.control("GET", "/requests")["faults"]["lost_answer"] == 1
    assert sbx.control("GET", "/transitions")[external_id] == {"billing": 1}
    retry = sbx.api("POST", url, json={"billNumber": "FAC-LOST"})  # a refusal is not lost: only 2xx answers are
    assert retry.status_code == 400 and retry.json()["violations"][0]["propertyPath"] == "billingState"
    assert sbx.control("GET", "/transitions")[external_id] == {"billing": 1}
