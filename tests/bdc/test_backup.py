"""``python -m bdc.backup``: back up a full database through the real CLI, restore it into an empty one,
find every row, then run the product on the restored database. On SQLite and on PostgreSQL.

"The product on it" is the real receiver (gunicorn) accepting a signed delivery, a real events worker
applying the folder it carries, and the billing reserve path numbering that folder after the restored
invoices without reusing a number.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from bdc import db as bdc_db
from bdc.audit import record_audit
from bdc.backup import PgTarget, manifest_path
from bdc.db import create_db_engine, session_scope
from bdc.models import (
    ActionStatus,
    ApiDrift,
    Appointment,
    AppointmentPhase,
    AppointmentStatus,
    AuditLog,
    Base,
    BillingMode,
    BillingSettings,
    ConnectivityCheck,
    Document,
    DocumentType,
    Enrollment,
    ErasedAttendee,
    Evaluation,
    EventStatus,
    Invoice,
    InvoiceSequence,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
    Notice,
    NoticeKind,
    NotificationSettings,
    Problem,
    ProblemKind,
    Program,
    ReconciliationReport,
    ReportStatus,
    Tenant,
    WebhookEvent,
    WedofConnection,
)
from tests.support.processes import PROJECT_ROOT, PYTHON
from tests.support.services import wait_until

SAMPLE_FOLDER = PROJECT_ROOT / "tests" / "fixtures" / "wedof" / "registration-folder.activepieces-sample.json"
PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}
_names = itertools.count()


# -- the CLI, as an operator runs it -------------------------------------------------------------------

def cli_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "BDC_VAR_DIR": str(var_dir), "APP_ENV": "test",
           "PYTHONPATH": str(PROJECT_ROOT)}
    env.update(extra)
    return env


def run_cli(module: str, *args: str, database_url: str, var_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", module, *args], env=cli_env(database_url, var_dir, **extra),
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)


def run_backup(*args: str, database_url: str, var_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    return run_cli("bdc.backup", *args, database_url=database_url, var_dir=var_dir, **extra)


def backup_ok(database_url: str, output: Path, var_dir: Path) -> Path:
    result = run_backup("--output", str(output), database_url=database_url, var_dir=var_dir)
    assert result.returncode == 0, result.stderr
    assert output.is_file() and manifest_path(output).is_file()
    return output


def restore_ok(database_url: str, backup: Path, var_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    result = run_backup("restore", str(backup), *flags, database_url=database_url, var_dir=var_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every table's row count matches the manifest" in result.stdout
    return result


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The CLI failed the way it promises: a non-zero code and one line saying why, never a traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line and "warning:" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bdc.backup: error: "), lines[0]
    return lines[0]


def suffix(url: str) -> str:
    return ".sqlite3" if url.startswith("sqlite") else ".pgdump"


# -- databases -----------------------------------------------------------------------------------------

def create_empty_postgres(cluster) -> str:
    name = f"bdc_empty_{os.getpid()}_{next(_names)}"
    admin = create_engine(cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))  # from template1: no schema at all
    admin.dispose()
    return cluster.database_url(name)


@pytest.fixture
def empty_database(request, db_url, tmp_path):
    """A factory of empty databases (no schema at all) on the backend of ``db_url``."""

    def make() -> str:
        if db_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'empty-{next(_names)}.sqlite3'}"
        return create_empty_postgres(request.getfixturevalue("pg_cluster"))

    yield make
    bdc_db.dispose_engines()


def snapshot(url: str, tables=None) -> dict[str, list[tuple]]:
    """Every row of every table (the models' tables and alembic_version), ordered by primary key."""
    engine = create_db_engine(url)
    tables = tables if tables is not None else list(Base.metadata.sorted_tables)
    try:
        with engine.connect() as conn:
            rows = {table.name: [tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))]
                    for table in tables}
            rows["alembic_version"] = [tuple(r) for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()
    return rows


def populate(database_url: str) -> dict:
    """Rows in every table: two tenants with users, folders, inbox events and sync runs (the admin world),
    then evidence, lifecycle actions, notices, audit, invoices numbered by the reserve path, and the
    operations tables. Returns the ids the tests use."""
    from billing import evaluate, invoices
    from tests.webapp.conftest import seed_admin_world

    ids = seed_admin_world(database_url)
    a = ids["a"]
    tenant_id, enrollment_id, now = a["tenant"], a["bilan_enrollment"], datetime.now(UTC)
    with session_scope(database_url) as session:
        session.get(WedofConnection, a["connection"]).organism_siret = "12345678900011"
        session.add(LifecycleSettings(tenant_id=tenant_id, normal_end_code="8", abandon_code="9", cancel_code="1"))
        session.add_all([
            Evaluation(tenant_id=tenant_id, beneficiary_id=a["beneficiary"], enrollment_id=enrollment_id,
                       title="Progression", score=10.0, external_id="eval-a-1"),
            Document(tenant_id=tenant_id, beneficiary_id=a["beneficiary"], enrollment_id=enrollment_id,
                     title="Synthèse du bilan", type=DocumentType.BILAN_REPORT, meta={"pages": 12},
                     external_id="doc-a-1"),
            Appointment(tenant_id=tenant_id, beneficiary_id=a["beneficiary"], enrollment_id=enrollment_id,
                        phase=AppointmentPhase.PRELIMINAIRE, starts_at=now - timedelta(days=9),
                        ends_at=now - timedelta(days=9, hours=-2), status=AppointmentStatus.ATTENDED,
                        attended_minutes=110, trainer_id=a["trainer"], notes="Entretien préliminaire ☕ « café »"),
            LifecycleAction(tenant_id=tenant_id, enrollment_id=enrollment_id, kind=LifecycleKind.ENTRY,
                            status=ActionStatus.DONE, mode=LifecycleMode.AUTO, body={"date": "2026-11-20"},
                            evidence={"appointment": "preliminaire"}, wedof_answer={"state": "inTraining"},
                            queued_at=now, sent_at=now, finished_at=now),
            LifecycleAction(tenant_id=tenant_id, enrollment_id=enrollment_id, kind=LifecycleKind.PROGRESS,
                            status=ActionStatus.PROPOSED, mode=LifecycleMode.APPROVE, body={"completionRate": 40},
                            late=True),
            Notice(tenant_id=tenant_id, kind=NoticeKind.LATE_ENTRY, message="Entrée déclarée en retard",
                   target_type="enrollment", target_id=str(enrollment_id)),
            Notice(tenant_id=tenant_id, kind=NoticeKind.KEY_REVOKED, message="Wedof refuse la clé (401)",
                   target_type="connection", target_id=str(a["connection"])),
            Notice(tenant_id=tenant_id, kind=NoticeKind.API_CHANGED, message="Wedof a changé son API"),
            Notice(tenant_id=tenant_id, kind=NoticeKind.BILLING_FAILED, message="Facture refusée par Wedof"),
            Document(tenant_id=tenant_id, beneficiary_id=a["beneficiary"], enrollment_id=enrollment_id,
                     title="Facture F-2026-000001", type=DocumentType.INVOICE, external_id="doc-a-invoice"),
        ])
        record_audit(session, actor=f"user:{a['admin']}", action="lifecycle.approved", tenant_id=tenant_id,
                     target=("enrollment", enrollment_id), details={"kind": "entry"})
        session.add(BillingSettings(tenant_id=tenant_id, mode=BillingMode.AUTO, seller_address="1 rue de Paris"))
        program = session.get(Program, session.get(Enrollment, enrollment_id).program_id)
        for n in range(3):
            session.add(Enrollment(tenant_id=tenant_id, beneficiary_id=a["beneficiary"], program_id=program.id,
                                   external_id=f"77000000{n}", wedof_state="serviceDoneValidated",
                                   wedof_billing_state="toBill", wedof_amounts=dict(PRICE),
                                   session_start_date=date(2026, 9, 1), session_end_date=date(2026, 11, 15)))
    with session_scope(database_url) as session:
        reserved = evaluate.evaluate_page(session, evaluate.settings_of(session, tenant_id)).reserved
    assert len(reserved) == 3
    with session_scope(database_url) as session:
        assert invoices.start(session, reserved[0], "task-bill-0")
        assert invoices.bill(session, reserved[0], {"billNumber": "F-x", "state": "billed"}, "sent")
        session.get(Invoice, reserved[0]).pdf = bytes(range(256)) * 4  # binary data survives too
        assert invoices.cancel(session, reserved[1], "admin@org-a.test", "wrong price")
    with session_scope(database_url) as session:
        session.add_all([
            NotificationSettings(tenant_id=tenant_id, recipients=["staff@org-a.test"],
                                 chat_webhook_url="https://chat.example.test/hooks/T0-secret-9f8e",
                                 reminder_after_seconds=3600),
            Problem(tenant_id=tenant_id, kind=ProblemKind.KEY_REVOKED, key=str(a["connection"]),
                    summary="Clé Wedof révoquée", details={"status": 401}, notified_at=now),
            ConnectivityCheck(connection_id=a["connection"], ok=False, status_code=401, latency_ms=12.5,
                              error="401 Unauthorized"),
            ReconciliationReport(connection_id=a["connection"], status=ReportStatus.DRIFT,
                                 wedof_states={"inTraining": 2}, local_states={"inTraining": 1},
                                 wedof_newest_update=now, local_newest_update=now - timedelta(hours=1),
                                 drift=1, sync_run_id=a["run"]),
            ApiDrift(connection_id=a["connection"], unknown_keys=["attendee.newField"], missing_keys=[],
                     samples=3),
            ErasedAttendee(tenant_id=ids["b"]["tenant"], attendee_id="att-erased-b", reason="request"),
        ])
    ids["invoices"] = reserved
    bdc_db.dispose_engines()
    return ids


# -- the product on the restored database -----------------------------------------------------------------

def sample_delivery(external_id: str) -> bytes:
    folder = json.loads(SAMPLE_FOLDER.read_text())
    folder.update(externalId=external_id, state="serviceDoneValidated", billingState="toBill", billNumber=None,
                  lastUpdate=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    folder["attendee"].update(id=987654321, email="restored.attendee@example.test")
    return json.dumps(folder).encode()


def run_product_on(url: str, ids: dict, redis_server, var_dir: Path, logs: Path) -> None:
    """The receiver accepts a signed delivery, a worker applies its folder, billing numbers it next."""
    from billing import evaluate
    from tests.support.stack import CeleryWorker, Receiver
    from tests.webapp.conftest import TENANT_SECRETS, wedof_delivery_headers
    from tests.worker.conftest import build_stack_env

    connection_id, tenant_id = ids["a"]["connection"], ids["a"]["tenant"]
    with session_scope(url) as session:
        last_event = session.scalar(select(func.max(WebhookEvent.id)))
        used_numbers = set(session.scalars(select(Invoice.number)))
        last_value = session.scalar(select(InvoiceSequence.last_value).where(InvoiceSequence.tenant_id == tenant_id))
    bdc_db.dispose_engines()

    env = build_stack_env(url, redis_server.url, var_dir)
    secret = TENANT_SECRETS["a"]["webhook_secret"]  # decrypted from the restored row: the key still opens it
    body = sample_delivery("7799000001")
    with Receiver(env, log_dir=logs).start() as receiver, \
            CeleryWorker(env, queues="events", log_dir=logs).start() as worker:
        hook = f"{receiver.url}/api/webhooks/wedof/{connection_id}"
        accepted = requests.post(hook, data=body, timeout=30,
                                 headers=wedof_delivery_headers(body, delivery="dlv-after-restore", secret=secret))
        assert accepted.status_code == 202, (accepted.status_code, accepted.text, receiver.log_tail())
        # a delivery restored from the backup is still known: answered as a duplicate, not stored twice
        again = requests.post(hook, data=body, timeout=30,
                              headers=wedof_delivery_headers(body, delivery="dlv-a-failed", secret=secret))
        assert again.status_code == 200, (again.status_code, again.text)

        def processed():
            with session_scope(url) as session:
                return session.scalar(select(WebhookEvent).where(
                    WebhookEvent.delivery_id == "dlv-after-restore", WebhookEvent.status == EventStatus.PROCESSED))
        event = wait_until(processed, timeout=60, message=f"delivery processed\n{worker.log_tail()}")
        assert event.id > last_event  # the id sequence went on from the restored rows
    with session_scope(url) as session:
        enrollment = session.scalar(select(Enrollment).where(Enrollment.external_id == "7799000001"))
        assert enrollment is not None and enrollment.tenant_id == tenant_id
        outcome = evaluate.evaluate_page(session, evaluate.settings_of(session, tenant_id),
                                         enrollment_ids=[enrollment.id])
        assert len(outcome.reserved) == 1, outcome.problems
        invoice = session.get(Invoice, outcome.reserved[0])
        assert invoice.sequence_value == last_value + 1
        assert invoice.number not in used_numbers
    bdc_db.dispose_engines()


# -- the tests -------------------------------------------------------------------------------------------

def test_a_backup_restored_into_an_empty_database_holds_every_row_and_the_product_runs_on_it(
        db_url, empty_database, tmp_path, redis_server, output_dir):
    ids = populate(db_url)
    before = snapshot(db_url)
    empty_tables = [name for name, rows in before.items() if not rows]
    assert empty_tables == [], f"populate() leaves tables empty: {empty_tables}"

    backup = backup_ok(db_url, tmp_path / f"full{suffix(db_url)}", tmp_path)
    assert oct(backup.stat().st_mode & 0o777) == "0o600"  # personal data: for the operator only
    manifest = json.loads(manifest_path(backup).read_text())
    assert manifest["backend"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert manifest["alembic_revision"] == before["alembic_version"][0][0]
    assert {name: len(rows) for name, rows in before.items()} == manifest["tables"]
    datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00"))

    restored = empty_database()
    result = restore_ok(restored, backup, tmp_path)
    assert f"alembic revision: {manifest['alembic_revision']}" in result.stdout
    assert "bdc.migrate upgrade" not in result.stdout  # at head: nothing to upgrade
    assert snapshot(restored) == before

    run_product_on(restored, ids, redis_server, tmp_path / "var", output_dir / "logs")


def test_the_default_backup_goes_under_var_backups_with_a_utc_timestamp(db_url, tmp_path):
    result = run_backup(database_url=db_url, var_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    files = [p for p in (tmp_path / "backups").iterdir() if not p.name.endswith(".manifest.json")]
    assert len(files) == 1 and manifest_path(files[0]).exists()
    assert files[0].name.startswith("bdc-") and files[0].suffix == suffix(db_url)
    stamp = files[0].stem.rsplit("-", 1)[1]
    assert abs(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(hours=1)
    assert str(files[0]) in result.stdout
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.endswith(".partial")]


def test_a_backup_taken_while_the_product_writes_is_one_point_in_time(db_url, empty_database, tmp_path):
    """Each write adds an audit row and a notice together: a consistent copy holds as many of each, and
    the manifest counts what the file holds (the restore checks them)."""
    with session_scope(db_url) as session:
        tenant = Tenant(name="Écritures", slug="writes")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    stop, written = threading.Event(), itertools.count(1)
    counter = {"n": 0}

    def write():
        while not stop.is_set():
            with session_scope(db_url) as session:
                record_audit(session, actor="system", action="test.write", tenant_id=tenant_id)
                session.add(Notice(tenant_id=tenant_id, kind=NoticeKind.ACTION_FAILED, message="x"))
            counter["n"] = next(written)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        wait_until(lambda: counter["n"] >= 20, message="writes before the backup")
        backup = backup_ok(db_url, tmp_path / f"live{suffix(db_url)}", tmp_path)
        at_backup_end = counter["n"]
        wait_until(lambda: counter["n"] >= at_backup_end + 20, message="writes after the backup")
    finally:
        stop.set()
        writer.join(timeout=30)
    restored = empty_database()
    restore_ok(restored, backup, tmp_path)
    with session_scope(restored) as session:
        audits = session.scalar(select(func.count()).select_from(AuditLog))
        notices = session.scalar(select(func.count()).select_from(Notice))
    with session_scope(db_url) as session:
        total = session.scalar(select(func.count()).select_from(AuditLog))
    bdc_db.dispose_engines()
    assert audits == notices >= 20
    assert audits < total  # the database went on being written; the copy is of one moment


def test_restore_refuses_a_database_that_is_not_empty_unless_forced(db_url, empty_database, tmp_path):
    populate(db_url)
    backup = backup_ok(db_url, tmp_path / f"b{suffix(db_url)}", tmp_path)
    target = empty_database()
    restore_ok(target, backup, tmp_path)
    with session_scope(target) as session:
        session.add(Tenant(name="Written after the restore", slug="after"))
    bdc_db.dispose_engines()
    after_write = snapshot(target)

    refused = run_backup("restore", str(backup), database_url=target, var_dir=tmp_path)
    assert refused.returncode == 3
    assert "not empty" in one_line_error(refused) and "--force" in refused.stderr
    assert snapshot(target) == after_write  # untouched

    restore_ok(target, backup, tmp_path, "--force")
    assert snapshot(target) == snapshot(db_url)  # replaced by the backup's contents


def test_restore_reports_a_row_count_that_differs_from_the_manifest(db_url, empty_database, tmp_path):
    populate(db_url)
    backup = backup_ok(db_url, tmp_path / f"b{suffix(db_url)}", tmp_path)
    manifest = json.loads(manifest_path(backup).read_text())
    manifest["tables"]["tenants"] += 5
    manifest_path(backup).write_text(json.dumps(manifest))
    result = run_backup("restore", str(backup), database_url=empty_database(), var_dir=tmp_path)
    assert result.returncode == 4
    assert "tenants: 7 in the manifest, 2 restored" in one_line_error(result)


def test_a_backup_without_a_manifest_restores_with_a_warning(db_url, empty_database, tmp_path):
    backup = backup_ok(db_url, tmp_path / f"b{suffix(db_url)}", tmp_path)
    manifest_path(backup).unlink()
    target = empty_database()
    result = run_backup("restore", str(backup), database_url=target, var_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: no manifest" in result.stderr
    assert snapshot(target) == snapshot(db_url)


# -- hostile input -----------------------------------------------------------------------------------------

def test_hostile_restore_input_gets_one_clear_line(db_url, empty_database, tmp_path):
    target = empty_database()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(4096))
    text_file = tmp_path / "notes.txt"
    text_file.write_text("-- PostgreSQL database dump\nCREATE TABLE x ();\n")
    truncated = tmp_path / f"truncated{suffix(db_url)}"
    real = backup_ok(db_url, tmp_path / f"real{suffix(db_url)}", tmp_path)
    truncated.write_bytes(real.read_bytes()[:200])
    damaged = tmp_path / f"damaged{suffix(db_url)}"  # a flipped byte: its manifest no longer matches
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    manifest_path(damaged).write_text(manifest_path(real).read_text())
    bad_manifest = tmp_path / f"badmanifest{suffix(db_url)}"
    bad_manifest.write_bytes(real.read_bytes())
    manifest_path(bad_manifest).write_text("{not json")

    cases = {
        "missing": ([str(tmp_path / "nope.pgdump")], "no such backup file"),
        "directory": ([str(tmp_path)], "is a directory"),
        "garbage": ([str(garbage)], "is not a backup made by bdc.backup"),
        "plain sql": ([str(text_file)], "is not a backup made by bdc.backup"),
        "truncated": ([str(truncated)], "not a readable" if db_url.startswith("postgresql") else "SQLite"),
        "damaged": ([str(damaged)], "does not match its manifest"),
        "bad manifest": ([str(bad_manifest)], "manifest"),
    }
    for name, (args, expected) in cases.items():
        result = run_backup("restore", *args, database_url=target, var_dir=tmp_path)
        assert result.returncode == 1, (name, result.stderr)
        assert expected in one_line_error(result), (name, result.stderr)
    truncated_manifestless = run_backup("restore", str(truncated), database_url=target, var_dir=tmp_path)
    assert "warning: no manifest" in truncated_manifestless.stderr
    assert snapshot_tables(target) == []  # nothing was written by any of them


def snapshot_tables(url: str) -> list[str]:
    from sqlalchemy import inspect

    engine = create_db_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_backup_of_the_other_backend_is_refused(sqlite_db_url, pg_db_url, tmp_path):
    sqlite_backup = backup_ok(sqlite_db_url, tmp_path / "s.sqlite3", tmp_path)
    pg_backup = backup_ok(pg_db_url, tmp_path / "p.pgdump", tmp_path)
    to_sqlite = run_backup("restore", str(pg_backup), database_url=f"sqlite:///{tmp_path / 'new.sqlite3'}",
                           var_dir=tmp_path)
    assert "is a PostgreSQL dump, but DATABASE_URL is a sqlite database" in one_line_error(to_sqlite)
    assert not (tmp_path / "new.sqlite3").exists()
    to_pg = run_backup("restore", str(sqlite_backup), database_url=pg_db_url, var_dir=tmp_path)
    assert "is a SQLite backup, but DATABASE_URL is a postgresql database" in one_line_error(to_pg)
    # a backup file renamed to the other's extension is still recognised by its content
    disguised = tmp_path / "disguised.pgdump"
    disguised.write_bytes(sqlite_backup.read_bytes())
    assert "is a SQLite backup" in one_line_error(
        run_backup("restore", str(disguised), database_url=pg_db_url, var_dir=tmp_path))


@pytest.mark.parametrize("args, expected", [
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["restore"], "required: FILE"),
    (["--colour"], "unrecognized arguments: --colour"),
    (["restore", "a", "b"], "unrecognized arguments: b"),
])
def test_bad_usage_is_one_line_and_exit_code_2(sqlite_db_url, tmp_path, args, expected):
    result = run_backup(*args, database_url=sqlite_db_url, var_dir=tmp_path)
    assert result.returncode == 2
    assert expected in one_line_error(result)


def test_hostile_backup_input_gets_one_clear_line(sqlite_db_url, tmp_path):
    existing = tmp_path / "exists.sqlite3"
    existing.write_text("keep me")
    cases = [
        ({"output": existing}, sqlite_db_url, "already exists"),
        ({"output": tmp_path / "no" / "such" / "dir.sqlite3"}, sqlite_db_url, "does not exist"),
        ({}, f"sqlite:///{tmp_path / 'never-created.sqlite3'}", "no SQLite database at"),
        ({}, "mysql://root@127.0.0.1/bdc", "DATABASE_URL must be"),
        ({}, "postgresql://bdc:secret-pw-123@127.0.0.1:1/bdc", "database error"),
    ]
    for options, url, expected in cases:
        args = ["--output", str(options["output"])] if "output" in options else []
        result = run_backup(*args, database_url=url, var_dir=tmp_path)
        assert expected in one_line_error(result), (url, result.stderr)
        assert "secret-pw-123" not in result.stderr + result.stdout
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "never-created.sqlite3").exists()


# -- PostgreSQL: the password reaches the tools, never their command line ---------------------------------

@pytest.fixture
def password_role(pg_cluster, pg_db_url):
    """A superuser that must give its password (scram on loopback), on a copy of the migrated template."""
    role, password = f"bdc_pw_{os.getpid()}", "p@ss:w\\rd with spaces"
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'"))
    hba = pg_cluster.datadir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
    reload_cluster(pg_cluster, admin)
    try:
        yield role, password
    finally:
        hba.write_text(original)
        reload_cluster(pg_cluster, admin)
        admin.dispose()


def reload_cluster(cluster, admin) -> None:
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_reload_conf()"))


def with_credentials(url: str, role: str, password: str | None) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


def test_the_password_reaches_pg_dump_and_pg_restore_through_a_passfile(pg_cluster, pg_db_url, password_role,
                                                                         tmp_path):
    role, password = password_role
    source = with_credentials(pg_db_url, role, password)
    target = PgTarget.from_url(source)
    assert password not in target.conninfo and "password" not in target.conninfo  # what goes on the command line
    with target.environment() as env:
        passfile = Path(env["PGPASSFILE"])
        assert oct(passfile.stat().st_mode & 0o777) == "0o600"
        assert "PGPASSWORD" not in env
    assert not passfile.exists()

    wrong = run_backup("--output", str(tmp_path / "wrong.pgdump"),
                       database_url=with_credentials(pg_db_url, role, "not-it"), var_dir=tmp_path)
    assert "password authentication failed" in one_line_error(wrong)  # so the right one really is used below
    backup = backup_ok(source, tmp_path / "pw.pgdump", tmp_path)
    restored = with_credentials(create_empty_postgres(pg_cluster), role, password)
    result = restore_ok(restored, backup, tmp_path)
    assert password not in result.stdout + result.stderr
    assert snapshot(restored) == snapshot(pg_db_url)


def test_pg_dump_of_the_servers_major_version_is_chosen(pg_db_url):
    import glob

    from bdc.backup import BackupError, find_pg_tool

    engine = create_db_engine(pg_db_url)
    with engine.connect() as conn:
        major = int(conn.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
    engine.dispose()
    if glob.glob(f"/usr/lib/postgresql/{major}/bin/pg_dump"):
        assert find_pg_tool("pg_dump", major) == f"/usr/lib/postgresql/{major}/bin/pg_dump"
    with pytest.raises(BackupError, match=f"older than the server \\({major + 1}\\)"):
        find_pg_tool("pg_dump", major + 1)  # no client of a newer server: refused, not a failed dump


def test_forcing_over_tables_the_backup_does_not_hold_is_refused(pg_db_url, pg_cluster, tmp_path):
    backup = backup_ok(pg_db_url, tmp_path / "b.pgdump", tmp_path)
    target = create_empty_postgres(pg_cluster)
    restore_ok(target, backup, tmp_path)
    engine = create_db_engine(target)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE stray_report (id integer PRIMARY KEY)"))
    engine.dispose()
    result = run_backup("restore", str(backup), "--force", database_url=target, var_dir=tmp_path)
    assert result.returncode == 1
    assert "holds tables the backup does not (stray_report)" in one_line_error(result)
    assert "stray_report" in snapshot_tables(target)


def test_a_backup_of_a_newer_release_says_so_after_the_restore(sqlite_db_url, tmp_path):
    engine = create_db_engine(sqlite_db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    engine.dispose()
    backup = backup_ok(sqlite_db_url, tmp_path / "newer.sqlite3", tmp_path)
    result = restore_ok(f"sqlite:///{tmp_path / 'r.sqlite3'}", backup, tmp_path)
    assert "alembic revision: f00dfeedbeef" in result.stdout and "unknown to this release" in result.stdout
    assert "bdc.migrate upgrade" not in result.stdout
