"""``python -m webapp.cli gdpr-export`` and ``gdpr-erase``: the same work as the admin API, and bad
arguments answered with one line and exit 2, nothing changed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import AuditLog, Beneficiary, ErasedAttendee, User
from tests.support.processes import PROJECT_ROOT, PYTHON
from webapp.cli import main


@pytest.fixture
def cli_world(world, app_env, redis_url):
    app_env(database_url=world.database_url, redis_url=redis_url)
    return world


def email_of(world, person) -> str | None:
    with session_scope(world.database_url) as session:
        return session.get(User, session.get(Beneficiary, person.beneficiary_id).user_id).email


def test_export_to_a_file_and_by_attendee_id_to_stdout(cli_world, tmp_path, capsys):
    person = cli_world.person
    out = tmp_path / "export.json"
    assert main(["gdpr-export", "--tenant", "org-a", "--beneficiary", str(person.beneficiary_id),
                 "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["user"]["email"] == person.email and len(document["enrollments"]) == 2
    capsys.readouterr()
    assert main(["gdpr-export", "--tenant", "ORG-A", "--attendee", person.attendee_id, "--include-raw-bodies"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["beneficiary"]["id"] == person.beneficiary_id and printed["raw_bodies_included"] is True
    with session_scope(cli_world.database_url) as session:
        assert session.scalars(select(AuditLog.actor).where(AuditLog.action == "beneficiary.exported")).all() == [
            "cli", "cli"]


@pytest.mark.parametrize("args, message", [
    (["--tenant", "nope", "--beneficiary", "1"], "no tenant with the slug 'nope'"),
    (["--tenant", "org-a", "--beneficiary", "987654"], "tenant org-a has no beneficiary 987654"),
    (["--tenant", "org-a", "--beneficiary", "99999999999"], "has no beneficiary"),
    (["--tenant", "org-a", "--attendee", "no-such-attendee"], "no beneficiary with the Wedof attendee id"),
])
def test_unknown_targets_exit_2_with_one_line(cli_world, capsys, args, message):
    for command in (["gdpr-export"], ["gdpr-erase", "--yes"]):
        assert main([*command, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert email_of(cli_world, cli_world.person) == cli_world.person.email


def test_another_tenants_beneficiary_is_not_found(cli_world, capsys):
    stranger = cli_world.stranger  # tenant org-b
    assert main(["gdpr-erase", "--tenant", "org-a", "--beneficiary", str(stranger.beneficiary_id), "--yes"]) == 2
    assert "has no beneficiary" in capsys.readouterr().err
    assert email_of(cli_world, stranger) == stranger.email


@pytest.mark.parametrize("args", [
    ["gdpr-export", "--beneficiary", "1"],  # no tenant
    ["gdpr-export", "--tenant", "org-a"],  # nobody
    ["gdpr-export", "--tenant", "org-a", "--beneficiary", "abc"],
    ["gdpr-export", "--tenant", "org-a", "--beneficiary", "-3"],
    ["gdpr-export", "--tenant", "org-a", "--beneficiary", "1", "--attendee", "5551"],
])
def test_bad_arguments_exit_2(cli_world, capsys, args):
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and "error:" in capsys.readouterr().err


def test_erase_needs_yes_then_erases(cli_world, tmp_path, capsys):
    person = cli_world.person
    target = ["--tenant", "org-a", "--beneficiary", str(person.beneficiary_id)]
    assert main(["gdpr-erase", *target]) == 2
    assert "add --yes" in capsys.readouterr().err and email_of(cli_world, person) == person.email
    assert main(["gdpr-export", *target, "--out", str(tmp_path / "missing" / "x.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["gdpr-erase", *target, "--yes"]) == 0
    assert "erased" in capsys.readouterr().out
    assert email_of(cli_world, person) is None and email_of(cli_world, cli_world.neighbour) is not None
    with session_scope(cli_world.database_url) as session:
        assert session.scalars(select(ErasedAttendee.attendee_id)).all() == [person.attendee_id]
        assert session.scalars(select(AuditLog.actor).where(AuditLog.action == "beneficiary.erased")).all() == ["cli"]


def test_the_installed_command_answers_bad_input_without_a_traceback(cli_world):
    env = {"DATABASE_URL": cli_world.database_url, "PATH": "/usr/bin:/bin"}
    env.update({k: os.environ[k] for k in ("SECRET_ENCRYPTION_KEY", "JWT_SECRET_KEY", "APP_ENV", "BDC_VAR_DIR")
                if k in os.environ})
    done = subprocess.run([PYTHON, "-m", "webapp.cli", "gdpr-export", "--tenant", "org-a", "--beneficiary", "x1"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not a beneficiary id" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([PYTHON, "-m", "webapp.cli", "gdpr-erase", "--tenant", "ghost", "--beneficiary", "1", "--yes"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == "error: no tenant with the slug 'ghost'", done.stderr
