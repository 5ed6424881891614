"""Webhook registry and delivery: a bounded queue, a few sender threads, retries, and chaos modes.

A change produces one *delivery* per matching enabled webhook: POST of the folder's exact bytes with
``X-Wedof-Event``, ``X-Wedof-Delivery`` and ``X-Wedof-Signature``. Non-2xx answers and connection errors are
retried after ``retry_delays`` (one attempt more than delays). Chaos modes, drawn from a seeded RNG at
publish time (so a given sequence of changes gives the same chaos):

- ``duplicate_rate``: once acknowledged, the same delivery (same id, same bytes) is sent again;
- ``out_of_order_rate``: the delivery is held back and released right after the next delivery for the same
  folder and webhook has been sent (or after ``hold_seconds``, or on drain);
- ``bad_signature_rate``: an extra forged copy (own delivery id, wrong signature) is sent first; never retried;
- ``malformed_rate``: an extra copy with a truncated body, correctly signed; never retried.
Forged and malformed copies are counted apart from genuine deliveries; receivers are expected to reject them.
"""

from __future__ import annotations

import fnmatch
import heapq
import itertools
import queue
import random
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from ipaddress import ip_address
from urllib.parse import urlsplit

import requests

from .errors import invalid, not_found
from .signing import ALGORITHMS, ENCODINGS, sign
from .store import Change
from .timeutil import iso_ms, wall_ms

LOOPBACK_NAMES = ("localhost",)


@dataclass
class DeliveryConfig:
    signature_algorithm: str = "sha256"
    signature_encoding: str = "hex"
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    bad_signature_rate: float = 0.0
    malformed_rate: float = 0.0
    retry_delays: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0, 2.0, 5.0, 5.0, 5.0])
    timeout: float = 5.0
    hold_seconds: float = 2.0

    def update(self, values: dict) -> None:
        """Validate then apply a partial update (from the CLI or the control endpoint)."""
        if not isinstance(values, dict):
            raise invalid("body", "Expected a JSON object.")
        staged = asdict(self)
        for key, value in values.items():
            if key not in staged:
                raise invalid(key, "Unknown delivery setting.")
            if key == "signature_algorithm" and value not in ALGORITHMS:
                raise invalid(key, f"One of {', '.join(ALGORITHMS)}.")
            if key == "signature_encoding" and value not in ENCODINGS:
                raise invalid(key, f"One of {', '.join(ENCODINGS)}.")
            if key.endswith("_rate") and not (_is_number(value) and 0 <= value <= 1):
                raise invalid(key, "A number between 0 and 1.")
            if key in ("timeout", "hold_seconds") and not (_is_number(value) and 0 < value <= 120):
                raise invalid(key, "A number of seconds between 0 and 120.")
            if key == "retry_delays" and not (isinstance(value, list) and len(value) <= 20 and
                                              all(_is_number(d) and 0 <= d <= 60 for d in value)):
                raise invalid(key, "A list of at most 20 delays in seconds (0 to 60).")
            staged[key] = value
        for key, value in staged.items():
            setattr(self, key, value)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_loopback_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            return False
        return host in LOOPBACK_NAMES or ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookRegistry:
    """Webhooks registered through POST /api/webhooks (the object shape of wedof-api.md §5)."""

    def __init__(self, organism_link: dict) -> None:
        self._lock = threading.Lock()
        self._hooks: dict[int, dict] = {}
        self._ids = itertools.count(1)
        self.organism_link = organism_link

    def create(self, body) -> dict:
        if not isinstance(body, dict):
            raise invalid("body", "Expected a JSON object.")
        url, events = body.get("url"), body.get("events", [])
        if not isinstance(url, str) or not url:
            raise invalid("url", "This value should not be blank.")
        if not is_loopback_url(url):
            # the sandbox only ever talks to this machine
            raise invalid("url", "The sandbox only delivers to loopback URLs (http://127.0.0.1:…).")
        if events is None:
            events = []
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise invalid("events", "This value should be a list of event names.")
        secret, name = body.get("secret"), body.get("name")
        if secret is not None and not isinstance(secret, str):
            raise invalid("secret", "This value should be a string or null.")
        if name is not None and not isinstance(name, str):
            raise invalid("name", "This value should be a string.")
        for flag in ("enabled", "ignoreSsl"):
            if flag in body and not isinstance(body[flag], bool):
                raise invalid(flag, "This value should be a boolean.")
        with self._lock:
            hook_id = next(self._ids)
            now = iso_ms(wall_ms())
            hook = {"id": hook_id, "url": url, "secret": secret, "type": "webhook", "events": events,
                    "enabled": body.get("enabled", True), "ignoreSsl": body.get("ignoreSsl", False),
                    "name": name or f"webhook {hook_id}", "createdOn": now, "updatedOn": now,
                    "_links": {"self": {"href": f"/api/webhooks/{hook_id}"}, "organism": self.organism_link}}
            self._hooks[hook_id] = hook
            return dict(hook)

    def get(self, hook_id: int) -> dict:
        with self._lock:
            if hook_id not in self._hooks:
                raise not_found(f"Webhook {hook_id} not found")
            return dict(self._hooks[hook_id])

    def delete(self, hook_id: int) -> None:
        with self._lock:
            if self._hooks.pop(hook_id, None) is None:
                raise not_found(f"Webhook {hook_id} not found")

    def all(self) -> list[dict]:
        with self._lock:
            return [dict(h) for h in self._hooks.values()]

    def matching(self, event: str) -> list[dict]:
        with self._lock:
            return [dict(h) for h in self._hooks.values() if h["enabled"] and _event_matches(h["events"], event)]

    def clear(self) -> None:
        with self._lock:
            self._hooks.clear()


