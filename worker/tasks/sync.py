"""``wedof.sync_connection``: page through a connection's registration folders and apply them.

- One sync per connection at a time: a Redis lock (timeout, extended every page, non-blocking). A
  second concurrent sync records a ``skipped`` SyncRun. The lock token is the task id, so a message
  re-delivered after its worker was SIGKILLed takes over its own predecessor's lock at once.
- Incremental by default: the window ``[cursor - overlap, ...]``; ``full=True`` (or no cursor yet)
  reads everything.
- Newest first (``lastUpdate`` descending). Wedof pages by offset: a folder that changes while the
  run reads the listing moves to its front, which the run has already read, so the folders still to
  read only move back one place and come again at the top of the next page (applied once, see
  :class:`RunDedupe`). Nothing is skipped; the changed folder itself is newer than the cursor this
  run stores, so the next sync reads it (its webhook usually brings it sooner). Read oldest first,
  the folders behind a changed one would move up into a page already read, and one would be missed.
- Each page is applied with ``apply_folders`` in ONE transaction together with the SyncRun counters,
  so what was committed before a crash or a Wedof outage is kept, and a re-run only finds it unchanged.
- Progress: Celery state ``PROGRESS`` (Flower) after every page; the SyncRun row (admin API) with
  every page that wrote something, at least every ``PROGRESS_EVERY`` seconds otherwise, and at the end.
- A folder Wedof's paging serves twice in one run is applied once (see :class:`RunDedupe`); one bad
  folder is counted and logged and never stops the run.
- The cursor (max ``lastUpdate`` seen) moves only when a whole ``kind="all"`` run succeeded.
- The next pages are downloaded by a background thread while the current one is applied
  (:class:`Prefetch`, ``PREFETCH_PAGES`` ahead): the download runs while the apply waits on the
  database, so a sync takes about max(download, apply), not their sum.
- Failures follow :mod:`worker.policy`: a transient one puts the run back to ``queued`` and retries
  the task (the same run, resumed); a permanent one marks the run ``failed`` with the reason, audits
  it, and ends the task in FAILURE.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import LockError, RedisError
from sqlalchemy import select

from bdc import api_drift
from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import BillingMode, SyncKind, SyncRun, SyncStatus, SyncTrigger, WedofConnection
from bdc.settings import get_settings
from bdc.types import utcnow
from billing.evaluate import mode_of as billing_mode
from billing.evaluate import settings_of as billing_settings_of
from lifecycle.evaluate import enabled as lifecycle_enabled
from lifecycle.evaluate import settings_of
from wedof.drift import observe as observe_drift
from wedof.mapping import FolderReading, FolderRejected, apply_folders, read_folders
from wedof.mapping.values import datetime_utc
from worker.celery_app import app, send_soon
from worker.connections import ConnectionNotUsable, client_for, redis_client
from worker.metrics import record_sync_run
from worker.policy import (
    BadTaskArgument,
    Failure,
    PermanentError,
    PolicyTask,
    Report,
    as_id,
    log,
    retry_on_conflict,
)
from worker.task_names import BILL_FOLDERS, EVALUATE_LIFECYCLES, SYNC_CONNECTION

PREFETCH_PAGES = 3  # pages downloaded ahead while one is applied: a few MiB, whatever the total
PROGRESS_EVERY = 1.0  # seconds between progress records of pages that changed nothing
WINDOW_AHEAD = timedelta(days=1)  # how far past its start an incremental run's window reaches
APPLIED_OUTCOMES = ("created", "updated")
FINISHED = (SyncStatus.SUCCEEDED, SyncStatus.FAILED, SyncStatus.SKIPPED)
MAX_SYNC_RETRIES = 5  # with the backoff: about a minute of outage (Wedof or the database) ridden out


def lock_name(connection_id: int) -> str:
    return f"bdc:sync-lock:{connection_id}"


@dataclass
class SyncArgs:
    connection_id: int
    kind: SyncKind
    full: bool
    run_id: int | None
    trigger: SyncTrigger


def check_args(connection_id, kind, full, run_id, trigger) -> SyncArgs:
    if not isinstance(kind, str) or kind not in {k.value for k in SyncKind}:
        raise BadTaskArgument(f"kind must be one of {[k.value for k in SyncKind]}, got {str(kind)[:40]!r}")
    if not isinstance(full, bool):
        raise BadTaskArgument(f"full must be true or false, got {str(full)[:40]!r}")
    if not isinstance(trigger, str) or trigger not in {t.value for t in SyncTrigger}:
        raise BadTaskArgument(f"trigger must be one of {[t.value for t in SyncTrigger]}, got {str(trigger)[:40]!r}")
    return SyncArgs(as_id(connection_id, "connection_id"), SyncKind(kind), full,
                    None if run_id is None else as_id(run_id, "run_id"), SyncTrigger(trigger))


@dataclass
class RunDedupe:
    """Which folders of the previous page this run applied: the ones a shifted listing serves again.

    Read newest first, a folder comes back only across a page boundary, when folders that changed
    meanwhile moved to the listing's front and pushed the rest back. So remembering the previous
    page is enough; a copy newer than the one applied is a real change and is applied again.
    """

    previous_page: dict[str, datetime | None] = field(default_factory=dict)

    def filter(self, folders: list[dict]) -> tuple[list[int], int]:
        """The positions of the folders to apply, and how many were skipped as already applied."""
        fresh: list[int] = []
        skipped = 0
        page: dict[str, datetime | None] = {}
        for position, folder in enumerate(folders):
            external_id = str(folder.get("externalId")) if isinstance(folder, dict) else None
            last_update = datetime_utc(folder.get("lastUpdate")) if isinstance(folder, dict) else None
            if external_id in self.previous_page:
                seen = self.previous_page[external_id]
                if last_update is None or (seen is not None and last_update <= seen):
                    skipped += 1
                    continue
            fresh.append(position)
            if external_id is not None:
                page[external_id] = last_update
        self.previous_page = page
        return fresh, skipped


class Prefetch:
    """Iterate ``pages`` with the next items fetched by a background thread, at most ``ahead`` waiting.

    ``prepare`` (optional) runs on each item in that thread too, so work that needs no database
    (reading the folders) is done while the caller waits on the database for the previous page.
    Memory stays a few pages. An error in the fetching thread is raised where the caller
    iterates; :meth:`close` (the caller is done, or failed) stops the thread after its current fetch.
    """

    _DONE = object()

    def __init__(self, pages: Iterable, ahead: int = 1, prepare: Callable[[Any], Any] | None = None):
        self._pages = pages
        self._prepare = prepare
        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fetch, name="sync-prefetch", daemon=True)
        self._thread.start()

    def _fetch(self) -> None:
        try:
            for item in self._pages:
                if self._prepare is not None:
                    item = self._prepare(item)
                if not self._put((item, None)):
                    return
            self._put((self._DONE, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the iterating thread, raised there
            self._put((None, exc))
        finally:
            close = getattr(self._pages, "close", None)
            if close is not None:
                close()  # a generator's cleanup runs in the thread that ran it

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is self._DONE:
                return
            yield item

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@dataclass
class Counters:
    pages: int = 0
    fetched: int = 0
    applied: int = 0
    unchanged: int = 0
    failed: int = 0
    total: int | None = None
    max_last_update: datetime | None = None
    recorded_at: float = 0.0  # monotonic time the SyncRun row last received these counters

    def meta(self, run_id: int) -> dict:
        return {"run_id": run_id, "page": self.pages, "fetched": self.fetched, "applied": self.applied,
                "unchanged": self.unchanged, "failed": self.failed, "total": self.total}

    def record(self, run: SyncRun) -> None:
        run.pages, run.fetched, run.applied = self.pages, self.fetched, self.applied
        run.unchanged, run.failed, run.total = self.unchanged, self.failed, self.total
        self.recorded_at = time.monotonic()


class SyncLock:
    """The per-connection Redis lock, owned by a task id (re-delivery of the same task takes it over)."""

    def __init__(self, connection_id: int, task_id: str):
        self.client = redis_client()
        self.name = lock_name(connection_id)
        self.token = task_id.encode()
        self.timeout = get_settings().sync_lock_timeout  # seconds; extended after every page
        self.lock = self.client.lock(self.name, timeout=self.timeout, blocking=False)

    def acquire(self) -> bool:
        if self.lock.acquire(token=self.token):
            return True
        if self.client.get(self.name) == self.token:
            # Our own message, re-delivered after its worker died holding the lock.
            self.lock.local.token = self.token
            self.lock.extend(self.timeout, replace_ttl=True)
            return True
        return False

    def extend(self) -> None:
        self.lock.extend(self.timeout, replace_ttl=True)

    def release(self) -> None:
        try:
            self.lock.release()
        except (LockError, RedisError) as exc:
            log.warning("sync lock %s not released cleanly: %s", self.name, exc)


def _open_run(args: SyncArgs, task_id: str) -> tuple[int, int, datetime | None]:
    """The SyncRun row for this task (given, re-delivered, or new); returns (run_id, tenant_id, cursor)."""
    with session_scope() as session:
        connection = session.get(WedofConnection, args.connection_id)
        if connection is None:
            raise BadTaskArgument(f"unknown connection id {args.connection_id}")
        run = None
        trigger = args.trigger
        if args.run_id is not None:
            run = session.get(SyncRun, args.run_id)
            if run is None or run.connection_id != connection.id:
                raise BadTaskArgument(f"sync run {args.run_id} does not belong to connection {connection.id}")
            if run.status in FINISHED and run.task_id != task_id:
                # A finished run re-applied by hand (Flower): record it as a new run, keep the old one.
                run, trigger = None, SyncTrigger.RETRY
        else:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
        if run is None:
            run = SyncRun(connection_id=connection.id, kind=args.kind, full=args.full,
                          trigger=trigger, status=SyncStatus.QUEUED)
            session.add(run)
        run.task_id = task_id
        session.flush()
        return run.id, connection.tenant_id, connection.sync_cursor


class SyncRunReport(Report):
    """A sync's failures go on its SyncRun row (and the audit log); the pages committed stay."""

    def __init__(self, run_id: int):
        self.run_id = run_id

    def retrying(self, failure: Failure, delay: float, parked: bool) -> bool:
        _set_run(self.run_id, status=SyncStatus.QUEUED, error=f"{failure.reason} (retrying in {delay:.0f}s)")
        return True

    def failed(self, failure: Failure) -> None:
        # The cursor did not move, so nothing is skipped by the next run.
        _set_run(self.run_id, status=SyncStatus.FAILED, error=failure.reason, finished_at=utcnow())
        _audit_run(self.run_id, "sync.failed", {"error": failure.reason, **failure.details})
        record_sync_run(self.run_id, "failed")


