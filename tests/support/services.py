"""Throwaway real servers for the suite: a redis-server and a PostgreSQL cluster on free ports.

Both live in temporary folders and are removed at the end of the run. PostgreSQL refuses to run
as root, so when the suite runs as root the cluster belongs to the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port, wait_for_port


class RedisServer:
    """A real redis-server; ``stop()`` and ``start()`` keep the port, so clients can reconnect."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            raise RuntimeError("redis-server is not installed (apt-get install redis-server); `make test` installs it")
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="bdc-redis-")
        self.log_dir = log_dir
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
               "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--protected-mode", "no"]
        self.proc = ManagedProcess(f"redis-{self.port}", cmd, log_dir=self.log_dir).start()
        wait_for_port(self.port, process=self.proc.process)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pg_bin(name: str) -> str:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt-get install postgresql); `make test` installs it")
    return found


class PostgresCluster:
    """A fresh PostgreSQL cluster (trust auth on loopback, fsync off) removed by ``cleanup()``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bdc-pg-"))
        self.datadir = self.root / "data"
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *cmd: str) -> None:
        result = subprocess.run([*self.run_as, *cmd], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout}\n{result.stderr}")

    def start(self) -> PostgresCluster:
        self._run(_pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", str(self.root / "pg.log"), "-w", "start")
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.datadir.exists():
            try:
                self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass

    def start_again(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", options, "-l", str(self.root / "pg.log"), "-w", "start")
        wait_for_port(self.port)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout.lower()
    except OSError:
        return False
    return "c.utf8" in out or "c.utf-8" in out


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{message} not reached after {timeout}s (last value: {last!r})")
