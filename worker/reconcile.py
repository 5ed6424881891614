"""Reconciliation: Wedof's listing counts for a connection against the data layer, recorded as a report.

The one owner of ``reconciliation_reports`` rows and of the RECONCILIATION_DRIFT notices.

- Wedof's side (:mod:`wedof.counts`): folders by state and by billing state, the total and the newest
  ``lastUpdate``, read from ``limit=1`` listings only. Read FIRST, so a webhook applied meanwhile makes
  ours newer, never older, than what Wedof said.
- Our side: the tenant's enrollments that came from Wedof (an ``external_id``), grouped by the state
  and billing state stored from their folder, and their newest ``wedof_last_update``. The sync applies
  every registration folder Wedof lists (bilans and other trainings alike; it filters none), so every
  folder is compared. States neither side knows are counted under ``other``.
- ``drift`` = the sum of the absolute differences over both maps. A drift, or Wedof's newest
  ``lastUpdate`` ahead of ours, queues an incremental sync (its SyncRun id is kept on the report).
- A drift that is still there after ``BDC_DRIFT_NOTICE_AFTER`` consecutive reports raises ONE notice;
  it clears with the first report that agrees, and a later drift counts from one again. Failed reports
  (Wedof unreadable) neither break nor extend the run: nothing was compared.
- Without ``X-Total-Count`` (or with an answer that is not a count) the report is ``failed`` with the
  reason: a guessed count would be a drift that is not there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bdc.db import session_scope
from bdc.models import (
    Enrollment,
    EventStatus,
    Notice,
    NoticeKind,
    ReconciliationReport,
    ReportStatus,
    SyncKind,
    SyncRun,
    SyncStatus,
    SyncTrigger,
    WebhookEvent,
    WedofConnection,
)
from bdc.settings import get_settings
from bdc.types import utcnow
from wedof.counts import CountsUnavailable, ListingCounts, read_counts
from wedof.errors import WedofError
from wedof.mapping.states import BILLING_STATES, FOLDER_STATES
from worker.celery_app import send_soon
from worker.connections import ConnectionNotUsable, client_for
from worker.policy import Failure, short
from worker.task_names import SYNC_CONNECTION

log = logging.getLogger("worker")

OTHER = "other"  # a state the other side, or neither, knows
UNFINISHED = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING)
# Calls of one report: one attempt more than nothing, short; the next report is the real retry.
CLIENT_OPTIONS = {"max_attempts": 2, "max_retry_seconds": 10, "retry_after_cap": 5}


@dataclass(frozen=True)
class LocalCounts:
    total: int
    states: dict[str | None, int]  # the stored wedof_state as it is (None: none stored)
    billing: dict[str | None, int]
    newest_update: datetime | None


def local_counts(session: Session, tenant_id: int) -> LocalCounts:
    """The tenant's enrollments from Wedof, by stored state and billing state, and their newest lastUpdate."""
    mine = (Enrollment.tenant_id == tenant_id, Enrollment.external_id.is_not(None))
    states = dict(session.execute(select(Enrollment.wedof_state, func.count()).where(*mine)
                                  .group_by(Enrollment.wedof_state)).all())
    billing = dict(session.execute(select(Enrollment.wedof_billing_state, func.count()).where(*mine)
                                   .group_by(Enrollment.wedof_billing_state)).all())
    newest = session.scalar(select(func.max(Enrollment.wedof_last_update)).where(*mine))
    return LocalCounts(total=sum(states.values()), states=states, billing=billing, newest_update=newest)


@dataclass(frozen=True)
class Comparison:
    status: ReportStatus
    wedof_states: dict[str, int]
    local_states: dict[str, int]
    wedof_billing: dict[str, int]
    local_billing: dict[str, int]
    drift: int
    behind: bool  # Wedof's newest lastUpdate is newer than ours
    details: dict


def _side_by_side(known: tuple[str, ...], wedof: dict[str, int], wedof_total: int,
                  local: dict[str | None, int]) -> tuple[dict[str, int], dict[str, int]]:
    theirs = {name: wedof.get(name, 0) for name in known}
    ours = {name: local.get(name, 0) for name in known}
    # Folders in a state we do not list: Wedof's are what its total leaves over (never below zero: the
    # total and the per-state counts are separate calls); ours are the stored states outside the list.
    their_other = max(0, wedof_total - sum(theirs.values()))
    our_other = sum(n for name, n in local.items() if name not in theirs)
    if their_other or our_other:
        theirs[OTHER], ours[OTHER] = their_other, our_other
    return theirs, ours


