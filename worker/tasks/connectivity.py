"""``bdc.check_connectivity``: every BDC_CONNECTIVITY_INTERVAL, ``GET users/me`` for each enabled
connection with a key, recorded as a :class:`~bdc.models.ConnectivityCheck` row.

A 401 means the key was revoked or changed: a KEY_REVOKED :class:`~bdc.models.Notice` is created for
the page when the key *becomes* refused (not on every check while it stays so), and the notices run
turns it into a problem and a message. Checks older than :data:`KEEP_DAYS` are deleted by the same
task, so the table stays bounded. A check that found a change queues ``bdc.send_notices`` at once,
so a revoked key is mailed within seconds rather than at the next notices tick.

One attempt per check, no retry (the next tick is the retry): a check measures, it does not insist.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from redis.exceptions import LockError
from sqlalchemy import delete, select

from bdc.db import session_scope
from bdc.models import ConnectivityCheck, Notice, NoticeKind, WedofConnection
from bdc.types import utcnow
from wedof.errors import WedofError
from worker.celery_app import app, send_soon
from worker.connections import redis_client, tenant_client
from worker.policy import BadTaskArgument, PolicyTask, Refused, as_id, log, short
from worker.task_names import CHECK_CONNECTIVITY, SEND_NOTICES

KEEP_DAYS = 30
ERROR_LENGTH = 500
LOCK_TIMEOUT = 120  # longer than one users/me call with its timeouts (3 s connect + 20 s read)
PARALLEL_CHECKS = 4


@dataclass(frozen=True)
class CheckResult:
    connection_id: int
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str | None
    changed: bool  # ok/failing or the status code differs from the previous check


def _targets(connection_id: int | None) -> list[tuple[int, int]]:
    with session_scope() as session:
        stmt = select(WedofConnection.id, WedofConnection.tenant_id).where(
            WedofConnection.enabled.is_(True), WedofConnection.api_key.is_not(None))
        if connection_id is not None:
            if session.get(WedofConnection, connection_id) is None:
                raise BadTaskArgument(f"unknown connection id {connection_id}")
            stmt = stmt.where(WedofConnection.id == connection_id)
        return [(row[0], row[1]) for row in session.execute(stmt.order_by(WedofConnection.id))]


def check_one(connection_id: int, tenant_id: int) -> CheckResult | None:
    """Call ``users/me`` once and record what it found; None when the connection is no longer usable."""
    try:
        client = tenant_client(tenant_id)
    except Refused:
        return None  # disabled or its key removed since the list was read
    started = time.monotonic()
    try:
        with client:
            client.users_me()
        ok, status, error = True, 200, None
    except WedofError as exc:
        ok, status, error = False, exc.status, short(f"{type(exc).__name__}: {exc}", ERROR_LENGTH)
    latency = round((time.monotonic() - started) * 1000, 1)
    with session_scope() as session:
        previous = session.scalars(select(ConnectivityCheck).where(ConnectivityCheck.connection_id == connection_id)
                                   .order_by(ConnectivityCheck.checked_at.desc(), ConnectivityCheck.id.desc())
                                   .limit(1)).first()
        session.add(ConnectivityCheck(connection_id=connection_id, checked_at=utcnow(), ok=ok, status_code=status,
                                      latency_ms=latency, error=error))
        if status == 401 and (previous is None or previous.status_code != 401):
            session.add(Notice(tenant_id=tenant_id, kind=NoticeKind.KEY_REVOKED, target_type="wedof_connection",
                               target_id=str(connection_id),
                               message="Wedof refuse la clé API (HTTP 401) : elle a été révoquée ou changée. "
                                       "Enregistrez une nouvelle clé dans la connexion."))
        changed = previous is None or (previous.ok, previous.status_code) != (ok, status)
    return CheckResult(connection_id, ok, status, latency, error, changed)


def prune(keep_days: int = KEEP_DAYS) -> int:
    with session_scope() as session:
        return session.execute(delete(ConnectivityCheck).where(
            ConnectivityCheck.checked_at < utcnow() - timedelta(days=keep_days))).rowcount


def _locked_check(connection_id: int, tenant_id: int) -> CheckResult | None:
    # Two checks of one connection at once (the beat and an admin) would both see "not revoked
    # before" and create the notice twice: one at a time per connection.
    lock = redis_client().lock(f"bdc:lock:connectivity:{connection_id}", timeout=LOCK_TIMEOUT,
                               blocking_timeout=LOCK_TIMEOUT)
    if not lock.acquire():
        log.warning("check_connectivity: connection %s is being checked by another task", connection_id)
        return None
    try:
        return check_one(connection_id, tenant_id)
    finally:
        try:
            lock.release()
        except LockError:
            pass


@app.task(base=PolicyTask, bind=True, name=CHECK_CONNECTIVITY, max_retries=0)
def check_connectivity(self, connection_id=None):
    """Check every enabled connection with a key (or only ``connection_id``, the admin's "check now").

    Connections are checked a few at a time: each waits on its own Wedof organism (and its own
    throttle), so one slow organism does not delay every other tenant's check.
    """
    only = None if connection_id is None else as_id(connection_id, "connection_id")
    targets = _targets(only)
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_CHECKS, len(targets)))) as pool:
        results = [r for r in pool.map(lambda target: _locked_check(*target), targets) if r is not None]
    for result in results:
        if not result.ok:
            log.warning("check_connectivity: connection %s failed: %s", result.connection_id, result.error)
    pruned = prune()
    if any(r.changed for r in results):
        send_soon(SEND_NOTICES)
    return {"status": "ok", "checked": len(results), "ok": sum(r.ok for r in results),
            "failed": [{"connection_id": r.connection_id, "status_code": r.status_code} for r in results if not r.ok],
            "pruned": pruned}
