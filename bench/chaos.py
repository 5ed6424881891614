"""``make chaos``: proof under fire that nothing acknowledged is lost, duplicated or left stale.

    python -m bench.chaos [--folders 2000] [--changes 5000] [--duration 150] [--sqlite] [--short]
                          [--seed 7] [--json]

Everything runs as real processes on loopback: the Wedof sandbox, the receiver under gunicorn, two
Celery workers (each consumes ``events,sync``, concurrency 2), beat (inbox sweeper every 2 s with
short thresholds; incremental syncs every 60 s), Redis with AOF (``appendonly yes``, ``appendfsync
everysec``, as in production) and a throwaway PostgreSQL cluster (or SQLite with ``--sqlite``).

Scenario: the sandbox's population is synced once (full), the product registers its webhook on the
sandbox (``wedof.register_webhook``), then during ``--duration`` seconds the sandbox makes
``--changes`` state changes delivered as signed webhooks with chaos (duplicates, out of order,
forged signatures, truncated bodies) while its API fails 10% of calls with 5xx and 5% with 429 +
Retry-After. Meanwhile staff record lifecycle evidence for a share of the folders (attended sessions,
conclusions and synthesis hand-overs; the tenant's entry, rate and end rules in auto mode), one worker
is SIGKILLed twice (and restarted), Redis is stopped for 20 s, PostgreSQL is stopped for 15 s (the
receiver answers 503 and the sandbox retries; workers retry their transient database errors), and the
receiver is restarted. Then: wait for the sandbox's deliveries to drain and the inbox to empty,
run the hourly sync by hand (incremental, as beat would) and compare the data layer with
``/_sandbox/truth`` field by field, and the declarations with the sandbox's count of transition calls
per folder (none missing, duplicated or early). One verdict line; exit status 1 when an invariant breaks.

The receiver, the workers and beat are supervised as production's ``restart: unless-stopped`` (or ``make
run``'s supervisord) does: one that exits by itself is started again, and the verdict prints the unexpected
exits per process (``unexpected exits: worker a 0, worker b 1 (restarted), ...``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import SyncRun, SyncStatus, WedofConnection
from bench import chaos_billing, chaos_lifecycle
from bench.chaos_stack import AofRedisServer, Database, Stack, process_environment, stack_env
from bench.chaos_verify import compare_with_truth, delivery_figures, inbox_figures, latencies, open_events
from tests.support.processes import PROJECT_ROOT, free_port
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import control_app
from tests.worker.helpers import make_connection
from worker.task_names import QUEUE_OF, REGISTER_WEBHOOK, SYNC_CONNECTION

OUTPUT_DIR = PROJECT_ROOT / "test-output" / "chaos"
WEBHOOK_SECRET = "chaos-webhook-secret"
# The sandbox's delivery retries must outlast the longest outage (receiver restart, a slow DB):
# these add up to ~95 s.
RETRY_DELAYS = [0.5, 1, 2, 3, 5, 5, 5, 8, 10, 10, 15, 15, 15]
FINISHED_SYNC = (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SKIPPED)


@dataclass
class ChaosConfig:
    folders: int = 2000
    changes: int = 5000
    duration: float = 150.0
    seed: int = 7
    sqlite: bool = False
    database_url: str | None = None  # an existing migrated database (the suite's); else one is made
    worker_kills: int = 2
    redis_outage: float = 20.0
    database_outage: float = 15.0  # PostgreSQL only (the run's own cluster)
    receiver_restarts: int = 1
    error_rate: float = 0.10
    rate_limit_rate: float = 0.05
    duplicate_rate: float = 0.10
    out_of_order_rate: float = 0.10
    bad_signature_rate: float = 0.05
    malformed_rate: float = 0.03
    lifecycle_share: float = 0.10  # of the folders, given evidence during the window
    billing: bool = True  # the tenant bills in auto mode; the simulation leaves billing to it
    settle_timeout: float = 240.0  # deliveries drained + inbox empty, after the window
    sync_timeout: float = 240.0
    log_dir: Path | None = None

    @classmethod
    def short(cls, **overrides) -> ChaosConfig:
        """The suite's variant: a few hundred changes, one worker kill, one 5 s Redis outage."""
        values = {"folders": 300, "changes": 400, "duration": 30.0, "worker_kills": 1, "redis_outage": 5.0,
                  "database_outage": 5.0, "receiver_restarts": 0, "settle_timeout": 120.0, "sync_timeout": 120.0}
        values.update(overrides)
        return cls(**values)


