"""The workers' and beat's Prometheus metrics, and the exporter each serves on its own port.

- Task outcomes and durations come from Celery's signals: ``task_success`` / ``task_retry`` /
  ``task_failure`` count succeeded, retried and failed (a rejected message, which has no signal of
  its own, is counted failed from ``task_postrun``), ``task_prerun``/``task_postrun`` time each run.
- Sync runs are recorded by :mod:`worker.tasks.sync` where a run ends (:func:`record_sync_run`).
- Wedof calls and throttle waits: :func:`wedof_observer` gives a connection's client and throttle
  their hooks (``wedof/`` itself knows nothing of Prometheus); the endpoint label is
  :func:`wedof.client.endpoint_class`, so folder numbers never become labels.

Exporter (``BDC_METRICS_PORT`` > 0, on ``BDC_METRICS_ADDR``): a worker's main process serves it,
started before the prefork pool forks. The pool's children write their values to files in
``PROMETHEUS_MULTIPROC_DIR`` (emptied when the worker starts; one directory per worker) and the
exporter sums them; a child that exits cleanly is marked dead. Beat serves the data-layer gauges
(:mod:`worker.metrics_collector`) on its own port: exactly one beat runs, so no gauge is counted
twice. A metric never fails a task: every recording path logs and carries on.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import SyncRun, Tenant, WedofConnection
from bdc.settings import get_settings
from wedof.client import endpoint_class

log = logging.getLogger("worker.metrics")

UNKNOWN_TENANT = "unknown"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SYNC_RESULTS = ("fetched", "applied", "unchanged", "failed")

# The workers' own registry (not prometheus_client's global one): a process serving it without
# multiprocess mode (a solo or threads pool) shows the workers' series and nothing else.
REGISTRY = CollectorRegistry(auto_describe=True)

TASKS = Counter("bdc_tasks_total", "Task runs by task name and outcome (succeeded, retried, failed).",
                ["task", "outcome"], registry=REGISTRY)
TASK_DURATION = Histogram("bdc_task_duration_seconds", "Time a task run took, whatever its outcome.", ["task"],
                          registry=REGISTRY, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
SYNC_RUNS = Counter("bdc_sync_runs_total", "Finished sync runs by tenant, kind and outcome (succeeded, failed).",
                    ["tenant", "kind", "outcome"], registry=REGISTRY)
SYNC_DURATION = Histogram("bdc_sync_duration_seconds", "Time a finished sync run took, by kind.", ["kind"],
                          registry=REGISTRY, buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600))
SYNC_FOLDERS = Counter("bdc_sync_folders_total",
                       "Folders of finished sync runs by tenant and result (fetched, applied, unchanged, failed).",
                       ["tenant", "result"], registry=REGISTRY)
WEDOF_REQUESTS = Counter("bdc_wedof_requests_total",
                         "Wedof API calls (each attempt) by tenant, endpoint class, method and status "
                         "(\"error\" when no answer came).",
                         ["tenant", "endpoint", "method", "code"], registry=REGISTRY)
WEDOF_DURATION = Histogram("bdc_wedof_request_duration_seconds", "Time a Wedof API call took, by endpoint class.",
                           ["endpoint", "method"], registry=REGISTRY,
                           buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30))
THROTTLE_WAIT = Counter("bdc_wedof_throttle_wait_seconds_total",
                        "Seconds spent waiting for the shared Wedof rate limit, by tenant.", ["tenant"],
                        registry=REGISTRY)

_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    """The metric's child for these labels, bound once (labels() validates and locks on every call)."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


# -- tasks ---------------------------------------------------------------------------------------

_started: dict[str, float] = {}


def _task_name(sender) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def _count_task(sender, outcome: str) -> None:
    try:
        _child(TASKS, _task_name(sender), outcome).inc()
    except Exception:  # noqa: BLE001 - a metric never fails a task
        log.debug("task metric not recorded", exc_info=True)


@signals.task_prerun.connect
def _task_prerun(task_id=None, **_kwargs) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_postrun(sender=None, task_id=None, state=None, **_kwargs) -> None:
    started = _started.pop(task_id, None) if task_id else None
    try:
        if started is not None:
            _child(TASK_DURATION, _task_name(sender)).observe(time.perf_counter() - started)
        if state == "REJECTED":  # Reject (a bad argument) sends no failure signal: it failed all the same
            _count_task(sender, "failed")
    except Exception:  # noqa: BLE001
        log.debug("task duration not recorded", exc_info=True)


@signals.task_success.connect
def _task_success(sender=None, **_kwargs) -> None:
    _count_task(sender, "succeeded")


@signals.task_retry.connect
def _task_retry(sender=None, **_kwargs) -> None:
    _count_task(sender, "retried")


@signals.task_failure.connect
def _task_failure(sender=None, **_kwargs) -> None:
    # Also sent by the worker's main process for a child killed by a hard time limit or lost.
    _count_task(sender, "failed")


# -- syncs -----------------------------------------------------------------------------------------

def record_sync_run(run_id: int, outcome: str) -> None:
    """Count a finished sync run (``succeeded`` or ``failed``) from its row: duration, folders, tenant."""
    try:
        with session_scope() as session:
            row = session.execute(
                select(SyncRun.kind, SyncRun.started_at, SyncRun.finished_at, SyncRun.fetched, SyncRun.applied,
                       SyncRun.unchanged, SyncRun.failed, Tenant.slug)
                .join(WedofConnection, WedofConnection.id == SyncRun.connection_id)
                .join(Tenant, Tenant.id == WedofConnection.tenant_id)
                .where(SyncRun.id == run_id)).first()
        if row is None:
            return
        kind = str(getattr(row.kind, "value", row.kind))
        tenant = row.slug or UNKNOWN_TENANT
        _child(SYNC_RUNS, tenant, kind, outcome).inc()
        if row.started_at is not None and row.finished_at is not None:
            _child(SYNC_DURATION, kind).observe(max(0.0, (row.finished_at - row.started_at).total_seconds()))
        for result in _SYNC_RESULTS:
            count = getattr(row, result) or 0
            if count:
                _child(SYNC_FOLDERS, tenant, result).inc(count)
    except Exception:  # noqa: BLE001 - the run's own outcome is already committed; a metric must not undo it
        log.warning("sync run %s: metrics not recorded", run_id, exc_info=True)