def compare(wedof: ListingCounts, local: LocalCounts) -> Comparison:
    wedof_states, local_states = _side_by_side(FOLDER_STATES, wedof.states, wedof.total, local.states)
    wedof_billing, local_billing = _side_by_side(BILLING_STATES, wedof.billing, wedof.total, local.billing)
    state_drift = sum(abs(wedof_states[k] - local_states[k]) for k in wedof_states)
    billing_drift = sum(abs(wedof_billing[k] - local_billing[k]) for k in wedof_billing)
    behind = wedof.newest_update is not None and (
        local.newest_update is None or wedof.newest_update > local.newest_update)
    drift = state_drift + billing_drift
    details = {
        "total": {"wedof": wedof.total, "local": local.total},
        "state_drift": state_drift,
        "billing_drift": billing_drift,
        "behind": behind,
        "differences": {
            "states": {k: wedof_states[k] - local_states[k] for k in wedof_states if wedof_states[k] != local_states[k]},
            "billing": {k: wedof_billing[k] - local_billing[k] for k in wedof_billing
                        if wedof_billing[k] != local_billing[k]},
        },
        "requests": wedof.requests,
    }
    status = ReportStatus.DRIFT if drift or behind else ReportStatus.OK
    return Comparison(status, wedof_states, local_states, wedof_billing, local_billing, drift, behind, details)


@dataclass(frozen=True)
class Outcome:
    connection_id: int
    report_id: int
    status: ReportStatus
    drift: int
    sync_run_id: int | None
    notice_id: int | None

    def as_json(self) -> dict:
        return {"connection_id": self.connection_id, "report_id": self.report_id, "status": self.status.value,
                "drift": self.drift, "sync_run_id": self.sync_run_id, "notice_id": self.notice_id}


def reconcile_connection(connection_id: int) -> Outcome:
    """Count, compare and record one connection's report; a drift queues a sync. Wedof's failures are a
    failed report; a database failure is raised (the task's policy logs it)."""
    with session_scope() as session:
        connection = session.get(WedofConnection, connection_id)
        if connection is None:
            raise LookupError(f"unknown connection id {connection_id}")
        tenant_id = connection.tenant_id
        try:
            if not connection.enabled:
                raise ConnectionNotUsable(f"connection {connection_id} is disabled")
            client = client_for(connection, **CLIENT_OPTIONS)
        except ConnectionNotUsable as exc:
            return _failed(session, connection_id, str(exc))
    try:
        with client:
            wedof = read_counts(client)
    except (CountsUnavailable, WedofError) as exc:
        reason = str(exc) if isinstance(exc, CountsUnavailable) else Failure.of(exc).reason
        with session_scope() as session:
            return _failed(session, connection_id, reason)
    with session_scope() as session:
        local = local_counts(session, tenant_id)
        pending = session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.connection_id == connection_id, WebhookEvent.status.in_(UNFINISHED)))
        comparison = compare(wedof, local)
        details = {**comparison.details, "inbox_unfinished": pending}
        run_id, queue = None, False
        if comparison.status == ReportStatus.DRIFT:
            run_id, queue = _sync_for(session, connection_id)
            details["sync"] = "queued" if queue else "already queued"
        streak = _streak_before(session, connection_id) + 1 if comparison.status == ReportStatus.DRIFT else 0
        details["streak"] = streak
        report = ReconciliationReport(
            connection_id=connection_id, status=comparison.status, wedof_states=comparison.wedof_states,
            local_states=comparison.local_states, wedof_billing=comparison.wedof_billing,
            local_billing=comparison.local_billing, wedof_newest_update=wedof.newest_update,
            local_newest_update=local.newest_update, drift=comparison.drift, details=details, sync_run_id=run_id)
        session.add(report)
        session.flush()
        notice_id = None
        if streak == get_settings().drift_notice_after:
            notice_id = _notify(session, tenant_id, connection_id, report, comparison).id
            report.details = {**details, "notice_id": notice_id}
        outcome = Outcome(connection_id, report.id, comparison.status, comparison.drift, run_id, notice_id)
    if queue and not send_soon(SYNC_CONNECTION, kwargs={
            "connection_id": connection_id, "kind": SyncKind.ALL.value, "full": False, "run_id": run_id,
            "trigger": SyncTrigger.SCHEDULE.value}):
        _sync_not_queued(outcome.report_id, run_id)
    log.info("reconciliation of connection %s: %s, drift %s", connection_id, outcome.status.value, outcome.drift)
    return outcome


