"""A rotated webhook secret: the new one works on the very next delivery, the old one only for the grace window.

Wedof keeps signing with the old secret until its webhook is updated, and retries deliveries it
signed before: those are accepted for WEBHOOK_SECRET_GRACE_SECONDS (marked on the row), then refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, WebhookEvent, WedofConnection
from bdc.types import utcnow
from tests.webapp.conftest import (
    TENANT_SECRETS,
    build_admin_world,
    folder_body,
    queued_messages,
    wedof_delivery_headers,
)
from webapp.receiver.connections import forget_cached_connections
from worker.task_names import REGISTER_WEBHOOK

OLD = TENANT_SECRETS["a"]["webhook_secret"]


def _deliver(world, secret: str, delivery: str):
    body = folder_body(external_id=str(4270000000 + abs(hash(delivery)) % 999999))
    path = f"/api/webhooks/wedof/{world.connections['a']}"
    return world.client.post(path, data=body, headers=wedof_delivery_headers(body, secret=secret, delivery=delivery))


def _rotate(world) -> dict:
    response = world.call("POST", "/connection/rotate-secret", who="admin_a")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _marked(world, delivery: str) -> bool:
    with session_scope(world.database_url) as session:
        return session.scalar(select(WebhookEvent.signed_with_previous_secret)
                              .where(WebhookEvent.delivery_id == delivery))


def test_old_and_new_secrets_during_the_grace_window_then_only_the_new(admin_world_any_db, redis_client):
    w = admin_world_any_db
    assert _deliver(w, OLD, "before").status_code == 202  # the receiver now caches the connection
    rotated = _rotate(w)
    new = rotated["webhook_secret"]
    until = rotated["previous_secret_accepted_until"]
    assert abs((utcnow() + timedelta(hours=24) - datetime.fromisoformat(until)).total_seconds()) < 60
    assert rotated["register_task_id"]  # the Wedof webhook is registered again with the new secret
    assert [m["args"] for m in queued_messages(redis_client, "events") if m["task"] == REGISTER_WEBHOOK] == [
        [w.connections["a"]]]

    assert _deliver(w, new, "new-1").status_code == 202 and _marked(w, "new-1") is False
    assert _deliver(w, OLD, "old-1").status_code == 202 and _marked(w, "old-1") is True
    listed = {e["delivery_id"]: e["signed_with_previous_secret"]
              for e in w.call("GET", "/events?per_page=100", who="admin_a").get_json()["items"]}
    assert listed["old-1"] is True and listed["new-1"] is False
    assert w.call("GET", "/connection", who="admin_a").get_json()["previous_secret_accepted_until"] == until

    # The window ends: the old secret is refused, the new one goes on.
    with session_scope(w.database_url) as session:
        session.get(WedofConnection, w.connections["a"]).previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    forget_cached_connections()
    refused = _deliver(w, OLD, "old-2")
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_signature"
    assert _deliver(w, new, "new-2").status_code == 202
    assert w.call("GET", "/connection", who="admin_a").get_json()["previous_secret_accepted_until"] is None

    with session_scope(w.database_url) as session:
        entry = session.scalars(select(AuditLog).where(AuditLog.action == "connection.secret_rotated")).one()
        assert entry.details["changes"] == {"webhook_secret": "changed"}
        assert OLD not in str(entry.details) and new not in str(entry.details)


def test_a_second_rotation_drops_the_first_secret(admin_world):
    first = _rotate(admin_world)["webhook_secret"]
    second = _rotate(admin_world)["webhook_secret"]
    assert _deliver(admin_world, OLD, "oldest").status_code == 401
    assert _deliver(admin_world, first, "first").status_code == 202 and _marked(admin_world, "first") is True
    assert _deliver(admin_world, second, "second").status_code == 202 and _marked(admin_world, "second") is False


def test_without_a_grace_window_the_old_secret_is_refused_at_once(app_env, sqlite_db_url, redis_url, redis_client,
                                                                  fresh_task_sender):
    w = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, WEBHOOK_SECRET_GRACE_SECONDS="0")
    assert _deliver(w, OLD, "before").status_code == 202
    rotated = _rotate(w)
    assert rotated["previous_secret_accepted_until"] is None
    assert _deliver(w, OLD, "after-old").status_code == 401
    assert _deliver(w, rotated["webhook_secret"], "after-new").status_code == 202


def test_a_forged_signature_is_refused_during_the_window(admin_world):
    _rotate(admin_world)
    for forged in ("not-the-secret-at-all", OLD + "x", OLD[:-1]):
        assert _deliver(admin_world, forged, f"forged-{len(forged)}").status_code == 401


def test_a_secret_set_by_hand_applies_at_once_and_the_old_one_gets_its_window(admin_world):
    assert _deliver(admin_world, OLD, "before").status_code == 202
    patched = admin_world.client.patch("/api/integrations/wedof/connection", headers=admin_world.headers("admin_a"),
                                       json={"webhook_secret": "a-brand-new-secret-123"})
    assert patched.status_code == 200 and patched.get_json()["previous_secret_accepted_until"]
    assert _deliver(admin_world, "a-brand-new-secret-123", "after").status_code == 202
    assert _deliver(admin_world, OLD, "old-after").status_code == 202 and _marked(admin_world, "old-after")
