"""Write the supervisord configuration of ``make run`` (scripts/run.sh) from the environment.

    python scripts/stack_supervisor.py VAR_DIR/supervisord.conf

Every process of the local stack is a supervisord program: it is restarted when it exits (``autorestart``),
a process that dies again before ``startsecs`` is retried with supervisor's growing backoff (1 s, 2 s, ...)
up to ``startretries`` times, every exit and start is written to VAR_DIR/log/supervisord.log, and each
program's output goes to VAR_DIR/log/<program>.log, which the ``logs`` program follows on the terminal.
Ctrl-C stops supervisord, which stops each program's whole process group (``stopasgroup``/``killasgroup``:
Celery's pool children and gunicorn's workers too), in the reverse order of ``priority``.

Read from the environment (scripts/run.sh sets the defaults): BDC_VAR_DIR, REDIS_URL, START_REDIS (1: Redis
is ours to supervise), DEMO (1: the Wedof sandbox and the one-shot demo printer), WEB_PORT, FLOWER_PORT,
SANDBOX_PORT, WORKER_EVENTS_METRICS_PORT, WORKER_SYNC_METRICS_PORT, BEAT_METRICS_PORT, FLOWER_BASIC_AUTH,
WEDOF_API_KEY, PY. A bad value stops with a message that names the variable.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# supervisord's control socket; an AF_UNIX path may not be longer than this.
MAX_SOCKET_PATH = 100


class StackConfigError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass
class Program:
    name: str
    argv: list[str]
    priority: int  # started in increasing, stopped in decreasing order
    environment: dict[str, str] = field(default_factory=dict)
    fresh_dirs: list[Path] = field(default_factory=list)  # emptied before every start
    startsecs: int = 5  # up this long = started; an earlier exit counts as a failed start (backoff)
    autorestart: str = "true"
    stopwaitsecs: int = 15  # then SIGKILL to the group
    stopsignal: str = "TERM"
    to_terminal: bool = False  # the log follower itself: straight to supervisord's stdout
    directory: Path = PROJECT_ROOT

    def command(self) -> str:
        command = shlex.join(self.argv)
        if self.fresh_dirs:
            # bash execs the program, so supervisord's pid is the program's own.
            prepare = " && ".join(f"rm -rf {shlex.quote(str(d))} && mkdir -p {shlex.quote(str(d))}"
                                  for d in self.fresh_dirs)
            command = shlex.join(["bash", "-c", f"{prepare} && exec {command}"])
        return command


def port(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise StackConfigError(f"{name} must be a TCP port number between 1 and 65535, got {raw!r}")
    return int(raw)


def redis_port(env: dict[str, str]) -> int:
    url = env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        parsed = urlparse(url)
        number = parsed.port or 6379
    except ValueError:
        raise StackConfigError(f"REDIS_URL must be redis://host:port/db, got {url!r}") from None
    if parsed.scheme != "redis":
        raise StackConfigError(f"REDIS_URL must be redis://host:port/db, got {url!r}")
    return number


def stack_ports(env: dict[str, str]) -> dict[str, int]:
    """Every port the stack listens on, checked: numbers in range, none used twice."""
    ports = {"WEB_PORT": port(env, "WEB_PORT", 8000), "FLOWER_PORT": port(env, "FLOWER_PORT", 5555),
             "WORKER_EVENTS_METRICS_PORT": port(env, "WORKER_EVENTS_METRICS_PORT", 9808),
             "WORKER_SYNC_METRICS_PORT": port(env, "WORKER_SYNC_METRICS_PORT", 9809),
             "BEAT_METRICS_PORT": port(env, "BEAT_METRICS_PORT", 9810)}
    if env.get("DEMO") == "1":
        ports["SANDBOX_PORT"] = port(env, "SANDBOX_PORT", 8090)
    if env.get("START_REDIS") == "1":
        ports["REDIS_URL"] = redis_port(env)
    taken: dict[int, str] = {}
    for name, number in ports.items():
        if number in taken:
            raise StackConfigError(f"{name} and {taken[number]} are both {number}: each process needs its own port")
        taken[number] = name
    return ports


def with_metrics(var: Path, name: str, argv: list[str], metrics_port: int | None, **options) -> Program:
    """A program with its own exporter port (0: none) and its own prometheus_client multiprocess folder,
    emptied before every start so an earlier process's values are never summed in."""
    folder = var / "metrics" / name
    return Program(name, argv, environment={"BDC_METRICS_PORT": str(metrics_port or 0),
                                            "PROMETHEUS_MULTIPROC_DIR": str(folder)},
                   fresh_dirs=[folder], **options)


