"""Authentication and error shapes: 401 without the key, JSON errors everywhere, never a stack trace."""

from __future__ import annotations

import requests


def test_missing_or_wrong_key_is_401(sbx):
    url = f"{sbx.api_url}/registrationFolders"
    missing = requests.get(url, timeout=10)
    wrong = requests.get(url, headers={"X-Api-Key": "nope"}, timeout=10)
    bearer = requests.get(url, headers={"Authorization": f"Bearer {sbx.api_key}"}, timeout=10)
    for response in (missing, wrong, bearer):
        assert response.status_code == 401 and response.json()["detail"]
    assert sbx.control("GET", "/requests")["unauthorized"] >= 3


def test_header_name_is_case_insensitive(sbx):
    for name in ("x-api-key", "X-API-KEY", "X-Api-Key"):
        response = requests.get(f"{sbx.api_url}/users/me", headers={name: sbx.api_key}, timeout=10)
        assert response.status_code == 200
    organism = sbx.api("GET", "/organisms/me").json()
    assert organism["siret"] == "12345678900012" and organism["name"]


def test_unknown_routes_and_methods_answer_json(sbx):
    assert sbx.api("GET", "/stagiaires").status_code == 404
    assert sbx.api("GET", "/stagiaires").json()["detail"]
    not_allowed = sbx.api("DELETE", "/registrationFolders")
    assert not_allowed.status_code == 405 and not_allowed.json()["detail"]
    too_big = sbx.api("POST", "/webhooks", data=b"x" * (1024 * 1024 + 10), headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413


def test_control_endpoints_refuse_non_loopback_clients(client):
    response = client.get("/_sandbox/truth", environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert response.status_code == 403


def test_hostile_control_bodies(sbx):
    for method, path, body in (("POST", "/simulate", {"changes": -1}), ("POST", "/simulate", {"changes": "many"}),
                               ("POST", "/reset", {"folders": 10**9}), ("POST", "/deliveries/drain", {"timeout": "x"}),
                               ("POST", "/simulate", [1])):
        response = requests.request(method, f"{sbx.url}/_sandbox{path}", json=body, timeout=10)
        assert response.status_code == 400, (path, body, response.text)