def _set_run(run_id: int, **values) -> None:
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        for name, value in values.items():
            setattr(run, name, value)


def _audit_run(run_id: int, action: str, details: dict) -> None:
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        record_audit(session, actor="worker", action=action, tenant_id=run.connection.tenant_id,
                     target=("sync_run", run.id), details={"connection_id": run.connection_id, **details})


def _apply_page(run_id: int, tenant_id: int, kind: str, folders: list[dict], readings: list[FolderReading],
                counters: Counters, fetched: int, deduped: int, total: int | None) -> int:
    """Apply one page and, in the same transaction, record the run's counters.

    A page that wrote nothing (an unchanged re-sync) records them at most every
    PROGRESS_EVERY seconds: it then costs one read, not a write and its commit.
    """
    page = replace(counters)
    with session_scope() as session:
        # Wedof moves lastUpdate on every change: a folder we hold at its lastUpdate costs nothing.
        results = apply_folders(session, tenant_id, folders, kind=kind, trust_last_update=True,
                                readings=readings) if folders else []
        for reading, result in zip(readings, results, strict=True):
            if isinstance(result, FolderRejected):
                page.failed += 1
                log.warning("sync run %s: %s", run_id, result)
                continue
            if result.outcome in APPLIED_OUTCOMES:
                page.applied += 1
            else:
                page.unchanged += 1
            last_update = reading.version[1] if reading.version is not None else None
            if last_update is not None and (page.max_last_update is None or last_update > page.max_last_update):
                page.max_last_update = last_update
        page.pages += 1
        page.fetched += fetched
        page.unchanged += deduped
        page.total = total
        written = page.applied - counters.applied + page.failed - counters.failed
        if written or time.monotonic() - counters.recorded_at >= PROGRESS_EVERY:
            page.record(session.get(SyncRun, run_id))
    # Only once committed do the in-memory counters move (a failed commit leaves them as they were).
    vars(counters).update(vars(page))
    return written


