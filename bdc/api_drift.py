"""The Wedof API drift of each connection: the one owner of ``api_drift`` rows and of the API_CHANGED notices.

What a connection's folders showed (keys the mapping does not know, expected keys missing: see
:mod:`wedof.drift`) is *noted* here after each sync page and each webhook folder. The newest row is the
current set; it changes only when the set does:

- Keys enter as soon as any folder shows them (the set is the union of what was seen), so folders that
  differ among themselves never make it flip on every page.
- Keys leave when a large page (``CLEAR_MIN_SAMPLES`` folders or more, a sync page) no longer shows
  them, or when the code learnt them (the catalog now knows an unknown key / no longer expects a
  missing one).
- A change inserts a new row (so the page can show when Wedof changed, and how) and, when keys entered
  that no row of the last ``NOTICE_QUIET`` showed, ONE notice naming them. The same set again only
  moves ``last_seen_at`` and ``samples`` of the current row.

:func:`note` never raises: a drift that cannot be recorded is logged, and the folder it came with is
applied all the same. A few clean folders (a webhook) cost nothing: they cannot change the set. Only
folders showing drift move ``last_seen_at`` and ``samples``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import ApiDrift, Notice, NoticeKind, WedofConnection
from bdc.types import utcnow

log = logging.getLogger(__name__)

CLEAR_MIN_SAMPLES = 50  # a page this large is a fair picture of what Wedof sends now
NOTICE_QUIET = timedelta(days=7)  # keys shown again within this time were already announced
NOTICE_KEYS_SHOWN = 30
ATTEMPTS = 2  # a lost race on SQLite (another writer committed first) is tried once more


class DriftObservation(Protocol):
    """What :mod:`wedof.drift` observed over some folders (``wedof.drift.Observation``)."""

    unknown: frozenset[str]
    missing: frozenset[str]
    samples: int

    @property
    def drifted(self) -> bool: ...

    def still_applies(self, direction: str, path: str) -> bool: ...


@dataclass(frozen=True)
class Noted:
    row_id: int
    changed: bool  # a new row: the set changed
    notice_id: int | None


def note(connection_id: int, observation: DriftObservation, url: str | None = None) -> Noted | None:
    """Record what some folders of ``connection_id`` showed; never raises (logs instead)."""
    try:
        if observation.samples <= 0:
            return None
        if not observation.drifted and observation.samples < CLEAR_MIN_SAMPLES:
            return None  # a few clean folders change nothing: no database at all
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with session_scope(url) as session:
                    return record(session, connection_id, observation)
            except Exception as exc:  # noqa: BLE001 - a drift record must never stop the folder it came with
                if attempt == ATTEMPTS:
                    raise
                log.info("API drift of connection %s not recorded (%s); trying again", connection_id,
                         type(exc).__name__)
    except Exception as exc:  # noqa: BLE001
        log.warning("API drift of connection %s not recorded: %s: %s", connection_id, type(exc).__name__,
                    str(exc)[:200])
    return None


def current(session: Session, connection_id: int) -> ApiDrift | None:
    """The connection's current set (its newest row), or None when no drift was ever recorded."""
    # By id: rows of a connection are inserted under its lock, so ids follow the changes (clocks may not).
    return session.scalars(select(ApiDrift).where(ApiDrift.connection_id == connection_id)
                           .order_by(ApiDrift.id.desc()).limit(1)).first()


