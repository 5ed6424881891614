"""Run the Wedof sandbox as a real subprocess for tests and benchmarks.

    with running_sandbox(folders=50, seed=1) as sbx:
        requests.get(f"{sbx.api_url}/registrationFolders", headers={"X-Api-Key": sbx.api_key})
        sbx.control("POST", "/simulate", json={"changes": 10})

Extra keyword arguments become CLI options: ``error_rate=0.2`` -> ``--error-rate 0.2``;
``True`` -> a bare flag; lists -> comma-joined (``retry_delays=[0.1, 0.2]``).
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from tests.support.processes import PROJECT_ROOT, PYTHON, ManagedProcess

_LISTENING = re.compile(r"wedof-sandbox listening on (http://\S+)")
_names = itertools.count()


@dataclass
class Sandbox:
    url: str
    api_key: str
    process: ManagedProcess

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def headers(self) -> dict:
        return {"X-Api-Key": self.api_key, "Accept": "application/json"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """Call ``/api{path}`` with the API key; returns the raw response."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.api_url}{path}", headers=headers, timeout=30, **kwargs)

    def control(self, method: str, path: str, json=None, params=None, timeout: float = 120):
        """Call ``/_sandbox{path}``; return the decoded JSON, raise on an error status."""
        response = requests.request(method, f"{self.url}/_sandbox{path}", json=json, params=params,
                                    timeout=timeout)
        if response.status_code >= 400:
            raise RuntimeError(f"sandbox control {method} {path} -> {response.status_code}: {response.text[:500]}")
        return response.json()

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


def _cli_options(options: dict) -> list[str]:
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


@contextmanager
def running_sandbox(folders: int = 50, seed: int = 1, api_key: str = "sandbox-key", startup_timeout: float = 60,
                    **cli_opts) -> Iterator[Sandbox]:
    """Start ``python -m wedof_sandbox --port 0`` and yield a :class:`Sandbox` once it listens."""
    cmd = [PYTHON, "-m", "wedof_sandbox", "--host", "127.0.0.1", "--port", "0", "--folders", str(folders),
           "--seed", str(seed), "--api-key", api_key, *_cli_options(cli_opts)]
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    process = ManagedProcess(f"wedof-sandbox-{os.getpid()}-{next(_names)}", cmd, env=env)
    try:
        process.log_path.unlink(missing_ok=True)
    except OSError:
        pass
    process.start()
    try:
        url = _wait_listening(process, startup_timeout)
        yield Sandbox(url=url, api_key=api_key, process=process)
    finally:
        process.stop(timeout=10)


def _wait_listening(process: ManagedProcess, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            match = _LISTENING.search(process.log_path.read_text(errors="replace"))
        except OSError:
            match = None
        if match:
            return match.group(1)
        if not process.alive():
            raise RuntimeError(f"wedof sandbox exited before listening:\n{process.log_tail()}")
        time.sleep(0.05)
    raise TimeoutError(f"wedof sandbox not listening after {timeout}s:\n{process.log_tail()}")
