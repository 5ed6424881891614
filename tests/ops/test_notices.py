"""Staff notices, end to end through a real SMTP server (aiosmtpd) and a real loopback chat webhook.

The notices run is called directly with an explicit ``now``: "a day later" is a ``now`` a day ahead,
never a sleep. Every test runs on SQLite and on PostgreSQL (the problems table's partial unique index
and the grouped queries behave the same on both). The messages received are read back: subjects,
bodies, recipients, threading headers, and the absence of any beneficiary's data.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Notice, NoticeKind, NotificationSettings, Problem, ProblemKind, ProblemStatus
from bdc.types import utcnow
from tests.ops.notices_helpers import (
    PERSONAL_BITS,
    STAFF,
    ChatServer,
    SmtpServer,
    fail_events,
    make_tenant,
    retry_and_finish,
)
from worker.notices import service
from worker.tasks.notices import LOCK_KEY, send_notices

# aiosmtpd warns that AUTH without TLS is unsafe: these servers are loopback test doubles.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
LINK = "https://bdc.organisme-test.fr/integrations/wedof"
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def env(app_env, db_url, redis_url):
    """``env(**settings)``: the product's settings for this test (database, Redis, public URL, SMTP...)."""

    def configure(**values):
        return app_env(database_url=db_url, redis_url=redis_url, public_base_url="https://bdc.organisme-test.fr",
                       wedof_sync_enabled="false", **values)

    return configure


def problems_of(tenant_id: int) -> list[Problem]:
    with session_scope() as session:
        return list(session.scalars(select(Problem).where(Problem.tenant_id == tenant_id).order_by(Problem.id)))


def assert_no_personal_data(*texts: str) -> None:
    for text in texts:
        for bit in PERSONAL_BITS:
            assert bit not in text, f"{bit!r} leaked into a message:\n{text}"


def test_a_burst_of_failures_is_one_notice_then_reminders_then_one_resolved_message(env, smtp):
    env(**smtp.env())
    tenant_id, connection_id = make_tenant()
    failed = fail_events(connection_id, 28)
    failed += fail_events(connection_id, 2, reason="Wedof refused: HTTP 404: Not Found "
                                                   "(GET /registrationFolders/4270885603)")
    t0 = utcnow()

    result = service.run(now=t0)
    assert result["opened"] == 1 and result["sent"] == {"email": 1, "chat": 0} and result["failed"] == 0, result
    (first,) = smtp.messages
    assert first.subject == "[BDC Wedof] Organisme Test : Événements Wedof en échec"
    assert first.rcpt_tos == STAFF and first.mail_from == "alertes@bdc-wedof.test"
    assert first.header("Message-ID") and first.header("In-Reply-To") is None
    assert first.header("Auto-Submitted") == "auto-generated"
    body = first.body
    assert "30 notifications envoyées par Wedof (webhooks) n'ont pas pu être traitées" in body
    assert "  - folder refused (28)" in body and "  - Wedof refused: HTTP 404 (2)" in body
    assert "Que faire : " in body and "« Tout relancer »" in body
    assert "un rappel est envoyé toutes les 24 h" in body
    assert f"Page d'intégration : {LINK}" in body
    assert_no_personal_data(first.subject, body)

    # More failures of the same kind, more runs within the reminder period: no new message.
    failed += fail_events(connection_id, 5)
    for later in (MINUTE, 2 * MINUTE, DAY - MINUTE):
        assert service.run(now=t0 + later)["sent"]["email"] == 0
    assert len(smtp.messages) == 1
    (problem,) = problems_of(tenant_id)
    assert problem.status == ProblemStatus.OPEN and problem.kind == ProblemKind.EVENTS_FAILED
    assert problem.occurrences == 4 and problem.summary == "35 événements Wedof en échec"
    assert problem.notified_at == t0 and problem.reminders == 0

    # A day after the first message: a reminder, threaded under it, with today's count.
    assert service.run(now=t0 + DAY + MINUTE)["sent"]["email"] == 1
    reminder = smtp.messages[1]
    assert reminder.subject == "[BDC Wedof] Organisme Test : Rappel : Événements Wedof en échec"
    assert reminder.header("In-Reply-To") == first.header("Message-ID") == reminder.header("References")
    assert "Rappel : ce problème est toujours en cours" in reminder.body
    assert "35 notifications" in reminder.body
    assert_no_personal_data(reminder.subject, reminder.body)
    assert service.run(now=t0 + DAY + 2 * MINUTE)["sent"]["email"] == 0

    # The events are retried and processed: one "résolu" message, threaded too; then silence.
    retry_and_finish(failed)
    assert service.run(now=t0 + DAY + 10 * MINUTE)["resolved"] == 1
    assert len(smtp.messages) == 3
    resolved = smtp.messages[2]
    assert resolved.subject == "[BDC Wedof] Organisme Test : Résolu : Événements Wedof en échec"
    assert resolved.header("In-Reply-To") == first.header("Message-ID")
    assert "n'est plus constaté" in resolved.body and LINK in resolved.body
    for later in (11 * MINUTE, DAY + 2 * DAY):
        service.run(now=t0 + DAY + later)
    assert len(smtp.messages) == 3
    (problem,) = problems_of(tenant_id)
    assert problem.status == ProblemStatus.RESOLVED and problem.reminders == 1
    assert problem.resolved_notified_at is not None and problem.last_error is None
    # Message-IDs are unique per message.
    assert len({m.header("Message-ID") for m in smtp.messages}) == 3


