"""The engine every process uses: PostgreSQL connections carry the planner settings they are made with."""

from __future__ import annotations

import traceback

import pytest
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


def test_a_database_error_never_quotes_the_values_it_was_given(db_url):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    engine = create_db_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people_probe (email VARCHAR(200) PRIMARY KEY)"))
    email = "camille.martin@exemple-personnel.fr"
    try:
        with engine.begin() as conn, pytest.raises(IntegrityError) as info:
            for _ in range(2):
                conn.execute(text("INSERT INTO people_probe (email) VALUES (:email)"), {"email": email})
        assert email not in str(info.value) and "hidden due to hide_parameters" in str(info.value)
        # Nor does a logged traceback (the driver's own error is chained to it), and the error stays typed.
        assert email not in "".join(traceback.format_exception(info.value))
        assert "people_probe" in str(info.value) or "UNIQUE" in str(info.value)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE people_probe"))
        engine.dispose()