def _record_counters(run_id: int, counters: Counters) -> None:
    with session_scope() as session:
        counters.record(session.get(SyncRun, run_id))


def run_sync(task, args: SyncArgs, run_id: int, tenant_id: int, cursor: datetime | None, lock: SyncLock) -> dict:
    started = utcnow()
    incremental = not args.full and cursor is not None
    overlap = timedelta(seconds=get_settings().sync_overlap_seconds)
    # ``until`` far enough ahead that a folder changing during the run stays in the window: it then
    # moves to the listing's front instead of leaving it, which would shift what is left to read.
    window = {"since": cursor - overlap, "until": started + WINDOW_AHEAD} if incremental else {}
    _set_run(run_id, status=SyncStatus.RUNNING, started_at=started, error=None, finished_at=None,
             pages=0, fetched=0, applied=0, unchanged=0, failed=0,
             cursor_from=window.get("since"))
    with session_scope() as session:
        connection = session.get(WedofConnection, args.connection_id)
        try:
            client = client_for(connection)
        except ConnectionNotUsable as exc:
            raise PermanentError(str(exc)) from None
    counters = Counters()
    dedupe = RunDedupe()
    try:
        with client:
            _read_listing(task, args, run_id, tenant_id, client, window, dedupe, counters, lock)
    except Exception:
        try:
            _record_counters(run_id, counters)  # what was done before the failure, for the admin to see
        except Exception as bookkeeping:  # the database may be what failed; the run's own error matters
            log.warning("sync run %s: counters not recorded (%s)", run_id, type(bookkeeping).__name__)
        raise
    finished = utcnow()
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        counters.record(run)
        run.status, run.finished_at = SyncStatus.SUCCEEDED, finished
        connection = session.get(WedofConnection, args.connection_id)
        connection.last_sync_at = finished
        if args.kind == SyncKind.ALL and counters.max_last_update is not None:
            if connection.sync_cursor is None or counters.max_last_update > connection.sync_cursor:
                connection.sync_cursor = counters.max_last_update
        run.cursor_to = connection.sync_cursor
        record_audit(session, actor="worker", action="sync.succeeded", tenant_id=tenant_id,
                     target=("sync_run", run_id),
                     details={"connection_id": args.connection_id, "kind": args.kind, "full": args.full,
                              "trigger": args.trigger, **counters.meta(run_id)})
    log.info("sync run %s done: %s", run_id, counters.meta(run_id))
    record_sync_run(run_id, "succeeded")  # after the commit: a run counted is a run recorded
    if counters.applied:
        _request_tenant_evaluation(tenant_id)
    return {"status": "succeeded", **counters.meta(run_id)}


