"""Back up and restore the configured database (``DATABASE_URL``).

::

    python -m bdc.backup [--output FILE]           # a consistent backup and FILE.manifest.json beside it
    python -m bdc.backup restore FILE [--force]    # into an empty database; --force replaces what is there

PostgreSQL: ``pg_dump`` in custom format (``--no-owner --no-privileges``) from the client of the server's
major version, on a snapshot exported by our own transaction, so the manifest's row counts are those of
the dump exactly; ``pg_restore --single-transaction --exit-on-error`` puts it back (all or nothing).
SQLite: the online backup API (``sqlite3.Connection.backup``), a consistent copy while the product runs.
The password never appears on a command line: the tools read it from a private temporary passfile.

The manifest (JSON) holds the backend, created_at, the Alembic revision, the file's size and sha256, and
every table's row count; a restore checks the file against it before writing and the counts afterwards.

Exit codes: 0 done; 1 failed (the message says why; nothing was changed unless it says so);
2 bad usage; 3 the target database is not empty; 4 restored, but the row counts differ from the manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_EMPTY, EXIT_MISMATCH = 0, 1, 2, 3, 4
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_FORMAT = 1
PG_MAGIC = b"PGDMP"  # the first bytes of a pg_dump custom-format archive
SQLITE_MAGIC = b"SQLite format 3\x00"
EXTENSIONS = {"postgresql": "pgdump", "sqlite": "sqlite3"}
PG_LIB_DIR = "/usr/lib/postgresql"  # Debian/Ubuntu keep one client per major version here
PROG = "bdc.backup"


class BackupError(Exception):
    """What went wrong, for the operator, in one line; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


# -- the database URL -----------------------------------------------------------------------------

def backend_of(url: str | URL) -> str:
    name = make_url(url).get_backend_name()
    if name not in EXTENSIONS:
        raise BackupError(f"DATABASE_URL must be a PostgreSQL or SQLite URL, not {name!r}")
    return name


def shown(url: str | URL) -> str:
    """The URL for messages: never the password."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str | URL) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"DATABASE_URL {shown(url)} is not a SQLite file")
    return Path(database)


# -- PostgreSQL: tools, connection parameters, passfile ------------------------------------------------

@dataclass(frozen=True)
class PgTarget:
    """How libpq tools reach the database: a connection string without the password, and the password."""

    conninfo: str
    password: str | None

    @classmethod
    def from_url(cls, url: str | URL) -> PgTarget:
        from psycopg.conninfo import make_conninfo

        parsed = make_url(url)
        params = {key: value for key, value in parsed.query.items() if isinstance(value, str)}
        for key, value in (("host", parsed.host), ("port", parsed.port), ("user", parsed.username),
                           ("dbname", parsed.database)):
            if value is not None:
                params[key] = str(value)
        query_password = params.pop("password", None)  # given as a query option: to the passfile too
        password = parsed.password or query_password
        try:
            conninfo = make_conninfo("", **params)
        except Exception as exc:  # psycopg.ProgrammingError: an option libpq does not know
            raise BackupError(f"DATABASE_URL has an option libpq does not accept: {exc}") from None
        return cls(conninfo=conninfo, password=password or None)

    @contextlib.contextmanager
    def environment(self) -> Iterator[dict[str, str]]:
        """The tools' environment: the password in a passfile only we can read, removed afterwards."""
        env = dict(os.environ)
        if not self.password:
            yield env
            return
        fd, path = tempfile.mkstemp(prefix="bdc-pgpass-")  # created 0600
        try:
            escaped = self.password.replace("\\", "\\\\").replace(":", "\\:")
            with os.fdopen(fd, "w") as passfile:
                passfile.write(f"*:*:*:*:{escaped}\n")
            env["PGPASSFILE"] = path
            env.pop("PGPASSWORD", None)  # it would win over the passfile
            yield env
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _tool_major(binary: str) -> int | None:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    found = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(found.group(1)) if found else None


def find_pg_tool(name: str, server_major: int, lib_dir: str = PG_LIB_DIR) -> str:
    """The client of the server's major version if installed, else the one on PATH, else the newest there is.

    A pg_dump older than the server refuses to dump it, so that is checked here with a clear message.
    """
    exact = Path(lib_dir) / str(server_major) / "bin" / name
    if exact.is_file() and os.access(exact, os.X_OK):
        return str(exact)
    found = shutil.which(name)
    if not found:
        installed = sorted(glob.glob(f"{lib_dir}/*/bin/{name}"),
                           key=lambda p: int(re.sub(r"\D", "", Path(p).parts[-3]) or 0), reverse=True)
        found = installed[0] if installed else None
    if not found:
        raise BackupError(f"{name} is not installed: install the PostgreSQL {server_major} client "
                          f"(apt-get install postgresql-client-{server_major})")
    major = _tool_major(found)
    if major is not None and major < server_major:
        raise BackupError(f"{found} is PostgreSQL {major}, older than the server ({server_major}): "
                          f"install postgresql-client-{server_major}")
    return found