# -- Wedof calls -----------------------------------------------------------------------------------

class WedofObserver:
    """The hooks of one tenant's Wedof client (``observer=``) and throttle (``on_wait=``)."""

    def __init__(self, tenant: str | None):
        self.tenant = tenant or UNKNOWN_TENANT

    def request(self, method: str, path: str, status: int | None, seconds: float) -> None:
        endpoint = endpoint_class(path)
        method = method if method in _KNOWN_METHODS else "other"
        _child(WEDOF_REQUESTS, self.tenant, endpoint, method, "error" if status is None else str(status)).inc()
        _child(WEDOF_DURATION, endpoint, method).observe(seconds)

    def throttle_wait(self, seconds: float) -> None:
        if seconds > 0:
            _child(THROTTLE_WAIT, self.tenant).inc(seconds)


def wedof_observer(tenant: str | None) -> WedofObserver:
    return WedofObserver(tenant)


_SLUG_SECONDS = 300.0  # a renamed tenant's label follows within minutes; no query per client built
_slugs: dict[int, tuple[float, str]] = {}


def tenant_slug(session, tenant_id: int | None) -> str:
    """The tenant's slug for labels, cached briefly; ``unknown`` when it cannot be read."""
    if tenant_id is None:
        return UNKNOWN_TENANT
    now = time.monotonic()
    cached = _slugs.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        query = select(Tenant.slug).where(Tenant.id == tenant_id)
        if session is None:  # a detached connection: a short session of our own
            with session_scope() as own:
                slug = own.scalar(query)
        else:
            slug = session.scalar(query)
    except Exception:  # noqa: BLE001 - a label is not worth failing the caller
        log.debug("tenant slug not read", exc_info=True)
        return UNKNOWN_TENANT
    if slug is None:
        return UNKNOWN_TENANT
    if len(_slugs) > 10_000:
        _slugs.clear()
    _slugs[tenant_id] = (now + _SLUG_SECONDS, slug)
    return slug


# -- exporters -------------------------------------------------------------------------------------

_exporter: dict = {}  # {"server": WSGIServer, "pid": pid of the process that serves it}
_exporter_lock = threading.Lock()


def serve(registry: CollectorRegistry, port: int, addr: str, what: str) -> bool:
    """Serve ``registry`` on ``addr:port`` in a daemon thread; False (logged) when the port is taken."""
    with _exporter_lock:
        if _exporter.get("pid") == os.getpid():
            log.warning("%s metrics not served on %s:%s: this process already serves its metrics", what, addr, port)
            return False
        try:
            server, _thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            # Metrics are not worth a worker: say so loudly and keep working.
            log.error("%s metrics cannot be served on %s:%s (%s)", what, addr, port, exc)
            return False
        _exporter.update(server=server, pid=os.getpid())
    log.info("%s metrics served on http://%s:%s/metrics", what, addr, port)
    return True


def stop_exporter() -> None:
    with _exporter_lock:
        server = _exporter.pop("server", None)
        pid = _exporter.pop("pid", None)
    if server is not None and pid == os.getpid():
        server.shutdown()
        server.server_close()


def worker_registry() -> CollectorRegistry:
    """What a worker's exporter serves: every process's values in multiprocess mode, else this one's."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def empty_multiprocess_dir() -> None:
    """Remove an earlier run's value files: they would be summed with this run's."""
    directory = multiprocess_dir()
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            try:
                os.remove(os.path.join(directory, name))
            except FileNotFoundError:
                pass


@signals.celeryd_init.connect
def _on_worker_start(**_kwargs) -> None:
    # The worker's main process, before anything is counted or any child forked.
    empty_multiprocess_dir()


@signals.worker_init.connect
def _start_worker_exporter(**_kwargs) -> None:
    settings = get_settings()
    if settings.metrics_port > 0:
        serve(worker_registry(), settings.metrics_port, settings.metrics_addr, "worker")


@signals.worker_process_init.connect
def _close_inherited_exporter(**_kwargs) -> None:
    # A forked child holds a copy of the exporter's listening socket but not its thread: close the
    # copy, so the port is free again as soon as the main process ends.
    server = _exporter.get("server")
    if server is not None and _exporter.get("pid") != os.getpid():
        try:
            server.socket.close()
        except OSError:
            pass
        _exporter.clear()
        if not multiprocess_dir():
            log.warning("PROMETHEUS_MULTIPROC_DIR is not set: this pool child's tasks are missing from the "
                        "worker's metrics")


@signals.worker_process_shutdown.connect
def _mark_child_dead(pid=None, **_kwargs) -> None:
    if multiprocess_dir():
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid or os.getpid())
        except Exception:  # noqa: BLE001
            log.debug("process not marked dead", exc_info=True)


@signals.beat_init.connect
def _start_beat_exporter(**_kwargs) -> None:
    settings = get_settings()
    if settings.metrics_port <= 0:
        return
    from worker.metrics_collector import DataLayerCollector

    registry = CollectorRegistry()
    registry.register(DataLayerCollector())
    serve(registry, settings.metrics_port, settings.metrics_addr, "beat")