def programs(env: dict[str, str]) -> list[Program]:
    var = Path(env.get("BDC_VAR_DIR") or PROJECT_ROOT / "var").resolve()
    py = env.get("PY") or sys.executable
    if os.sep in py:  # supervisord checks the program before it changes to the project's folder
        py = str(Path(py).absolute())  # absolute, but still the venv's python (no symlink resolved)
    celery = [py, "-m", "celery", "-A", "worker.celery_app"]
    ports = stack_ports(env)

    def worker(queue: str, concurrency: int) -> Program:
        # %h: Celery's host name (render() doubles the %, which supervisord would expand otherwise).
        argv = [*celery, "worker", "-Q", queue, "-n", f"{queue}@%h", "--concurrency", str(concurrency),
                "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        return with_metrics(var, f"worker_{queue}", argv, ports[f"WORKER_{queue.upper()}_METRICS_PORT"],
                            priority=40, stopwaitsecs=30)

    stack: list[Program] = []
    if "REDIS_URL" in ports:  # ours to run: nothing answered at REDIS_URL
        stack.append(Program("redis", ["redis-server", "--port", str(ports["REDIS_URL"]), "--bind", "127.0.0.1",
                                       "--dir", str(var / "redis"), "--appendonly", "yes",
                                       "--maxmemory-policy", "noeviction"], priority=10, startsecs=1))
    if "SANDBOX_PORT" in ports:  # demo mode
        stack.append(Program("sandbox", [py, "-m", "wedof_sandbox", "--host", "127.0.0.1",
                                         "--port", str(ports["SANDBOX_PORT"]), "--folders", "500", "--seed", "42",
                                         "--api-key", env.get("WEDOF_API_KEY") or "sandbox-key"], priority=20))
    stack += [
        with_metrics(var, "web", [py, "-m", "gunicorn", "--config", "webapp/gunicorn_conf.py", "webapp.wsgi:app"],
                     None, priority=30),  # /metrics on the receiver's own port
        worker("events", 2),
        worker("sync", 1),
        # Exactly one beat: supervisord never starts a second copy of a program.
        with_metrics(var, "beat", [*celery, "beat", "--schedule", str(var / "celerybeat-schedule"),
                                   "--loglevel", "INFO"], ports["BEAT_METRICS_PORT"], priority=50),
        Program("flower", [*celery, "flower", "--address=127.0.0.1", f"--port={ports['FLOWER_PORT']}",
                           f"--basic-auth={env.get('FLOWER_BASIC_AUTH') or 'admin:admin'}"], priority=60,
                environment={"BDC_METRICS_PORT": "0"}),
    ]
    if "SANDBOX_PORT" in ports:
        # One-shot: prints the page URL with a token once the receiver answers, then exits; never restarted.
        stack.append(Program("demo", [py, "-m", "webapp.cli", "demo"], priority=90, startsecs=0,
                             autorestart="false", environment={"BDC_METRICS_PORT": "0"}))
    # Starts first and stops last, so the terminal shows every start-up and shutdown line, each block under
    # its "==> program.log <==". -F follows a log again after supervisord rotates it; -n 0 skips what
    # earlier runs wrote.
    stack.insert(0, Program("logs", ["tail", "-n", "0", "-F", *(log_name(p) for p in stack)], priority=1,
                            startsecs=0, stopwaitsecs=5, to_terminal=True, directory=var / "log"))
    return stack


def log_name(program: Program) -> str:
    return f"{program.name}.log"


def _value(text: str) -> str:
    """A value as supervisord reads it: % starts an expansion, so a literal % is doubled."""
    return text.replace("%", "%%")


def _env_line(environment: dict[str, str]) -> str:
    return ",".join(f'{key}="{_value(value)}"' for key, value in environment.items())


def render(env: dict[str, str]) -> str:
    var = Path(env.get("BDC_VAR_DIR") or PROJECT_ROOT / "var").resolve()
    socket = var / "supervisor.sock"
    if len(str(socket)) > MAX_SOCKET_PATH:
        raise StackConfigError(f"BDC_VAR_DIR is too long for supervisord's control socket ({socket}); "
                               f"use a path of at most {MAX_SOCKET_PATH - 16} characters")
    log_dir = var / "log"
    lines = [
        "; Written by scripts/stack_supervisor.py for `make run` (scripts/run.sh); edits are overwritten.",
        "[supervisord]",
        "nodaemon=true",
        f"logfile={_value(str(log_dir / 'supervisord.log'))}",
        "logfile_maxbytes=10MB",
        "loglevel=info",
        f"pidfile={_value(str(var / 'supervisord.pid'))}",
        f"childlogdir={_value(str(log_dir))}",
        f"directory={_value(str(PROJECT_ROOT))}",
        *(["user=root"] if os.geteuid() == 0 else []),  # said on purpose: supervisord warns otherwise
        "",
        "[unix_http_server]",
        f"file={_value(str(socket))}",
        "chmod=0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_value(str(socket))}",
        "",
    ]
    for program in programs(env):
        lines += [
            f"[program:{program.name}]",
            f"command={_value(program.command())}",
            f"directory={_value(str(program.directory))}",
            f"priority={program.priority}",
            "autostart=true",
            f"autorestart={program.autorestart}",
            f"startsecs={program.startsecs}",
            "startretries=10",
            f"stopsignal={program.stopsignal}",
            f"stopwaitsecs={program.stopwaitsecs}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
        ]
        if program.to_terminal:
            lines += ["stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0"]
        else:
            lines += [f"stdout_logfile={_value(str(log_dir / log_name(program)))}",
                      "stdout_logfile_maxbytes=20MB", "stdout_logfile_backups=3"]
        if program.environment:
            lines.append(f"environment={_env_line(program.environment)}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: stack_supervisor.py OUTPUT_CONF", file=sys.stderr)
        return 2
    try:
        text = render(dict(os.environ))
    except StackConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    var = Path(os.environ.get("BDC_VAR_DIR") or PROJECT_ROOT / "var")
    log_dir = var / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    (var / "redis").mkdir(exist_ok=True)
    for program in programs(dict(os.environ)):
        if not program.to_terminal:  # there from the start: the follower never waits for a missing file
            (log_dir / log_name(program)).touch()
    Path(argv[0]).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
