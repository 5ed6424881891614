"""``python -m webapp.cli create-tenant`` and ``token``: one-step onboarding, hostile input → exit 2, nothing half-made."""

from __future__ import annotations

import re
import subprocess

import pytest
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import AuditLog, Tenant, User, WedofConnection
from tests.support.processes import PROJECT_ROOT, PYTHON
from webapp.cli import main


def _counts(url: str) -> tuple[int, int, int]:
    with session_scope(url) as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) for model in (Tenant, User, WedofConnection))


@pytest.fixture
def cli_db(app_env, sqlite_db_url, redis_url):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, public_base_url="http://127.0.0.1:8000")
    return sqlite_db_url


def _token(output: str) -> str:
    return re.search(r"Access token \(12 h\): (\S+)", output).group(1)


def test_create_tenant_then_use_the_token(cli_db, capsys):
    code = main(["create-tenant", "--name", "Acme Formation", "--slug", "acme", "--admin-email", "Admin@Acme.test",
                 "--wedof-api-url", "http://127.0.0.1:9/api", "--wedof-api-key", "acme-wedof-key-123"])
    out = capsys.readouterr().out
    assert code == 0, out
    with session_scope(cli_db) as session:
        tenant = session.scalars(select(Tenant)).one()
        admin = session.scalars(select(User)).one()
        connection = session.scalars(select(WedofConnection)).one()
        assert (tenant.slug, admin.email, admin.role.value, admin.tenant_id) == ("acme", "admin@acme.test",
                                                                                "tenant_admin", tenant.id)
        assert connection.api_key == "acme-wedof-key-123" and len(connection.webhook_secret) >= 32
        assert f"Webhook URL to paste into Wedof: http://127.0.0.1:8000/api/webhooks/wedof/{connection.id}" in out
        assert connection.webhook_secret in out  # generated: shown once
        assert "acme-wedof-key-123" not in out
        assert session.scalars(select(AuditLog.action)).all() == ["tenant.created"]

    from webapp.app import create_app

    client = create_app({"TESTING": True}).test_client()
    response = client.get("/api/integrations/wedof/connection", headers={"Authorization": f"Bearer {_token(out)}"})
    assert response.status_code == 200 and response.get_json()["api_key_set"] is True

    assert main(["token", "--email", "admin@acme.test"]) == 0
    token = capsys.readouterr().out.strip()
    assert client.get("/api/integrations/wedof/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_given_webhook_secret_is_not_printed(cli_db, capsys):
    assert main(["create-tenant", "--name", "B", "--slug", "b", "--admin-email", "b@b.test",
                 "--webhook-secret", "my-own-secret-value"]) == 0
    assert "my-own-secret-value" not in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["--slug", "Bad Slug"], "slug"),
    (["--slug", "-x"], "slug"),
    (["--admin-email", "not-an-email"], "email"),
    (["--admin-email", "a@b"], "email"),
    (["--wedof-api-url", "ftp://wedof"], "URL"),
    (["--wedof-api-url", "wedof.fr/api"], "URL"),
    (["--wedof-api-url", "https://u:p@wedof.fr/api"], "URL"),
    (["--wedof-api-key", "a b"], "API key"),
    (["--webhook-secret", "short"], "secret"),
    (["--name", "   "], "name"),
])
def test_hostile_input_exits_2_and_creates_nothing(cli_db, capsys, args, message):
    base = {"--name": "Org", "--slug": "org", "--admin-email": "a@org.test"}
    options = dict(zip(args[::2], args[1::2], strict=True))
    argv = ["create-tenant"]
    for key, value in {**base, **options}.items():
        argv.append(f"{key}={value}")  # "=" so a value like "-x" is not read as an option
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing was created" in err
    assert _counts(cli_db) == (0, 0, 0)


@pytest.mark.parametrize("second", [
    ["--slug", "taken", "--admin-email", "other@org.test"],
    ["--slug", "other", "--admin-email", "FIRST@org.test"],
])
def test_duplicates_exit_2_and_leave_the_first_alone(cli_db, capsys, second):
    assert main(["create-tenant", "--name", "First", "--slug", "taken", "--admin-email", "first@org.test"]) == 0
    before = _counts(cli_db)
    assert main(["create-tenant", "--name", "Second", *second]) == 2
    assert "already exists" in capsys.readouterr().err
    assert _counts(cli_db) == before == (1, 1, 1)


def test_token_for_unknown_or_inactive_user(cli_db, capsys):
    assert main(["token", "--email", "ghost@nowhere.test"]) == 2
    assert "no user" in capsys.readouterr().err
    main(["create-tenant", "--name", "O", "--slug", "o", "--admin-email", "o@o.test"])
    with session_scope(cli_db) as session:
        session.scalars(select(User)).one().is_active = False
    assert main(["token", "--email", "o@o.test"]) == 2


def test_argparse_errors_exit_2(cli_db):
    with pytest.raises(SystemExit) as exc:
        main(["create-tenant", "--name", "x"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["token", "--email", "a@b.test", "--expires-hours", "-3"])
    assert exc.value.code == 2


def test_module_entry_point_in_a_real_process(app_env, sqlite_db_url, redis_url):
    env = app_env(database_url=sqlite_db_url, redis_url=redis_url)
    done = subprocess.run([PYTHON, "-m", "webapp.cli", "create-tenant", "--name", "P", "--slug", "p",
                           "--admin-email", "p@p.test"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Access token" in done.stdout
    again = subprocess.run([PYTHON, "-m", "webapp.cli", "create-tenant", "--name", "P", "--slug", "p",
                            "--admin-email", "q@p.test"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
