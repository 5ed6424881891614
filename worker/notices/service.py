"""One notices run: look at what is wrong, move the problems, then tell each tenant's staff.

1. **Observe** (one transaction): :func:`conditions.current` says what holds now; each condition is
   observed (its problem opened or bumped) and the tenant's other open problems resolved once unseen
   for ``2 × BDC_NOTICE_INTERVAL`` (a flicker is not worth two mails).
2. **Deliver** (no transaction held across SMTP or HTTP): per tenant and channel (email when SMTP_HOST,
   email_enabled and recipients are set; chat when a webhook URL is), one message for the problems
   that opened (grouped), one reminder per problem still open after the reminder period (then every
   such period), one "résolu" message per resolved problem. A channel that accepted a message is
   recorded on the problem before the next one is tried, and the step completes once every channel
   has it: a failed delivery is recorded (``last_error``) and retried next run, to the channels that
   missed it only, so nothing is lost and nothing is sent twice.

A tenant with no channel at all keeps its open problems unannounced (they are told once a channel is
configured, if still open); a problem resolved meanwhile is closed without a message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import NotificationSettings, Problem, Tenant
from bdc.settings import Settings, get_settings
from bdc.types import utcnow
from worker.notices import conditions, messages, problems
from worker.notices.channels import DeliveryError, Mailer, build_email, post_chat, sender_domain

log = logging.getLogger("worker")

EMAIL, CHAT = "email", "chat"
PAGE_PATH = "/integrations/wedof"


@dataclass
class Audience:
    """Who hears about one tenant's problems, and how."""

    tenant_id: int
    tenant_name: str
    recipients: list[str]
    chat_url: str | None
    reminder_every: float
    email_on: bool

    @property
    def channels(self) -> list[str]:
        found = [EMAIL] if self.email_on and self.recipients else []
        return found + ([CHAT] if self.chat_url else [])


@dataclass
class Outcome:
    observed: int = 0
    opened: int = 0
    resolved: int = 0
    sent: dict = field(default_factory=lambda: {EMAIL: 0, CHAT: 0})
    failed: int = 0
    closed_silently: int = 0

    def as_dict(self) -> dict:
        return {"status": "ok", "observed": self.observed, "opened": self.opened, "resolved": self.resolved,
                "sent": dict(self.sent), "failed": self.failed, "closed_silently": self.closed_silently}


def run(now: datetime | None = None, settings: Settings | None = None) -> dict:
    """Observe, resolve, deliver; returns what was done (the task's result)."""
    settings = settings or get_settings()
    now = now or utcnow()
    outcome = Outcome()
    observe(now, settings, outcome)
    deliver(now, settings, outcome)
    return outcome.as_dict()


def observe(now: datetime, settings: Settings, outcome: Outcome) -> None:
    grace = 2 * settings.notice_interval
    with session_scope() as session:
        found = conditions.current(session, now, settings)
        for tenant_id in sorted(set(found) | problems.tenants_with_open_problems(session)):
            seen = []
            for condition in found.get(tenant_id, []):
                problem = problems.observe(session, tenant_id, condition.kind, condition.key, condition.summary,
                                           condition.details, now)
                outcome.observed += 1
                outcome.opened += problem.occurrences == 1
                seen.append((condition.kind, condition.key))
            outcome.resolved += len(problems.resolve_absent(session, tenant_id, seen, now, grace))


def _audiences(session, tenant_ids: set[int], settings: Settings) -> dict[int, Audience]:
    names = dict(session.execute(select(Tenant.id, Tenant.name).where(Tenant.id.in_(tenant_ids))).all())
    rows = {row.tenant_id: row for row in session.scalars(
        select(NotificationSettings).where(NotificationSettings.tenant_id.in_(tenant_ids)))}
    audiences = {}
    for tenant_id in tenant_ids:
        row = rows.get(tenant_id)
        audiences[tenant_id] = Audience(
            tenant_id=tenant_id, tenant_name=names.get(tenant_id, f"organisme {tenant_id}"),
            recipients=list(row.recipients or []) if row else [],
            chat_url=row.chat_webhook_url if row else None,
            reminder_every=float(row.reminder_after_seconds) if row and row.reminder_after_seconds
            else settings.notice_reminder_after,
            email_on=bool(settings.smtp_host) and (row.email_enabled if row else True))
    return audiences