@dataclass
class Timeline:
    """What the run did and when (seconds since the chaos window opened)."""

    started: float = field(default_factory=time.monotonic)
    actions: list[dict] = field(default_factory=list)

    def note(self, action: str, **details) -> None:
        entry = {"t": round(time.monotonic() - self.started, 1), "action": action, **details}
        self.actions.append(entry)
        print(f"[chaos] {entry['t']:7.1f}s {action} {details or ''}", flush=True)


def _step(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


def _run_sync(broker, connection_id: int, *, full: bool, trigger: str, timeout: float) -> dict:
    """Send ``wedof.sync_connection`` by name and wait for its SyncRun to finish; retry when skipped.

    A scheduled sync may hold the connection's lock at that moment: ours is then recorded ``skipped``
    and sent again once the lock is free.
    """
    deadline = time.monotonic() + timeout
    while True:
        task_id = str(uuid.uuid4())
        broker.send_task(SYNC_CONNECTION, args=[connection_id], kwargs={"full": full, "trigger": trigger},
                         queue=QUEUE_OF[SYNC_CONNECTION], task_id=task_id)

        result = wait_until(lambda tid=task_id: _finished_sync(tid), max(1.0, deadline - time.monotonic()),
                            interval=0.5, message=f"sync {task_id}")
        if result["status"] != SyncStatus.SKIPPED.value:
            return result
        time.sleep(2)


def _finished_sync(task_id: str) -> dict | None:
    with session_scope() as session:
        run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
        if run is None or run.status not in FINISHED_SYNC:
            return None
        return {"run_id": run.id, "status": run.status.value, "pages": run.pages, "fetched": run.fetched,
                "applied": run.applied, "unchanged": run.unchanged, "failed": run.failed, "error": run.error}


def _simulate(sandbox, config: ChaosConfig, stop: threading.Event, totals: dict) -> None:
    """Make ``config.changes`` changes in small batches spread over the window."""
    interval = 0.5
    batches = max(1, int(config.duration / interval))
    batch = max(1, math.ceil(config.changes / batches))
    started = time.monotonic()
    deadline = started + config.duration * 2 + 30  # never runs away, even on a very slow machine
    while totals["applied"] < config.changes and not stop.is_set() and time.monotonic() < deadline:
        want = min(batch, config.changes - totals["applied"])
        try:
            result = sandbox.control("POST", "/simulate", json={"changes": want, "organism_billing": not config.billing},
                                     timeout=60)
        except Exception as exc:  # noqa: BLE001 - counted and reported, the window goes on
            totals["errors"] += 1
            totals["last_error"] = repr(exc)[:300]
            time.sleep(interval)
            continue
        totals["applied"] += result["applied"]
        totals["calls"] += 1
        # pace: the n-th batch is due at n * interval
        due = started + totals["calls"] * interval
        time.sleep(max(0.0, due - time.monotonic()))


def _chaos_plan(config: ChaosConfig, database) -> list[tuple[float, str]]:
    """(fraction of the window, action): kills spread out, the outages and the receiver restart between."""
    plan: list[tuple[float, str]] = []
    kill_slots = [0.12, 0.75, 0.45, 0.9][: config.worker_kills]
    plan += [(at, "kill_worker") for at in kill_slots]
    if config.redis_outage > 0:
        plan.append((0.25, "redis_outage"))
    if config.database_outage > 0 and database.can_stop:
        plan.append((0.5, "database_outage"))
    plan += [(at, "restart_receiver") for at in [0.6, 0.85][: config.receiver_restarts]]
    return sorted(plan)


def _run_chaos(config: ChaosConfig, stack: Stack, redis: AofRedisServer, database, timeline: Timeline,
               stop: threading.Event) -> None:
    for fraction, action in [*_chaos_plan(config, database), (1.0, "window_end")]:
        due = timeline.started + fraction * config.duration
        while time.monotonic() < due and not stop.is_set():
            time.sleep(0.5)  # the stack's watchdog restarts (and notes) whatever exits by itself meanwhile
        if stop.is_set():
            return
        if action == "kill_worker":
            timeline.note("worker a: SIGKILL")
            stack.kill_worker("a")
            time.sleep(1)
            stack.start_worker("a")
            timeline.note("worker a: restarted")
        elif action == "redis_outage":
            _outage(timeline, "redis", config.redis_outage, redis.stop, redis.start)
        elif action == "database_outage":
            _outage(timeline, "postgresql", config.database_outage, database.stop, database.start_again)
        elif action == "window_end":
            return
        elif action == "restart_receiver":
            timeline.note("receiver: restart")
            stack.restart_receiver()
            timeline.note("receiver: back")


def _outage(timeline: Timeline, name: str, seconds: float, stop, start) -> None:
    timeline.note(f"{name}: stop", seconds=seconds)
    stop()
    time.sleep(seconds)
    start()
    timeline.note(f"{name}: started again")


def run_scenario(config: ChaosConfig) -> dict:
    """Run the whole scenario; return the verdict (``verdict["ok"]`` tells whether every invariant held)."""
    run_started = time.monotonic()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log_dir = config.log_dir or OUTPUT_DIR / "logs" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    database = Database(sqlite=config.sqlite, url=config.database_url)
    redis = AofRedisServer(log_dir=log_dir)
    stack: Stack | None = None
    stop = threading.Event()
    var_dir = Path(tempfile.mkdtemp(prefix="bdc-chaos-var-"))
    try:
        _step(f"starting PostgreSQL/SQLite, Redis (AOF), sandbox with {config.folders} folders (logs: {log_dir})")
        database.start()
        redis.start()
        with running_sandbox(folders=config.folders, seed=config.seed, retry_delays=RETRY_DELAYS,
                             delivery_threads=4, delivery_timeout=5) as sandbox:
            receiver_port = free_port()
            env = stack_env(database.url, redis.url, f"http://127.0.0.1:{receiver_port}", var_dir)
            with process_environment(env):
                stack = Stack(env, receiver_port, log_dir)
                return _scenario(config, database, redis, sandbox, stack, env, stop, run_started)
    finally:
        stop.set()  # also stops the simulation thread on Ctrl-C
        if stack is not None:
            stack.stop_all()
        redis.cleanup()
        database.cleanup()


def _scenario(config, database, redis, sandbox, stack, env, stop, run_started) -> dict:
    tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key, slug=f"chaos-{uuid.uuid4().hex[:8]}",
                                               rate=200.0, secret=WEBHOOK_SECRET)
    _step("starting the receiver (gunicorn), two workers (events,sync) and beat")
    stack.start()
    broker = control_app(env["REDIS_URL"])
    try:
        return _phases(config, database, redis, sandbox, stack, broker, tenant_id, connection_id, stop, run_started)
    finally:
        broker.close()


