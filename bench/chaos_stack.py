"""The chaos run's real processes: AOF Redis, PostgreSQL (or SQLite), receiver, two workers, beat.

It reuses the suite's process helpers (``tests/support``) and adds only what the chaos run needs:
a Redis that persists like production's (``appendonly yes``), restarts on the same ports, and one
``stop_all`` that always runs, in reverse start order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
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
    """The receiver under gunicorn, two workers on ``events,sync`` and one beat; restartable pieces.

    Supervised as production's ``restart: unless-stopped`` (and ``make run``'s supervisord) would: a
    watchdog thread starts again any process that exits by itself, with a growing pause when it keeps
    failing, and counts each such exit (``exits``). What the chaos plan does on purpose (a SIGKILLed
    worker, a receiver restart) is not an unexpected exit.
    """

    PROCESSES = ("worker a", "worker b", "beat", "receiver")
    WATCH_INTERVAL = 0.5

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
        # One lock for every start, stop and kill: the watchdog never sees a process the plan is restarting.
        self._lock = threading.RLock()
        self._held_down: set[str] = set()  # stopped or killed on purpose, started again by the plan itself
        self.exits: dict[str, list[dict]] = {name: [] for name in self.PROCESSES}
        self.on_exit = None  # called with (process name, exit record) after each restart
        self._failures: dict[str, int] = {}  # consecutive failed restarts, for the backoff
        self._next_try: dict[str, float] = {}
        self._stop_watching = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> Stack:
        with self._lock:
            self.start_receiver()
            for name in ("a", "b"):
                self.start_worker(name)
            self.start_beat()
        self._watchdog = threading.Thread(target=self._watch, name="chaos-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def start_receiver(self) -> None:
        with self._lock:
            # One log folder per start: the log file is named after the port, which a restart keeps.
            generation = self._restarts.get("receiver", 0)
            self._restarts["receiver"] = generation + 1
            self.receiver = Receiver(self.env, port=self.receiver_port, workers=self.receiver_workers,
                                     log_dir=self.log_dir / f"receiver-{generation}")
            self._held_down.discard("receiver")
            self.receiver.start(timeout=60)

    def restart_receiver(self) -> None:
        with self._lock:
            assert self.receiver is not None
            self._held_down.add("receiver")
            self.receiver.stop()
            self.start_receiver()

    def start_beat(self) -> None:
        with self._lock:
            self.beat = CeleryBeat(self.env, log_dir=self.log_dir)
            self.beat.start()

    def start_worker(self, name: str) -> CeleryWorker:
        with self._lock:
            # Both workers consume both queues: either one dying leaves the other serving events AND syncs.
            generation = self._restarts.get(name, 0)
            self._restarts[name] = generation + 1
            worker = CeleryWorker(self.env, queues="events,sync", concurrency=self.worker_concurrency,
                                  name=f"chaos-{name}{generation}-{os.getpid()}@127.0.0.1", log_dir=self.log_dir)
            self.workers[name] = worker
            self._held_down.discard(f"worker {name}")
            return worker.start(timeout=90)

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (parent and pool children), like a crashed host; the plan
        starts it again itself (``start_worker``), so this is not counted as an unexpected exit."""
        with self._lock:
            self._held_down.add(f"worker {name}")
            self.workers[name].kill()

    def services(self) -> dict[str, CeleryWorker | CeleryBeat | Receiver | None]:
        return {**{f"worker {n}": w for n, w in self.workers.items()}, "beat": self.beat, "receiver": self.receiver}

    def restart_exited(self) -> list[str]:
        """Start again every process that exited by itself (``restart: unless-stopped``); returns their names.

        Each exit is recorded with how it ended (kombu can end a worker during a Redis outage, #14) and
        whether the new process is up; a process that keeps failing is tried again after 1, 2, 4 ... 30 s.
        """
        restarted = []
        with self._lock:
            for name, service in self.services().items():
                if service is None or name in self._held_down or service.alive():
                    continue
                if time.monotonic() < self._next_try.get(name, 0.0):
                    continue
                record = {"at": time.monotonic(), "how": _how_it_ended(service), "restarted": False}
                self.exits[name].append(record)
                try:
                    self._start_again(name)
                except Exception as exc:  # noqa: BLE001 - counted; the next round tries again
                    record["restart_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                record["restarted"] = self.services()[name].alive()
                failures = 0 if record["restarted"] else self._failures.get(name, 0) + 1
                self._failures[name] = failures
                self._next_try[name] = time.monotonic() + (min(2 ** (failures - 1), 30) if failures else 0)
                restarted.append(name)
                if self.on_exit is not None:
                    self.on_exit(name, record)
        return restarted

    def _start_again(self, name: str) -> None:
        if name == "receiver":
            self.start_receiver()
        elif name == "beat":
            self.start_beat()
        else:
            self.start_worker(name.removeprefix("worker "))

    def _watch(self) -> None:
        while not self._stop_watching.wait(self.WATCH_INTERVAL):
            self.restart_exited()

    def exit_summary(self) -> dict[str, dict]:
        """Per process: unexpected exits, how many were restarted, and how they ended."""
        with self._lock:
            return {name: {"exits": len(records), "restarted": sum(1 for r in records if r["restarted"]),
                           "how": [r["how"] for r in records][-5:]}
                    for name, records in self.exits.items()}

    def health(self) -> dict[str, str]:
        """Each current process: "alive", or how it ended."""
        return {name: "alive" if service.alive() else _how_it_ended(service)
                for name, service in self.services().items() if service is not None}

    def stop_all(self) -> None:
        self._stop_watching.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=120)
        with self._lock:
            for service in (self.beat, *self.workers.values(), self.receiver):
                if service is None:
                    continue
                try:
                    service.stop(timeout=15)
                except Exception:
                    service.kill()


def _how_it_ended(service) -> str:
    """The exit status and the last "Unrecoverable error" line of the log, if any."""
    errors = [line for line in service.log_tail(400).splitlines() if "Unrecoverable error" in line]
    code = service.process.process.returncode if service.process and service.process.process else None
    return f"exited {code}: {(errors or ['?'])[-1][-200:]}"
