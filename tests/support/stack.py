"""Start the product's real processes for tests: Celery workers, beat, Flower, the receiver (gunicorn).

Each class takes an ``env`` dict (DATABASE_URL, REDIS_URL, WEDOF_*, SECRET_ENCRYPTION_KEY...) that is
laid over ``os.environ``, starts the process in its own process group (so ``kill()`` SIGKILLs the
whole group, children included) and waits until it is really ready:

    worker = CeleryWorker(env, queues="events").start()     # ready = answers a control ping
    beat = CeleryBeat(env).start()
    flower = Flower(env, basic_auth="admin:secret").start()  # ready = port open
    receiver = Receiver(env).start()                         # ready = port open
    ...
    worker.kill(); worker.stop()
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

from celery import Celery

from tests.support.processes import PROJECT_ROOT, PYTHON, ManagedProcess, free_port, wait_for_port

_names = itertools.count()


def _process_env(env: dict | None) -> dict:
    merged = {"PYTHONUNBUFFERED": "1", **(env or {})}
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), merged.get("PYTHONPATH")]))
    return merged


def control_app(redis_url: str) -> Celery:
    """A bare Celery client on ``redis_url``, for pings and inspection from the test process."""
    app = Celery("bdc-test-control", broker=redis_url, backend=redis_url)
    app.conf.broker_connection_retry_on_startup = True
    return app


class _Service:
    process: ManagedProcess | None = None

    def _start(self, name: str, cmd: list[str], env: dict, log_dir: Path | None) -> None:
        self.process = ManagedProcess(name, cmd, env=_process_env(env), log_dir=log_dir)
        try:
            self.process.log_path.unlink(missing_ok=True)
        except OSError:
            pass
        self.process.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def kill(self) -> None:
        """SIGKILL the whole process group (the parent and every child), like a crashed machine."""
        if self.process is not None:
            self.process.kill()
            try:
                self.process.process.wait(timeout=10)
            except Exception:
                pass

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is not None:
            self.process.stop(timeout=timeout)

    def log_tail(self, lines: int = 60) -> str:
        return self.process.log_tail(lines) if self.process else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class CeleryWorker(_Service):
    """``celery -A worker.celery_app worker -Q <queues>`` with a unique node name."""

    def __init__(self, env: dict, queues: str = "events", concurrency: int = 1, pool: str = "prefork",
                 name: str | None = None, log_dir: Path | None = None, extra_args: list[str] | None = None):
        self.env = env
        self.queues = queues
        self.concurrency = concurrency
        self.pool = pool
        self.node = name or f"{queues.replace(',', '-')}-{os.getpid()}-{next(_names)}@127.0.0.1"
        self.log_dir = log_dir
        self.extra_args = extra_args or []

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        cmd = [PYTHON, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", self.queues,
               "-n", self.node, "-P", self.pool, "--concurrency", str(self.concurrency),
               "--without-mingle", "--without-gossip", "--loglevel", "INFO", *self.extra_args]
        self._start(f"celery-{self.node.split('@')[0]}", cmd, self.env, self.log_dir)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        app = control_app(self.env["REDIS_URL"])
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(f"worker {self.node} exited:\n{self.log_tail()}")
                try:
                    if app.control.ping(destination=[self.node], timeout=0.5):
                        return
                except Exception:
                    time.sleep(0.2)
            raise TimeoutError(f"worker {self.node} not ready after {timeout}s:\n{self.log_tail()}")
        finally:
            app.close()


class CeleryBeat(_Service):
    """Exactly one beat, with its schedule file in a private temporary folder."""

    def __init__(self, env: dict, log_dir: Path | None = None):
        self.env = env
        self.log_dir = log_dir
        self.dir = tempfile.mkdtemp(prefix="bdc-beat-")

    def start(self, timeout: float = 30.0) -> CeleryBeat:
        cmd = [PYTHON, "-m", "celery", "-A", "worker.celery_app", "beat", "--loglevel", "INFO",
               "--schedule", str(Path(self.dir) / "celerybeat-schedule"), "--pidfile", ""]
        self._start(f"celery-beat-{os.getpid()}-{next(_names)}", cmd, self.env, self.log_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"beat exited:\n{self.log_tail()}")
            if "beat: Starting..." in self.process.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.1)
        raise TimeoutError(f"beat not started after {timeout}s:\n{self.log_tail()}")


class Flower(_Service):
    """``celery -A worker.celery_app flower --port P --basic-auth user:pw`` on loopback."""

    def __init__(self, env: dict, basic_auth: str = "admin:secret", port: int | None = None,
                 log_dir: Path | None = None):
        self.env = env
        self.basic_auth = basic_auth
        self.port = port or free_port()
        self.log_dir = log_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        user, _, password = self.basic_auth.partition(":")
        return user, password

    def start(self, timeout: float = 30.0) -> Flower:
        cmd = [PYTHON, "-m", "celery", "-A", "worker.celery_app", "flower", "--address=127.0.0.1",
               f"--port={self.port}", f"--basic-auth={self.basic_auth}"]
        self._start(f"flower-{self.port}", cmd, self.env, self.log_dir)
        wait_for_port(self.port, timeout=timeout, process=self.process.process)
        return self


class Receiver(_Service):
    """The webapp under gunicorn (``webapp/gunicorn_conf.py``), bound with GUNICORN_BIND."""

    def __init__(self, env: dict, port: int | None = None, workers: int = 1, log_dir: Path | None = None):
        self.env = env
        self.port = port or free_port()
        self.workers = workers
        self.log_dir = log_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Receiver:
        env = {**self.env, "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": str(self.workers)}
        cmd = [PYTHON, "-m", "gunicorn", "--config", "webapp/gunicorn_conf.py", "webapp.wsgi:app"]
        self._start(f"gunicorn-{self.port}", cmd, env, self.log_dir)
        wait_for_port(self.port, timeout=timeout, process=self.process.process)
        return self