def test_several_problems_opening_together_are_one_message_and_tenants_never_mix(env, smtp):
    env(**smtp.env())
    tenant_a, connection_a = make_tenant("Organisme A")
    tenant_b, connection_b = make_tenant("Organisme B", recipients=["contact@organisme-b.fr"])
    fail_events(connection_a, 3)
    fail_events(connection_b, 1)
    with session_scope() as session:
        session.add_all([
            Notice(tenant_id=tenant_a, kind=NoticeKind.LATE_ENTRY, message="The entry of enrollment 7 is late",
                   target_type="lifecycle_action", target_id="7"),
            Notice(tenant_id=tenant_a, kind=NoticeKind.BILLING_FAILED, message="Invoice F-1 of folder 1 failed",
                   target_type="invoice", target_id="1"),
            Notice(tenant_id=tenant_a, kind=NoticeKind.BILLING_FAILED, message="Invoice F-2 of folder 2 failed",
                   target_type="invoice", target_id="2"),
        ])
    t0 = utcnow()
    assert service.run(now=t0)["opened"] == 4
    by_tenant = {m.rcpt_tos[0]: m for m in smtp.messages}
    assert len(smtp.messages) == 2 and set(by_tenant) == {STAFF[0], "contact@organisme-b.fr"}
    grouped = by_tenant[STAFF[0]]
    assert grouped.subject == "[BDC Wedof] Organisme A : 3 problèmes détectés"
    for title in ("Événements Wedof en échec", "Déclarations Wedof en retard", "Facturation Wedof en échec"):
        assert f"■ {title}" in grouped.body
    assert "2 factures" in grouped.body and "Organisme B" not in grouped.body
    other = by_tenant["contact@organisme-b.fr"]
    assert other.subject == "[BDC Wedof] Organisme B : Événements Wedof en échec" and "Organisme A" not in other.body

    # Staff acknowledge the notices on the page: those two problems resolve, each with its own message
    # threaded under the grouped one; the failed events are still there.
    with session_scope() as session:
        for notice in session.scalars(select(Notice).where(Notice.tenant_id == tenant_a)):
            notice.acknowledged_at = utcnow()
    service.run(now=t0 + 10 * MINUTE)
    resolved = smtp.messages[2:]
    assert sorted(m.subject for m in resolved) == [
        "[BDC Wedof] Organisme A : Résolu : Déclarations Wedof en retard",
        "[BDC Wedof] Organisme A : Résolu : Facturation Wedof en échec"]
    assert {m.header("In-Reply-To") for m in resolved} == {grouped.header("Message-ID")}
    assert [p.status for p in problems_of(tenant_a) if p.kind == ProblemKind.EVENTS_FAILED] == [ProblemStatus.OPEN]


