"""The data-layer gauges, computed when Prometheus scrapes beat's exporter.

A custom collector rather than gauges kept up to date: the tables are the truth, and a value read
at scrape time is never stale nor counted twice (exactly one beat serves it). Each scrape runs a
few grouped queries in one read-only session, each a count or a min over indexed columns, so the
cost does not grow with the number of tenants:

- the tenants and their connections (the ``tenant`` label is the slug; every connected tenant gets
  its zeros, so an alert on "> 0" and a dashboard both see a value);
- inbox rows by status and the oldest unfinished one (received, queued or processing);
- lifecycle actions by kind and status, and the late ones: the 3-working-day rule is lifecycle's
  (:func:`lifecycle.rules.working_days_after`, stored on each action as ``late`` and revised at
  every evaluation), counted here among the actions still to be sent (:data:`lifecycle.actions.LIVE`);
- invoices by status; open problems by kind;
- per connection: the last successful sync, the newest connectivity check, the newest finished
  reconciliation report, the newest API-drift row.

A failing query is logged and its gauges left out; the others are still served, and
``bdc_data_layer_up`` says 0. When the database itself is away, the rest of the queries are
skipped (each would wait out the connect timeout) and only the settings' gauges remain.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bdc.db import session_scope
from bdc.models import (
    ApiDrift,
    ConnectivityCheck,
    EventStatus,
    Invoice,
    InvoiceStatus,
    LifecycleAction,
    Problem,
    ProblemKind,
    ProblemStatus,
    ReconciliationReport,
    ReportStatus,
    Tenant,
    WebhookEvent,
    WedofConnection,
)
from bdc.settings import get_settings
from bdc.types import utcnow
from lifecycle.actions import LIVE as LIVE_ACTIONS

log = logging.getLogger("worker.metrics")

UNKNOWN_TENANT = "unknown"
UNFINISHED_EVENTS = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING)
STATEMENT_TIMEOUT_MS = 5000  # a scrape waits at most this long for one query (PostgreSQL)

# name -> (help, label names)
FAMILIES: dict[str, tuple[str, list[str]]] = {
    "bdc_inbox_events": ("Inbox rows (webhook events) by tenant and status.", ["tenant", "status"]),
    "bdc_inbox_oldest_unfinished_age_seconds": (
        "Age of the oldest received, queued or processing inbox row (0 when none).", ["tenant"]),
    "bdc_lifecycle_actions": ("Lifecycle actions by tenant, kind and status.", ["tenant", "kind", "status"]),
    "bdc_lifecycle_late_declarations": (
        "Declarations still to be sent past the 3 working days Wedof allows, as lifecycle computes them.",
        ["tenant"]),
    "bdc_invoices": ("Invoices by tenant and status.", ["tenant", "status"]),
    "bdc_sync_last_success_timestamp_seconds": (
        "When the tenant's enabled connection last synced successfully (its creation time if never).", ["tenant"]),
    "bdc_sync_interval_seconds": ("The scheduled sync's interval (absent when the scheduled sync is off).", []),
    "bdc_wedof_connectivity_up": ("1 when the connection's last connectivity check succeeded, else 0.", ["tenant"]),
    "bdc_wedof_key_revoked": ("1 when the connection's last connectivity check got HTTP 401, else 0.", ["tenant"]),
    "bdc_reconciliation_drift": ("The drift of the connection's last finished reconciliation report.", ["tenant"]),
    "bdc_api_drift_keys": ("Keys of Wedof's folders the mapping does not know (unknown) or misses (missing).",
                           ["tenant", "direction"]),
    "bdc_problems_open": ("Open problems (the units of staff notices) by tenant and kind.", ["tenant", "kind"]),
    "bdc_data_layer_up": ("1 when every data-layer gauge could be read at this scrape, else 0.", []),
}


def _value(member) -> str:
    return str(getattr(member, "value", member))


class _Scrape:
    """One scrape's families and the tenant labels its rows are keyed by."""

    def __init__(self):
        self.families = {name: GaugeMetricFamily(name, help_text, labels=labels)
                         for name, (help_text, labels) in FAMILIES.items()}
        self.slugs: dict[int, str] = {}  # tenant id -> slug
        self.connection_tenant: dict[int, int] = {}  # connection id -> tenant id
        self.connected: list[int] = []  # tenants with a connection: each gets its zeros

    def tenant(self, tenant_id: int | None) -> str:
        return self.slugs.get(tenant_id, UNKNOWN_TENANT) if tenant_id is not None else UNKNOWN_TENANT

    def of_connection(self, connection_id: int) -> str:
        return self.tenant(self.connection_tenant.get(connection_id))

    def add(self, name: str, labels: Iterable[str], value: float) -> None:
        self.families[name].add_metric(list(labels), float(value))

    def add_counts(self, name: str, counts: dict[tuple, float], zero_keys: Iterable[tuple] = ()) -> None:
        """Every counted key, and a zero for each expected key nothing was counted for."""
        merged = dict.fromkeys(zero_keys, 0.0)
        for key, value in counts.items():
            merged[key] = merged.get(key, 0.0) + value
        for key in sorted(merged):
            self.add(name, key, merged[key])


