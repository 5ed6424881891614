"""A connection flooded with bad signatures is slowed down (429 + Retry-After); Wedof's deliveries never are."""

from __future__ import annotations

import dataclasses
import logging
import time

from tests.webapp.conftest import TENANT_SECRETS, build_admin_world, folder_body, wedof_delivery_headers
from webapp.receiver.flood import WINDOW_SECONDS

LIMIT = 5


def _world(app_env, sqlite_db_url, redis_url, fresh_task_sender):
    # Counts are per minute: start well inside one so the test never straddles two windows.
    if time.time() % WINDOW_SECONDS > WINDOW_SECONDS - 8:
        time.sleep(WINDOW_SECONDS - time.time() % WINDOW_SECONDS + 0.1)
    return build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url,
                             WEBHOOK_BAD_SIGNATURE_LIMIT=str(LIMIT))


def _post(world, name: str, secret: str | None, delivery: str):
    body = folder_body()
    return world.client.post(f"/api/webhooks/wedof/{world.connections[name]}", data=body,
                             headers=wedof_delivery_headers(body, secret=secret, delivery=delivery))


def test_bad_signatures_past_the_limit_get_429_and_genuine_deliveries_still_land(
        app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender, caplog):
    caplog.set_level(logging.INFO, logger="webapp.receiver")
    w = _world(app_env, sqlite_db_url, redis_url, fresh_task_sender)
    answers = [_post(w, "a", "forged-secret-0000", f"bad-{n}") for n in range(LIMIT)]
    answers.append(_post(w, "a", None, "unsigned"))  # a missing signature counts as well
    answers.append(_post(w, "a", "forged-secret-0000", "bad-last"))
    assert [r.status_code for r in answers] == [401] * LIMIT + [429, 429]
    limited = answers[-1]
    assert limited.get_json()["error"] == "too_many_bad_signatures"
    assert 1 <= int(limited.headers["Retry-After"]) <= WINDOW_SECONDS + 1

    genuine = _post(w, "a", TENANT_SECRETS["a"]["webhook_secret"], "genuine")
    assert genuine.status_code == 202, genuine.get_json()
    assert _post(w, "b", "forged-secret-0000", "bad-b").status_code == 401  # another connection is not affected

    lines = [r.getMessage() for r in caplog.records if r.name == "webapp.receiver"]
    assert sum('"outcome": "invalid_signature"' in line for line in lines) == LIMIT + 1
    assert sum('"outcome": "too_many_bad_signatures"' in line for line in lines) == 0
    assert sum("webhook_signature_flood" in line for line in lines) == 1


def test_without_redis_a_bad_signature_is_the_plain_401(app_env, sqlite_db_url, redis_url, redis_client,
                                                        fresh_task_sender):
    w = _world(app_env, sqlite_db_url, redis_url, fresh_task_sender)
    settings = w.app.config["SETTINGS"]
    w.app.config["SETTINGS"] = dataclasses.replace(settings, redis_url="redis://127.0.0.1:9/0")
    assert [_post(w, "a", "forged-secret-0000", f"x-{n}").status_code for n in range(LIMIT + 2)] == [401] * (LIMIT + 2)
