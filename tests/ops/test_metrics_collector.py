"""The data-layer gauges beat serves, on SQLite and PostgreSQL: the values match the rows written
here; a table that cannot be read costs its own gauges only, and a database that is away leaves
the scrape working with the settings' gauges and ``bdc_data_layer_up 0``."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import create_engine, text

from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    ApiDrift,
    Beneficiary,
    BillingMode,
    ConnectivityCheck,
    Enrollment,
    EventStatus,
    Invoice,
    InvoiceStatus,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    Problem,
    ProblemKind,
    ProblemStatus,
    Program,
    ReconciliationReport,
    ReportStatus,
    Tenant,
    User,
    UserRole,
    WebhookEvent,
    WedofConnection,
)
from bdc.types import utcnow
from tests.support.processes import free_port
from worker.metrics_collector import FAMILIES, DataLayerCollector

_numbers = itertools.count(1)


def gauges(collector: DataLayerCollector) -> dict[tuple, float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in collector.collect() for sample in family.samples}


def g(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def tenant(session, slug: str, connected: bool = True, **connection) -> tuple[Tenant, WedofConnection | None]:
    row = Tenant(name=slug, slug=slug)
    session.add(row)
    session.flush()
    link = None
    if connected:
        link = WedofConnection(tenant_id=row.id, api_key="k", webhook_secret="s", **connection)
        session.add(link)
        session.flush()
    return row, link


def enrollment(session, tenant_id: int) -> int:
    n = next(_numbers)
    user = User(tenant_id=tenant_id, email=f"u{n}@metrics.test", role=UserRole.STUDENT)
    program = Program(tenant_id=tenant_id, name=f"Bilan {n}")
    session.add_all([user, program])
    session.flush()
    beneficiary = Beneficiary(tenant_id=tenant_id, user_id=user.id)
    session.add(beneficiary)
    session.flush()
    row = Enrollment(tenant_id=tenant_id, beneficiary_id=beneficiary.id, program_id=program.id,
                     external_id=f"42700{n:05d}")
    session.add(row)
    session.flush()
    return row.id


def event(session, connection_id: int, status: EventStatus, age: timedelta = timedelta(0)) -> None:
    session.add(WebhookEvent(connection_id=connection_id, delivery_id=f"d-{next(_numbers)}",
                             event_type="registrationFolder.updated", status=status, received_at=utcnow() - age))


def action(session, tenant_id: int, status: ActionStatus, late: bool = False,
           kind: LifecycleKind = LifecycleKind.ENTRY) -> None:
    session.add(LifecycleAction(tenant_id=tenant_id, enrollment_id=enrollment(session, tenant_id), kind=kind,
                                status=status, mode=LifecycleMode.APPROVE, late=late))


def invoice(session, tenant_id: int, status: InvoiceStatus) -> None:
    n = next(_numbers)
    session.add(Invoice(tenant_id=tenant_id, folder_number=f"42{n:08d}", number=f"F-{n}", scope="2025",
                        sequence_value=n, issue_date=date(2025, 2, 3), status=status, mode=BillingMode.AUTO))


@pytest.fixture
def world(db_url, app_env):
    app_env(database_url=db_url, wedof_sync_enabled="true", wedof_sync_interval="1800")
    now = utcnow()
    with session_scope(db_url) as session:
        alpha, alpha_link = tenant(session, "alpha", last_sync_at=now - timedelta(minutes=10))
        beta, beta_link = tenant(session, "beta")
        gamma, _ = tenant(session, "gamma", connected=False)
        off, _off_link = tenant(session, "off", enabled=False, last_sync_at=now - timedelta(days=3))
        for status, count in ((EventStatus.PROCESSED, 3), (EventStatus.FAILED, 2), (EventStatus.QUEUED, 1)):
            for _ in range(count):
                event(session, alpha_link.id, status, age=timedelta(minutes=1))
        event(session, alpha_link.id, EventStatus.RECEIVED, age=timedelta(minutes=42))
        event(session, alpha_link.id, EventStatus.PROCESSED, age=timedelta(days=5))  # finished: not the oldest
        event(session, beta_link.id, EventStatus.PROCESSING, age=timedelta(seconds=90))

        action(session, alpha.id, ActionStatus.PROPOSED, late=True)
        action(session, alpha.id, ActionStatus.APPROVED, late=True)
        action(session, alpha.id, ActionStatus.DONE, late=True)  # declared since: no longer late to send
        action(session, alpha.id, ActionStatus.PROPOSED, kind=LifecycleKind.PROGRESS)
        action(session, beta.id, ActionStatus.FAILED, late=True)  # closed without effect: not counted late

        invoice(session, alpha.id, InvoiceStatus.BILLED)
        invoice(session, alpha.id, InvoiceStatus.BILLED)
        invoice(session, alpha.id, InvoiceStatus.FAILED)
        invoice(session, gamma.id, InvoiceStatus.PAID)  # a tenant without connection still has its rows

        session.add_all([
            Problem(tenant_id=alpha.id, kind=ProblemKind.EVENTS_FAILED, key="", status=ProblemStatus.OPEN),
            Problem(tenant_id=alpha.id, kind=ProblemKind.KEY_REVOKED, key="1", status=ProblemStatus.RESOLVED),
            Problem(tenant_id=beta.id, kind=ProblemKind.KEY_REVOKED, key="2", status=ProblemStatus.OPEN),
        ])
        session.add_all([
            ConnectivityCheck(connection_id=alpha_link.id, checked_at=now - timedelta(hours=1), ok=False,
                              status_code=401),
            ConnectivityCheck(connection_id=alpha_link.id, checked_at=now, ok=True, status_code=200),
            ConnectivityCheck(connection_id=beta_link.id, checked_at=now - timedelta(hours=1), ok=True,
                              status_code=200),
            ConnectivityCheck(connection_id=beta_link.id, checked_at=now, ok=False, status_code=401),
        ])
        session.flush()
        session.add_all([
            ReconciliationReport(connection_id=alpha_link.id, status=ReportStatus.DRIFT, drift=7),
            ReconciliationReport(connection_id=alpha_link.id, status=ReportStatus.FAILED, drift=0),
            ReconciliationReport(connection_id=beta_link.id, status=ReportStatus.DRIFT, drift=4),
            ReconciliationReport(connection_id=beta_link.id, status=ReportStatus.OK, drift=0),
        ])
        session.flush()
        session.add_all([
            ApiDrift(connection_id=alpha_link.id, unknown_keys=["a.x"], missing_keys=[]),
        ])
        session.flush()
        session.add(ApiDrift(connection_id=alpha_link.id, unknown_keys=["a.x", "a.y"], missing_keys=["state"]))
        beta_created = beta_link.created_at
    return {"url": db_url, "beta_created": beta_created, "alpha_synced": now - timedelta(minutes=10)}


def test_gauges_match_the_rows(world):
    samples = gauges(DataLayerCollector(world["url"]))
    assert g(samples, "bdc_data_layer_up") == 1

    # Inbox: every status of every connected tenant, zeros included.
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="processed") == 4
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="failed") == 2
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="queued") == 1
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="received") == 1
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="ignored") == 0
    assert g(samples, "bdc_inbox_events", tenant="beta", status="processing") == 1
    assert g(samples, "bdc_inbox_events", tenant="gamma", status="failed") is None  # no connection, no inbox
    assert 42 * 60 - 5 <= g(samples, "bdc_inbox_oldest_unfinished_age_seconds", tenant="alpha") <= 42 * 60 + 120
    assert 85 <= g(samples, "bdc_inbox_oldest_unfinished_age_seconds", tenant="beta") <= 90 + 120
    assert g(samples, "bdc_inbox_oldest_unfinished_age_seconds", tenant="off") == 0

    # Lifecycle: by kind and status; late = live actions lifecycle marked late.
    assert g(samples, "bdc_lifecycle_actions", tenant="alpha", kind="entry", status="proposed") == 1
    assert g(samples, "bdc_lifecycle_actions", tenant="alpha", kind="entry", status="done") == 1
    assert g(samples, "bdc_lifecycle_actions", tenant="alpha", kind="progress", status="proposed") == 1
    assert g(samples, "bdc_lifecycle_actions", tenant="beta", kind="entry", status="failed") == 1
    assert g(samples, "bdc_lifecycle_late_declarations", tenant="alpha") == 2
    assert g(samples, "bdc_lifecycle_late_declarations", tenant="beta") == 0

    assert g(samples, "bdc_invoices", tenant="alpha", status="billed") == 2
    assert g(samples, "bdc_invoices", tenant="alpha", status="failed") == 1
    assert g(samples, "bdc_invoices", tenant="alpha", status="paid") == 0
    assert g(samples, "bdc_invoices", tenant="gamma", status="paid") == 1

    assert g(samples, "bdc_problems_open", tenant="alpha", kind="events_failed") == 1
    assert g(samples, "bdc_problems_open", tenant="alpha", kind="key_revoked") == 0  # resolved
    assert g(samples, "bdc_problems_open", tenant="beta", kind="key_revoked") == 1

    # Sync: the last success of enabled connections (creation time if never), and the interval.
    assert g(samples, "bdc_sync_last_success_timestamp_seconds", tenant="alpha") == pytest.approx(
        world["alpha_synced"].timestamp(), abs=1e-3)
    assert g(samples, "bdc_sync_last_success_timestamp_seconds", tenant="beta") == pytest.approx(
        world["beta_created"].timestamp(), abs=1e-3)
    assert g(samples, "bdc_sync_last_success_timestamp_seconds", tenant="off") is None
    assert g(samples, "bdc_sync_interval_seconds") == 1800

    # The newest check, the newest finished report, the newest drift row.
    assert (g(samples, "bdc_wedof_connectivity_up", tenant="alpha"), g(samples, "bdc_wedof_key_revoked",
                                                                       tenant="alpha")) == (1, 0)
    assert (g(samples, "bdc_wedof_connectivity_up", tenant="beta"), g(samples, "bdc_wedof_key_revoked",
                                                                      tenant="beta")) == (0, 1)
    assert g(samples, "bdc_reconciliation_drift", tenant="alpha") == 7  # the failed report compared nothing
    assert g(samples, "bdc_reconciliation_drift", tenant="beta") == 0
    assert g(samples, "bdc_api_drift_keys", tenant="alpha", direction="unknown") == 2
    assert g(samples, "bdc_api_drift_keys", tenant="alpha", direction="missing") == 1
    assert g(samples, "bdc_api_drift_keys", tenant="beta", direction="unknown") is None


def test_labels_are_slugs_and_catalog_values_only(world):
    samples = gauges(DataLayerCollector(world["url"]))
    assert {name for name, _labels in samples} <= set(FAMILIES)
    tenants = {dict(labels).get("tenant") for _name, labels in samples} - {None}
    assert tenants == {"alpha", "beta", "gamma", "off"}


def test_a_scrape_renders_and_counts_nothing_twice(world):
    registry = CollectorRegistry()
    registry.register(DataLayerCollector(world["url"]))
    text_format = generate_latest(registry).decode()
    lines = [line for line in text_format.splitlines() if line and not line.startswith("#")]
    assert len(lines) == len({line.rsplit(" ", 1)[0] for line in lines})  # no sample twice
    assert 'bdc_inbox_events{status="failed",tenant="alpha"} 2.0' in text_format


def test_the_scheduled_sync_off_drops_the_interval(world, app_env):
    app_env(database_url=world["url"], wedof_sync_enabled="false")
    samples = gauges(DataLayerCollector(world["url"]))
    assert g(samples, "bdc_sync_interval_seconds") is None  # so "no sync for 2 intervals" cannot fire
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="failed") == 2


def test_registering_the_collector_reads_nothing(app_env, tmp_path):
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    registry = CollectorRegistry()
    registry.register(DataLayerCollector(dead))  # describe() only: no connection attempted


def test_a_table_that_cannot_be_read_costs_only_its_own_gauges(sqlite_db_url, app_env):
    app_env(database_url=sqlite_db_url, wedof_sync_enabled="true")
    with session_scope(sqlite_db_url) as session:
        _alpha, link = tenant(session, "alpha")
        event(session, link.id, EventStatus.FAILED)
        session.add(ApiDrift(connection_id=link.id, unknown_keys=["x"], missing_keys=[]))
    engine = create_engine(sqlite_db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE connectivity_checks"))
    engine.dispose()
    samples = gauges(DataLayerCollector(sqlite_db_url))
    assert g(samples, "bdc_data_layer_up") == 0
    assert not any(name.startswith("bdc_wedof_") for name, _labels in samples)
    assert g(samples, "bdc_inbox_events", tenant="alpha", status="failed") == 1  # read before it
    assert g(samples, "bdc_api_drift_keys", tenant="alpha", direction="unknown") == 1  # and after it


def test_a_database_away_leaves_the_scrape_working(pg_cluster, app_env):
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    app_env(database_url=dead, wedof_sync_enabled="true", wedof_sync_interval="3600")
    registry = CollectorRegistry()
    registry.register(DataLayerCollector(dead))
    text_format = generate_latest(registry).decode()
    assert "bdc_data_layer_up 0.0" in text_format
    assert "bdc_sync_interval_seconds 3600.0" in text_format
    assert "bdc_inbox_events{" not in text_format
