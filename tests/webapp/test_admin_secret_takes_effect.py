"""A secret changed through the admin API is what the receiver checks on the very next delivery."""

from __future__ import annotations

from tests.webapp.conftest import TENANT_SECRETS, folder_body, wedof_delivery_headers


def _deliver(world, secret: str, delivery: str):
    body = folder_body()
    path = f"/api/webhooks/wedof/{world.connections['a']}"
    return world.client.post(path, data=body, headers=wedof_delivery_headers(body, secret=secret, delivery=delivery))


def test_rotated_secret_applies_at_once_despite_the_receivers_connection_cache(admin_world):
    old = TENANT_SECRETS["a"]["webhook_secret"]
    assert _deliver(admin_world, old, "before").status_code == 202  # the receiver now caches the connection

    rotated = admin_world.client.post("/api/integrations/wedof/connection/rotate-secret",
                                      headers=admin_world.headers("admin_a"))
    assert rotated.status_code == 200
    new = rotated.get_json()["webhook_secret"]

    assert _deliver(admin_world, old, "after-old").status_code == 401
    assert _deliver(admin_world, new, "after-new").status_code == 202


def test_patched_secret_applies_at_once(admin_world):
    assert _deliver(admin_world, TENANT_SECRETS["a"]["webhook_secret"], "before").status_code == 202
    patched = admin_world.client.patch("/api/integrations/wedof/connection", headers=admin_world.headers("admin_a"),
                                       json={"webhook_secret": "a-brand-new-secret-123"})
    assert patched.status_code == 200
    assert _deliver(admin_world, "a-brand-new-secret-123", "after").status_code == 202
