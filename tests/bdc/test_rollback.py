"""The rollback procedure, run the way the README tells an operator to, on SQLite and on PostgreSQL:
upgrade, write data, back up, ``python -m bdc.migrate downgrade -1``, upgrade again; the older tables'
rows are intact, the newest revision's are gone (that is what the backup is for) and restoring the
backup brings them back. Then every migration, one at a time, down and up again, with and without data.
"""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from bdc import db as bdc_db
from bdc.db import create_db_engine
from bdc.migrate import alembic_config, downgrade, upgrade
from bdc.models import (
    ApiDrift,
    Base,
    ConnectivityCheck,
    ErasedAttendee,
    NotificationSettings,
    Problem,
    ReconciliationReport,
)
from tests.bdc.test_backup import (
    backup_ok,
    create_empty_postgres,
    one_line_error,
    populate,
    restore_ok,
    run_backup,
    run_cli,
    snapshot,
    suffix,
)

SCRIPT = ScriptDirectory.from_config(alembic_config("sqlite://"))
REVISIONS = [r.revision for r in reversed(list(SCRIPT.walk_revisions()))]  # base first
HEAD = SCRIPT.get_current_head()
OPERATIONS_TABLES = {m.__tablename__ for m in (NotificationSettings, Problem, ConnectivityCheck,
                                               ReconciliationReport, ApiDrift)}
# The tables each recent revision creates: what a downgrade of the newest one drops.
TABLES_CREATED_BY = {
    "b6d20d6b6395": OPERATIONS_TABLES,
    "2ea86d9ec594": set(),
    "7736672c6d18": {ErasedAttendee.__tablename__},
}
NEWEST_TABLES = TABLES_CREATED_BY[HEAD]

# Rows a downgrade deletes from tables it keeps, by the revision whose downgrade deletes them: values
# the older CHECK constraints refuse. The README's "what a downgrade loses" says the same.
DELETED_BY_DOWNGRADE = {
    "b6d20d6b6395": {"notices": ("kind", {"key_revoked", "api_changed", "reconciliation_drift"})},
    "0d89edc88e5b": {"notices": ("kind", {"billing_failed"}), "documents": ("type", {"invoice"})},
}


@pytest.fixture
def empty_url(request, db_url, tmp_path):
    def make() -> str:
        if db_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'empty-{len(list(tmp_path.iterdir()))}.sqlite3'}"
        return create_empty_postgres(request.getfixturevalue("pg_cluster"))

    yield make
    bdc_db.dispose_engines()


