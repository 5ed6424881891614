"""What is wrong now, per tenant, from a few grouped queries (one per kind of fact, never one per row).

Each :class:`Condition` names a problem (kind + key: the connection id, or "" for tenant-wide ones)
and carries the facts its messages are written from: counts, dates, reason *classes*. Never personal
data: a failure reason is cut to its class ("Wedof refused: HTTP 404", "folder refused"), so a name or
an email inside the text of an error never reaches a mailbox or a chat room.

Sources: the inbox (failed events, unfinished ones older than 5 minutes), sync runs and the
connection's last success, connectivity checks (401: the key was revoked; no answer: Wedof
unreachable), and the unacknowledged :class:`~bdc.models.Notice` rows the lifecycle, billing and
reconciliation code create (late declarations, refused or failed actions, failed invoices, Wedof's API
changed, reconciliation drift): such a problem lasts until staff acknowledge those notices on the page.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from bdc.models import (
    ApiDrift,
    ConnectivityCheck,
    EventStatus,
    Notice,
    NoticeKind,
    ProblemKind,
    ReconciliationReport,
    SyncRun,
    SyncStatus,
    WebhookEvent,
    WedofConnection,
)
from bdc.settings import Settings
from worker.notices import messages

STUCK_AFTER = timedelta(minutes=5)  # an unfinished event older than this: the alert rule's threshold too
STALE_INTERVALS = 2  # no successful sync for this many sync intervals
UNREACHABLE_AFTER = 2  # this many newest checks without an answer (one blip is not worth a mail)
REASON_SAMPLES = 5
KEYS_SHOWN = 10
UNFINISHED = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING)
_HTTP_401 = re.compile(r"\bHTTP 401\b")

# Notices the other parts create -> the problem they are grouped into (KEY_REVOKED notices are the
# page's record of a check; the problem itself follows the checks and syncs, see below).
NOTICE_PROBLEMS = {
    NoticeKind.LATE_ENTRY: ProblemKind.LATE_DECLARATION,
    NoticeKind.ACTION_REFUSED: ProblemKind.ACTION_FAILED,
    NoticeKind.ACTION_FAILED: ProblemKind.ACTION_FAILED,
    NoticeKind.BILLING_FAILED: ProblemKind.BILLING_FAILED,
    NoticeKind.API_CHANGED: ProblemKind.API_CHANGED,
    NoticeKind.RECONCILIATION_DRIFT: ProblemKind.RECONCILIATION_DRIFT,
}


@dataclass(frozen=True)
class Condition:
    kind: ProblemKind
    key: str
    details: dict = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return messages.summary(self.kind, self.details)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- failure reasons, reduced to their class ---------------------------------------------------------

_GAVE_UP = re.compile(r"^gave up after \d+ attempts: ")
_CLASS = re.compile(r"(HTTP \d{3}|[A-Z][A-Za-z0-9]*(?:Error|Exception|Timeout|Refused))\b")
_EMAIL = re.compile(r"[^\s@<>()'\"]+@[^\s@<>()'\"]+")
_LONG_NUMBER = re.compile(r"\d{6,}")
# Our reasons' heads are lower-case words ("folder refused", "unexpected error") and these names; any
# other capitalised word may be a person's name and is dropped.
_KNOWN_NAMES = {"Wedof", "Redis", "HTTP", "BDC", "SMTP", "JSON"}


def _scrub(label: str) -> str:
    words = []
    for word in _LONG_NUMBER.sub("…", _EMAIL.sub("[email]", label)).split():
        core = word.strip("()[],;.:'\"")
        if core[:1].isupper() and core not in _KNOWN_NAMES and not _CLASS.fullmatch(core):
            word = "…"
        if not (word == "…" and words and words[-1] == "…"):
            words.append(word)
    return " ".join(words)


def reason_class(text: str | None) -> str:
    """The class of a failure reason, without its free text: "Wedof refused: HTTP 404", "folder refused"."""
    if not text or not text.strip():
        return "raison inconnue"
    text = _GAVE_UP.sub("", text.strip())
    head, _, rest = text.partition(": ")
    match = _CLASS.match(rest)
    label = _scrub(f"{head}: {match.group(1)}" if match else head)
    return label[:80].strip() or "raison inconnue"


# -- the queries ---------------------------------------------------------------------------------------

@dataclass
class _Connection:
    id: int
    tenant_id: int
    usable: bool  # enabled and holding an API key: it is synced and checked
    created_at: datetime
    last_sync_at: datetime | None


def _connections(session: Session) -> dict[int, _Connection]:
    rows = session.execute(select(WedofConnection.id, WedofConnection.tenant_id, WedofConnection.enabled,
                                  WedofConnection.api_key.is_not(None), WedofConnection.created_at,
                                  WedofConnection.last_sync_at)).all()
    return {r[0]: _Connection(r[0], r[1], bool(r[2] and r[3]), r[4], r[5]) for r in rows}


def _failed_events(session: Session) -> list[Condition]:
    rows = session.execute(
        select(WebhookEvent.connection_id, func.count(), func.min(WebhookEvent.received_at),
               func.max(WebhookEvent.updated_at))
        .where(WebhookEvent.status == EventStatus.FAILED).group_by(WebhookEvent.connection_id)).all()
    found = []
    for connection_id, count, oldest, newest in rows:
        reasons: Counter = Counter()
        for reason, n in session.execute(
                select(WebhookEvent.status_reason, func.count())
                .where(WebhookEvent.connection_id == connection_id, WebhookEvent.status == EventStatus.FAILED)
                .group_by(WebhookEvent.status_reason).order_by(func.count().desc()).limit(50)):
            reasons[reason_class(reason)] += n
        found.append(Condition(ProblemKind.EVENTS_FAILED, str(connection_id), {
            "connection_id": connection_id, "count": count, "oldest_received_at": _iso(oldest),
            "newest_failure_at": _iso(newest), "reasons": [[label, n] for label, n in reasons.most_common(REASON_SAMPLES)],
        }))
    return found


def _stuck_events(session: Session, now: datetime) -> list[Condition]:
    parked = case((and_(WebhookEvent.status == EventStatus.RECEIVED, WebhookEvent.next_attempt_at > now), 1), else_=0)
    rows = session.execute(
        select(WebhookEvent.connection_id, func.count(), func.min(WebhookEvent.received_at), func.sum(parked))
        .where(WebhookEvent.status.in_(UNFINISHED), WebhookEvent.received_at <= now - STUCK_AFTER)
        .group_by(WebhookEvent.connection_id)).all()
    return [Condition(ProblemKind.INBOX_STUCK, str(connection_id), {
        "connection_id": connection_id, "count": count, "parked": int(waiting or 0), "oldest_received_at": _iso(oldest),
        "threshold_seconds": int(STUCK_AFTER.total_seconds())}) for connection_id, count, oldest, waiting in rows]


def _newest_per_connection(session: Session, model, order_column, *where, rows: int = 1) -> dict[int, list]:
    """The newest ``rows`` rows of ``model`` per connection (one windowed query)."""
    rank = func.row_number().over(partition_by=model.connection_id,
                                  order_by=(order_column.desc(), model.id.desc())).label("rank")
    ranked = select(model.id, rank).where(*where).subquery()
    result = session.scalars(select(model).join(ranked, ranked.c.id == model.id).where(ranked.c.rank <= rows)
                             .order_by(model.connection_id, order_column.desc(), model.id.desc())).all()
    newest: dict[int, list] = defaultdict(list)
    for row in result:
        newest[row.connection_id].append(row)
    return newest


def _connection_health(session: Session, now: datetime, settings: Settings,
                       connections: dict[int, _Connection]) -> list[Condition]:
    """Sync stale, sync failed, key revoked, Wedof unreachable: for enabled connections with a key."""
    usable = {cid for cid, c in connections.items() if c.usable}
    if not usable:
        return []
    last_runs = _newest_per_connection(session, SyncRun, SyncRun.finished_at,
                                       SyncRun.status.in_((SyncStatus.SUCCEEDED, SyncStatus.FAILED)),
                                       SyncRun.finished_at.is_not(None), SyncRun.connection_id.in_(usable))
    checks = _newest_per_connection(session, ConnectivityCheck, ConnectivityCheck.checked_at,
                                    ConnectivityCheck.connection_id.in_(usable), rows=UNREACHABLE_AFTER)
    found = []
    interval = settings.wedof_sync_interval
    for cid in sorted(usable):
        connection = connections[cid]
        run = (last_runs.get(cid) or [None])[0]
        newest_checks = checks.get(cid) or []
        check = newest_checks[0] if newest_checks else None
        run_401 = run is not None and run.status == SyncStatus.FAILED and bool(_HTTP_401.search(run.error or ""))
        # The newer of the last check and the last sync says whether the key works now: a fixed key
        # shows in the next check without waiting for the next sync.
        if check is not None and (run is None or check.checked_at >= run.finished_at):
            revoked, since, source = check.status_code == 401, check.checked_at, "check"
        else:
            revoked, since, source = run_401, run.finished_at if run else None, "sync"
        if revoked:
            found.append(Condition(ProblemKind.KEY_REVOKED, str(cid),
                                   {"connection_id": cid, "seen_at": _iso(since), "source": source}))
        if run is not None and run.status == SyncStatus.FAILED and not run_401:
            found.append(Condition(ProblemKind.SYNC_FAILED, str(cid), {
                "connection_id": cid, "run_id": run.id, "finished_at": _iso(run.finished_at),
                "reason": reason_class(run.error)}))
        if settings.wedof_sync_enabled:
            reference = connection.last_sync_at or connection.created_at
            if reference <= now - timedelta(seconds=STALE_INTERVALS * interval):
                found.append(Condition(ProblemKind.SYNC_STALE, str(cid), {
                    "connection_id": cid, "last_success_at": _iso(connection.last_sync_at),
                    "since": _iso(reference), "interval_seconds": interval}))
        no_answer = [c for c in newest_checks if not c.ok and (c.status_code is None or c.status_code >= 500)]
        if len(newest_checks) == UNREACHABLE_AFTER and len(no_answer) == UNREACHABLE_AFTER:
            found.append(Condition(ProblemKind.WEDOF_UNREACHABLE, str(cid), {
                "connection_id": cid, "checks": len(no_answer), "last_checked_at": _iso(check.checked_at),
                "last_error": reason_class(check.error) if check.status_code is None
                else f"HTTP {check.status_code}"}))
    return found


def _notice_problems(session: Session) -> dict[int, list[Condition]]:
    rows = session.execute(
        select(Notice.tenant_id, Notice.kind, func.count(), func.min(Notice.created_at), func.max(Notice.created_at))
        .where(Notice.acknowledged_at.is_(None), Notice.kind.in_(list(NOTICE_PROBLEMS)))
        .group_by(Notice.tenant_id, Notice.kind)).all()
    counts: dict[tuple[int, ProblemKind], dict[str, int]] = defaultdict(dict)
    spans: dict[tuple[int, ProblemKind], list[datetime]] = defaultdict(list)
    for tenant_id, kind, count, oldest, newest in rows:
        kind = NoticeKind(kind)
        problem = (tenant_id, NOTICE_PROBLEMS[kind])
        counts[problem][kind.value] = count
        spans[problem] += [oldest, newest]
    found: dict[int, list[Condition]] = defaultdict(list)
    for tenant_id, problem in sorted(counts, key=lambda item: (item[0], item[1].value)):
        by_kind = counts[(tenant_id, problem)]
        facts = {"count": sum(by_kind.values()), "by_kind": by_kind,
                 "oldest_at": _iso(min(spans[(tenant_id, problem)])),
                 "newest_at": _iso(max(spans[(tenant_id, problem)]))}
        if problem == ProblemKind.API_CHANGED:
            facts.update(_api_drift(session, tenant_id))
        elif problem == ProblemKind.RECONCILIATION_DRIFT:
            facts.update(_reconciliation(session, tenant_id))
        found[tenant_id].append(Condition(problem, "", facts))
    return found


def _api_drift(session: Session, tenant_id: int) -> dict:
    drift = session.scalars(select(ApiDrift).join(WedofConnection, WedofConnection.id == ApiDrift.connection_id)
                            .where(WedofConnection.tenant_id == tenant_id)
                            .order_by(ApiDrift.observed_at.desc(), ApiDrift.id.desc()).limit(1)).first()
    if drift is None:
        return {}
    # Key names ("attendee.newField") are the API's shape, never a value: safe to show.
    clean = [str(k)[:100] for k in drift.unknown_keys or []], [str(k)[:100] for k in drift.missing_keys or []]
    return {"unknown_keys": clean[0][:KEYS_SHOWN], "missing_keys": clean[1][:KEYS_SHOWN],
            "unknown_total": len(clean[0]), "missing_total": len(clean[1])}


def _reconciliation(session: Session, tenant_id: int) -> dict:
    report = session.scalars(
        select(ReconciliationReport).join(WedofConnection, WedofConnection.id == ReconciliationReport.connection_id)
        .where(WedofConnection.tenant_id == tenant_id)
        .order_by(ReconciliationReport.created_at.desc(), ReconciliationReport.id.desc()).limit(1)).first()
    return {} if report is None else {"drift": report.drift, "report_at": _iso(report.created_at)}


def current(session: Session, now: datetime, settings: Settings) -> dict[int, list[Condition]]:
    """Every condition holding now, by tenant id."""
    connections = _connections(session)
    found: dict[int, list[Condition]] = defaultdict(list)
    for condition in (*_failed_events(session), *_stuck_events(session, now),
                      *_connection_health(session, now, settings, connections)):
        connection = connections.get(condition.details["connection_id"])
        if connection is not None:
            found[connection.tenant_id].append(condition)
    for tenant_id, conditions in _notice_problems(session).items():
        found[tenant_id].extend(conditions)
    return dict(found)
