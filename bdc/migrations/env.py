"""Alembic environment: the models' metadata and the URL from settings (or from the caller)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from bdc.db import create_db_engine
from bdc.models import Base
from bdc.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _render_item(type_, obj, autogen_context):
    # Our TypeDecorators render as themselves so migrations keep their behaviour.
    if type_ == "type" and obj.__class__.__module__ == "bdc.types":
        autogen_context.imports.add("import bdc.types")
        return f"bdc.types.{obj.__class__.__name__}()"
    return False


def _url() -> str:
    return config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, render_item=_render_item)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_db_engine(_url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode alters a SQLite table by copying it and dropping the original: with foreign keys
            # enforced, that DROP TABLE cascades to every child row (ON DELETE CASCADE). Off for the run
            # (SQLite ignores this PRAGMA inside a transaction, so before it), checked at the end.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs table copies to alter
            render_item=_render_item,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:  # what enforcement would have refused, refused now (before the commit)
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration leaves rows whose foreign key points nowhere: {broken[:5]}")
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