def migrate(*args: str, url: str, var_dir) -> str:
    result = run_cli("bdc.migrate", *args, database_url=url, var_dir=var_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def tables_of(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def surviving(rows: dict[str, list[tuple]], downgraded: list[str]) -> dict[str, list[tuple]]:
    """``rows`` without what the downgrades of ``downgraded`` revisions delete from the tables they keep."""
    kept = {name: list(table_rows) for name, table_rows in rows.items()}
    for revision in downgraded:
        for table_name, (column, values) in DELETED_BY_DOWNGRADE.get(revision, {}).items():
            index = list(Base.metadata.tables[table_name].columns.keys()).index(column)
            kept[table_name] = [row for row in kept[table_name] if row[index] not in values]
    return kept


def columns_in_database(url: str, tables) -> dict[str, list[str]]:
    """The columns each table has in the database, in the models' order."""
    engine = create_db_engine(url)
    try:
        found = inspect(engine)
        present = {table.name: {c["name"] for c in found.get_columns(table.name)} for table in tables}
    finally:
        engine.dispose()
    return {table.name: [c.name for c in table.columns if c.name in present[table.name]] for table in tables}


def snapshot_of_columns(url: str, tables, columns: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """Like ``snapshot``, reading only ``columns`` of each table (read through the models' column types)."""
    engine = create_db_engine(url)
    try:
        with engine.connect() as conn:
            rows = {table.name: [tuple(r) for r in conn.execute(
                select(*(table.c[name] for name in columns[table.name])).order_by(*table.primary_key.columns))]
                for table in tables}
            rows["alembic_version"] = [tuple(r) for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    finally:
        engine.dispose()
    return rows


def only_columns(rows: list[tuple], table_name: str, names: list[str]) -> list[tuple]:
    keys = list(Base.metadata.tables[table_name].columns.keys())
    return [tuple(row[keys.index(name)] for name in names) for row in rows]


def test_the_rollback_procedure_keeps_older_data_and_the_backup_brings_back_the_newest(db_url, empty_url, tmp_path):
    previous = SCRIPT.get_revision(HEAD).down_revision
    populate(db_url)
    before = snapshot(db_url)
    assert f"database revision: {HEAD}" in migrate("current", url=db_url, var_dir=tmp_path)

    # 1. back up first (workers and beat are stopped in production; nothing writes here)
    backup = backup_ok(db_url, tmp_path / f"before-rollback{suffix(db_url)}", tmp_path)

    # 2. one revision down: the newest revision's tables go, the older ones stay as they were
    migrate("downgrade", "-1", url=db_url, var_dir=tmp_path)
    assert f"database revision: {previous}" in migrate("current", url=db_url, var_dir=tmp_path)
    older = tables_of(db_url)
    assert set(Base.metadata.tables) - older == NEWEST_TABLES
    older_tables = [t for t in Base.metadata.sorted_tables if t.name in older]
    expected_older = {name: rows for name, rows in surviving(before, [HEAD]).items() if name in older}
    columns = columns_in_database(db_url, older_tables)  # the newest revision's columns are gone too
    at_previous = snapshot_of_columns(db_url, older_tables, columns)
    assert at_previous.pop("alembic_version") == [(previous,)]
    assert at_previous == {name: only_columns(rows, name, columns[name])  # what the previous release finds
                           for name, rows in expected_older.items()}
    for table_name in DELETED_BY_DOWNGRADE.get(HEAD, {}):  # the rows the downgrade deletes were there to lose
        assert expected_older[table_name] != before[table_name], table_name

    # a backup of the previous release's database restores and asks for the upgrade
    old_backup = backup_ok(db_url, tmp_path / f"at-previous{suffix(db_url)}", tmp_path)
    restored_old = empty_url()
    told = restore_ok(restored_old, old_backup, tmp_path)
    assert f"alembic revision: {previous}" in told.stdout and "python -m bdc.migrate upgrade" in told.stdout

    # 3. roll forward: the older data is intact, the newest tables exist again, empty
    migrate("upgrade", url=db_url, var_dir=tmp_path)
    after = snapshot(db_url)
    assert after["alembic_version"] == [(HEAD,)]
    assert {name: after[name] for name in expected_older} == expected_older
    assert {name: after[name] for name in NEWEST_TABLES} == {name: [] for name in NEWEST_TABLES}
    assert all(before[name] for name in NEWEST_TABLES)  # they held rows before the downgrade

    # 4. what the downgrade lost comes back from the backup (the database is not empty: --force)
    refused = run_backup("restore", str(backup), database_url=db_url, var_dir=tmp_path)
    assert refused.returncode == 3 and "not empty" in one_line_error(refused)
    restore_ok(db_url, backup, tmp_path, "--force")
    assert snapshot(db_url) == before

    # the previous release's backup, upgraded, is the same data as the downgraded database
    migrate("upgrade", url=restored_old, var_dir=tmp_path)
    assert {name: rows for name, rows in snapshot(restored_old).items() if name in older} == expected_older


def test_downgrade_needs_a_revision_and_a_bad_one_is_one_line(sqlite_db_url, tmp_path):
    no_target = run_cli("bdc.migrate", "downgrade", database_url=sqlite_db_url, var_dir=tmp_path)
    assert no_target.returncode == 2 and "downgrade REVISION" in no_target.stderr
    assert tables_of(sqlite_db_url) == set(Base.metadata.tables)  # no silent downgrade to base
    for revision in ("-99", "nosuchrev"):
        bad = run_cli("bdc.migrate", "downgrade", revision, database_url=sqlite_db_url, var_dir=tmp_path)
        assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.startswith("bdc.migrate: error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert tables_of(sqlite_db_url) == set(Base.metadata.tables)


def schema_of(url: str) -> dict:
    """Tables, columns, keys, indexes and checks as the database reports them."""
    engine = create_db_engine(url)
    try:
        found = inspect(engine)
        schema = {}
        for table in sorted(found.get_table_names()):
            schema[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
                "pk": found.get_pk_constraint(table)["constrained_columns"],
                "fks": sorted((fk["name"] or "", tuple(fk["constrained_columns"]), fk["referred_table"],
                               str(fk.get("options", {}).get("ondelete"))) for fk in found.get_foreign_keys(table)),
                "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                                  for ix in found.get_indexes(table)),
                "uniques": sorted((uq["name"] or "", tuple(uq["column_names"]))
                                  for uq in found.get_unique_constraints(table)),
                "checks": sorted((ck["name"] or "", " ".join(ck["sqltext"].split()))
                                 for ck in found.get_check_constraints(table)),
            }
        return schema
    finally:
        engine.dispose()


def test_every_migration_downgrades_and_upgrades_cleanly_one_step_at_a_time(db_url):
    at_head = schema_of(db_url)
    downgrade(db_url, "base")
    below = schema_of(db_url)
    assert set(below) <= {"alembic_version"}
    for revision in REVISIONS:
        upgrade(db_url, revision)
        applied = schema_of(db_url)
        downgrade(db_url, "-1")
        assert schema_of(db_url) == below, f"downgrading {revision} does not give back the schema below it"
        upgrade(db_url, revision)
        assert schema_of(db_url) == applied, f"{revision} upgraded again differs from its first upgrade"
        below = applied
    assert below == at_head




@pytest.mark.parametrize("target", REVISIONS[:-1])
def test_a_downgrade_to_any_revision_keeps_the_rows_of_the_tables_it_keeps(db_url, target):
    # On SQLite, batch mode alters a table by copying it: with foreign keys enforced the DROP of the old copy
    # cascaded to every child row until bdc/migrations/env.py turned them off for the migration.
    populate(db_url)
    before = snapshot(db_url)
    downgrade(db_url, target)
    kept = tables_of(db_url)
    upgrade(db_url, "head")
    after = snapshot(db_url)
    downgraded = REVISIONS[REVISIONS.index(target) + 1:]
    expected = surviving(before, downgraded)
    for table in Base.metadata.sorted_tables:
        primary_key = [list(table.columns).index(c) for c in table.primary_key.columns]

        def keys(rows, primary_key=primary_key):
            return [tuple(row[i] for i in primary_key) for row in rows]
        if table.name in kept:
            assert keys(after[table.name]) == keys(expected[table.name]), table.name
        else:
            assert after[table.name] == [], table.name
    bdc_db.dispose_engines()
