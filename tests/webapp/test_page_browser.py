"""The integration page in a real browser against the running stack.

gunicorn serves the webapp, one real Celery worker consumes both queues, the Wedof sandbox plays
Wedof, PostgreSQL and Redis are real. Chromium (the system one, never downloaded) opens the page
with a token, clicks "Synchroniser maintenant", watches the progress reach the end, retries a
failed event and sees it processed. Screenshots land in test-output/<test name>/.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Enrollment, EventStatus, SyncRun, Tenant, User, UserRole, WebhookEvent, WedofConnection
from tests.conftest import fresh_postgres_url, process_environment
from tests.support.browser import CspWatch, admin_token, chromium, page_stack_env
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker, Receiver

pytestmark = pytest.mark.slow

FOLDERS = 30


def _seed(sandbox) -> dict:
    """A tenant on the sandbox, its admin, and one failed event holding a real folder."""
    external_id = sandbox.control("GET", "/truth", params={"compact": 1})[0]["externalId"]
    body = sandbox.api("GET", f"/registrationFolders/{external_id}").text
    with session_scope() as session:
        tenant = Tenant(name="Organisme de démonstration", slug="demo")
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, base_url=sandbox.api_url, api_key=sandbox.api_key,
                                     webhook_secret="browser-test-secret", rate_limit_per_second=500)
        admin = User(tenant_id=tenant.id, email="admin@demo.test", role=UserRole.TENANT_ADMIN)
        session.add_all([connection, admin])
        session.flush()
        event = WebhookEvent(connection_id=connection.id, delivery_id="dlv-browser-1",
                             event_type="registrationFolder.updated", body=body, folder_external_id=external_id,
                             headers={"X-Wedof-Event": "registrationFolder.updated"}, status=EventStatus.FAILED,
                             attempts=8, last_error="WedofServerError: HTTP 503 (simulated)",
                             status_reason="gave up after 8 attempts", task_id="lost-task-id")
        session.add(event)
        session.flush()
        return {"tenant": tenant.id, "connection": connection.id, "admin": admin.id, "event": event.id}


@pytest.fixture(scope="module")
def stack(redis_server, pg_cluster, pg_template, tmp_path_factory, output_dir):
    env = page_stack_env(redis_server.url, 6, fresh_postgres_url(pg_cluster, pg_template),
                         tmp_path_factory.mktemp("var"))
    logs = output_dir / "logs"
    with process_environment(env):
        with running_sandbox(folders=FOLDERS, seed=5) as sandbox:
            ids = _seed(sandbox)
            worker = CeleryWorker(env, queues="events,sync", concurrency=2, log_dir=logs).start()
            receiver = Receiver(env, log_dir=logs).start()
            try:
                yield {"env": env, "sandbox": sandbox, "receiver": receiver, "worker": worker, "ids": ids}
            finally:
                receiver.stop()
                worker.stop()



def test_sync_now_and_retry_in_the_browser(stack, output_dir, request):
    from playwright.sync_api import expect

    shots = output_dir / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    ids = stack["ids"]
    token = admin_token(ids["admin"], ids["tenant"])
    url = f"{stack['receiver'].url}/integrations/wedof?token={token}"

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        csp = CspWatch(page)
        page.goto(url)
        expect(page.locator("#connection-state")).to_have_text("Connecté", timeout=30_000)
        assert "Content-Security-Policy" in {name.title() for name in page.context.request.get(url).headers}
        assert "token=" not in page.url  # kept in sessionStorage, not in the address bar
        failed_rows = page.locator("#failed-events tr[data-event-id]")
        expect(failed_rows).to_have_count(1)
        expect(page.locator("#webhook-url")).to_have_value(
            f"http://127.0.0.1:8000/api/webhooks/wedof/{ids['connection']}")
        flower_link = page.locator("#failed-events a")
        expect(flower_link).to_have_attribute("href", "http://127.0.0.1:5555/task/lost-task-id")

        # Sync now: the page polls sync-runs/<id> until the worker finishes.
        page.select_option("#sync-type", "all")
        page.click("#sync-now")
        status = page.locator("#sync-status")
        expect(status).to_have_attribute("data-status", "succeeded", timeout=120_000)
        expect(status).to_contain_text(f"{FOLDERS} / {FOLDERS}")
        assert page.locator("#sync-progress-bar").evaluate("el => el.style.width") == "100%"
        expect(page.locator("#sync-history tr[data-run-id]").first.locator(".badge")).to_have_text("réussie")
        page.screenshot(path=str(shots / "1-sync-done.png"), full_page=True)

        with session_scope() as session:
            run = session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
            assert (run.status.value, run.trigger.value, run.fetched, run.failed) == (
                "succeeded", "manual", FOLDERS, 0)

        # Retry the failed event: the worker processes it with the real folder.
        page.click(f"#failed-events button[data-event-id='{ids['event']}']")
        expect(page.locator("#events-message")).to_contain_text(f"Événement {ids['event']} relancé")
        wait_until(lambda: _event_status(ids["event"]) == EventStatus.PROCESSED, timeout=60,
                   message="the retried event was never processed")
        page.reload()  # the token survives in sessionStorage
        expect(page.locator("#connection-state")).to_have_text("Connecté", timeout=30_000)
        expect(failed_rows).to_have_count(0)
        expect(page.locator("#failed-events")).to_contain_text("Aucun événement en échec.")
        page.screenshot(path=str(shots / "2-event-retried.png"), full_page=True)
        assert csp.violations == []  # the whole walk ran under the page's policy without tripping it

        # The watch does see a violation, and the policy is enforced: injected inline code never runs.
        blocked = page.evaluate("""() => new Promise((resolve) => {
            const done = (directive) => resolve({ran: window.__inlineRan === true, directive});
            document.addEventListener("securitypolicyviolation", (e) => done(e.violatedDirective), {once: true});
            const s = document.createElement("script");
            s.textContent = "window.__inlineRan = true";
            document.body.appendChild(s);
            setTimeout(() => done(null), 5000); })""")
        assert blocked["ran"] is False and (blocked["directive"] or "").startswith("script-src"), blocked
        page.wait_for_timeout(300)  # lets the exposed function's call arrive
        assert csp.violations, "the watch missed the violation it is there to catch"

        # "Se déconnecter" revokes the token at the server: the login form is back and the API refuses it.
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        refused = page.context.request.get(f"{stack['receiver'].url}/api/integrations/wedof/status",
                                           headers={"Authorization": f"Bearer {token}"})
        assert refused.status == 401 and refused.json()["error"] == "token_revoked"


def _event_status(event_id: int) -> EventStatus:
    with session_scope() as session:
        return session.get(WebhookEvent, event_id).status


def test_approve_a_proposed_entry_in_the_browser(stack, output_dir, request):
    """An attended session makes the entry due; the admin approves it on the page; Wedof shows the folder in
    training from the attended date."""
    import requests
    from playwright.sync_api import expect

    from bdc.models import Appointment, AppointmentPhase, AppointmentStatus, LifecycleKind, LifecycleMode
    from bdc.models import LifecycleSettings as Settings
    from wedof.mapping import apply_folder

    shots = output_dir / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    sandbox, ids = stack["sandbox"], stack["ids"]
    today = date.today()
    attended_on = today - timedelta(days=1)
    external_id = sandbox.control("GET", "/truth", params={"compact": 1})[7]["externalId"]
    folder = sandbox.control("PUT", f"/folders/{external_id}", json={
        "state": "accepted", "withPoleEmploi": False, "trainingActionInfo": {
            "sessionStartDate": f"{today - timedelta(days=20)}T00:00:00.000Z",
            "sessionEndDate": f"{today + timedelta(days=40)}T00:00:00.000Z"}})
    with session_scope() as session:
        enrollment_id = apply_folder(session, ids["tenant"], folder).enrollment_id
        enrollment = session.get(Enrollment, enrollment_id)
        session.add(Settings(tenant_id=ids["tenant"], **{f"{k.value}_mode": LifecycleMode.APPROVE
                                                         if k == LifecycleKind.ENTRY else LifecycleMode.OFF
                                                         for k in LifecycleKind}))
        start = datetime(attended_on.year, attended_on.month, attended_on.day, 9, tzinfo=UTC)
        session.add(Appointment(tenant_id=ids["tenant"], beneficiary_id=enrollment.beneficiary_id,
                                enrollment_id=enrollment_id, phase=AppointmentPhase.PRELIMINAIRE,
                                status=AppointmentStatus.ATTENDED, starts_at=start, ends_at=start + timedelta(hours=2)))
    token = admin_token(ids["admin"], ids["tenant"])
    api = f"{stack['receiver'].url}/api/integrations/wedof"
    evaluated = requests.post(f"{api}/bilans/{enrollment_id}/evaluate", timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
    assert evaluated.status_code == 202, evaluated.text

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(f"{stack['receiver'].url}/integrations/wedof?token={token}")
        row = page.locator("#lifecycle-actions tr[data-status='proposed']")
        for _ in range(30):  # the worker evaluates within a moment; the page shows what is there
            if row.count():
                break
            page.wait_for_timeout(500)
            page.reload()
        expect(row).to_have_count(1, timeout=10_000)
        expect(row).to_contain_text(external_id)
        expect(row).to_contain_text(attended_on.isoformat())  # the body Wedof will receive
        page.screenshot(path=str(shots / "1-entry-proposed.png"), full_page=True)
        row.locator("button[data-verb='approve']").focus()
        page.keyboard.press("Enter")  # the keyboard is enough
        expect(page.locator("#actions-message")).to_contain_text("approuvée")
        wait_until(lambda: sandbox.api("GET", f"/registrationFolders/{external_id}").json()["state"] == "inTraining",
                   timeout=60, message="the approved entry reached Wedof")
        declared = sandbox.api("GET", f"/registrationFolders/{external_id}").json()["history"]["inTrainingDate"]
        assert declared[:10] == attended_on.isoformat()
        page.select_option("#actions-filter", "all")
        page.locator("#lifecycle-actions button.link-btn", has_text=external_id).click()
        expect(page.locator("#bilan")).to_be_visible()
        expect(page.locator("#bilan-appointments")).to_contain_text("attended")
        expect(page.locator("#bilan-actions")).to_contain_text("faite", timeout=30_000)
        page.screenshot(path=str(shots / "2-entry-declared.png"), full_page=True)


# -- billing ---------------------------------------------------------------------------------------------

def paris_today() -> date:
    """The tenant's today (invoices are dated in its calendar, Paris by default), not the machine's."""
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Paris")).date()


BILLING_PRICE = {"totalExcl": 1075, "totalIncl": 1290, "vatExclTax20": 1075, "vatInclTax20": 1290}


def _seed_billing() -> dict:
    """A tenant billing in approve mode: two folders due, one invoice failed at Wedof, one billed and paid."""
    from decimal import Decimal

    from bdc.models import Beneficiary, BillingMode, BillingSettings, Program
    from billing import evaluate, invoices

    with session_scope() as session:
        tenant = Tenant(name="Bilans Conseil", slug="billing-browser")
        session.add(tenant)
        session.flush()
        admin = User(tenant_id=tenant.id, email="admin@billing.test", role=UserRole.TENANT_ADMIN)
        student = User(tenant_id=tenant.id, email="zoe@billing.test", first_name="Zoé", last_name="Martin",
                       role=UserRole.STUDENT)
        session.add_all([admin, student, BillingSettings(tenant_id=tenant.id, mode=BillingMode.APPROVE),
                         WedofConnection(tenant_id=tenant.id, base_url="http://127.0.0.1:9/api", api_key="k")])
        session.flush()
        beneficiary = Beneficiary(tenant_id=tenant.id, user_id=student.id, external_id="att-1")
        program = Program(tenant_id=tenant.id, name="Bilan de compétences 24 h", external_id="ta-1")
        session.add_all([beneficiary, program])
        session.flush()
        enrollments = []
        for n in range(4):
            enrollment = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=program.id,
                                    external_id=f"710000000{n}", wedof_state="serviceDoneValidated",
                                    wedof_billing_state="toBill", wedof_amounts=dict(BILLING_PRICE))
            session.add(enrollment)
            session.flush()
            enrollments.append(enrollment.id)
        created, why = evaluate.release(session, evaluate.settings_of(session, tenant.id), enrollments[:2],
                                        "user:seed")
        assert why == {}
        failed, paid = (invoice.id for invoice in created)
    with session_scope() as session:
        for invoice_id in (failed, paid):
            assert invoices.start(session, invoice_id, f"task-{invoice_id}")
        assert invoices.fail(session, failed, "HTTP 400: Wedof refused the bill",
                             [{"propertyPath": "billNumber", "message": "Ce numéro est déjà utilisé"}])
        assert invoices.bill(session, paid, {"billNumber": "x"}, "sent")
        assert invoices.pay(session, paid, paid_on=paris_today(), amount=Decimal("1290.00"), source="payments")
    return {"tenant": tenant.id, "admin": admin.id, "failed": failed, "paid": paid, "due": enrollments[2:]}


@pytest.fixture(scope="module")
def billing_stack(redis_server, pg_cluster, pg_template, tmp_path_factory, output_dir):
    """gunicorn only: no worker consumes the queue, so what a click publishes is read back from Redis."""
    import redis

    env = page_stack_env(redis_server.url, 7, fresh_postgres_url(pg_cluster, pg_template),
                         tmp_path_factory.mktemp("billing-var"))
    broker = redis.Redis.from_url(env["REDIS_URL"])
    broker.flushdb()
    with process_environment(env):
        ids = _seed_billing()
        receiver = Receiver(env, log_dir=output_dir / "logs").start()
        try:
            yield {"env": env, "receiver": receiver, "ids": ids, "broker": broker}
        finally:
            receiver.stop()
            broker.flushdb()
            broker.close()


def test_billing_totals_a_failed_invoice_and_its_retry_in_the_browser(billing_stack, output_dir, request):
    import csv
    import io
    import re

    import requests
    from playwright.sync_api import expect

    from tests.webapp.conftest import queued_messages

    shots = output_dir / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    ids = billing_stack["ids"]
    token = admin_token(ids["admin"], ids["tenant"])
    api = f"{billing_stack['receiver'].url}/api/integrations/wedof"
    year = paris_today().year
    failed_number, paid_number = f"F-{year}-000001", f"F-{year}-000002"

    def money(text: str) -> re.Pattern:  # Intl groups thousands with a (narrow) no-break space
        return re.compile(text.replace(" ", r"\s?"))

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1400}, accept_downloads=True)
        page.goto(f"{billing_stack['receiver'].url}/integrations/wedof?token={token}")
        totals = page.locator("#billing-totals")
        # The month's figures: two folders to bill, one invoice billed and paid, one failed.
        to_bill = totals.locator("[data-figure='to_bill']")
        expect(to_bill).to_have_attribute("data-count", "2", timeout=30_000)
        expect(to_bill.locator("[data-field='amount']")).to_have_text(money("2 580,00 €"))
        for figure in ("billed", "paid", "failed"):
            tile = totals.locator(f"[data-figure='{figure}']")
            expect(tile).to_have_attribute("data-count", "1")
            expect(tile.locator("[data-field='amount']")).to_have_text(money("1 290,00 €"))
        # No month picked: the server answered for the tenant's own, and the picker shows it.
        expect(page.locator("#billing-month")).to_have_value(paris_today().strftime("%Y-%m"))
        expect(page.locator("#billing-mode")).to_have_attribute("data-mode", "approve")
        # Approve mode: each due folder has its button and the next number it would take.
        due = page.locator("#billing-due tr[data-enrollment-id]")
        expect(due).to_have_count(2)
        expect(due.first).to_contain_text(f"F-{year}-000003")
        expect(due.first.get_by_role("button", name=re.compile("^Libérer le dossier"))).to_be_visible()
        expect(page.locator("#billing-release-all")).to_be_visible()
        expect(page.locator("#billing-dry-run")).to_be_hidden()

        # The failed invoice, with Wedof's reason and violations.
        failed_row = page.locator(f"#billing-failed tr[data-invoice-id='{ids['failed']}']")
        expect(failed_row).to_contain_text(failed_number)
        expect(failed_row).to_contain_text("HTTP 400: Wedof refused the bill")
        expect(failed_row).to_contain_text("billNumber : Ce numéro est déjà utilisé")
        page.screenshot(path=str(shots / "1-billing-failed.png"), full_page=True)

        # The PDF comes through the token (a blob saved by the page).
        with page.expect_download() as download:
            page.locator(f"#billing-recent tr[data-invoice-id='{ids['paid']}'] button.pdf-btn").click()
        assert download.value.suggested_filename == f"facture-{paid_number}.pdf"
        assert open(download.value.path(), "rb").read().startswith(b"%PDF-")

        # The month's CSV, through the token too: the header and this month's two invoices.
        with page.expect_download() as export:
            page.click("#billing-export")
        assert export.value.suggested_filename == f"factures-{paris_today():%Y-%m}.csv"
        rows = list(csv.reader(io.StringIO(open(export.value.path(), encoding="utf-8").read(), newline="")))
        assert rows[0][:3] == ["number", "issue_date", "status"]
        assert sorted((r[0], r[2]) for r in rows[1:]) == [(failed_number, "failed"), (paid_number, "paid")]

        # "Réessayer", from the keyboard.
        retry = failed_row.get_by_role("button", name=f"Réessayer la facture {failed_number}")
        retry.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#billing-message")).to_contain_text(f"Facture {failed_number} : réservée à nouveau")
        reserved_row = page.locator(f"#billing-reserved tr[data-invoice-id='{ids['failed']}']")
        expect(reserved_row).to_contain_text(failed_number)
        expect(reserved_row).to_contain_text("déjà envoyée une fois")  # sent once: no longer cancellable
        expect(page.locator("#billing-failed")).to_contain_text("Aucune facture en échec.")
        expect(totals.locator("[data-figure='failed']")).to_have_attribute("data-count", "0")
        page.screenshot(path=str(shots / "2-billing-retried.png"), full_page=True)

    # The API agrees, and the send waits in the queue for a worker (none runs here).
    invoice = requests.get(f"{api}/invoices/{ids['failed']}", headers={"Authorization": f"Bearer {token}"},
                           timeout=10).json()
    assert (invoice["status"], invoice["number"], invoice["reason"]) == ("reserved", failed_number, None)
    assert invoice["released_by"] == f"user:{ids['admin']}"
    assert [(m["task"], m["args"]) for m in queued_messages(billing_stack["broker"], "sync")] == [
        ("wedof.send_invoice", [ids["failed"]])]


_CALL_EVERY_METHOD = """async ({token, eventId}) => {
  const { createWedofService, WedofServiceError } = await import("/static/wedofService.js");
  const wedof = createWedofService({ baseUrl: location.origin, getToken: () => token });
  const refused = async (call) => {
    try { await call; return { thrown: false }; } catch (e) {
      return { thrown: true, typed: e instanceof WedofServiceError, status: e.status, error: e.error,
               message: e.message };
    }
  };
  const out = {};
  out.status = await wedof.getStatus();
  out.failed = await wedof.getEvents({ status: "failed" });
  out.retried = await wedof.retryEvent(eventId);
  out.sync = await wedof.syncData("all");
  const until = Date.now() + 120000;  // the worker runs it; getSyncRun follows it to its end
  do {
    out.run = await wedof.getSyncRun(out.sync.run_id);
    if (["succeeded", "failed", "skipped"].includes(out.run.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  } while (Date.now() < until);
  out.runs = await wedof.getSyncRuns(1, 5);
  out.stagiaires = await wedof.getStagiaires(1, 5);
  out.formations = await wedof.getFormations();
  out.bilans = await wedof.getBilans(1, 100);
  out.actions = await wedof.getLifecycleActions();
  out.invoices = await wedof.getInvoices();
  out.refused = {
    unknownRun: await refused(wedof.getSyncRun(987654)),
    approveUnknown: await refused(wedof.approveAction(987654)),
    rejectWithoutReason: await refused(wedof.rejectAction(987654, "")),
    retryUnknownAction: await refused(wedof.retryAction(987654)),
    unknownInvoice: await refused(wedof.getInvoice(987654)),
    pdfOfUnknownInvoice: await refused(wedof.downloadInvoicePdf(987654)),
    retryUnknownInvoice: await refused(wedof.retryInvoice(987654)),
    cancelWithoutReason: await refused(wedof.cancelInvoice(987654, "")),
    releaseNothing: await refused(wedof.releaseInvoices(null)),
    badSyncType: await refused(wedof.syncData("everything")),
    badToken: await refused(createWedofService({ baseUrl: location.origin, getToken: () => "not.a.jwt" }).getStatus()),
    aiAnalysis: await refused(wedof.createAIAnalysis(1, { depth: "full" })),
  };
  return out;
}"""


def test_wedof_service_js_calls_every_method_against_the_running_stack(stack):
    ids = stack["ids"]
    token = admin_token(ids["admin"], ids["tenant"])
    # This stack's database by name: another module-scoped stack may have set the environment since.
    with session_scope(stack["env"]["DATABASE_URL"]) as session:  # a failed event of its own, for retryEvent
        event = WebhookEvent(connection_id=ids["connection"], delivery_id="dlv-service-js",
                             event_type="registrationFolder.updated", body="{}", headers={},
                             status=EventStatus.FAILED, attempts=8, last_error="simulated",
                             status_reason="gave up after 8 attempts")
        session.add(event)
        session.flush()
        event_id = event.id
    base = stack["receiver"].url

    with chromium() as browser:
        page = browser.new_page()
        csp = CspWatch(page)
        page.goto(f"{base}/integrations/wedof")  # a document of the service's origin: the module is 'self'
        page.set_default_timeout(150_000)
        out = page.evaluate(_CALL_EVERY_METHOD, {"token": token, "eventId": event_id})
        assert csp.violations == []

    assert out["status"]["connected"] is True and out["status"]["tenant"]["id"] == ids["tenant"]
    assert out["run"]["id"] == out["sync"]["run_id"] and out["run"]["status"] == "succeeded"
    assert out["runs"]["items"] and out["stagiaires"]["per_page"] == 5
    assert out["formations"]["total"] >= 1 and out["bilans"]["total"] >= 1
    assert event_id in [e["id"] for e in out["failed"]["items"]]
    assert out["retried"] == {"event_id": event_id, "task_id": out["retried"]["task_id"], "status": "queued"}
    assert {"items", "total"} <= set(out["actions"]) and {"items", "total"} <= set(out["invoices"])
    refusals = {name: (r["thrown"], r["typed"], r["status"], r["error"]) for name, r in out["refused"].items()}
    assert refusals == {
        "unknownRun": (True, True, 404, "not_found"), "approveUnknown": (True, True, 404, "not_found"),
        "rejectWithoutReason": (True, True, 422, "validation_error"),
        "retryUnknownAction": (True, True, 404, "not_found"), "unknownInvoice": (True, True, 404, "not_found"),
        "pdfOfUnknownInvoice": (True, True, 404, "not_found"), "retryUnknownInvoice": (True, True, 404, "not_found"),
        "cancelWithoutReason": (True, True, 422, "validation_error"),
        "releaseNothing": (True, True, 422, "validation_error"), "badSyncType": (True, True, 422, "validation_error"),
        "badToken": (True, True, 401, "invalid_token"), "aiAnalysis": (True, True, 501, "not_available"),
    }
    assert out["refused"]["rejectWithoutReason"]["message"] == "Say why the action is rejected."  # the API's own
    assert "not available" in out["refused"]["aiAnalysis"]["message"]
