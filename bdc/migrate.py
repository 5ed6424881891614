"""Run the Alembic migrations from code (``python -m bdc.migrate upgrade``), the way make run and tests do."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("upgrade", "downgrade"):
        print("usage: python -m bdc.migrate upgrade [REVISION] | downgrade [REVISION]", file=sys.stderr)
        return 2
    revision = args[1] if len(args) > 1 else ("head" if args[0] == "upgrade" else "base")
    (upgrade if args[0] == "upgrade" else downgrade)(revision=revision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
