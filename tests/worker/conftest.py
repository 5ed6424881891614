"""Fixtures of the worker tests: one PostgreSQL database, real Redis, a sandbox and real worker
processes per module, with short sweeper thresholds and a short visibility timeout."""

from __future__ import annotations

import os

import pytest

from tests.conftest import fresh_postgres_url, fresh_sqlite_url, process_environment
from tests.support.stack import CeleryWorker, control_app

STACK_DEFAULTS = {
    "APP_ENV": "test",
    "CELERY_VISIBILITY_TIMEOUT": "20",  # a SIGKILLed worker's message comes back within seconds
    "BDC_RETRY_BACKOFF_BASE": "0.2",
    "BDC_SWEEP_RECEIVED_AFTER": "1",
    "BDC_SWEEP_QUEUED_AFTER": "5",
    "BDC_SWEEP_PROCESSING_AFTER": "6",
    "BDC_SWEEP_INTERVAL": "1",
    "BDC_SYNC_LOCK_TIMEOUT": "15",
    "WEDOF_SYNC_ENABLED": "false",  # no scheduled syncs racing the tests' own
}


def build_stack_env(db_url: str, redis_url: str, var_dir, **overrides) -> dict:
    base = redis_url.rsplit("/", 1)[0]
    env = {**STACK_DEFAULTS, "DATABASE_URL": db_url, "REDIS_URL": f"{base}/5", "BDC_VAR_DIR": str(var_dir),
           "SECRET_ENCRYPTION_KEY": os.environ["SECRET_ENCRYPTION_KEY"],
           "JWT_SECRET_KEY": os.environ["JWT_SECRET_KEY"]}
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@pytest.fixture(scope="module")
def stack_env(redis_server, pg_cluster, pg_template, tmp_path_factory):
    """Environment of the module's processes; the test process itself uses it too."""
    env = build_stack_env(fresh_postgres_url(pg_cluster, pg_template), redis_server.url,
                          tmp_path_factory.mktemp("var"))
    with process_environment(env):
        yield env


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def stack_env_each_backend(request, redis_server, pg_cluster, pg_template, sqlite_template, tmp_path_factory):
    """Like ``stack_env``, once per backend: a module aliasing it runs on PostgreSQL, then on SQLite."""
    if request.param == "postgresql":
        url = fresh_postgres_url(pg_cluster, pg_template)
    else:
        url = fresh_sqlite_url(sqlite_template, tmp_path_factory.mktemp("stack-sqlite"))
    env = build_stack_env(url, redis_server.url, tmp_path_factory.mktemp("var"))
    with process_environment(env):
        yield env


@pytest.fixture(scope="module")
def broker(stack_env):
    app = control_app(stack_env["REDIS_URL"])
    yield app
    app.close()


@pytest.fixture(scope="module")
def events_worker(stack_env, output_dir):
    worker = CeleryWorker(stack_env, queues="events", concurrency=2, log_dir=output_dir / "logs").start()
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def sync_worker(stack_env, output_dir):
    worker = CeleryWorker(stack_env, queues="sync", concurrency=1, log_dir=output_dir / "logs").start()
    yield worker
    worker.stop()


@pytest.fixture
def faults(sandbox):
    """``faults(**values)`` sets the module sandbox's API faults for one test; all off again afterwards,
    with any hold cleared."""
    def set_faults(**values):
        sandbox.control("PUT", "/faults", json={"latency_ms": 0, "error_rate": 0, "rate_limit_rate": 0, "drop_rate": 0,
                                                "lost_answer_rate": 0, "retry_after": 1, **values})
    yield set_faults
    set_faults()
    sandbox.control("DELETE", "/hold")