def deliver(now: datetime, settings: Settings, outcome: Outcome) -> None:
    with session_scope() as session:
        openings = problems.due_openings(session)
        resolutions = problems.due_resolutions(session)
        tenant_ids = {p.tenant_id for p in openings + resolutions} | problems.tenants_with_open_problems(session)
        audiences = _audiences(session, tenant_ids, settings)
        reminders = problems.due_reminders(session, now, lambda tenant_id: audiences[tenant_id].reminder_every)
    link = settings.public_base_url.rstrip("/") + PAGE_PATH
    by_tenant: dict[int, dict[str, list[Problem]]] = defaultdict(lambda: defaultdict(list))
    for stage, rows in (("opened", openings), ("reminder", reminders), ("resolved", resolutions)):
        for problem in rows:
            by_tenant[problem.tenant_id][stage].append(problem)
    with Mailer(settings) as mailer:
        courier = _Courier(settings, mailer, link, now, outcome)
        for tenant_id in sorted(by_tenant):
            courier.tenant(audiences[tenant_id], by_tenant[tenant_id])


class _Courier:
    """Sends one tenant's messages over its channels and records each step on the problems."""

    def __init__(self, settings: Settings, mailer: Mailer, link: str, now: datetime, outcome: Outcome):
        self.settings, self.mailer, self.link, self.now, self.outcome = settings, mailer, link, now, outcome

    def tenant(self, audience: Audience, due: dict[str, list[Problem]]) -> None:
        channels = audience.channels
        if not channels:
            # Nobody to tell: a resolved problem is closed quietly; open ones wait for a channel.
            with session_scope() as session:
                for problem in due.get("resolved", []):
                    problems.mark_resolution_notified(session, session.get(Problem, problem.id), self.now)
                    self.outcome.closed_silently += 1
            return
        if due.get("opened"):
            self._step(audience, "opened", due["opened"], grouped=True)
        for problem in due.get("reminder", []):
            self._step(audience, problems.reminder_stage(problem), [problem])
        for problem in due.get("resolved", []):
            self._step(audience, "resolved", [problem])

    def _message(self, audience: Audience, stage: str, group: list[Problem]) -> messages.Message:
        if stage == "opened":
            return messages.opening(audience.tenant_name, group, self.link, audience.reminder_every)
        if stage == "resolved":
            return messages.resolution(audience.tenant_name, group[0], self.link)
        return messages.reminder(audience.tenant_name, group[0], self.link, audience.reminder_every)

    def _step(self, audience: Audience, stage: str, group: list[Problem], grouped: bool = False) -> None:
        for channel in audience.channels:
            pending = [p for p in group if channel not in problems.reached(p, stage)]
            if not pending:
                continue
            message = self._message(audience, stage, pending)
            message_id = _message_id(self.settings, stage, pending)
            try:
                if channel == EMAIL:
                    self._email(audience, message, message_id, stage, pending)
                else:
                    post_chat(audience.chat_url, message.chat)
            except DeliveryError as exc:
                log.warning("notices: tenant %s %s message for problems %s not delivered: %s", audience.tenant_id,
                            stage, [p.id for p in pending], exc)
                with session_scope() as session:
                    for problem in pending:
                        problems.record_delivery_failure(session, session.get(Problem, problem.id), str(exc))
                self.outcome.failed += 1
                continue
            self.outcome.sent[channel] += 1
            log.info("notices: tenant %s %s message for problems %s sent by %s", audience.tenant_id, stage,
                     [p.id for p in pending], channel)
            with session_scope() as session:
                for problem in pending:
                    row = session.get(Problem, problem.id)
                    problems.record_channel(session, row, stage, channel,
                                            thread=message_id if channel == EMAIL and stage == "opened" else None)
        # The step is done once every configured channel has it (also when a channel was removed since).
        with session_scope() as session:
            for problem in group:
                row = session.get(Problem, problem.id)
                if set(audience.channels) <= problems.reached(row, stage):
                    _complete(session, row, stage, self.now)

    def _email(self, audience: Audience, message: messages.Message, message_id: str, stage: str,
               pending: list[Problem]) -> None:
        thread = None
        if stage != "opened":
            thread = problems.thread_id(pending[0]) or _message_id(self.settings, "opened", pending[:1])
        email = build_email(self.settings, audience.recipients, message.subject, message.body, message_id,
                            in_reply_to=thread, problem_ids=[p.id for p in pending])
        self.mailer.send(email, audience.recipients)


def _complete(session, problem: Problem, stage: str, now: datetime) -> None:
    if stage == "opened":
        problems.mark_notified(session, problem, now)
    elif stage == "resolved":
        problems.mark_resolution_notified(session, problem, now)
    elif stage == problems.reminder_stage(problem):
        problems.mark_reminded(session, problem, now)


def _message_id(settings: Settings, stage: str, group: list[Problem]) -> str:
    """Deterministic: a message sent again after a lost answer keeps its Message-ID (clients dedupe)."""
    ids = "-".join(str(p.id) for p in group)
    opened = int(group[0].opened_at.timestamp())
    return f"<bdc-wedof.p{ids}.{opened}.{stage}@{sender_domain(settings)}>"