class DataLayerCollector(Collector):
    """The catalog's data-layer gauges, read from ``database_url`` (the settings' database by default)."""

    def __init__(self, database_url: str | None = None):
        self.database_url = database_url

    def describe(self):
        # Names only: registering must not query the database (prometheus_client would call collect()).
        return [GaugeMetricFamily(name, help_text, labels=labels) for name, (help_text, labels) in FAMILIES.items()]

    def collect(self):
        scrape = _Scrape()
        settings = get_settings()
        if settings.wedof_sync_enabled:
            scrape.add("bdc_sync_interval_seconds", [], settings.wedof_sync_interval)
        complete = self._read(scrape)
        scrape.add("bdc_data_layer_up", [], 1 if complete else 0)
        yield from scrape.families.values()

    def _read(self, scrape: _Scrape) -> bool:
        sections: list[Callable] = [_tenants, _inbox, _inbox_oldest, _lifecycle, _invoices, _problems, _last_sync,
                                    _connectivity, _reconciliation, _api_drift]
        complete = True
        started = time.monotonic()
        try:
            with session_scope(self.database_url) as session:
                _limit_statements(session)
                for section in sections:
                    try:
                        section(session, scrape)
                    except SQLAlchemyError as exc:
                        complete = False
                        log.warning("data-layer metrics: %s not read (%s)", section.__name__.strip("_"),
                                    type(exc).__name__, exc_info=log.isEnabledFor(logging.DEBUG))
                        if _database_away(exc) or section is _tenants:
                            return False  # nothing else can be read (or labelled) at this scrape
                        session.rollback()
                        _limit_statements(session)
                session.rollback()  # read only: nothing to commit
        except SQLAlchemyError as exc:
            log.warning("data-layer metrics not read: %s", type(exc).__name__)
            return False
        finally:
            log.debug("data-layer metrics read in %.3fs", time.monotonic() - started)
        return complete


def _database_away(error: SQLAlchemyError) -> bool:
    # A lost connection, not one query's trouble (a missing table, a statement timeout).
    return isinstance(error, DBAPIError) and error.connection_invalidated


def _limit_statements(session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))


# -- sections: each reads one grouped query and adds its samples ----------------------------------------

def _tenants(session, scrape: _Scrape) -> None:
    scrape.slugs = dict(session.execute(select(Tenant.id, Tenant.slug)).all())
    rows = session.execute(select(WedofConnection.id, WedofConnection.tenant_id)).all()
    scrape.connection_tenant = {row.id: row.tenant_id for row in rows}
    scrape.connected = sorted(set(scrape.connection_tenant.values()))


def _connected_slugs(scrape: _Scrape) -> list[str]:
    return [scrape.tenant(tenant_id) for tenant_id in scrape.connected]


def _status_counts(session, scrape: _Scrape, name: str, owner, column, members, *conditions,
                   by_connection: bool = False) -> None:
    """``name``: rows counted by tenant and ``column`` in one grouped query, and a zero for each of
    ``members`` per connected tenant. ``owner`` is the rows' tenant id, or their connection id."""
    rows = session.execute(select(owner, column, func.count()).where(*conditions).group_by(owner, column)).all()
    label = scrape.of_connection if by_connection else scrape.tenant
    counts: dict[tuple, float] = defaultdict(float)
    for owner_id, member, count in rows:
        counts[(label(owner_id), _value(member))] += count
    scrape.add_counts(name, counts, [(slug, member.value) for slug in _connected_slugs(scrape) for member in members])


def _inbox(session, scrape: _Scrape) -> None:
    _status_counts(session, scrape, "bdc_inbox_events", WebhookEvent.connection_id, WebhookEvent.status, EventStatus,
                   by_connection=True)


