"""Fault injection on ``/api/*`` and the request counters that let tests prove what happened.

Faults are drawn from a seeded RNG, in this order: drop the connection, answer 429 with ``Retry-After``,
answer a random 500/502/503. ``latency_ms`` is added to every API request before anything else.

How a drop works: the handler shuts the client socket down (``werkzeug.socket`` in the WSGI environ of
werkzeug's server), so the client sees the connection closed without any response; werkzeug then fails
to write and treats it as a dropped connection. Where no socket is exposed (Flask's test client), the
sandbox answers status 444 with an empty body instead.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass

from .errors import invalid

ERROR_STATUSES = (500, 502, 503)
FAULT_KINDS = ("latency", "drop", "rate_limit", "error", "lost_answer")


@dataclass
class FaultConfig:
    latency_ms: float = 0
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    # A POST or PUT that is applied, then answered by a dropped connection: the client's answer is lost.
    lost_answer_rate: float = 0.0

    def update(self, values) -> None:
        if not isinstance(values, dict):
            raise invalid("body", "Expected a JSON object.")
        staged = asdict(self)
        for key, value in values.items():
            if key not in staged:
                raise invalid(key, "Unknown fault setting.")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(key, "This value should be a number.")
            if key.endswith("_rate") and not 0 <= value <= 1:
                raise invalid(key, "A probability between 0 and 1.")
            if key == "latency_ms" and not 0 <= value <= 60_000:
                raise invalid(key, "Between 0 and 60000 milliseconds.")
            if key == "retry_after" and (not isinstance(value, int) or not 0 <= value <= 3600):
                raise invalid(key, "An integer number of seconds between 0 and 3600.")
            staged[key] = value
        for key, value in staged.items():
            setattr(self, key, value)


class FaultInjector:
    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(f"faults:{seed}")
        self._lock = threading.Lock()

    def draw(self) -> tuple[str | None, int]:
        """Return (fault kind or None, status for an error fault)."""
        cfg = self.config
        with self._lock:
            roll = self._rng.random()
            status = self._rng.choice(ERROR_STATUSES)
        if roll < cfg.drop_rate:
            return "drop", 0
        roll -= cfg.drop_rate
        if roll < cfg.rate_limit_rate:
            return "rate_limit", 429
        roll -= cfg.rate_limit_rate
        if roll < cfg.error_rate:
            return "error", status
        return None, 200

    def answer_lost(self) -> bool:
        with self._lock:
            return self._rng.random() < self.config.lost_answer_rate


class RequestCounters:
    """API requests seen, by route and status, and faults injected by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "_lock", threading.Lock()):
            self.total = 0
            self.served = 0  # reached a handler (not faulted, authenticated)
            self.unauthorized = 0
            self.by_route: Counter = Counter()
            self.by_status: Counter = Counter()
            self.faults: Counter = Counter(dict.fromkeys(FAULT_KINDS, 0))
            self.transitions: Counter = Counter()  # (externalId, verb) -> transitions Wedof accepted

    def transition(self, external_id: str, verb: str) -> None:
        with self._lock:
            self.transitions[(external_id, verb)] += 1

    def transitions_by_folder(self) -> dict[str, dict[str, int]]:
        with self._lock:
            by_folder: dict[str, dict[str, int]] = {}
            for (external_id, verb), count in self.transitions.items():
                by_folder.setdefault(external_id, {})[verb] = count
            return by_folder

    def request(self) -> None:
        with self._lock:
            self.total += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def response(self, route: str, status: int, served: bool) -> None:
        with self._lock:
            self.by_route[route] += 1
            self.by_status[str(status)] += 1
            self.served += served
            self.unauthorized += status == 401

    def snapshot(self) -> dict:
        with self._lock:
            return {"total": self.total, "served": self.served, "unauthorized": self.unauthorized,
                    "by_route": dict(self.by_route), "by_status": dict(self.by_status),
                    "faults": dict(self.faults)}