def record_failure(connection_id: int, reason: str) -> Outcome:
    """A failed report for a failure outside Wedof's answers (a bug): the page shows it too."""
    with session_scope() as session:
        return _failed(session, connection_id, reason)


def _failed(session: Session, connection_id: int, reason: str) -> Outcome:
    report = ReconciliationReport(connection_id=connection_id, status=ReportStatus.FAILED, error=short(reason, 2000),
                                  details={})
    session.add(report)
    session.flush()
    log.warning("reconciliation of connection %s failed: %s", connection_id, reason)
    return Outcome(connection_id, report.id, ReportStatus.FAILED, 0, None, None)


def _streak_before(session: Session, connection_id: int) -> int:
    """How many reports in a row (failed ones skipped) showed a drift, up to the newest."""
    previous = session.scalars(select(ReconciliationReport).where(
        ReconciliationReport.connection_id == connection_id, ReconciliationReport.status != ReportStatus.FAILED)
        .order_by(ReconciliationReport.id.desc()).limit(1)).first()
    if previous is None or previous.status != ReportStatus.DRIFT:
        return 0
    streak = (previous.details or {}).get("streak")
    return streak if isinstance(streak, int) and streak > 0 else 1


def _sync_for(session: Session, connection_id: int) -> tuple[int, bool]:
    """(the SyncRun that will bring the drift back, whether it must be queued now).

    A sync already queued or running recently does that job: no second one piles up behind it.
    """
    recent = utcnow() - timedelta(seconds=max(get_settings().reconcile_interval, 600))
    live = session.scalars(select(SyncRun).where(
        SyncRun.connection_id == connection_id, SyncRun.status.in_((SyncStatus.QUEUED, SyncStatus.RUNNING)),
        SyncRun.created_at >= recent).order_by(SyncRun.id.desc()).limit(1)).first()
    if live is not None:
        return live.id, False
    run = SyncRun(connection_id=connection_id, kind=SyncKind.ALL, trigger=SyncTrigger.SCHEDULE, full=False,
                  status=SyncStatus.QUEUED)
    session.add(run)
    session.flush()
    return run.id, True


def _sync_not_queued(report_id: int, run_id: int) -> None:
    # As the admin API does for a manual sync the broker refused: the run says so, the next report retries.
    with session_scope() as session:
        run = session.get(SyncRun, run_id)
        if run is not None and run.status == SyncStatus.QUEUED and run.task_id is None:
            run.status, run.finished_at = SyncStatus.FAILED, utcnow()
            run.error = "broker unavailable: the sync asked by the reconciliation could not be queued"
        report = session.get(ReconciliationReport, report_id)
        report.details = {**(report.details or {}), "sync": "not queued (broker unavailable)"}


def _notify(session: Session, tenant_id: int, connection_id: int, report: ReconciliationReport,
            comparison: Comparison) -> Notice:
    differences = comparison.details["differences"]
    shown = [f"{name} {diff:+d}" for part in ("states", "billing") for name, diff in differences[part].items()]
    text = (f"Wedof's counts and ours still differ after {report.details['streak']} reconciliation reports "
            f"(connection {connection_id}): {comparison.drift} folder(s) counted differently")
    if shown:
        text += f" (Wedof minus ours: {', '.join(shown[:20])})"
    if comparison.behind:
        text += f"; Wedof's newest change ({report.wedof_newest_update:%Y-%m-%d %H:%M:%S} UTC) is not applied here"
    text += ". A sync was queued each time; a folder the mapping refuses, or one missing at Wedof, stays counted."
    notice = Notice(tenant_id=tenant_id, kind=NoticeKind.RECONCILIATION_DRIFT, message=text[:4000],
                    target_type="reconciliation_report", target_id=str(report.id))
    session.add(notice)
    session.flush()
    return notice


def connections_to_reconcile(session: Session) -> list[int]:
    """Every enabled connection with an API key, the ones the periodic report covers."""
    rows = session.execute(select(WedofConnection.id, WedofConnection.api_key)
                           .where(WedofConnection.enabled.is_(True)).order_by(WedofConnection.id)).all()
    return [connection_id for connection_id, api_key in rows if api_key]