def _inbox_oldest(session, scrape: _Scrape) -> None:
    rows = session.execute(select(WebhookEvent.connection_id, func.min(WebhookEvent.received_at))
                           .where(WebhookEvent.status.in_(UNFINISHED_EVENTS))
                           .group_by(WebhookEvent.connection_id)).all()
    now = utcnow()
    ages: dict[tuple, float] = {}
    for connection_id, oldest in rows:
        key = (scrape.of_connection(connection_id),)
        ages[key] = max(ages.get(key, 0.0), _age(now, oldest))
    for key in [(slug,) for slug in _connected_slugs(scrape)]:
        ages.setdefault(key, 0.0)
    for key in sorted(ages):
        scrape.add("bdc_inbox_oldest_unfinished_age_seconds", key, ages[key])


def _age(now: datetime, then: datetime | None) -> float:
    return 0.0 if then is None else max(0.0, (now - then).total_seconds())


def _lifecycle(session, scrape: _Scrape) -> None:
    late = func.sum(case((LifecycleAction.late.is_(True), 1), else_=0))
    rows = session.execute(select(LifecycleAction.tenant_id, LifecycleAction.kind, LifecycleAction.status,
                                  func.count(), late)
                           .group_by(LifecycleAction.tenant_id, LifecycleAction.kind, LifecycleAction.status)).all()
    counts: dict[tuple, float] = defaultdict(float)
    late_counts: dict[tuple, float] = defaultdict(float)
    for tenant_id, kind, status, count, late_count in rows:
        slug = scrape.tenant(tenant_id)
        counts[(slug, _value(kind), _value(status))] += count
        if status in LIVE_ACTIONS:
            late_counts[(slug,)] += late_count or 0
    scrape.add_counts("bdc_lifecycle_actions", counts)
    scrape.add_counts("bdc_lifecycle_late_declarations", late_counts, [(slug,) for slug in _connected_slugs(scrape)])


def _invoices(session, scrape: _Scrape) -> None:
    _status_counts(session, scrape, "bdc_invoices", Invoice.tenant_id, Invoice.status, InvoiceStatus)


def _problems(session, scrape: _Scrape) -> None:
    _status_counts(session, scrape, "bdc_problems_open", Problem.tenant_id, Problem.kind, ProblemKind,
                   Problem.status == ProblemStatus.OPEN)


def _last_sync(session, scrape: _Scrape) -> None:
    # Enabled connections only: a connection switched off is not expected to sync.
    rows = session.execute(select(WedofConnection.tenant_id, WedofConnection.last_sync_at, WedofConnection.created_at)
                           .where(WedofConnection.enabled.is_(True))).all()
    for tenant_id, last_sync_at, created_at in sorted(rows, key=lambda row: scrape.tenant(row.tenant_id)):
        stamp = last_sync_at or created_at
        if stamp is not None:
            scrape.add("bdc_sync_last_success_timestamp_seconds", [scrape.tenant(tenant_id)], stamp.timestamp())


def _newest_per_connection(session, scrape: _Scrape, model, columns: tuple, *conditions) -> list[tuple]:
    """(tenant label, row of ``columns``) of each connection's newest row of ``model``, by label.

    Newest by id: ids grow with time, and ties cannot happen."""
    newest = (select(model.connection_id, func.max(model.id).label("newest_id"))
              .where(*conditions).group_by(model.connection_id).subquery())
    rows = session.execute(select(model.connection_id, *columns).join(newest, model.id == newest.c.newest_id)).all()
    return sorted(((scrape.of_connection(row[0]), row[1:]) for row in rows), key=lambda labelled: labelled[0])


def _connectivity(session, scrape: _Scrape) -> None:
    for slug, (ok, status_code) in _newest_per_connection(
            session, scrape, ConnectivityCheck, (ConnectivityCheck.ok, ConnectivityCheck.status_code)):
        scrape.add("bdc_wedof_connectivity_up", [slug], 1 if ok else 0)
        scrape.add("bdc_wedof_key_revoked", [slug], 1 if status_code == 401 else 0)


def _reconciliation(session, scrape: _Scrape) -> None:
    # A failed report compared nothing: the drift is the last one that did.
    for slug, (drift,) in _newest_per_connection(session, scrape, ReconciliationReport, (ReconciliationReport.drift,),
                                                 ReconciliationReport.status != ReportStatus.FAILED):
        scrape.add("bdc_reconciliation_drift", [slug], drift or 0)


def _api_drift(session, scrape: _Scrape) -> None:
    for slug, (unknown, missing) in _newest_per_connection(session, scrape, ApiDrift,
                                                           (ApiDrift.unknown_keys, ApiDrift.missing_keys)):
        scrape.add("bdc_api_drift_keys", [slug, "unknown"], len(unknown or []))
        scrape.add("bdc_api_drift_keys", [slug, "missing"], len(missing or []))
