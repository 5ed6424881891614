"""The engine every process uses: PostgreSQL connections carry the planner settings they are made with."""

from __future__ import annotations

from sqlalchemy import text

from bdc.db import create_db_engine


def test_postgres_connections_plan_for_the_data_as_it_is(pg_db_url):
    engine = create_db_engine(pg_db_url, pool_size=1, max_overflow=0)
    try:
        for _ in range(2):  # a fresh connection, then the same one back from the pool
            with engine.connect() as connection:
                assert connection.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
                assert connection.execute(text("SHOW random_page_cost")).scalar() == "1.1"
        with engine.connect() as connection:  # the settings survive a rolled-back transaction
            connection.execute(text("SELECT 1"))
            connection.rollback()
            assert connection.execute(text("SHOW random_page_cost")).scalar() == "1.1"
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        with autocommit.connect() as connection:
            assert connection.execute(text("SHOW plan_cache_mode")).scalar() == "force_custom_plan"
    finally:
        engine.dispose()


def test_the_receivers_engine_keeps_postgresqls_plan_cache(pg_db_url):
    from webapp.receiver.storage import dispose_inbox_engine, inbox_engine

    try:
        with inbox_engine(pg_db_url).connect() as connection:
            assert connection.execute(text("SHOW plan_cache_mode")).scalar() == "auto"
    finally:
        dispose_inbox_engine()