def _request_tenant_evaluation(tenant_id: int) -> None:
    """Folders moved: the tenant's lifecycle rules run again, and its billing (due folders, payments read).

    Best effort: the beat runs both too.
    """
    with session_scope() as session:
        lifecycle_on = lifecycle_enabled(settings_of(session, tenant_id))
        billing_on = billing_mode(billing_settings_of(session, tenant_id)) != BillingMode.OFF
    if lifecycle_on:
        send_soon(EVALUATE_LIFECYCLES, kwargs={"tenant_id": tenant_id})
    if billing_on:
        send_soon(BILL_FOLDERS, kwargs={"tenant_id": tenant_id})


def _read_listing(task, args: SyncArgs, run_id: int, tenant_id: int, client, window: dict,
                  dedupe: RunDedupe, counters: Counters, lock: SyncLock) -> None:
    """Page through the window, newest first, applying each page in its own transaction."""
    pages = client.iter_pages(sort="lastUpdate", order="desc", limit=get_settings().sync_page_size, **window)
    # Folders are read in full ahead, while the database works, as long as pages need them;
    # when most of a page was already held (a re-sync), only their versions are read ahead.
    read_in_full = threading.Event()
    read_in_full.set()

    def read_ahead(item: tuple) -> tuple:
        number, folders, total = item
        # The page's API drift (keys the mapping does not know or misses) is read here too: no database.
        return (number, folders, total, read_folders(folders, args.kind, in_full=read_in_full.is_set()),
                observe_drift(folders))

    with Prefetch(pages, ahead=PREFETCH_PAGES, prepare=read_ahead) as prefetched:
        for _page, folders, total, readings, drift in prefetched:
            fresh, deduped = dedupe.filter(folders)
            written = retry_on_conflict(_apply_page, f"sync run {run_id} page {_page}", run_id, tenant_id,
                                        args.kind, [folders[i] for i in fresh], [readings[i] for i in fresh],
                                        counters, len(folders), deduped, total)
            api_drift.note(args.connection_id, drift)  # one write at most; never raises into the sync
            if written * 2 > len(fresh):
                read_in_full.set()
            else:
                read_in_full.clear()
            lock.extend()
            if task.request.id and not task.request.called_directly:
                task.update_state(state="PROGRESS", meta=counters.meta(run_id))


@app.task(base=PolicyTask, bind=True, name=SYNC_CONNECTION, ignore_result=False, max_retries=MAX_SYNC_RETRIES)
def sync_connection(self, connection_id, kind="all", full=False, run_id=None, trigger="schedule"):
    args = check_args(connection_id, kind, full, run_id, trigger)
    task_id = self.request.id or f"direct-{uuid.uuid4()}"
    run_id, tenant_id, cursor = _open_run(args, task_id)
    lock = SyncLock(args.connection_id, task_id)
    with self.reporting(SyncRunReport(run_id)):
        if not lock.acquire():
            reason = "another sync of this connection is running"
            _set_run(run_id, status=SyncStatus.SKIPPED, error=reason, finished_at=utcnow())
            _audit_run(run_id, "sync.skipped", {"reason": reason})
            return {"status": "skipped", "run_id": run_id, "reason": reason}
        try:
            return run_sync(self, args, run_id, tenant_id, cursor, lock)
        finally:
            lock.release()