def record(session: Session, connection_id: int, observation: DriftObservation,
           now: datetime | None = None) -> Noted | None:
    """The transaction's part of :func:`note`: update the current row, or insert the changed set (+ notice)."""
    now = now or utcnow()
    plan = _plan(session, connection_id, observation)
    if plan is None:
        return None
    if plan.changed:
        # Lock the connection and look again: two workers noting one change at once make one row, one notice.
        tenant_id = session.scalar(select(WedofConnection.tenant_id).where(WedofConnection.id == connection_id)
                                   .with_for_update())
        if tenant_id is None:
            return None
        plan = _plan(session, connection_id, observation)
        if plan is None:
            return None
    row = plan.row
    if not plan.changed:
        if observation.drifted:  # folders showing (part of) the set: it is still what Wedof sends
            row.last_seen_at = now
            row.samples = (row.samples or 0) + observation.samples
        return Noted(row.id, False, None)
    changed = ApiDrift(connection_id=connection_id, observed_at=now, last_seen_at=now,
                       unknown_keys=sorted(plan.unknown), missing_keys=sorted(plan.missing),
                       samples=observation.samples)
    session.add(changed)
    session.flush()
    entered_unknown, entered_missing = plan.unknown - plan.stored_unknown, plan.missing - plan.stored_missing
    record_audit(session, actor="worker", action="wedof.api_drift_changed", tenant_id=tenant_id,
                 target=("wedof_connection", connection_id),
                 details={"unknown": sorted(plan.unknown)[:50], "missing": sorted(plan.missing)[:50],
                          "entered_unknown": sorted(entered_unknown)[:50],
                          "entered_missing": sorted(entered_missing)[:50],
                          "left_unknown": sorted(plan.stored_unknown - plan.unknown)[:50],
                          "left_missing": sorted(plan.stored_missing - plan.missing)[:50]})
    notice_id = None
    if entered_unknown or entered_missing:
        seen_unknown, seen_missing = _recently_recorded(session, connection_id, changed.id, now)
        fresh_unknown, fresh_missing = entered_unknown - seen_unknown, entered_missing - seen_missing
        if fresh_unknown or fresh_missing:
            notice = Notice(tenant_id=tenant_id, kind=NoticeKind.API_CHANGED,
                            message=notice_text(connection_id, fresh_unknown, fresh_missing),
                            target_type="wedof_connection", target_id=str(connection_id))
            session.add(notice)
            session.flush()
            notice_id = notice.id
    return Noted(changed.id, True, notice_id)


@dataclass
class _Plan:
    row: ApiDrift | None  # the current row
    stored_unknown: set[str]
    stored_missing: set[str]
    unknown: set[str]  # the set after this observation
    missing: set[str]

    @property
    def changed(self) -> bool:
        return self.row is None or (self.unknown, self.missing) != (self.stored_unknown, self.stored_missing)


def _plan(session: Session, connection_id: int, observation: DriftObservation) -> _Plan | None:
    """What the observation does to the current set; None when there is nothing to record."""
    row = current(session, connection_id)
    if row is None and not observation.drifted:
        return None
    stored_unknown = set(row.unknown_keys or ()) if row else set()
    stored_missing = set(row.missing_keys or ()) if row else set()
    if observation.samples >= CLEAR_MIN_SAMPLES:
        unknown, missing = set(observation.unknown), set(observation.missing)
    else:  # keys the code has learnt meanwhile leave the set
        unknown = {p for p in stored_unknown if observation.still_applies("unknown", p)} | observation.unknown
        missing = {p for p in stored_missing if observation.still_applies("missing", p)} | observation.missing
    return _Plan(row, stored_unknown, stored_missing, unknown, missing)


def _recently_recorded(session: Session, connection_id: int, except_id: int, now: datetime) -> tuple[set, set]:
    rows = session.execute(select(ApiDrift.unknown_keys, ApiDrift.missing_keys).where(
        ApiDrift.connection_id == connection_id, ApiDrift.id != except_id,
        ApiDrift.last_seen_at >= now - NOTICE_QUIET)).all()
    unknown: set[str] = set()
    missing: set[str] = set()
    for row_unknown, row_missing in rows:
        unknown.update(row_unknown or ())
        missing.update(row_missing or ())
    return unknown, missing


def _listed(paths: set[str]) -> str:
    names = sorted(paths)
    shown = ", ".join(names[:NOTICE_KEYS_SHOWN])
    return shown + (f" and {len(names) - NOTICE_KEYS_SHOWN} more" if len(names) > NOTICE_KEYS_SHOWN else "")


def notice_text(connection_id: int, unknown: set[str], missing: set[str]) -> str:
    parts = []
    if unknown:
        parts.append(f"it sends keys the mapping does not know: {_listed(unknown)}")
    if missing:
        parts.append(f"it no longer sends keys the mapping expects: {_listed(missing)}")
    return (f"Wedof's API changed (connection {connection_id}): {'; '.join(parts)}. The folders are still applied "
            "(unknown keys are ignored, missing ones read as empty); check the mapping "
            "(wedof/drift.py lists the keys it knows).")[:4000]


def history(session: Session, connection_id: int, limit: int = 20) -> list[ApiDrift]:
    """The connection's sets, newest first."""
    return list(session.scalars(select(ApiDrift).where(ApiDrift.connection_id == connection_id)
                                .order_by(ApiDrift.id.desc()).limit(limit)))
