"""The page's "Exploitation" section in a real browser, on a running stack after a reconciliation.

gunicorn serves the webapp, one real Celery worker consumes both queues, the Wedof sandbox plays Wedof
(its API "changed": a new key, a missing one), PostgreSQL and Redis are real. Chromium (the system one)
opens the page: the last report (Wedof's states against ours), the API drift keys, and inline SVG charts
with their data points and text tables; "Comparer avec Wedof maintenant" brings a second report and a
second point. Screenshots land in test-output/<test name>/.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import (
    EventStatus,
    ReconciliationReport,
    Tenant,
    User,
    UserRole,
    WebhookEvent,
    WedofConnection,
)
from tests.conftest import fresh_postgres_url, process_environment
from tests.support.browser import admin_token, chromium, page_stack_env
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker, Receiver, control_app
from tests.webapp.conftest import wedof_delivery_headers
from worker.task_names import QUEUE_OF, RECONCILE

pytestmark = pytest.mark.slow

FOLDERS = 30


def _reports(connection_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ReconciliationReport)
                              .where(ReconciliationReport.connection_id == connection_id))


@pytest.fixture(scope="module")
def stack(redis_server, pg_cluster, pg_template, tmp_path_factory, output_dir):
    env = page_stack_env(redis_server.url, 8, fresh_postgres_url(pg_cluster, pg_template),
                         tmp_path_factory.mktemp("ops-var"))
    logs = output_dir / "logs"
    with process_environment(env):
        with running_sandbox(folders=FOLDERS, seed=8) as sandbox:
            with session_scope() as session:
                tenant = Tenant(name="Organisme en exploitation", slug="ops-browser")
                session.add(tenant)
                session.flush()
                connection = WedofConnection(tenant_id=tenant.id, base_url=sandbox.api_url, api_key=sandbox.api_key,
                                             webhook_secret="ops-browser-secret", rate_limit_per_second=500)
                admin = User(tenant_id=tenant.id, email="admin@ops.test", role=UserRole.TENANT_ADMIN)
                session.add_all([connection, admin])
                session.flush()
                ids = {"tenant": tenant.id, "connection": connection.id, "admin": admin.id}
            worker = CeleryWorker(env, queues="events,sync", concurrency=2, log_dir=logs).start()
            receiver = Receiver(env, log_dir=logs).start()
            broker = control_app(env["REDIS_URL"])
            try:
                yield {"sandbox": sandbox, "receiver": receiver, "ids": ids, "broker": broker}
            finally:
                broker.close()
                receiver.stop()
                worker.stop()


def _events_done(connection_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.connection_id == connection_id,
            WebhookEvent.status.in_((EventStatus.PROCESSED, EventStatus.FAILED))))



def test_the_operations_section_after_a_reconciliation(stack, output_dir, request):
    from playwright.sync_api import expect

    from worker.tasks import sync as sync_module

    shots = output_dir / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    sandbox, ids, broker = stack["sandbox"], stack["ids"], stack["broker"]
    # Wedof's API "changed" during the sync: recorded, and the folders applied all the same.
    sandbox.control("PUT", "/api-changes", json={"add": {"attendee.pronouns": "iel"}, "remove": ["permalink"]})
    assert sync_module.sync_connection(ids["connection"], "all", True, None, "manual")["applied"] == FOLDERS
    sandbox.control("DELETE", "/api-changes")
    # Real deliveries to the receiver: three folders applied, and one the mapping refuses (failed).
    folders = sandbox.control("GET", "/truth", params={"compact": 1})[:3]
    bodies = [sandbox.api("GET", f"/registrationFolders/{f['externalId']}").content for f in folders]
    refused = json.loads(bodies[0])
    refused["attendee"]["id"] = None  # every key of a real folder, yet refused by the mapping: no attendee id
    bodies.append(json.dumps(refused).encode())
    for number, body in enumerate(bodies):
        answer = requests.post(f"{stack['receiver'].url}/api/webhooks/wedof/{ids['connection']}", data=body,
                               headers=wedof_delivery_headers(body, delivery=f"ops-{number}",
                                                              secret="ops-browser-secret"), timeout=10)
        assert answer.status_code == 202, answer.text
    wait_until(lambda: _events_done(ids["connection"]) == 4, timeout=60, message="the deliveries processed")
    broker.send_task(RECONCILE, args=[ids["connection"]], queue=QUEUE_OF[RECONCILE], task_id=str(uuid.uuid4()))
    wait_until(lambda: _reports(ids["connection"]) == 1, timeout=90, message="the worker's reconciliation report")

    token = admin_token(ids["admin"], ids["tenant"])
    errors: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # Every answer the page gets is a success (the browser's own favicon request aside).
        page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
        page.goto(f"{stack['receiver'].url}/integrations/wedof?token={token}")

        # The last report: Wedof's states against ours, agreeing.
        summary = page.locator("#reconcile-summary")
        expect(summary).to_have_attribute("data-status", "ok", timeout=30_000)
        expect(summary.locator(".badge")).to_have_text("concordant")
        expect(summary).to_contain_text(f"Wedof {FOLDERS} dossiers, chez nous {FOLDERS}")
        state_rows = page.locator("#reconcile-states tr[data-state]")
        expect(state_rows).to_have_count(16)
        expect(page.locator("#reconcile-states tr.differs")).to_have_count(0)

        # The API drift: the new key and the missing one, by name.
        expect(page.locator("#api-drift-summary")).to_have_attribute("data-drift", "changed")
        expect(page.locator("#api-drift-keys li[data-key='attendee.pronouns']")).to_contain_text("clé inconnue")
        expect(page.locator("#api-drift-keys li[data-key='permalink']")).to_contain_text("clé attendue absente")

        # The drift chart: an accessible inline SVG with one data point, and its text table.
        drift_svg = page.locator("#chart-drift svg[role='img']")
        expect(drift_svg).to_have_count(1)
        expect(drift_svg).to_have_attribute("data-points", "1")
        expect(drift_svg.locator("circle.point")).to_have_count(1)
        expect(drift_svg.locator("circle.point")).to_have_attribute("data-value", "0")
        labelled = drift_svg.get_attribute("aria-labelledby").split()
        assert page.locator(f"[id='{labelled[0]}']").text_content() == "Écart de réconciliation, rapport par rapport"
        assert "1 valeurs" in page.locator(f"[id='{labelled[1]}']").text_content()
        expect(page.locator("#chart-drift .chart-table tr")).to_have_count(2)  # header + one report
        expect(page.locator("#chart-deliveries svg rect.column")).to_have_count(48)
        # This hour's bars: the four deliveries, one of them failed.
        expect(page.locator("#chart-deliveries svg rect.column").last).to_have_attribute("data-value", "4")
        expect(page.locator("#chart-failures svg rect.column").last).to_have_attribute("data-value", "1")
        expect(page.locator("#chart-sync svg rect.point")).to_have_count(1)
        assert not page.locator("script[src*='//']").count()  # nothing from a CDN
        page.screenshot(path=str(shots / "1-operations.png"), full_page=True)

        # Compare now, from the keyboard: the worker's new report is drawn as a second point.
        page.locator("#reconcile-now").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#operations-message")).to_contain_text("Nouveau rapport", timeout=60_000)
        expect(drift_svg).to_have_attribute("data-points", "2")
        expect(page.locator("#chart-drift svg polyline.series")).to_have_count(1)
        assert _reports(ids["connection"]) == 2
        page.locator("#chart-drift details summary").click()
        expect(page.locator("#chart-drift .chart-table")).to_be_visible()
        page.screenshot(path=str(shots / "2-second-report.png"), full_page=True)
    assert errors == []
