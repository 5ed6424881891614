"""The chaos run's real processes: AOF Redis, PostgreSQL (or SQLite), receiver, two workers, beat.

It reuses the suite's process helpers (``tests/support``) and adds only what the chaos run needs:
a Redis that persists like production's (``appendonly yes``), restarts on the same ports, and one
``stop_all`` that always runs, in reverse start order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from bdc import db as bdc_db
from bdc.migrate import upgrade
from bdc.settings import reset_settings_cache
from tests.support.processes import ManagedProcess, wait_for_port
from tests.support.services import PostgresCluster, RedisServer
from tests.support.stack import CeleryBeat, CeleryWorker, Receiver


class AofRedisServer(RedisServer):
    """Redis as production runs it: AOF on, fsync every second, no eviction.

    A restart therefore keeps the queues and the unacknowledged-message index (minus at most the
    last second); whatever is lost anyway is what the inbox sweeper exists for.
    """

    def start(self) -> AofRedisServer:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
               "--maxmemory-policy", "noeviction", "--protected-mode", "no"]
        self.proc = ManagedProcess(f"redis-{self.port}", cmd, log_dir=self.log_dir).start()
        wait_for_port(self.port, process=self.proc.process)
        return self


def stack_env(database_url: str, redis_url: str, receiver_url: str, var_dir: Path, *,
              sync_interval: int = 60) -> dict[str, str]:
    """Environment of every process of the run (and of the driving process itself)."""
    return {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PUBLIC_BASE_URL": receiver_url,
        "BDC_VAR_DIR": str(var_dir),
        "SECRET_ENCRYPTION_KEY": os.environ.get("CHAOS_SECRET_ENCRYPTION_KEY") or Fernet.generate_key().decode(),
        "JWT_SECRET_KEY": "chaos-run-jwt-secret-key-0123456789",
        # Longer than any sync run (so a running sync is never re-delivered to the other worker);
        # a SIGKILLed worker's events come back through the sweeper long before that.
        "CELERY_VISIBILITY_TIMEOUT": "120",
        "BDC_RETRY_BACKOFF_BASE": "0.5",
        "BDC_SWEEP_INTERVAL": "2",
        "BDC_SWEEP_RECEIVED_AFTER": "3",
        "BDC_SWEEP_QUEUED_AFTER": "20",
        "BDC_SWEEP_PROCESSING_AFTER": "30",
        "BDC_SYNC_LOCK_TIMEOUT": "30",
        "BDC_ACTION_LOST_AFTER": "20",  # an action whose task died with a worker or a Redis outage goes again soon
        "BDC_LIFECYCLE_INTERVAL": "3",  # the rules run often: the evidence recorded during the window is acted on
        "BDC_BILLING_INTERVAL": "3",  # due folders and stranded invoices are found within seconds
        "BDC_BILLING_BATCH": "25",  # the seeded backlog (~900 folders toBill) is billed over the window
        "BDC_PAYMENT_CHECK_AFTER": "30",
        "WEDOF_SYNC_ENABLED": "true",
        "WEDOF_SYNC_INTERVAL": str(sync_interval),  # beat's incremental syncs race the webhooks
        "GUNICORN_THREADS": "4",
        "GUNICORN_ACCESSLOG": "/dev/null",  # one log line per delivery is already written by the receiver
    }


@contextmanager
def process_environment(env: dict[str, str]):
    """Lay ``env`` over ``os.environ`` for the driving process; restore everything afterwards."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    reset_settings_cache()
    bdc_db.dispose_engines()
    try:
        yield
    finally:
        bdc_db.dispose_engines()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings_cache()


