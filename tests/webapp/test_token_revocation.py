"""Token revocation: the admin API's POST /token/revoke and the CLI's revoke-token, checked on every request.

Real Redis holds the blocklist; requests go through the Flask test client. A revoked token gets 401
``token_revoked``; the audit log names the jti, never the token; Redis away at check time is a 503.
"""

from __future__ import annotations

import io
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, User
from tests.support.services import RedisServer
from tests.webapp.conftest import ADMIN_API, build_admin_world
from webapp.cli import main
from webapp.token_revocation import KEY_PREFIX

SECRET = "test-jwt-secret-key-with-enough-length"  # tests/conftest.py's JWT_SECRET_KEY


def claims(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


def status(world, token: str):
    return world.client.get(ADMIN_API + "/status", headers={"Authorization": f"Bearer {token}"})


def revoke(world, token: str, **kwargs):
    return world.client.post(ADMIN_API + "/token/revoke", headers={"Authorization": f"Bearer {token}",
                                                                   **kwargs.pop("headers", {})}, **kwargs)


def audit_rows(database_url: str) -> list[AuditLog]:
    with session_scope(database_url) as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "token.revoked")).all()
        session.expunge_all()
        return list(rows)


def fresh_token(world, who: str = "admin_a", expires=timedelta(hours=1)) -> str:
    from webapp.auth import issue_token

    user_id = world.ids["a"]["admin"] if who == "admin_a" else world.ids["b"]["admin"]
    with world.app.app_context(), session_scope(world.database_url) as session:
        return issue_token(session.get(User, user_id), expires=expires)


def test_issued_tokens_carry_a_distinct_jti(admin_world):
    first, second = fresh_token(admin_world), fresh_token(admin_world)
    assert claims(first)["jti"] and claims(second)["jti"] and claims(first)["jti"] != claims(second)["jti"]


def test_the_caller_revokes_its_own_token_and_only_that_one(admin_world, redis_client):
    token, other = fresh_token(admin_world), fresh_token(admin_world)
    assert status(admin_world, token).status_code == 200
    response = revoke(admin_world, token)
    body = response.get_json()
    assert response.status_code == 200 and body["revoked"] is True and body["jti"] == claims(token)["jti"]
    assert 3500 <= body["kept_seconds"] <= 3601
    # Kept exactly as long as the token lives, then Redis forgets it.
    assert 3500 <= redis_client.ttl(KEY_PREFIX + claims(token)["jti"]) <= 3601

    refused = status(admin_world, token)
    assert refused.status_code == 401 and refused.get_json()["error"] == "token_revoked"
    assert revoke(admin_world, token).get_json()["error"] == "token_revoked"
    page = admin_world.client.get(f"/integrations/wedof?token={token}")
    assert page.status_code == 401 and "Jeton révoqué." in page.get_data(as_text=True)
    # The same user's other token, and other users, are untouched.
    assert status(admin_world, other).status_code == 200
    assert status(admin_world, admin_world.tokens["admin_b"]).status_code == 200


def test_revocation_is_audited_by_jti_never_by_token(admin_world):
    token = fresh_token(admin_world)
    assert revoke(admin_world, token).status_code == 200
    (row,) = audit_rows(admin_world.database_url)
    assert (row.actor, row.tenant_id, row.target_type, row.target_id) == (
        f"user:{admin_world.ids['a']['admin']}", admin_world.tenants["a"], "token", claims(token)["jti"])
    assert row.details["via"] == "api" and row.details["expires_at"]
    signature = token.rsplit(".", 1)[1]
    assert token not in str(row.details) and signature not in str(row.details)


@pytest.mark.parametrize("body,content_type,status_code,error", [
    (b"{not json", "application/json", 400, "invalid_json"),
    (b"[1, 2]", "application/json", 400, "invalid_json"),
    (b"\xff\xfe\x00", "application/json", 400, "invalid_json"),
    (b'"jti"', "text/plain", 400, "invalid_json"),
    (b'{"jti": "somebody-elses-jti"}', "application/json", 422, "validation_error"),
    (b'{"token": "x", "all": true}', "application/json", 422, "validation_error"),
])
def test_a_malformed_body_revokes_nothing(admin_world, redis_client, body, content_type, status_code, error):
    token = fresh_token(admin_world)
    response = revoke(admin_world, token, data=body, headers={"Content-Type": content_type})
    assert response.status_code == status_code and response.get_json()["error"] == error
    assert status(admin_world, token).status_code == 200
    assert redis_client.keys(KEY_PREFIX + "*") == [] and audit_rows(admin_world.database_url) == []


@pytest.mark.parametrize("who,status_code", [(None, 401), ("garbage", 401), ("forged", 401), ("expired", 401),
                                             ("trainer_a", 403)])
def test_only_an_admins_valid_token_can_revoke_itself(admin_world, redis_client, who, status_code):
    headers = admin_world.headers(who)
    response = admin_world.client.post(ADMIN_API + "/token/revoke", headers=headers)
    assert response.status_code == status_code
    assert redis_client.keys(KEY_PREFIX + "*") == []


def test_an_empty_json_object_is_accepted(admin_world):
    token = fresh_token(admin_world)
    assert revoke(admin_world, token, json={}).status_code == 200
    assert status(admin_world, token).get_json()["error"] == "token_revoked"