def test_smtp_down_loses_nothing_and_sends_once_it_is_back(env):
    smtp = SmtpServer()  # its port reserved, nothing listening yet
    env(**smtp.env())
    tenant_id, connection_id = make_tenant()
    failed = fail_events(connection_id, 4)
    t0 = utcnow()
    try:
        for minute in range(3):
            result = service.run(now=t0 + minute * MINUTE)
            assert result["failed"] == 1 and result["sent"]["email"] == 0
        (problem,) = problems_of(tenant_id)
        assert problem.notified_at is None and problem.last_error.startswith("email: ConnectionRefusedError")
        smtp.start()
        assert service.run(now=t0 + 3 * MINUTE)["sent"]["email"] == 1
        assert service.run(now=t0 + 4 * MINUTE)["sent"]["email"] == 0
        assert [m.subject for m in smtp.messages] == ["[BDC Wedof] Organisme Test : Événements Wedof en échec"]
        (problem,) = problems_of(tenant_id)
        assert problem.notified_at == t0 + 3 * MINUTE and problem.last_error is None

        # Down again when the problem resolves: the "résolu" message waits for it too, and goes once.
        smtp.stop()
        retry_and_finish(failed)
        assert service.run(now=t0 + 10 * MINUTE)["failed"] == 1
        assert problems_of(tenant_id)[0].resolved_notified_at is None
        smtp.start()
        service.run(now=t0 + 11 * MINUTE)
        service.run(now=t0 + 12 * MINUTE)
        assert [m.subject for m in smtp.messages][1:] == ["[BDC Wedof] Organisme Test : Résolu : Événements Wedof en échec"]
    finally:
        smtp.stop()


def test_the_reminder_period_is_the_tenants_and_reminders_repeat(env, smtp):
    env(**smtp.env(), bdc_notice_reminder_after="86400")
    tenant_id, connection_id = make_tenant(reminder_after=600)
    fail_events(connection_id, 2)
    t0 = utcnow()
    service.run(now=t0)
    service.run(now=t0 + timedelta(seconds=599))
    assert len(smtp.messages) == 1
    service.run(now=t0 + timedelta(seconds=601))
    service.run(now=t0 + timedelta(seconds=900))
    service.run(now=t0 + timedelta(seconds=1202))
    subjects = [m.subject for m in smtp.messages]
    assert subjects[1:] == ["[BDC Wedof] Organisme Test : Rappel : Événements Wedof en échec"] * 2
    assert {m.header("In-Reply-To") for m in smtp.messages[1:]} == {smtp.messages[0].header("Message-ID")}
    assert "un rappel est envoyé toutes les 10 min" in smtp.messages[0].body
    assert problems_of(tenant_id)[0].reminders == 2


def test_a_flickering_condition_is_not_resolved_and_reopened(env, smtp):
    env(**smtp.env(), bdc_notice_interval="60")
    tenant_id, connection_id = make_tenant()
    failed = fail_events(connection_id, 2)
    t0 = utcnow()
    service.run(now=t0)
    retry_and_finish(failed)
    service.run(now=t0 + MINUTE)  # gone for one run only: not resolved yet (2 intervals of grace)
    fail_events(connection_id, 1)
    service.run(now=t0 + 2 * MINUTE)
    assert len(smtp.messages) == 1
    (problem,) = problems_of(tenant_id)
    assert problem.status == ProblemStatus.OPEN and problem.occurrences == 2


