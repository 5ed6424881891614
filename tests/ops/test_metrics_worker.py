"""The workers' metrics piece by piece: the Wedof client's observer hook against the real sandbox,
the throttle's wait hook on the real Redis, the wiring of both by ``client_for``, task outcomes
from Celery's own signals, sync runs from their rows, and the exporter's HTTP server."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import requests
from celery import Celery
from celery.exceptions import Reject, Retry

from bdc.db import session_scope
from bdc.models import SyncKind, SyncRun, SyncStatus, Tenant, WedofConnection
from bdc.types import utcnow
from tests.support.processes import free_port
from tests.support.sandbox import running_sandbox
from wedof.client import WedofClient, endpoint_class
from wedof.errors import WedofError
from wedof.throttle import RedisThrottle
from worker import metrics
from worker.connections import client_for

API_KEY = "metrics-sandbox-key"


def value(name: str, **labels) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=5, seed=14, api_key=API_KEY) as sbx:
        yield sbx


@pytest.mark.parametrize(("path", "expected"), [
    ("/registrationFolders", "registrationFolders"),
    ("/registrationFolders/4270885603", "registrationFolders/{id}"),
    ("/registrationFolders/4270885603/billing", "registrationFolders/{id}/billing"),
    ("/registrationFolders/4270885603/serviceDone?x=1", "registrationFolders/{id}/serviceDone"),
    ("/registrationFolders/4270885603/files", "registrationFolders/{id}/files"),
    ("/users/me", "users/me"),
    ("/certificationFolders/1234-1234567890", "certificationFolders/{id}"),
    ("/activities/RegistrationFolder/4270885603", "activities/RegistrationFolder/{id}"),
    ("/webhooks/987", "webhooks/{id}"),
    ("/registrationFolders/me@example.com/something-new", "registrationFolders/{id}/{id}"),
    ("/a/b/c/d/e/f/g", "{id}/{id}/{id}/{id}/..."),
    ("", "/"),
])
def test_endpoint_classes_keep_only_the_clients_own_words(path, expected):
    assert endpoint_class(path) == expected


def test_every_attempt_is_observed_with_its_status(sandbox):
    seen: list[tuple] = []
    with WedofClient(sandbox.api_url, API_KEY, observer=lambda *call: seen.append(call), max_attempts=1) as client:
        client.users_me()
        number = next(client.iter_registration_folders(limit=2))["externalId"]
        client.get_registration_folder(number)
        with pytest.raises(WedofError):
            client.get_registration_folder("9999999999")
    assert [(method, endpoint_class(path), status) for method, path, status, _s in seen] == [
        ("GET", "users/me", 200), ("GET", "registrationFolders", 200), ("GET", "registrationFolders/{id}", 200),
        ("GET", "registrationFolders/{id}", 404)]
    assert all(seconds > 0 for *_call, seconds in seen)
    with WedofClient(sandbox.api_url, "not-the-key", observer=lambda *call: seen.append(call), max_attempts=1) as bad:
        with pytest.raises(WedofError):
            bad.users_me()
    assert seen[-1][2] == 401


def test_no_answer_is_observed_as_none_on_each_attempt():
    seen: list[tuple] = []
    client = WedofClient(f"http://127.0.0.1:{free_port()}/api", "k", observer=lambda *call: seen.append(call),
                         max_attempts=2, backoff_initial=0.01, backoff_max=0.02)
    with client, pytest.raises(WedofError):
        client.users_me()
    assert [(method, path, status) for method, path, status, _s in seen] == [("GET", "/users/me", None)] * 2


def test_a_failing_observer_never_fails_the_call(sandbox):
    def broken(*_call):
        raise RuntimeError("observer bug")

    with WedofClient(sandbox.api_url, API_KEY, observer=broken) as client:
        assert client.users_me()


def test_throttle_waits_are_reported(redis_client):
    waits: list[float] = []
    throttle = RedisThrottle(redis_client, f"wedof:throttle:test-{uuid.uuid4()}", rate_per_second=10, burst=1,
                             on_wait=waits.append)
    for _ in range(3):
        assert throttle.acquire(timeout=5)
    assert len(waits) >= 2 and 0.1 <= sum(waits) <= 1.0  # two calls past the burst, 0.1 s apart each

    def broken(_seconds):
        raise RuntimeError("observer bug")

    throttle.on_wait = broken
    assert throttle.acquire(timeout=5)


@pytest.fixture
def connection(app_env, sqlite_db_url, redis_url, redis_client, sandbox):
    app_env(database_url=sqlite_db_url, redis_url=redis_url)
    # Each test's database numbers its tenants from 1 again: forget the slugs the briefly cached ids had.
    metrics._slugs.clear()
    slug = f"metrics-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        tenant = Tenant(name=slug, slug=slug)
        session.add(tenant)
        session.flush()
        link = WedofConnection(tenant_id=tenant.id, base_url=sandbox.api_url, api_key=API_KEY, webhook_secret="s",
                               rate_limit_per_second=50)
        session.add(link)
        session.flush()
        return link.id, tenant.id, slug


def test_client_for_labels_calls_with_the_tenant_slug(connection):
    connection_id, _tenant_id, slug = connection
    before = value("bdc_wedof_requests_total", tenant=slug, endpoint="users/me", method="GET", code="200")
    duration_before = value("bdc_wedof_request_duration_seconds_count", endpoint="users/me", method="GET")
    with session_scope() as session:
        client = client_for(session.get(WedofConnection, connection_id))
    with client:
        client.users_me()
        client.users_me()
    assert value("bdc_wedof_requests_total", tenant=slug, endpoint="users/me", method="GET", code="200") == before + 2
    assert value("bdc_wedof_request_duration_seconds_count", endpoint="users/me", method="GET") == duration_before + 2


def test_client_for_a_detached_connection_still_finds_its_slug(connection):
    connection_id, tenant_id, slug = connection
    metrics._slugs.pop(tenant_id, None)
    with session_scope() as session:
        row = session.get(WedofConnection, connection_id)
        session.expunge(row)
    assert metrics.tenant_slug(None, tenant_id) == slug
    assert metrics.tenant_slug(None, None) == "unknown" and metrics.tenant_slug(None, 987654) == "unknown"


def test_throttle_waits_are_counted_per_tenant():
    observer = metrics.wedof_observer("throttled-tenant")
    before = value("bdc_wedof_throttle_wait_seconds_total", tenant="throttled-tenant")
    observer.throttle_wait(0.25)
    observer.throttle_wait(0.0)
    assert value("bdc_wedof_throttle_wait_seconds_total", tenant="throttled-tenant") == pytest.approx(before + 0.25)


def test_odd_methods_do_not_become_labels():
    metrics.wedof_observer("odd").request("BREW", "/users/me", 418, 0.01)
    assert value("bdc_wedof_requests_total", tenant="odd", endpoint="users/me", method="other", code="418") >= 1


# -- tasks: Celery's own tracer sends the signals ------------------------------------------------------

tasks_app = Celery("metrics-test")
tasks_app.conf.task_always_eager = False


@tasks_app.task(bind=True, name="metrics_test.ok")
def ok(self):
    return 1


@tasks_app.task(bind=True, name="metrics_test.retrying", max_retries=1)
def retrying(self):
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "second"


@tasks_app.task(bind=True, name="metrics_test.broken")
def broken(self):
    raise ValueError("boom")


@tasks_app.task(bind=True, name="metrics_test.rejecting")
def rejecting(self):
    raise Reject("bad argument", requeue=False)


def test_task_outcomes_and_durations_come_from_celerys_signals():
    def counts():
        return {(name, outcome): value("bdc_tasks_total", task=name, outcome=outcome)
                for name in ("metrics_test.ok", "metrics_test.retrying", "metrics_test.broken",
                             "metrics_test.rejecting") for outcome in ("succeeded", "retried", "failed")}

    before = counts()
    durations = value("bdc_task_duration_seconds_count", task="metrics_test.ok")
    ok.apply()
    ok.apply()
    retried = retrying.apply()
    broken.apply()
    assert rejecting.apply().state == "REJECTED"
    changed = {key: count - before[key] for key, count in counts().items() if count != before[key]}
    assert isinstance(retried.result, Retry) or retried.result == "second"
    assert changed.pop(("metrics_test.ok", "succeeded")) == 2
    assert changed.pop(("metrics_test.retrying", "retried")) == 1
    assert changed.pop(("metrics_test.broken", "failed")) == 1
    assert changed.pop(("metrics_test.rejecting", "failed")) == 1
    changed.pop(("metrics_test.retrying", "succeeded"), None)  # eager retries run the task again inline
    assert changed == {}
    assert value("bdc_task_duration_seconds_count", task="metrics_test.ok") == durations + 2


# -- sync runs: recorded from the finished row ------------------------------------------------------

def test_a_finished_sync_run_is_counted_from_its_row(db_url, app_env):
    app_env(database_url=db_url)
    slug = f"sync-{uuid.uuid4().hex[:8]}"
    finished = utcnow()
    with session_scope() as session:
        tenant = Tenant(name=slug, slug=slug)
        session.add(tenant)
        session.flush()
        link = WedofConnection(tenant_id=tenant.id, api_key="k")
        session.add(link)
        session.flush()
        run = SyncRun(connection_id=link.id, kind=SyncKind.ALL, status=SyncStatus.SUCCEEDED, fetched=120,
                      applied=20, unchanged=99, failed=1, started_at=finished - timedelta(seconds=42),
                      finished_at=finished)
        session.add(run)
        session.flush()
        run_id = run.id
    runs = value("bdc_sync_runs_total", tenant=slug, kind="all", outcome="succeeded")
    durations = value("bdc_sync_duration_seconds_sum", kind="all")
    metrics.record_sync_run(run_id, "succeeded")
    assert value("bdc_sync_runs_total", tenant=slug, kind="all", outcome="succeeded") == runs + 1
    assert value("bdc_sync_duration_seconds_sum", kind="all") == pytest.approx(durations + 42, abs=0.01)
    assert [value("bdc_sync_folders_total", tenant=slug, result=result)
            for result in ("fetched", "applied", "unchanged", "failed")] == [120, 20, 99, 1]
    metrics.record_sync_run(987654321, "failed")  # no such run: nothing counted, nothing raised


# -- the exporter ---------------------------------------------------------------------------------------

def test_the_exporter_serves_its_registry_and_survives_a_taken_port():
    port = free_port()
    try:
        assert metrics.serve(metrics.REGISTRY, port, "127.0.0.1", "test")
        metrics.wedof_observer("exported").request("GET", "/users/me", 200, 0.01)
        text_format = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'bdc_wedof_requests_total{code="200",endpoint="users/me",method="GET",tenant="exported"}' in text_format
        assert not metrics.serve(metrics.REGISTRY, free_port(), "127.0.0.1", "test")  # one exporter per process
    finally:
        metrics.stop_exporter()
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert not metrics.serve(metrics.REGISTRY, taken.getsockname()[1], "127.0.0.1", "test")  # logged, no raise
    metrics.stop_exporter()


def test_a_sync_that_fails_is_counted_failed_by_the_sync_task(sqlite_db_url, app_env, redis_url, redis_client):
    from worker.tasks.sync import sync_connection

    app_env(database_url=sqlite_db_url, redis_url=redis_url)
    slug = f"keyless-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        tenant = Tenant(name=slug, slug=slug)
        session.add(tenant)
        session.flush()
        link = WedofConnection(tenant_id=tenant.id, api_key=None)  # the sync cannot call Wedof: permanent
        session.add(link)
        session.flush()
        connection_id = link.id
    before = value("bdc_sync_runs_total", tenant=slug, kind="all", outcome="failed")
    result = sync_connection.apply(args=[connection_id, "all", True, None, "manual"])
    assert result.state == "FAILURE"
    with session_scope() as session:
        [run] = session.query(SyncRun).filter_by(connection_id=connection_id).all()
        assert run.status == SyncStatus.FAILED
    assert value("bdc_sync_runs_total", tenant=slug, kind="all", outcome="failed") == before + 1
    assert value("bdc_sync_runs_total", tenant=slug, kind="all", outcome="succeeded") == 0