def _phases(config, database, redis, sandbox, stack, broker, tenant_id, connection_id, stop, run_started) -> dict:
    # 1. the product registers its webhook, then the first full sync
    broker.send_task(REGISTER_WEBHOOK, args=[connection_id], queue=QUEUE_OF[REGISTER_WEBHOOK])

    def registered():
        with session_scope() as session:
            return session.get(WedofConnection, connection_id).wedof_webhook_id

    webhook_id = wait_until(registered, 60, interval=0.5, message="webhook registered")
    hooks = sandbox.control("GET", "/webhooks")
    _step(f"webhook {webhook_id} registered: {[h['url'] for h in hooks]}")
    initial_sync = _run_sync(broker, connection_id, full=True, trigger="manual", timeout=config.sync_timeout)
    _step(f"initial full sync: {initial_sync}")
    if config.lifecycle_share > 0:
        chaos_lifecycle.enable(tenant_id)
    billed_before = chaos_billing.already_billed(json.loads(_raw_truth(sandbox)))
    if config.billing:
        chaos_billing.enable(tenant_id)  # the seeded toBill folders are billed during the window

    # 2. chaos on: API faults, delivery chaos, then the window
    sandbox.control("PUT", "/faults", json={"error_rate": config.error_rate, "rate_limit_rate": config.rate_limit_rate,
                                            "retry_after": 1})
    sandbox.control("PUT", "/deliveries/config", json={
        "duplicate_rate": config.duplicate_rate, "out_of_order_rate": config.out_of_order_rate,
        "bad_signature_rate": config.bad_signature_rate, "malformed_rate": config.malformed_rate})
    sandbox.control("POST", "/requests/reset")
    timeline = Timeline()
    stack.on_exit = lambda name, record: timeline.note(
        f"{name}: exited on its own, {'restarted' if record['restarted'] else 'restart failed'}", how=record["how"])
    totals = {"applied": 0, "calls": 0, "errors": 0}
    simulator = threading.Thread(target=_simulate, args=(sandbox, config, stop, totals), name="chaos-simulate",
                                 daemon=True)
    evidence = chaos_lifecycle.Evidence()
    recorder = threading.Thread(target=chaos_lifecycle.record, name="chaos-evidence", daemon=True,
                                args=(tenant_id, config.lifecycle_share, config.duration * 0.8, stop, evidence))
    simulator.start()
    recorder.start()
    _run_chaos(config, stack, redis, database, timeline, stop)
    simulator.join(timeout=config.duration * 2 + 60)
    recorder.join(timeout=config.duration + 60)
    timeline.note("changes done", applied=totals["applied"], errors=totals["errors"],
                  evidence=len(evidence.entries) + len(evidence.ends))
    # Every decision the evidence made is carried out (the beat evaluates every few seconds).
    _quiet(lambda: chaos_lifecycle.in_flight(tenant_id) == 0, config.settle_timeout, "lifecycle actions finished")
    timeline.note("lifecycle settled")

    # 3. settle: the sandbox has delivered everything (retries included) and the inbox is empty
    settle_deadline = time.monotonic() + config.settle_timeout
    while True:
        remaining = settle_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"sandbox deliveries not drained: {sandbox.control('GET', '/deliveries')}")
        try:
            drained = sandbox.control("POST", "/deliveries/drain", json={"timeout": min(30, int(remaining))})
            if drained.get("drained"):
                break
        except RuntimeError:  # 504: still pending
            continue
    timeline.note("deliveries drained")
    wait_until(lambda: open_events(connection_id) == 0, max(5.0, settle_deadline - time.monotonic()), interval=1.0,
               message="inbox empty")
    timeline.note("inbox empty")
    snapshot = sandbox.control("GET", "/deliveries", params={"log": 1})
    inbox = inbox_figures(connection_id)
    deliveries = delivery_figures(snapshot.pop("log"), snapshot, set(inbox["delivery_ids"]))
    # The webhook path alone, before any sync repairs it: every acknowledged version must be applied.
    before_sync = compare_with_truth(tenant_id, json.loads(_raw_truth(sandbox)), deliveries.pop("newest_acknowledged"))

    # 4. the hourly sync, by hand, as beat would send it (incremental), then billing settles, then the truth
    final_sync = _run_sync(broker, connection_id, full=False, trigger="schedule", timeout=config.sync_timeout)
    timeline.note("final sync", **{k: final_sync[k] for k in ("status", "fetched", "applied")})
    if config.billing:
        _quiet(lambda: chaos_billing.settled(tenant_id), config.settle_timeout, "billing settled")
        timeline.note("billing settled")
    truth = json.loads(_raw_truth(sandbox))
    rows = compare_with_truth(tenant_id, truth)
    lat = latencies(inbox["processed_times"], deliveries.pop("first_sent"))
    api = sandbox.control("GET", "/requests")
    transitions = sandbox.control("GET", "/transitions")
    lifecycle = chaos_lifecycle.verdict(tenant_id, evidence, truth, transitions)
    billing = chaos_billing.verdict(tenant_id, truth, transitions, billed_before)
    verdict = _verdict(config, database, rows, before_sync, inbox, deliveries, lat, api, totals, timeline,
                       initial_sync, final_sync, time.monotonic() - run_started, lifecycle, billing,
                       stack.exit_summary())
    verdict["processes_at_end"] = stack.health()
    return verdict


