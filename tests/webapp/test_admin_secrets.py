"""Secrets never leave: no API key or webhook secret in any response or log line, whoever calls what.

The one documented exception is a secret the server generates (rotate-secret, or create without
one): it is in that single response, and nowhere else, ever.
"""

from __future__ import annotations

import logging

from tests.webapp.conftest import TENANT_SECRETS
from tests.webapp.test_admin_auth import ENDPOINTS, _fill

EXTRA_READS = ["/events?per_page=100", "/events/{processed}", "/events/{stuck}", "/sync-runs/{run}", "/audit-log",
               "/connection", "/status"]


def test_no_secret_in_any_response_or_log_line(admin_world, caplog):
    caplog.set_level(logging.DEBUG)
    w = admin_world
    known = [value for secrets in TENANT_SECRETS.values() for value in secrets.values()]
    bodies: list[str] = []
    rotated: list[str] = []
    for who in ("super", "admin_a", "admin_b", "trainer_a", None, "expired", "forged"):
        for method, path, body, _ok, _scope in ENDPOINTS:
            for name in ("a", "b"):
                url = _fill(path, w.ids[name]) + f"?tenant_id={w.tenants[name]}"
                response = w.call(method, url, who=who, json=_fill(body, w.ids[name]))
                text = response.get_data(as_text=True)
                if path.endswith("rotate-secret") and response.status_code == 200:
                    rotated.append(response.get_json()["webhook_secret"])
                    text = text.replace(rotated[-1], "<new secret>")
                bodies.append(text)
        for path in EXTRA_READS:
            bodies.append(w.call("GET", _fill(path, w.ids["a"]) + f"?tenant_id={w.tenants['a']}", who=who)
                          .get_data(as_text=True))
    # Key-shaped fields never appear in an API response (the OpenAPI input schema names them, added below),
    # except as the audit log's "changed" marker, which stands for a secret's old and new values.
    def without_markers(body: str) -> str:
        for name in ("api_key", "webhook_secret"):
            body = body.replace(f'"{name}":"changed"', "").replace(f'"{name}": "changed"', "")
        return body.replace('"webhook_secret":"<new', "")

    assert not any('"api_key":' in without_markers(body) or '"webhook_secret":' in without_markers(body)
                   for body in bodies)
    bodies.append(w.client.get("/openapi.json").get_data(as_text=True))
    bodies.append(w.client.get(f"/integrations/wedof?token={w.tokens['admin_a']}").get_data(as_text=True))

    assert rotated, "the sweep must have rotated secrets (otherwise it proves little)"
    log_text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for secret in known + rotated:
        assert not any(secret in body for body in bodies), "a secret reached a response"
        assert secret not in log_text, "a secret reached the log"
    assert any('"api_key_set":true' in body.replace(" ", "") for body in bodies)


def test_rotated_secret_is_shown_once(admin_world):
    w = admin_world
    secret = w.call("POST", "/connection/rotate-secret", who="admin_a").get_json()["webhook_secret"]
    for path in ("/connection", "/status", "/audit-log", "/events"):
        assert secret not in w.call("GET", path, who="admin_a").get_data(as_text=True)