class Database:
    """A migrated database: a throwaway PostgreSQL cluster, a given URL, or a SQLite file."""

    def __init__(self, sqlite: bool = False, url: str | None = None):
        self.sqlite = sqlite
        self.given_url = url
        self.cluster: PostgresCluster | None = None
        self.dir: str | None = None
        self.url = ""

    def start(self) -> Database:
        if self.given_url:
            self.url = self.given_url
        elif self.sqlite:
            self.dir = tempfile.mkdtemp(prefix="bdc-chaos-sqlite-")
            self.url = f"sqlite:///{self.dir}/chaos.sqlite3"
        else:
            self.cluster = PostgresCluster().start()
            admin = create_engine(self.cluster.url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("CREATE DATABASE bdc_chaos"))
            admin.dispose()
            self.url = self.cluster.database_url("bdc_chaos")
        if not self.given_url:
            upgrade(self.url)
            bdc_db.dispose_engines()
        return self

    @property
    def can_stop(self) -> bool:
        """Only the run's own PostgreSQL cluster is stopped (never a given database, never SQLite)."""
        return self.cluster is not None

    def stop(self) -> None:
        self.cluster.stop()

    def start_again(self) -> None:
        self.cluster.start_again()

    @property
    def backend(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    def cleanup(self) -> None:
        bdc_db.dispose_engines()
        if self.cluster is not None:
            self.cluster.cleanup()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


class Stack:
    """The receiver under gunicorn, two workers on ``events,sync`` and one beat; restartable pieces."""

    def __init__(self, env: dict[str, str], receiver_port: int, log_dir: Path, worker_concurrency: int = 2,
                 receiver_workers: int = 2):
        self.env = env
        self.receiver_port = receiver_port
        self.log_dir = log_dir
        self.worker_concurrency = worker_concurrency
        self.receiver_workers = receiver_workers
        self.workers: dict[str, CeleryWorker] = {}
        self.receiver: Receiver | None = None
        self.beat: CeleryBeat | None = None
        self._restarts: dict[str, int] = {}

    def start(self) -> Stack:
        self.start_receiver()
        for name in ("a", "b"):
            self.start_worker(name)
        self.beat = CeleryBeat(self.env, log_dir=self.log_dir).start()
        return self

    def start_receiver(self) -> None:
        # One log folder per start: the log file is named after the port, which a restart keeps.
        generation = self._restarts.get("receiver", 0)
        self._restarts["receiver"] = generation + 1
        self.receiver = Receiver(self.env, port=self.receiver_port, workers=self.receiver_workers,
                                 log_dir=self.log_dir / f"receiver-{generation}").start(timeout=60)

    def restart_receiver(self) -> None:
        assert self.receiver is not None
        self.receiver.stop()
        self.start_receiver()

    def start_worker(self, name: str) -> CeleryWorker:
        # Both workers consume both queues: either one dying leaves the other serving events AND syncs.
        generation = self._restarts.get(name, 0)
        self._restarts[name] = generation + 1
        worker = CeleryWorker(self.env, queues="events,sync", concurrency=self.worker_concurrency,
                              name=f"chaos-{name}{generation}-{os.getpid()}@127.0.0.1", log_dir=self.log_dir)
        self.workers[name] = worker.start(timeout=90)
        return worker

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (parent and pool children), like a crashed host."""
        self.workers[name].kill()

    def restart_dead_workers(self) -> list[str]:
        """Start again a worker that exited on its own, as the deployment's ``restart: unless-stopped``
        does (kombu can end a worker during a Redis outage, #14); returns their names."""
        dead = [name for name, worker in self.workers.items() if not worker.alive()]
        for name in dead:
            self.start_worker(name)
        return dead

    def health(self) -> dict[str, str]:
        """Each current process: "alive", or how it ended (a worker may die on its own, e.g. when the
        broker vanishes under it: kombu can raise "Unrecoverable error" and exit)."""
        states = {}
        for name, service in [*(("worker " + n, w) for n, w in self.workers.items()), ("beat", self.beat),
                              ("receiver", self.receiver)]:
            if service is None:
                continue
            if service.alive():
                states[name] = "alive"
            else:
                errors = [line for line in service.log_tail(400).splitlines() if "Unrecoverable error" in line]
                states[name] = f"exited {service.process.process.returncode}: {(errors or ['?'])[-1][-200:]}"
        return states

    def stop_all(self) -> None:
        for service in (self.beat, *self.workers.values(), self.receiver):
            if service is None:
                continue
            try:
                service.stop(timeout=15)
            except Exception:
                service.kill()