@pytest.mark.parametrize("case", ["no_smtp_host", "no_recipients", "email_disabled"])
def test_nothing_is_sent_without_a_channel_and_resolutions_close_quietly(env, smtp, case):
    settings = smtp.env() if case != "no_smtp_host" else {"smtp_port": str(smtp.port)}
    env(**settings)
    tenant_id, connection_id = make_tenant(recipients=[] if case == "no_recipients" else None,
                                           email_enabled=case != "email_disabled")
    failed = fail_events(connection_id, 3)
    t0 = utcnow()
    result = service.run(now=t0)
    assert result["opened"] == 1 and result["sent"] == {"email": 0, "chat": 0} and result["failed"] == 0
    (problem,) = problems_of(tenant_id)
    assert problem.notified_at is None and problem.last_error is None  # waits for a channel, no error
    retry_and_finish(failed)
    assert service.run(now=t0 + 10 * MINUTE)["closed_silently"] == 1
    (problem,) = problems_of(tenant_id)
    assert problem.status == ProblemStatus.RESOLVED and problem.resolved_notified_at is not None
    assert smtp.messages == []


def test_an_open_problem_is_told_once_a_channel_is_configured(env, smtp):
    env(**smtp.env())
    tenant_id, connection_id = make_tenant(recipients=[])
    fail_events(connection_id, 1)
    t0 = utcnow()
    service.run(now=t0)
    assert smtp.messages == []
    with session_scope() as session:
        row = session.scalars(select(NotificationSettings).where(NotificationSettings.tenant_id == tenant_id)).one()
        row.recipients = ["direction@organisme-test.fr"]
    service.run(now=t0 + MINUTE)
    assert [m.rcpt_tos for m in smtp.messages] == [["direction@organisme-test.fr"]]


# -- chat ----------------------------------------------------------------------------------------------------

def test_chat_webhook_gets_the_opening_reminder_and_resolution(env):
    env(bdc_notice_reminder_after="3600")
    with ChatServer() as chat:
        tenant_id, connection_id = make_tenant(recipients=[], chat_url=chat.url())
        failed = fail_events(connection_id, 12)
        t0 = utcnow()
        assert service.run(now=t0)["sent"] == {"email": 0, "chat": 1}
        service.run(now=t0 + MINUTE)
        service.run(now=t0 + timedelta(hours=1, minutes=1))
        retry_and_finish(failed)
        service.run(now=t0 + timedelta(hours=2))
        paths = {path for path, _ in chat.posts}
        texts = [body["text"] for _, body in chat.posts]
    assert paths == {"/hooks/T000-secret-path"} and all(set(body) == {"text"} for _, body in chat.posts)
    assert len(texts) == 3
    assert texts[0].startswith("[BDC Wedof] Organisme Test : Événements Wedof en échec")
    assert "12 événements Wedof en échec" in texts[0] and LINK in texts[0]
    assert texts[1].startswith("[BDC Wedof] Organisme Test : Rappel : ")
    assert texts[2].startswith("[BDC Wedof] Organisme Test : Résolu : ")
    assert_no_personal_data(*texts)
    assert problems_of(tenant_id)[0].resolved_notified_at is not None


def test_one_channel_down_never_duplicates_the_other(env):
    smtp = SmtpServer()  # down at first
    env(**smtp.env())
    try:
        with ChatServer() as chat:
            tenant_id, connection_id = make_tenant(chat_url=chat.url())
            fail_events(connection_id, 2)
            t0 = utcnow()
            for minute in range(3):
                service.run(now=t0 + minute * MINUTE)
            assert len(chat.posts) == 1  # chat got it once; email keeps failing
            (problem,) = problems_of(tenant_id)
            assert problem.notified_at is None and problem.last_error.startswith("email:")
            smtp.start()
            service.run(now=t0 + 3 * MINUTE)
            service.run(now=t0 + 4 * MINUTE)
            assert len(chat.posts) == 1 and len(smtp.messages) == 1
            assert problems_of(tenant_id)[0].notified_at == t0 + 3 * MINUTE
    finally:
        smtp.stop()


