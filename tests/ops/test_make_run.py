"""``make run`` heals: the real scripts/run.sh, in demo mode against the sandbox, on free ports and in a
temporary var folder. A worker SIGKILLed by hand is started again by supervisord (a new pid, RUNNING, the
exit logged) and consumes again; Ctrl-C (SIGINT) then stops every process it started and frees every port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import xmlrpc.client
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text
from supervisor.xmlrpc import SupervisorTransport

from tests.support.processes import PROJECT_ROOT, free_port
from tests.support.services import wait_until
from tests.support.stack import control_app

SUPERVISED = {"logs", "redis", "sandbox", "web", "worker_events", "worker_sync", "beat", "flower"}
PORTS = ("WEB_PORT", "FLOWER_PORT", "SANDBOX_PORT", "WORKER_EVENTS_METRICS_PORT", "WORKER_SYNC_METRICS_PORT",
         "BEAT_METRICS_PORT")


def clean_env(var_dir: Path, **values: str) -> dict[str, str]:
    """Only what a shell would have, plus ours: nothing of the suite's own settings leaks in."""
    env_file = var_dir.parent / "empty.env"
    env_file.write_text("")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "BDC_ENV_FILE": str(env_file), "BDC_VAR_DIR": str(var_dir), **values}


def process_start(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/pid/stat): tells a live process from a reused pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_tree(root: int) -> dict[int, str]:
    """``root`` and all its descendants, pid -> start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [root]
    while todo:
        pid = todo.pop()
        start = process_start(pid)
        if start is not None:
            found[pid] = start
            todo += children.get(pid, [])
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    """Those still alive, and any process in one of their process groups (each program leads its own)."""
    alive = [pid for pid, start in processes.items() if process_start(pid) == start]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in alive:
            try:
                pgid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            except (OSError, IndexError, ValueError):
                continue
            if pgid in processes:
                alive.append(int(entry.name))
    return alive


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class RunningStack:
    """scripts/run.sh as a terminal runs it: its own session, so SIGINT to the group is a Ctrl-C."""

    def __init__(self, env: dict[str, str], var_dir: Path, output: Path):
        self.env, self.var_dir, self.output = env, var_dir, output
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, str] = {}  # every process of the stack ever seen

    def start(self) -> RunningStack:
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=PROJECT_ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def terminal(self) -> str:
        return self.output.read_text(errors="replace")

    def supervisor(self):
        transport = SupervisorTransport(None, None, f"unix://{self.var_dir / 'supervisor.sock'}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def programs(self) -> dict[str, dict]:
        assert self.proc.poll() is None, f"run.sh exited with {self.proc.returncode}:\n{self.terminal()[-3000:]}"
        try:
            return {info["name"]: info for info in self.supervisor().getAllProcessInfo()}
        except (OSError, xmlrpc.client.Fault):
            return {}  # supervisord is not answering yet

    def remember(self) -> None:
        self.seen.update(process_tree(self.proc.pid))

    def interrupt(self, timeout: float = 120) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def kill_leftovers(self) -> None:
        for pid in still_running(self.seen):
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def inbox_processed(database: str) -> int:
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM webhook_events WHERE status = 'processed'")).scalar()
    except Exception:  # noqa: BLE001 - the table appears with the first migration run
        return 0
    finally:
        engine.dispose()


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).ok
    except requests.RequestException:
        return False


def events_node_answers(redis_url: str) -> bool:
    app = control_app(redis_url)
    try:
        return any(node.startswith("events@") for reply in app.control.ping(timeout=1) for node in reply)
    finally:
        app.close()


@pytest.fixture
def stack(tmp_path):
    var_dir = tmp_path / "var"
    ports = {name: str(free_port()) for name in PORTS}
    redis_port = free_port()
    env = clean_env(var_dir, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", **ports)
    # A metrics file left by an earlier run: the worker's folder is emptied before it starts.
    stale = var_dir / "metrics" / "worker_events" / "counter_1.db"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    running = RunningStack(env, var_dir, tmp_path / "terminal.log").start()
    running.redis_port, running.stale = redis_port, stale
    try:
        yield running
    finally:
        running.kill_leftovers()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_make_run_restarts_a_killed_worker_and_ctrl_c_stops_everything(stack):
    env = stack.env
    receiver = f"http://127.0.0.1:{env['WEB_PORT']}"
    sandbox = f"http://127.0.0.1:{env['SANDBOX_PORT']}/_sandbox"

    def all_running():
        programs = stack.programs()
        return SUPERVISED <= {n for n, p in programs.items() if p["statename"] == "RUNNING"} and programs

    programs = wait_until(all_running, timeout=180, interval=0.5, message="every program RUNNING")
    wait_until(lambda: answers(f"{receiver}/readyz"), timeout=60, interval=0.5, message="the receiver answers")
    wait_until(lambda: events_node_answers(env["REDIS_URL"]), timeout=60, interval=0.5, message="events@ pong")
    # The demo printer ran once and exited (never restarted): the webhook is registered at the sandbox.
    wait_until(lambda: stack.programs()["demo"]["statename"] == "EXITED", timeout=120, interval=0.5,
               message="demo printed its page and exited")
    assert stack.programs()["demo"]["exitstatus"] == 0, (stack.var_dir / "log" / "demo.log").read_text()
    assert requests.get(f"{sandbox}/webhooks", timeout=10).json(), "the demo registered the webhook"
    assert "Demo ready" in stack.terminal()  # the programs' logs reach the terminal too

    # Each worker has its own metrics port and emptied multiprocess folder.
    worker = programs["worker_events"]
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{worker['pid']}/environ").read_text().split("\0") if "=" in item)
    assert environ["BDC_METRICS_PORT"] == env["WORKER_EVENTS_METRICS_PORT"]
    assert environ["PROMETHEUS_MULTIPROC_DIR"] == str(stack.var_dir / "metrics" / "worker_events")
    assert not stack.stale.exists()

    # kill -9 the worker's main process: supervisord starts a new one, and says so.
    stack.remember()
    old_pid = worker["pid"]
    os.kill(old_pid, signal.SIGKILL)

    def restarted():
        info = stack.programs().get("worker_events", {})
        return info.get("statename") == "RUNNING" and info["pid"] not in (0, old_pid) and info

    new = wait_until(restarted, timeout=90, interval=0.3, message="worker_events running again with a new pid")
    supervisord_log = (stack.var_dir / "log" / "supervisord.log").read_text()
    assert "exited: worker_events (terminated by SIGKILL; not expected)" in supervisord_log
    assert f"spawned: 'worker_events' with pid {new['pid']}" in supervisord_log
    wait_until(lambda: events_node_answers(env["REDIS_URL"]), timeout=60, interval=0.5, message="events@ pong again")
    # ... and it consumes: changes at the sandbox arrive as webhooks, which the new worker processes.
    database = stack.var_dir / "bdc.sqlite3"
    before = inbox_processed(database)
    requests.post(f"{sandbox}/simulate", json={"changes": 5}, timeout=60).raise_for_status()
    wait_until(lambda: inbox_processed(database) > before, timeout=120, interval=0.5,
               message="webhooks processed by the restarted worker")
    stack.remember()

    # Ctrl-C: supervisord stops every program's process group, then exits.
    assert stack.interrupt() == 0, stack.terminal()[-3000:]
    assert wait_until(lambda: not still_running(stack.seen), timeout=30, interval=0.2,
                      message="every process gone") is True
    ports = [int(env[name]) for name in PORTS] + [stack.redis_port]
    assert [port for port in ports if listening(port)] == []
    assert "received SIGINT indicating exit request" in (stack.var_dir / "log" / "supervisord.log").read_text()


def test_a_bad_port_stops_run_sh_before_anything_starts(tmp_path):
    var_dir = tmp_path / "var"
    for values, named in [({"WEB_PORT": "not-a-port"}, "WEB_PORT"), ({"FLOWER_PORT": "70000"}, "FLOWER_PORT"),
                          ({"WEB_PORT": "18123", "FLOWER_PORT": "18123"}, "FLOWER_PORT and WEB_PORT"),
                          ({"BEAT_METRICS_PORT": "-1"}, "BEAT_METRICS_PORT"),
                          ({"REDIS_URL": "redis://127.0.0.1:99999999/0"}, "REDIS_URL"),
                          ({"REDIS_URL": "http://127.0.0.1:6380/0"}, "REDIS_URL")]:
        env = clean_env(var_dir, **{"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", **values})
        result = subprocess.run(["bash", "scripts/run.sh"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2, (values, result.stdout, result.stderr)
        assert named.split(" and ")[0] in result.stderr and "port" in result.stderr, result.stderr
        assert not (var_dir / "supervisord.conf").exists() and not (var_dir / "bdc.sqlite3").exists(), values