def _quiet(condition, timeout: float, what: str, hold: float = 8.0) -> None:
    """Wait until ``condition()`` holds and keeps holding for ``hold`` seconds (the beat may add work)."""
    deadline = time.monotonic() + timeout
    held_since = None
    while time.monotonic() < deadline:
        if condition():
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= hold:
                return
        else:
            held_since = None
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not reached after {timeout}s")


def _raw_truth(sandbox) -> str:
    import requests

    response = requests.get(f"{sandbox.url}/_sandbox/truth", timeout=60)
    response.raise_for_status()
    return response.text


def _verdict(config, database, rows, before_sync, inbox, deliveries, lat, api, totals, timeline,
             initial_sync, final_sync, duration, lifecycle, billing, exits) -> dict:
    sbx = deliveries["sandbox"]
    by_status = inbox["by_status"]
    kills = sum(1 for a in timeline.actions if a["action"] == "worker a: SIGKILL")
    database_stopped = any(a["action"] == "postgresql: stop" for a in timeline.actions)
    checks = {
        "rows_missing_zero": rows["missing"] == 0,
        "rows_duplicated_zero": rows["duplicated"] == 0,
        "rows_stale_zero": rows["stale"] == 0,
        "rows_mismatched_zero": rows["mismatched"] == 0,
        "webhook_path_applied_every_acknowledged_version": before_sync["behind_acknowledged"] == 0,
        # 401, or 429 once a connection has seen too many bad signatures this minute, or no answer
        # ("None": sent while the receiver was restarting), or 503 while the database was away (no
        # secret to check the signature with): never accepted.
        "forged_all_rejected_401": sbx["bad_signature_accepted"] == 0
        and set(deliveries["forged_statuses"]) <= {"401", "429", "None", *(["503"] if database_stopped else [])}
        and deliveries["forged_statuses"].get("401", 0) > 0,
        "forged_none_stored": deliveries["forged_stored"] == 0,
        "malformed_none_accepted": sbx["malformed_accepted"] == 0,
        "malformed_none_stored": deliveries["malformed_stored"] == 0,
        "acknowledged_all_stored": deliveries["acknowledged_not_stored"] == 0,
        "no_delivery_given_up": sbx["failed_permanently"] == 0,
        "no_event_failed": by_status.get("failed", 0) == 0,
        "inbox_drained": not any(by_status.get(s, 0) for s in ("received", "queued", "processing")),
        "enough_changes": totals["applied"] >= config.changes,
        "chaos_happened": kills == config.worker_kills,
        # The database outage was answered 503 (and the sender retried: nothing acknowledged is missing).
        "database_outage_answered_503": not database_stopped or deliveries["genuine_statuses"].get("503", 0) > 0,
        "final_sync_succeeded": final_sync["status"] == SyncStatus.SUCCEEDED.value,
        "lifecycle_declarations_missing_zero": lifecycle["missing"] == 0,
        "lifecycle_declarations_duplicated_zero": lifecycle["duplicated"] == 0,
        "lifecycle_declarations_early_zero": lifecycle["early"] == 0,
        "lifecycle_happened": lifecycle["transition_calls"] > 0 or config.lifecycle_share == 0,
        "invoices_missing_zero": billing["missing"] == 0 or not config.billing,  # off: the folders wait, as asked
        "invoices_duplicated_zero": billing["duplicated"] == 0,
        "folders_double_billed_zero": billing["double_billed"] == 0,
        "billing_happened": billing["billing_calls"] > 0 or not config.billing,
        # As production's supervision: a process that exited by itself was started again (each time).
        "exited_processes_restarted": all(e["restarted"] == e["exits"] for e in exits.values()),
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "backend": database.backend,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
                   if k not in ("database_url",)},
        "changes": totals,
        "deliveries": {
            "genuine": sbx["deliveries"], "sent": sbx["sent"], "accepted": sbx["acknowledged"],
            "rejected": (sbx["bad_signature_rejected"] or 0) + (sbx["malformed_rejected"] or 0),
            "forged": sbx["bad_signature"], "forged_statuses": deliveries["forged_statuses"],
            "forged_stored": deliveries["forged_stored"], "malformed": sbx["malformed"],
            "malformed_statuses": deliveries["malformed_statuses"], "malformed_stored": deliveries["malformed_stored"],
            "genuine_statuses": deliveries["genuine_statuses"],
            "duplicates_sent": sbx["duplicates_sent"], "out_of_order": sbx["out_of_order"],
            "retried": sbx["retried"], "failed_permanently": sbx["failed_permanently"],
            "acknowledged_not_stored": deliveries["acknowledged_not_stored"],
        },
        "events": {"rows": inbox["rows"], **{s: by_status.get(s, 0) for s in
                                             ("processed", "failed", "ignored", "received", "queued", "processing")},
                   "max_attempts": inbox["max_attempts"], "failures": inbox["failures"]},
        "rows": rows,
        "before_final_sync": {k: before_sync[k] for k in ("missing", "duplicated", "stale", "mismatched",
                                                                        "behind_acknowledged", "examples")},
        "lifecycle": lifecycle,
        "billing": billing,
        "latency": lat,
        "api": {"total": api["total"], "faults": api["faults"]},
        "syncs": {"initial": initial_sync, "final": final_sync},
        "unexpected_exits": exits,
        "timeline": timeline.actions,
        "duration_s": round(duration, 1),
    }


