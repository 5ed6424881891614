"""Rate limits of the admin API and the integration page, counted in the real Redis, through HTTP.

Small limits (5 per user, 8 per address and minute) so a test reaches them in a few requests. Each
test uses its own remote addresses (the Flask test client's REMOTE_ADDR), so counts never mix.
"""

from __future__ import annotations

import time

import pytest

from tests.support.processes import free_port
from tests.support.services import RedisServer
from tests.webapp.conftest import (
    ADMIN_API,
    TENANT_SECRETS,
    build_admin_world,
    folder_body,
    wedof_delivery_headers,
)

PER_USER, PER_ADDRESS = 5, 8
LIMITS = {"admin_rate_limit": f"{PER_USER}/minute", "admin_rate_limit_per_address": f"{PER_ADDRESS}/minute"}


@pytest.fixture
def world(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    return build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, **LIMITS)


def get(world, path: str, who: str | None, address: str, client=None):
    headers = world.headers(who) if who in world.tokens else (
        {"Authorization": f"Bearer {who}"} if who else {})
    return (client or world.client).get(path, headers=headers, environ_base={"REMOTE_ADDR": address})


def status(world, who, address, client=None):
    return get(world, ADMIN_API + "/status", who, address, client)


def assert_rate_limited(response) -> int:
    assert response.status_code == 429
    body = response.get_json()
    assert body["error"] == "rate_limited" and body["message"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 60
    assert body["retry_after"] == int(retry_after)
    return int(retry_after)


def test_a_user_past_its_limit_gets_429_with_retry_after_and_others_are_not_affected(world):
    for _ in range(PER_USER):
        assert status(world, "admin_a", "10.1.0.1").status_code == 200
    assert_rate_limited(status(world, "admin_a", "10.1.0.1"))
    # The limit follows the user, not the address: from elsewhere it is still spent.
    assert_rate_limited(status(world, "admin_a", "10.1.0.2"))
    # Another user, even from the same address, still has its own allowance.
    assert status(world, "admin_b", "10.1.0.1").status_code == 200
    assert get(world, f"{ADMIN_API}/status?tenant_id={world.tenants['a']}", "super", "10.1.0.1").status_code == 200


def test_the_limit_spans_the_whole_admin_api_and_the_page(world):
    paths = ["/status", "/events?status=failed", "/sync-runs", "/audit-log", "/connection"]
    for path in paths:
        assert get(world, ADMIN_API + path, "admin_a", "10.2.0.1").status_code == 200, path
    assert_rate_limited(get(world, f"/integrations/wedof?token={world.tokens['admin_a']}", None, "10.2.0.1"))


def test_an_address_past_its_limit_gets_429_whoever_calls(world):
    for _ in range(PER_ADDRESS):
        assert status(world, None, "10.3.0.1").status_code == 401  # no token: only the address counts
    assert_rate_limited(status(world, None, "10.3.0.1"))
    assert_rate_limited(status(world, "admin_a", "10.3.0.1"))  # a user with allowance left, same address
    # A different address is counted separately.
    assert status(world, None, "10.3.0.2").status_code == 401
    assert status(world, "admin_a", "10.3.0.2").status_code == 200


def test_a_forged_or_garbage_token_does_not_spend_the_named_users_allowance(world):
    # The forged token names the super admin as its subject; it fails verification, so only its
    # address is charged, and the real super admin keeps all its requests.
    for who in ["forged", "garbage", "expired", "forged", "garbage"]:
        assert status(world, who, "10.4.0.1").status_code == 401
    for _ in range(PER_USER):
        assert get(world, ADMIN_API + "/status?tenant_id=" + str(world.tenants["a"]), "super",
                   "10.4.0.2").status_code == 200


def test_hostile_headers_do_not_choose_the_counted_address(world):
    # X-Forwarded-For is not trusted (no proxy configured): changing it does not reset the count.
    for index in range(PER_ADDRESS):
        response = world.client.get(ADMIN_API + "/status", headers={"X-Forwarded-For": f"192.0.2.{index}"},
                                    environ_base={"REMOTE_ADDR": "10.5.0.1"})
        assert response.status_code == 401
    response = world.client.get(ADMIN_API + "/status", headers={"X-Forwarded-For": "192.0.2.200"},
                                environ_base={"REMOTE_ADDR": "10.5.0.1"})
    assert_rate_limited(response)


def test_the_webhook_receiver_health_and_metrics_are_never_limited(world):
    for _ in range(PER_ADDRESS + 1):
        status(world, None, "10.6.0.1")
    assert_rate_limited(status(world, None, "10.6.0.1"))
    secret = TENANT_SECRETS["a"]["webhook_secret"]
    for index in range(PER_ADDRESS * 2):
        body = folder_body(f"42708856{index:02d}")
        response = world.client.post(f"/api/webhooks/wedof/{world.connections['a']}", data=body,
                                     headers=wedof_delivery_headers(body, delivery=f"dlv-limit-{index}",
                                                                    secret=secret),
                                     environ_base={"REMOTE_ADDR": "10.6.0.1"})
        assert response.status_code == 202, response.get_data(as_text=True)
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] * 3:
        response = world.client.get(path, environ_base={"REMOTE_ADDR": "10.6.0.1"})
        assert response.status_code == 200, path
        assert "Retry-After" not in response.headers


def test_processes_share_the_count_through_redis(world):
    from webapp.app import create_app

    other_process = create_app({"TESTING": True}).test_client()  # another gunicorn worker, same Redis
    for index in range(PER_USER):
        client = world.client if index % 2 else other_process
        assert status(world, "admin_a", "10.7.0.1", client).status_code == 200
    assert_rate_limited(status(world, "admin_a", "10.7.0.1", other_process))
    assert_rate_limited(status(world, "admin_a", "10.7.0.1", world.client))


def test_retry_after_says_when_the_window_reopens(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url,
                              admin_rate_limit="2 per 2 second", admin_rate_limit_per_address="100/minute")
    started = time.monotonic()
    while status(world, "admin_a", "10.8.0.1").status_code == 200:
        assert time.monotonic() - started < 10
    response = status(world, "admin_a", "10.8.0.1")
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert 1 <= wait <= 2
    time.sleep(wait + 0.2)
    assert status(world, "admin_a", "10.8.0.1").status_code == 200


@pytest.fixture
def own_redis(output_dir):
    server = RedisServer(log_dir=output_dir / "logs").start()
    yield server
    server.cleanup()


def test_redis_going_away_keeps_limiting_in_memory_and_never_answers_500(
        app_env, sqlite_db_url, own_redis, fresh_task_sender):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, own_redis.url, **LIMITS)
    assert status(world, "admin_a", "10.9.0.1").status_code == 200
    own_redis.stop()
    # Without a token: the address limit goes on in this process's memory; never a 500.
    answers = [status(world, None, "10.9.0.2").status_code for _ in range(PER_ADDRESS + 2)]
    assert set(answers[:PER_ADDRESS]) == {401} and answers[PER_ADDRESS:] == [429, 429]
    # With a token: the revocation check cannot be made, which fails closed (webapp.auth), as a 503.
    response = status(world, "admin_b", "10.9.0.3")
    assert response.status_code == 503 and response.get_json()["error"] == "revocation_check_unavailable"
    assert world.client.get("/healthz").status_code == 200


def test_an_unreachable_redis_at_start_is_no_500_either(app_env, sqlite_db_url, fresh_task_sender):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, f"redis://127.0.0.1:{free_port()}/0",
                              **LIMITS)
    assert status(world, None, "10.10.0.1").status_code == 401
    assert status(world, "admin_a", "10.10.0.1").status_code == 503
