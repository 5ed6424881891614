"""Suite-wide fixtures: real Redis and PostgreSQL servers, and fresh migrated databases.

Database tests take ``db_url``, which runs each test twice: on a SQLite file and on the throwaway
PostgreSQL cluster. Fresh databases are copies of one migrated template, so every test starts
from the real Alembic schema without paying for a migration run each time.
"""

from __future__ import annotations

import importlib
import itertools
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

# Fixed test secrets so no test writes development secrets under ./var.
os.environ.setdefault("APP_ENV", "test")
os.environ.setdefault("SECRET_ENCRYPTION_KEY", Fernet.generate_key().decode())
os.environ.setdefault("JWT_SECRET_KEY", "test-jwt-secret-key-with-enough-length")

from sqlalchemy import create_engine, text  # noqa: E402

from bdc import db as bdc_db  # noqa: E402
from bdc.migrate import upgrade  # noqa: E402
from bdc.settings import reset_settings_cache  # noqa: E402
from tests.support.services import PostgresCluster, RedisServer  # noqa: E402

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"
_counter = itertools.count()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="session")
def redis_server(output_dir):
    server = RedisServer(log_dir=output_dir / "logs").start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_server):
    """A client on a clean database of the real server."""
    import redis

    if not redis_server.proc.alive():
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PostgresCluster().start()
    yield cluster
    bdc_db.dispose_engines()
    cluster.cleanup()


@pytest.fixture(scope="session")
def pg_template(pg_cluster) -> str:
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE bdc_template"))
    admin.dispose()
    url = pg_cluster.database_url("bdc_template")
    upgrade(url)
    bdc_db.dispose_engines()  # a template must have no open connection to be copied
    return "bdc_template"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    bdc_db.dispose_engines()
    return path


def fresh_postgres_url(pg_cluster, pg_template) -> str:
    name = f"bdc_test_{os.getpid()}_{next(_counter)}"
    admin = create_engine(pg_cluster.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {pg_template}'))
    admin.dispose()
    return pg_cluster.database_url(name)


def fresh_sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / f"bdc-{next(_counter)}.sqlite3"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, sqlite_template) -> str:
    """A fresh, migrated database; the test runs once per backend."""
    if request.param == "sqlite":
        url = fresh_sqlite_url(sqlite_template, tmp_path)
    else:
        url = fresh_postgres_url(request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"))
    yield url
    bdc_db.dispose_engines()


@pytest.fixture
def pg_db_url(pg_cluster, pg_template) -> str:
    url = fresh_postgres_url(pg_cluster, pg_template)
    yield url
    bdc_db.dispose_engines()


@pytest.fixture
def sqlite_db_url(sqlite_template, tmp_path) -> str:
    url = fresh_sqlite_url(sqlite_template, tmp_path)
    yield url
    bdc_db.dispose_engines()


@contextmanager
def process_environment(env: dict[str, str]):
    """Lay ``env`` over this process's environment (settings and engines follow); undo it afterwards."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            reset_settings_cache()
            bdc_db.dispose_engines()
            yield env
    finally:  # once the environment is back: settings and engines are read from it again
        reset_settings_cache()
        bdc_db.dispose_engines()


@pytest.fixture
def app_env(monkeypatch, tmp_path):
    """Point the settings at the given database/Redis: ``app_env(database_url=..., redis_url=..., **more)``."""

    def configure(**values: str) -> dict[str, str]:
        env = {key.upper(): str(value) for key, value in values.items()}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BDC_VAR_DIR", str(tmp_path))
        reset_settings_cache()
        bdc_db.dispose_engines()
        return {**os.environ}

    yield configure
    reset_settings_cache()
    bdc_db.dispose_engines()


@pytest.fixture
def session(db_url):
    """A session on a fresh database of each backend."""
    maker = bdc_db.get_sessionmaker(db_url)
    with maker() as s:
        yield s


@pytest.fixture
def fresh_task_sender():
    """Make ``webapp.dispatch`` publish to the broker the current settings name.

    ``celeryconfig`` reads REDIS_URL once at import and the sender is cached per process, so a
    test that changes REDIS_URL must rebuild both.
    """
    import celeryconfig
    from webapp import dispatch

    def rebuild():
        if dispatch.task_sender.cache_info().currsize:
            dispatch.task_sender().close()
        dispatch.task_sender.cache_clear()
        importlib.reload(celeryconfig)

    rebuild()
    yield rebuild
    rebuild()