def _event_matches(patterns: list[str], event: str) -> bool:
    return not patterns or any(p == "*" or p == event or fnmatch.fnmatchcase(event, p) for p in patterns)


@dataclass
class Job:
    delivery_id: str
    hook: dict
    event: str
    body: bytes
    external_id: str
    last_update: str
    kind: str = "normal"  # normal | duplicate | bad_signature | malformed
    attempt: int = 1
    generation: int = 0
    duplicate_after_ack: bool = False
    releases: Job | None = None  # a held delivery to send once this one has been sent
    held: bool = False


STAT_KEYS = ("deliveries", "sent", "acknowledged", "retried", "failed_permanently", "duplicates_sent",
             "out_of_order", "bad_signature", "bad_signature_rejected", "bad_signature_accepted", "malformed",
             "malformed_rejected", "malformed_accepted", "queue_full")


class Deliverer:
    """Sends deliveries from a bounded queue with ``threads`` sender threads and a retry scheduler."""

    def __init__(self, config: DeliveryConfig, seed: int, threads: int = 4, queue_size: int = 10_000,
                 log_size: int = 200_000) -> None:
        self.config = config
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str, Job]] = []  # (due, seq, "send"|"hold", job)
        self._seq = itertools.count()
        self._held: dict[tuple[int, str], Job] = {}
        self._rng = random.Random(f"deliveries:{seed}")
        self._local = threading.local()
        self._threads = [threading.Thread(target=self._send_loop, name=f"wedof-delivery-{i}", daemon=True)
                         for i in range(threads)]
        self._scheduler = threading.Thread(target=self._schedule_loop, name="wedof-delivery-retries", daemon=True)
        self._log: deque[dict] = deque(maxlen=log_size)
        self._generation = 0
        self._pending = 0
        self._stopped = False
        self.stats = dict.fromkeys(STAT_KEYS, 0)

    def start(self) -> None:
        for thread in (*self._threads, self._scheduler):
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass

    # -- publishing -------------------------------------------------------------------------------------

    def publish(self, hooks: list[dict], change: Change) -> None:
        """Queue one delivery per hook for ``change``. Called in change order, under the store lock."""
        cfg = self.config
        for hook in hooks:
            job = Job(uuid.UUID(int=self._rng.getrandbits(128), version=4).hex, hook, change.event, change.body,
                      change.external_id, change.last_update, generation=self._generation)
            extras = []
            if self._rng.random() < cfg.bad_signature_rate:
                extras.append(self._variant(job, "bad_signature", job.body))
            if self._rng.random() < cfg.malformed_rate:
                cut = max(1, len(job.body) // 2)
                extras.append(self._variant(job, "malformed", job.body[:cut]))
            job.duplicate_after_ack = self._rng.random() < cfg.duplicate_rate
            hold_draw = self._rng.random() < cfg.out_of_order_rate
            key = (hook["id"], change.external_id)
            with self._cond:
                self.stats["deliveries"] += 1
                self._pending += 1 + len(extras)
                held = self._held.get(key)
                if held is not None:
                    job.releases = self._held.pop(key)  # this later delivery goes first
                elif hold_draw:
                    job.held = True
                    self._held[key] = job
                    self._push_heap(time.monotonic() + cfg.hold_seconds, job, "hold")
            for extra in extras:
                self._enqueue(extra)
            if not job.held:
                self._enqueue(job)

    def _variant(self, job: Job, kind: str, body: bytes) -> Job:
        return Job(uuid.UUID(int=self._rng.getrandbits(128), version=4).hex, job.hook, job.event, body,
                   job.external_id, job.last_update, kind=kind, generation=job.generation)

    def _enqueue(self, job: Job) -> None:
        try:
            # blocks a little when receivers are slow: back-pressure on the API, bounded memory
            self._queue.put(job, timeout=30)
        except queue.Full:
            with self._cond:
                self.stats["queue_full"] += 1
                self.stats["failed_permanently"] += 1
                self._finish()

    def _push_heap(self, due: float, job: Job, purpose: str = "send") -> None:
        heapq.heappush(self._heap, (due, next(self._seq), purpose, job))
        self._cond.notify_all()

    # -- sending ----------------------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # never go through a proxy: loopback only
        return session

    def _send_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._send(job)
            except Exception as exc:  # a sender thread must survive anything
                self._record(job, None, f"internal error: {exc!r}")
                with self._cond:
                    if job.generation == self._generation:
                        self._finish()

    def _headers(self, job: Job) -> dict:
        headers = {"Content-Type": "application/json", "User-Agent": "wedof-sandbox",
                   "X-Wedof-Event": job.event, "X-Wedof-Delivery": job.delivery_id}
        secret = job.hook.get("secret")
        if secret:  # a webhook without a secret gets no signature header
            cfg = self.config
            key = secret + "-forged" if job.kind == "bad_signature" else secret
            headers["X-Wedof-Signature"] = sign(job.body, key, cfg.signature_algorithm, cfg.signature_encoding)
        return headers

    def _send(self, job: Job) -> None:
        status, error = None, None
        try:
            response = self._session().post(job.hook["url"], data=job.body, headers=self._headers(job),
                                            timeout=self.config.timeout, verify=not job.hook.get("ignoreSsl"),
                                            allow_redirects=False)
            status = response.status_code
            response.close()
        except requests.RequestException as exc:
            error = type(exc).__name__
        self._record(job, status, error)
        ok = status is not None and 200 <= status < 300
        with self._cond:
            if job.generation != self._generation:
                return  # the sandbox was reset meanwhile
            self.stats["sent"] += 1
            if job.kind in ("bad_signature", "malformed"):
                self.stats[job.kind] += 1
                self.stats[f"{job.kind}_{'accepted' if ok else 'rejected'}"] += 1
                self._finish()
            elif ok:
                if job.kind == "normal":
                    self.stats["acknowledged"] += 1
                if job.duplicate_after_ack:
                    duplicate = self._variant(job, "duplicate", job.body)
                    duplicate.delivery_id = job.delivery_id  # the very same delivery, again
                    self.stats["duplicates_sent"] += 1
                    self._pending += 1
                    self._push_heap(time.monotonic(), duplicate)
                self._finish()
            elif job.attempt <= len(self.config.retry_delays):
                delay = self.config.retry_delays[job.attempt - 1]
                job.attempt += 1
                self.stats["retried"] += 1
                self._push_heap(time.monotonic() + delay, job)
            else:
                self.stats["failed_permanently"] += 1
                self._finish()
            release = job.releases
            job.releases = None
            if release is not None and release.held:
                release.held = False
                self.stats["out_of_order"] += 1
                self._push_heap(time.monotonic(), release)

    def _record(self, job: Job, status: int | None, error: str | None) -> None:
        if job.generation != self._generation:
            return
        self._log.append({"delivery_id": job.delivery_id, "webhook_id": job.hook["id"], "event": job.event,
                          "externalId": job.external_id, "lastUpdate": job.last_update, "kind": job.kind,
                          "attempt": job.attempt, "sent_at": iso_ms(wall_ms()), "status": status, "error": error})

    def _finish(self) -> None:
        self._pending -= 1
        self._cond.notify_all()

    def _schedule_loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, purpose, job = heapq.heappop(self._heap)
                if job.generation != self._generation:
                    continue
                if purpose == "hold":
                    if not job.held:
                        continue  # already released by a later delivery or a drain
                    # held too long without a later delivery: send it, in order after all
                    job.held = False
                    self._held = {k: v for k, v in self._held.items() if v is not job}
            self._enqueue(job)

    # -- control ----------------------------------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return self._pending

    def snapshot(self) -> dict:
        with self._cond:
            return {**self.stats, "pending": self._pending, "config": asdict(self.config)}

    def log(self) -> list[dict]:
        return list(self._log)

    def drain(self, timeout: float) -> bool:
        """Release held deliveries now and wait until nothing is pending; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            for job in self._held.values():
                job.held = False
                self._push_heap(time.monotonic(), job)
            self._held.clear()
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.5))
            return True

    def reset(self, seed: int) -> None:
        """Forget everything queued or scheduled; in-flight sends finish but are no longer counted."""
        with self._cond:
            self._generation += 1
            self._heap.clear()
            self._held.clear()
            self._pending = 0
            self._rng = random.Random(f"deliveries:{seed}")
            self.stats = dict.fromkeys(STAT_KEYS, 0)
            self._log.clear()
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