@pytest.mark.parametrize("status,location", [(500, None), (404, None), (302, "/elsewhere")])
def test_a_failing_chat_webhook_is_recorded_without_its_url_and_retried(env, status, location):
    env()
    with ChatServer(status=status, location=location) as chat:
        tenant_id, connection_id = make_tenant(recipients=[], chat_url=chat.url())
        fail_events(connection_id, 1)
        t0 = utcnow()
        assert service.run(now=t0)["failed"] == 1
        (problem,) = problems_of(tenant_id)
        assert problem.last_error == f"chat: the webhook answered HTTP {status}"
        assert [path for path, _ in chat.posts] == ["/hooks/T000-secret-path"]  # a redirect is not followed
        chat.status, chat.location = 200, None
        service.run(now=t0 + MINUTE)
        service.run(now=t0 + 2 * MINUTE)
        assert len(chat.posts) == 2
        assert problems_of(tenant_id)[0].notified_at == t0 + MINUTE


def test_an_unreachable_chat_webhook_error_never_quotes_the_url(env):
    env()
    with ChatServer() as chat:
        url = chat.url()
    tenant_id, connection_id = make_tenant(recipients=[], chat_url=url)  # the server is gone
    fail_events(connection_id, 1)
    assert service.run(now=utcnow())["failed"] == 1
    error = problems_of(tenant_id)[0].last_error
    assert error.startswith("chat: ConnectionError") and "secret" not in error and "127.0.0.1" not in error


# -- SMTP settings ----------------------------------------------------------------------------------------

def test_smtp_login_with_the_configured_credentials(env):
    smtp = SmtpServer(credentials=("bdc-notices", "Sm7p-pa55word")).start()
    try:
        env(**smtp.env(smtp_username="bdc-notices", smtp_password="Sm7p-pa55word"))
        _tenant, connection_id = make_tenant()
        fail_events(connection_id, 1)
        assert service.run(now=utcnow())["sent"]["email"] == 1
        assert smtp.logins == ["bdc-notices"] and len(smtp.messages) == 1
    finally:
        smtp.stop()


@pytest.mark.parametrize("setting", [{"smtp_password": "Wr0ng-pa55word"}, {"smtp_tls": "starttls"}])
def test_smtp_refusals_are_recorded_without_the_password(env, setting):
    smtp = SmtpServer(credentials=("bdc-notices", "Sm7p-pa55word")).start()
    try:
        env(**{**smtp.env(smtp_username="bdc-notices", smtp_password="Sm7p-pa55word"), **setting})
        tenant_id, connection_id = make_tenant()
        fail_events(connection_id, 1)
        assert service.run(now=utcnow())["failed"] == 1
        error = problems_of(tenant_id)[0].last_error
        # starttls: this server offers no STARTTLS, and the product never falls back to clear text.
        expected = "SMTPAuthenticationError" if "smtp_password" in setting else "SMTPNotSupportedError"
        assert error.startswith(f"email: {expected}") and "pa55word" not in error
        assert smtp.messages == []
    finally:
        smtp.stop()


def test_two_runs_never_overlap(env, smtp, redis_client):
    """The task holds a Redis lock: a run that finds another one running sends nothing and says so."""
    env(**smtp.env())
    _tenant_id, connection_id = make_tenant()
    fail_events(connection_id, 1)
    held = redis_client.lock(LOCK_KEY, timeout=60)
    assert held.acquire(blocking=False)
    try:
        assert send_notices() == {"status": "skipped", "reason": "another run is sending notices"}
        assert smtp.messages == []
    finally:
        held.release()
    assert send_notices()["sent"]["email"] == 1
    assert send_notices()["sent"]["email"] == 0 and len(smtp.messages) == 1