def _first_error(stderr: str) -> str:
    """The line of a libpq tool's output that says what failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line.lower() or "fatal:" in line.lower():
            return line
    return lines[0] if lines else "no message"


# -- tables, counts, revision ------------------------------------------------------------------------

_PG_TABLES = text("""
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
    ORDER BY 1, 2
""")


def pg_tables(connection: Connection) -> list[tuple[str, str]]:
    return [(schema, name) for schema, name in connection.execute(_PG_TABLES)]


def _table_key(schema: str | None, name: str) -> str:
    return name if schema in (None, "public", "main") else f"{schema}.{name}"


def _quoted(connection: Connection, schema: str | None, name: str) -> str:
    quote = connection.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(name)}" if schema else quote(name)


def table_counts(connection: Connection) -> dict[str, int]:
    """Every table's row count (alembic_version included), keyed ``table`` or ``schema.table``."""
    if connection.dialect.name == "postgresql":
        tables = pg_tables(connection)
    else:
        tables = [(None, name) for (name,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name")]
    return {_table_key(schema, name): connection.exec_driver_sql(
        f"SELECT count(*) FROM {_quoted(connection, schema, name)}").scalar_one() for schema, name in tables}


def alembic_revision(connection: Connection, tables: dict[str, int] | None = None) -> str | None:
    tables = table_counts(connection) if tables is None else tables
    if "alembic_version" not in tables:
        return None
    revisions = sorted(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    return ",".join(revisions) or None


def _engine(url: str | URL):
    return create_engine(url, poolclass=NullPool)


# -- the manifest ------------------------------------------------------------------------------------

def manifest_path(backup: Path) -> Path:
    return backup.with_name(backup.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(backup: Path, backend: str, revision: str | None, counts: dict[str, int], **extra) -> dict:
    manifest = {
        "format": MANIFEST_FORMAT,
        "backend": backend,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "alembic_revision": revision,
        "file": backup.name,
        "size": backup.stat().st_size,
        "sha256": sha256_of(backup),
        "tables": counts,
        **extra,
    }
    path = manifest_path(backup)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return manifest


def read_manifest(backup: Path, kind: str) -> dict | None:
    """The backup's manifest, checked against the file; None (with a warning) when there is none."""
    path = manifest_path(backup)
    if not path.exists():
        _warn(f"no manifest beside {backup} ({path.name}): the row counts will not be checked")
        return None
    try:
        manifest = json.loads(path.read_text())
        tables = manifest["tables"]
        if not isinstance(tables, dict) or not all(isinstance(v, int) for v in tables.values()):
            raise ValueError("tables must map names to counts")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"the manifest {path} is unreadable ({exc}); move it away to restore without "
                          "checking row counts") from None
    if manifest.get("backend") != kind:
        raise BackupError(f"the manifest {path} describes a {manifest.get('backend')} backup, but {backup} "
                          f"is a {kind} backup")
    if manifest.get("sha256") and manifest["sha256"] != sha256_of(backup):
        raise BackupError(f"{backup} does not match its manifest (sha256 differs): the file is damaged or "
                          "the manifest belongs to another backup")
    return manifest


# -- the backup file ---------------------------------------------------------------------------------

def kind_of_file(path: Path) -> str:
    """``postgresql`` or ``sqlite`` from the file's first bytes; a clear error for anything else."""
    if not path.exists():
        raise BackupError(f"no such backup file: {path}")
    if path.is_dir():
        raise BackupError(f"{path} is a directory, not a backup file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(PG_MAGIC):
        return "postgresql"
    if head == SQLITE_MAGIC:
        return "sqlite"
    raise BackupError(f"{path} is not a backup made by {PROG} (neither a PostgreSQL custom-format dump nor a "
                      "SQLite database)")


def default_output(backend: str) -> Path:
    from bdc.settings import VAR_DIR

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return VAR_DIR / "backups" / f"bdc-{backend}-{stamp}.{EXTENSIONS[backend]}"


@contextlib.contextmanager
def _private_tmp(output: Path) -> Iterator[Path]:
    """A 0600 file beside ``output``, renamed into place only when the backup is complete."""
    fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# -- backup ------------------------------------------------------------------------------------------

def backup(url: str, output: Path | None = None) -> tuple[Path, dict]:
    """Write a consistent backup of ``url`` and its manifest; returns (the file, the manifest)."""
    backend = backend_of(url)
    explicit = output is not None
    output = Path(output) if explicit else default_output(backend)
    if output.exists():
        raise BackupError(f"{output} already exists: choose another --output")
    if explicit and not output.parent.is_dir():
        raise BackupError(f"directory {output.parent} does not exist")
    output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # backups hold personal data
    with _private_tmp(output) as tmp:
        if backend == "sqlite":
            revision, counts, extra = _backup_sqlite(url, tmp)
        else:
            revision, counts, extra = _backup_postgres(url, tmp)
    return output, write_manifest(output, backend, revision, counts, **extra)


def _read_only(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def _backup_sqlite(url: str, tmp: Path) -> tuple[str | None, dict[str, int], dict]:
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path}")
    source = sqlite3.connect(_read_only(source_path), uri=True, timeout=30)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)  # one step: a consistent copy even while the product writes
        target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        target.commit()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot back up {source_path}: {exc}") from None
    finally:
        target.close()
        source.close()
    engine = _engine(f"sqlite:///{tmp}")
    try:
        with engine.connect() as connection:  # counted in the copy itself: exactly what the file holds
            counts = table_counts(connection)
            revision = alembic_revision(connection, counts)
    finally:
        engine.dispose()
    return revision, counts, {"sqlite_version": sqlite3.sqlite_version}


def _backup_postgres(url: str, tmp: Path) -> tuple[str | None, dict[str, int], dict]:
    target = PgTarget.from_url(url)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():
                # pg_dump joins this transaction's snapshot: the counts below are those of the dump.
                snapshot = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
                server_major = connection.exec_driver_sql("SHOW server_version_num").scalar_one()
                server_major = int(server_major) // 10000
                counts = table_counts(connection)
                revision = alembic_revision(connection, counts)
                pg_dump = find_pg_tool("pg_dump", server_major)
                cmd = [pg_dump, "--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot}",
                       "--dbname", target.conninfo]
                with target.environment() as env, open(tmp, "wb") as out:
                    result = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, env=env)
                if result.returncode != 0:
                    raise BackupError(f"pg_dump failed: {_first_error(result.stderr)}")
    finally:
        engine.dispose()
    return revision, counts, {"server_version": server_major, "pg_dump": pg_dump}


# -- restore -----------------------------------------------------------------------------------------

@dataclass
class Restored:
    revision: str | None
    head: str | None
    counts: dict[str, int]
    mismatches: list[str]
    checked: bool  # a manifest was there to check the counts against


def restore(url: str, file: Path, *, force: bool = False) -> Restored:
    """Restore ``file`` into ``url`` (empty unless ``force``), then check it against the manifest."""
    backend = backend_of(url)
    file = Path(file)
    kind = kind_of_file(file)
    if kind != backend:
        what = {"postgresql": "a PostgreSQL dump", "sqlite": "a SQLite backup"}[kind]
        raise BackupError(f"{file} is {what}, but DATABASE_URL is a {backend} database ({shown(url)})")
    manifest = read_manifest(file, kind)
    if backend == "sqlite":
        _restore_sqlite(url, file, force)
    else:
        _restore_postgres(url, file, force)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            counts = table_counts(connection)
            revision = alembic_revision(connection, counts)
    finally:
        engine.dispose()
    mismatches = []
    if manifest is not None:
        expected = manifest["tables"]
        for table in sorted(set(expected) | set(counts)):
            if expected.get(table) != counts.get(table):
                mismatches.append(f"{table}: {expected.get(table, 'absent')} in the manifest, "
                                  f"{counts.get(table, 'absent')} restored")
    return Restored(revision=revision, head=_head_revision(), counts=counts, mismatches=mismatches,
                    checked=manifest is not None)


def _not_empty(url: str, tables: list[str]) -> BackupError:
    listed = ", ".join(tables[:3]) + (", ..." if len(tables) > 3 else "")
    return BackupError(f"the target database {shown(url)} is not empty ({len(tables)} tables: {listed}); "
                       "restore into an empty database, or pass --force to replace its contents",
                       EXIT_NOT_EMPTY)


def _restore_sqlite(url: str, file: Path, force: bool) -> None:
    target_path = sqlite_path(url)
    if not target_path.parent.is_dir():
        raise BackupError(f"directory {target_path.parent} does not exist")
    source = sqlite3.connect(_read_only(file), uri=True)
    try:
        try:
            check = source.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{file} is not a readable SQLite backup: {exc}") from None
        if check != "ok":
            raise BackupError(f"{file} is a damaged SQLite database: {check}")
        target = sqlite3.connect(target_path, timeout=30)
        try:
            tables = [name for (name,) in target.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")]
            if tables and not force:
                raise _not_empty(url, sorted(tables))
            source.backup(target)  # replaces every page of the target at once
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"cannot restore into {target_path}: {exc}") from None
        finally:
            target.close()
    finally:
        source.close()


_TOC_TABLE = re.compile(r"^\d+;\s+\d+\s+\d+\s+TABLE\s+(\S+)\s+(\S+)\s")


def _archive_tables(pg_restore: str, file: Path) -> set[str]:
    """The tables a custom-format archive creates (``pg_restore --list`` also proves it is readable)."""
    result = subprocess.run([pg_restore, "--list", str(file)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BackupError(f"{file} is not a readable PostgreSQL dump: {_first_error(result.stderr)}")
    tables = set()
    for line in result.stdout.splitlines():
        found = _TOC_TABLE.match(line)
        if found:
            tables.add(_table_key(*found.groups()))
    return tables


def _restore_postgres(url: str, file: Path, force: bool) -> None:
    target = PgTarget.from_url(url)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            server_major = int(connection.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
            present = sorted(_table_key(schema, name) for schema, name in pg_tables(connection))
    finally:
        engine.dispose()
    pg_restore = find_pg_tool("pg_restore", server_major)
    in_archive = _archive_tables(pg_restore, file)
    if present and not force:
        raise _not_empty(url, present)
    extra = sorted(set(present) - in_archive)
    if extra:  # --clean drops only what the archive holds; these would stay beside the restored schema
        raise BackupError(f"the target database holds tables the backup does not ({', '.join(extra)}): "
                          "restore into an empty database")
    cmd = [pg_restore, "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
           "--dbname", target.conninfo]
    if present:
        cmd += ["--clean", "--if-exists"]  # dropped and recreated in the same transaction
    with target.environment() as env:
        result = subprocess.run([*cmd, str(file)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise BackupError("pg_restore failed, nothing was changed (one transaction): "
                          f"{_first_error(result.stderr)}")


def _head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from bdc.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from bdc.migrate import alembic_config

    try:
        return ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision) is not None
    except CommandError:
        return False


# -- the command line --------------------------------------------------------------------------------

def _warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise BackupError(f"{message} (see python -m {PROG} --help)", EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=f"python -m {PROG}", description="Back up or restore the database of DATABASE_URL.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    make = commands.add_parser("backup", help="write a backup (the default command)")
    for target, default in ((parser, None), (make, argparse.SUPPRESS)):  # SUPPRESS: keeps the top level's
        target.add_argument("--output", "-o", type=Path, metavar="FILE", default=default,
                            help="where to write it (default: var/backups/bdc-<backend>-<UTC time>.<ext>)")
    put_back = commands.add_parser("restore", help="restore a backup into an empty database")
    put_back.add_argument("file", type=Path, metavar="FILE")
    put_back.add_argument("--force", action="store_true",
                          help="replace the contents of a database that is not empty")
    return parser


def _database_url() -> str:
    from bdc.settings import SettingsError, get_settings

    try:
        return get_settings().database_url
    except SettingsError as exc:
        raise BackupError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    url = _database_url()
    if args.command == "restore":
        result = restore(url, args.file, force=args.force)
        print(f"restored {args.file} into {shown(url)}: {sum(result.counts.values())} rows in "
              f"{len(result.counts)} tables")
        print(f"alembic revision: {result.revision or 'none'} (this release's head: {result.head})")
        if result.revision and result.revision != result.head:
            if _known_revision(result.revision):
                print("the database is behind this release: run `python -m bdc.migrate upgrade` before "
                      "starting the product")
            else:
                print("this revision is unknown to this release (a backup of a newer release?): deploy the "
                      "release that made it, or restore an older backup")
        if result.mismatches:
            print(f"{PROG}: error: the restored row counts differ from the manifest: "
                  + "; ".join(result.mismatches), file=sys.stderr)
            return EXIT_MISMATCH
        if result.checked:
            print("every table's row count matches the manifest")
        return EXIT_OK
    output, manifest = backup(url, args.output)
    print(f"backup written: {output} ({manifest['size']} bytes, {sum(manifest['tables'].values())} rows in "
          f"{len(manifest['tables'])} tables, alembic revision {manifest['alembic_revision'] or 'none'})")
    print(f"manifest: {manifest_path(output)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        return _run(args)
    except BackupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except DBAPIError as exc:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        print(f"{PROG}: error: database error: {message}", file=sys.stderr)
        return EXIT_FAILED
    except ArgumentError as exc:
        print(f"{PROG}: error: DATABASE_URL is not a database URL: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}",
              file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
