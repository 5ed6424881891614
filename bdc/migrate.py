"""Run the Alembic migrations from code (``python -m bdc.migrate upgrade``), the way make run and tests do."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util import CommandError

from bdc.settings import PROJECT_ROOT, get_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    ini = PROJECT_ROOT / "alembic.ini"
    config = Config(str(ini)) if ini.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url or get_settings().database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str | None = None) -> tuple[str | None, str | None]:
    """(the database's revision, this release's head): what a rollback starts from."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from bdc.db import create_db_engine

    config = alembic_config(database_url)
    engine = create_db_engine(config.attributes["database_url"])
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return revision, ScriptDirectory.from_config(config).get_current_head()


USAGE = ("usage: python -m bdc.migrate upgrade [REVISION] | downgrade REVISION (e.g. -1, or base to drop "
         "every table) | current")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("upgrade", "downgrade", "current") or (args[0] == "downgrade" and len(args) < 2):
        print(USAGE, file=sys.stderr)  # a downgrade names its target: no silent default to base
        return 2
    try:
        if args[0] == "current":
            revision, head = current()
            print(f"database revision: {revision or 'none'} (head: {head})")
            return 0
        revision = args[1] if len(args) > 1 else "head"
        (upgrade if args[0] == "upgrade" else downgrade)(revision=revision)
    except CommandError as exc:  # an unknown or unreachable revision: one line, not a traceback
        print(f"bdc.migrate: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