def verdict_line(verdict: dict) -> str:
    d, e, r, lat = verdict["deliveries"], verdict["events"], verdict["rows"], verdict["latency"]
    rec, sent = lat["received_to_applied_ms"], lat["sent_to_applied_ms"]
    failed = [name for name, ok in verdict["checks"].items() if not ok]
    head = "CHAOS PASS" if verdict["ok"] else f"CHAOS FAIL ({', '.join(failed)})"
    return (f"{head} [{verdict['backend']}] changes {verdict['changes']['applied']} | deliveries sent {d['sent']} "
            f"(genuine {d['genuine']}) accepted {d['accepted']} rejected {d['rejected']} "
            f"answered 503 {d['genuine_statuses'].get('503', 0)} "
            f"(forged {d['forged']}: {d['forged_stored']} stored) | events processed {e['processed']} "
            f"failed {e['failed']} ignored {e['ignored']} | rows missing {r['missing']} duplicated {r['duplicated']} "
            f"stale {r['stale']} mismatched {r['mismatched']} (of {r['folders']}; before the sync: "
            f"{verdict['before_final_sync']['behind_acknowledged']} behind an acknowledged delivery) | declarations "
            f"{verdict['lifecycle']['transition_calls']} (evidence for {verdict['lifecycle']['evidence_entries']} entries, "
            f"{verdict['lifecycle']['evidence_ends']} ends): missing {verdict['lifecycle']['missing']} duplicated "
            f"{verdict['lifecycle']['duplicated']} early {verdict['lifecycle']['early']} | invoices "
            f"{verdict['billing']['invoices']} (billing calls {verdict['billing']['billing_calls']}): missing "
            f"{verdict['billing']['missing']} duplicated {verdict['billing']['duplicated']} double-billed "
            f"{verdict['billing']['double_billed']} | delivery→applied p50 "
            f"{rec['p50']} ms p99 {rec['p99']} ms (from first send p50 {sent['p50']} p99 {sent['p99']} ms) | "
            f"{verdict['duration_s']} s | {exits_text(verdict.get('unexpected_exits', {}))} | not alive at the end: "
            f"{[n for n, st in verdict.get('processes_at_end', {}).items() if st != 'alive'] or 'none'}")


