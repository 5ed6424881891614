"""Alembic: up and down on both backends, and no drift between the models and the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from bdc.db import create_db_engine
from bdc.migrate import downgrade, upgrade
from bdc.models import Base


def _tables(url):
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_then_downgrade_from_an_empty_database(db_url):
    # db_url is already at head; go all the way down, then up again.
    assert _tables(db_url) == set(Base.metadata.tables)
    downgrade(db_url, "base")
    assert _tables(db_url) == set()
    upgrade(db_url, "head")
    assert _tables(db_url) == set(Base.metadata.tables)


def test_autogenerate_finds_no_difference_between_models_and_migrations(db_url):
    engine = create_db_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