@pytest.mark.parametrize("jti", [None, "", 42, "has space", "x" * 101])
def test_a_token_without_a_usable_jti_is_refused(admin_world, jti):
    payload = {"sub": str(admin_world.ids["super"]), "role": "super_admin", "type": "access", "fresh": False,
               "exp": int(time.time()) + 600}
    if jti is not None:
        payload["jti"] = jti
    token = pyjwt.encode(payload, SECRET, algorithm="HS256")
    response = status(admin_world, token)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


# -- the CLI ------------------------------------------------------------------------------------------

def test_cli_revokes_by_jti(admin_world, redis_client, capsys):
    token = fresh_token(admin_world)
    jti = claims(token)["jti"]
    assert main(["revoke-token", jti]) == 0
    assert jti in capsys.readouterr().out
    assert status(admin_world, token).get_json()["error"] == "token_revoked"
    assert redis_client.ttl(KEY_PREFIX + jti) > 89 * 24 * 3600  # the token's lifetime is unknown: 90 days
    (row,) = audit_rows(admin_world.database_url)
    assert (row.actor, row.target_id, row.details["via"]) == ("cli", jti, "cli")


def test_cli_revokes_by_token_until_it_expires(admin_world, redis_client, capsys):
    token = fresh_token(admin_world, expires=timedelta(minutes=10))
    assert main(["revoke-token", "--token", token]) == 0
    capsys.readouterr()
    assert 590 <= redis_client.ttl(KEY_PREFIX + claims(token)["jti"]) <= 601
    assert status(admin_world, token).get_json()["error"] == "token_revoked"
    (row,) = audit_rows(admin_world.database_url)
    assert row.tenant_id == admin_world.tenants["a"] and row.details["subject"] == str(admin_world.ids["a"]["admin"])
    assert token not in str(row.details)


def test_cli_reads_the_token_from_stdin(admin_world, monkeypatch, capsys):
    token = fresh_token(admin_world)
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["revoke-token", "--token", "-"]) == 0
    assert token not in capsys.readouterr().out
    assert status(admin_world, token).get_json()["error"] == "token_revoked"


def test_cli_an_expired_token_needs_no_revoking(admin_world, redis_client, capsys):
    assert main(["revoke-token", "--token", admin_world.tokens["expired"]]) == 0
    assert "already expired" in capsys.readouterr().out
    assert redis_client.keys(KEY_PREFIX + "*") == [] and audit_rows(admin_world.database_url) == []


@pytest.mark.parametrize("argv", [
    ["revoke-token", "--token", "not.a.jwt"],
    ["revoke-token", "--token", "\x00\x01garbage"],
    ["revoke-token", "--token", ""],
    ["revoke-token", "--token", "forged"],  # replaced below by a token signed with another key
    ["revoke-token", "has space"],
    ["revoke-token", "x" * 101],
    ["revoke-token", ""],
    ["revoke-token"],
    ["revoke-token", "some-jti", "--token", "also-a-token"],
])
def test_cli_refuses_garbage_and_revokes_nothing(admin_world, redis_client, capsys, argv):
    argv = [admin_world.tokens["forged"] if arg == "forged" else arg for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and ("nothing was revoked" in err or "not both" in err)
    assert "Traceback" not in err
    assert redis_client.keys(KEY_PREFIX + "*") == [] and audit_rows(admin_world.database_url) == []


# -- Redis away ----------------------------------------------------------------------------------------

@pytest.fixture
def own_redis(output_dir):
    server = RedisServer(log_dir=output_dir / "logs").start()
    yield server
    server.cleanup()


def test_redis_away_at_check_time_fails_closed_with_503(app_env, sqlite_db_url, own_redis, fresh_task_sender):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, own_redis.url)
    revoked, kept = fresh_token(world), fresh_token(world)
    assert revoke(world, revoked).status_code == 200
    own_redis.stop()
    for token in (revoked, kept):  # a revoked token must not get back in while the blocklist is unreadable
        response = status(world, token)
        assert response.status_code == 503 and response.get_json()["error"] == "revocation_check_unavailable"
    page = world.client.get(f"/integrations/wedof?token={revoked}")
    assert page.status_code == 503
    own_redis.start()  # same port: requests are answered again (this Redis kept nothing: no persistence)
    assert status(world, kept).status_code == 200


def test_a_stalled_redis_is_a_503_and_the_revocation_outlives_the_stall(app_env, sqlite_db_url, own_redis,
                                                                        fresh_task_sender):
    import redis

    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, own_redis.url)
    token = fresh_token(world)
    assert revoke(world, token).status_code == 200
    pauser = redis.Redis.from_url(own_redis.url)
    pauser.execute_command("CLIENT", "PAUSE", 3000, "ALL")  # Redis alive, data kept, but no answer
    started = time.monotonic()
    response = status(world, token)
    assert response.status_code == 503 and response.get_json()["error"] == "revocation_check_unavailable"
    assert time.monotonic() - started < 2.5  # short timeouts: the admin is not kept waiting
    time.sleep(max(0.0, 3.2 - (time.monotonic() - started)))
    assert status(world, token).get_json()["error"] == "token_revoked"
    pauser.close()


def test_redis_away_the_cli_says_nothing_was_revoked(app_env, sqlite_db_url, own_redis, capsys):
    app_env(database_url=sqlite_db_url, redis_url=own_redis.url)
    own_redis.stop()
    assert main(["revoke-token", "some-jti"]) == 1
    assert "nothing was revoked" in capsys.readouterr().err