def exits_text(exits: dict[str, dict]) -> str:
    """``unexpected exits: worker a 0, worker b 1 (restarted), beat 0, receiver 0``."""
    parts = []
    for name, e in exits.items():
        if not e["exits"]:
            parts.append(f"{name} 0")
        elif e["restarted"] == e["exits"]:
            parts.append(f"{name} {e['exits']} (restarted)")
        else:
            parts.append(f"{name} {e['exits']} ({e['restarted']} restarted)")
    return f"unexpected exits: {', '.join(parts) or 'none watched'}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--folders", type=int, help="sandbox population (default 2000; --short 300)")
    p.add_argument("--changes", type=int, help="state changes during the window (default 5000; --short 400)")
    p.add_argument("--duration", type=float, help="length of the chaos window in seconds (default 150; --short 30)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sqlite", action="store_true", help="SQLite file instead of a PostgreSQL cluster")
    p.add_argument("--short", action="store_true", help="the suite's short variant: one kill, 5 s Redis outage")
    p.add_argument("--json", action="store_true", help="also write the verdict JSON under test-output/chaos/")
    p.add_argument("--no-billing", action="store_true", help="leave billing off (the simulation bills instead)")
    p.add_argument("--lifecycle-share", type=float, help="share of the folders given lifecycle evidence "
                                                          "(default 0.10; 0: the lifecycle stays off)")
    args = p.parse_args(argv)
    if args.lifecycle_share is not None and not 0 <= args.lifecycle_share <= 1:
        p.error("--lifecycle-share must be between 0 and 1")
    for name in ("folders", "changes"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            p.error(f"--{name} must be between 1 and 100000")
    if args.duration is not None and not 5 <= args.duration <= 1800:
        p.error("--duration must be between 5 and 1800 seconds")
    return args


def config_from_args(args: argparse.Namespace) -> ChaosConfig:
    overrides = {k: getattr(args, k) for k in ("folders", "changes", "duration") if getattr(args, k) is not None}
    overrides.update(seed=args.seed, sqlite=args.sqlite)
    if args.lifecycle_share is not None:
        overrides.update(lifecycle_share=args.lifecycle_share)
    if args.no_billing:
        overrides.update(billing=False)
    return ChaosConfig.short(**overrides) if args.short else ChaosConfig(**overrides)


def write_json(verdict: dict) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"verdict-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    text = json.dumps(verdict, indent=2, default=str)
    path.write_text(text)
    (OUTPUT_DIR / "verdict-latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = config_from_args(args)
    try:
        verdict = run_scenario(config)
    except KeyboardInterrupt:
        print("CHAOS ABORTED (interrupted); every process was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a run that cannot finish is a failed run, said plainly
        traceback.print_exc()
        print(f"CHAOS ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(verdict_line(verdict), flush=True)
    if not verdict["ok"]:
        print(json.dumps({k: verdict[k] for k in ("checks", "rows", "before_final_sync", "events")}, indent=1,
                         default=str), file=sys.stderr)
    if args.json:
        print(f"verdict written to {write_json(verdict)}")
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
