"""The hold fault: make matching ``/api/*`` requests wait at an exact point, so a test can kill its client there.

``PUT /_sandbox/hold {"method", "path_contains", "when", "ms", "count"}``: the next ``count`` requests whose
method is ``method`` and whose path contains ``path_contains`` wait ``ms`` milliseconds, either before they
are processed (``before``: the change is not made yet) or after, before the answer is written (``after``: the
change is made, the client has not heard it). ``hits`` counts the holds started, as soon as each starts, so
a test polls ``GET /_sandbox/hold`` until ``hits >= 1`` and then kills its client. Clearing or replacing the
hold releases the requests still waiting. A ``before`` request whose client goes away while it waits stops waiting and is
not processed at all (counted in ``abandoned``): killed before Wedof saw it means Wedof never did it.
"""

from __future__ import annotations

import threading
import time

from .errors import ApiError, invalid

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
WHEN = ("before", "after")
MAX_MS, MAX_COUNT, MAX_PATH = 120_000, 100, 200
FIELDS = ("method", "path_contains", "when", "ms", "count")


def _parse(body) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "Expected a JSON object {method, path_contains, when, ms, count}.")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise invalid(unknown[0], f"Unknown hold setting; allowed: {', '.join(FIELDS)}.")
    for name in ("method", "path_contains", "ms"):
        if name not in body:
            raise invalid(name, "This value is required.")
    method = body["method"]
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise invalid("method", f"One of {', '.join(METHODS)}.")
    path = body["path_contains"]
    if not isinstance(path, str) or not path.strip() or len(path) > MAX_PATH:
        raise invalid("path_contains", f"A non-empty string of at most {MAX_PATH} characters, e.g. \"/billing\".")
    when = body.get("when", "before")
    if when not in WHEN:
        raise invalid("when", "Either \"before\" (the request is not processed yet) or \"after\" (processed, "
                              "answer not written yet).")
    ms = body["ms"]
    if isinstance(ms, bool) or not isinstance(ms, int | float) or not 0 <= ms <= MAX_MS:
        raise invalid("ms", f"A number of milliseconds between 0 and {MAX_MS}.")
    count = body.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise invalid("count", f"An integer between 1 and {MAX_COUNT}.")
    return {"method": method.upper(), "path_contains": path, "when": when, "ms": ms, "count": count}


class Hold:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._config: dict | None = None
        self._hits = self._remaining = self._abandoned = 0
        self._release = threading.Event()

    def configure(self, body) -> dict:
        config = _parse(body)
        with self._lock:
            self._release.set()  # requests held by the previous hold go on
            self._release = threading.Event()
            self._config, self._hits, self._remaining, self._abandoned = config, 0, config["count"], 0
        return self.snapshot()

    def clear(self) -> None:
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self._config, self._hits, self._remaining, self._abandoned = None, 0, 0, 0

    def snapshot(self) -> dict:
        with self._lock:
            config = self._config or dict.fromkeys(FIELDS)
            return {**config, "active": self._config is not None and self._remaining > 0,
                    "hits": self._hits, "remaining": self._remaining, "abandoned": self._abandoned}

    def abandoned(self) -> None:
        with self._lock:
            self._abandoned += 1

    def wait(self, method: str, path: str, when: str, until=None) -> bool:
        """Wait here if this request is one the hold is for; True when it was held.

        ``until()``, checked every 50 ms, ends the wait early (a ``before`` hold whose client died)."""
        with self._lock:
            config = self._config
            if config is None or self._remaining <= 0 or config["when"] != when or config["method"] != method \
                    or config["path_contains"] not in path:
                return False
            self._remaining -= 1
            self._hits += 1  # counted before the wait: a test sees it while the request is held
            release = self._release
        deadline = time.monotonic() + config["ms"] / 1000
        while not release.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or (until is not None and until()):
                break
            release.wait(min(left, 0.05))
        return True
