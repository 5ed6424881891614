"""Staff notices in the admin API: who hears about problems (email recipients, a chat webhook, the
reminder period), the problems themselves, and the connectivity checks (with a "check now").

The chat webhook URL embeds the webhook's secret: it is write-only (answered as
``chat_webhook_configured``) and never written to the audit log. Problems are moved by the worker
only (``worker.notices.problems``); this module reads them. "Check now" sends
``bdc.check_connectivity`` by name.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from flask import jsonify
from sqlalchemy import select

from bdc.audit import changes, record_audit
from bdc.models import ConnectivityCheck, NotificationSettings, Problem, ProblemKind, ProblemStatus
from bdc.settings import get_settings
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.pagination import paginate
from webapp.admin.scope import current_principal, resolve_tenant, tenant_connection, usable_connection
from webapp.admin.serializers import enum_value, iso
from webapp.admin.validation import field, json_object, query_choice, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from worker.task_names import CHECK_CONNECTIVITY

MAX_RECIPIENTS = 20
MAX_EMAIL_LENGTH = 254
MAX_URL_LENGTH = 1000
REMINDER_MIN, REMINDER_MAX = 300, 30 * 24 * 3600
WRITABLE = {"email_enabled", "recipients", "chat_webhook_url", "reminder_after_seconds"}
# ASCII addresses without quotes or comments (nothing a To: header could be tricked with).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9])")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


def _invalid(name: str, message: str, reason: str = "invalid") -> ApiError:
    return ApiError(422, "validation_error", message, fields={name: reason})


# -- validation ----------------------------------------------------------------------------------------

def check_recipients(value: Any) -> list[str]:
    """At most MAX_RECIPIENTS plain email addresses, duplicates (any case) dropped, domains lower-cased."""
    if not isinstance(value, list):
        raise _invalid("recipients", "recipients must be a list of email addresses.", "expected a list")
    if len(value) > MAX_RECIPIENTS:
        raise _invalid("recipients", f"recipients holds at most {MAX_RECIPIENTS} addresses.", "too many")
    cleaned: list[str] = []
    for position, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid("recipients", f"recipients[{position}] must be a string.", "expected strings")
        address = item.strip()
        match = _EMAIL.fullmatch(address) if len(address) <= MAX_EMAIL_LENGTH else None
        if match is None or len(match.group(1)) > 64:
            shown = address[:60].encode("ascii", "backslashreplace").decode()
            raise _invalid("recipients", f"recipients[{position}] is not an email address: {shown!r}.",
                           "not an email address")
        address = f"{match.group(1)}@{match.group(2).lower()}"
        if address.lower() not in {a.lower() for a in cleaned}:
            cleaned.append(address)
    return cleaned


def check_chat_url(value: Any) -> str | None:
    """An https incoming-webhook URL to a public host (http to loopback only in development/test), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid("chat_webhook_url", "chat_webhook_url must be a string or null.", "expected a string")
    url = value.strip()
    if not url:
        return None
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _invalid("chat_webhook_url", f"chat_webhook_url must be one URL of at most {MAX_URL_LENGTH} "
                                           "characters, without spaces.")
    try:
        parts = urlsplit(url)
        host, _port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise _invalid("chat_webhook_url", "chat_webhook_url is not a valid URL.") from None
    local_ok = get_settings().app_env in ("development", "test")
    if parts.scheme.lower() not in ("https", "http") or not host:
        raise _invalid("chat_webhook_url", "chat_webhook_url must be an https:// URL, e.g. the incoming webhook "
                                           "of a Slack, Mattermost or Teams channel.", "not an https URL")
    if parts.username is not None or parts.password is not None:
        raise _invalid("chat_webhook_url", "chat_webhook_url must not hold a user name or password.")
    host = host.rstrip(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    loopback = host in _LOOPBACK_NAMES or (address is not None and address.is_loopback)
    if parts.scheme.lower() == "http" and not (local_ok and loopback):
        raise _invalid("chat_webhook_url", "chat_webhook_url must use https:// (http:// is accepted only to "
                                           "127.0.0.1 in development and test).", "not an https URL")
    if loopback:
        public = local_ok
    elif address is not None:
        public = address.is_global  # not an internal address written out (cloud metadata, a LAN host)
    else:
        # A single-label or .localhost name, or an address in disguise ("0x7f.1", which resolvers accept).
        public = "." in host and not host.endswith(".localhost") and not all(
            _NUMERIC_LABEL.fullmatch(label) for label in host.split("."))
    if not public:
        raise _invalid("chat_webhook_url", "chat_webhook_url must reach a public host.", "not a public host")
    return url


def _reminder(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not REMINDER_MIN <= value <= REMINDER_MAX:
        raise _invalid("reminder_after_seconds", f"reminder_after_seconds must be a whole number of seconds between "
                                                 f"{REMINDER_MIN} and {REMINDER_MAX}, or null for the default.",
                       "out of range")
    return value


# -- serializers -------------------------------------------------------------------------------------------

def settings_json(row: NotificationSettings | None) -> dict[str, Any]:
    settings = get_settings()
    return {
        "configured": row is not None,
        "email_enabled": row.email_enabled if row else True,
        "recipients": list(row.recipients or []) if row else [],
        "chat_webhook_configured": bool(row and row.chat_webhook_url),
        "reminder_after_seconds": row.reminder_after_seconds if row else None,
        "reminder_after_default": int(settings.notice_reminder_after),
        "smtp_configured": bool(settings.smtp_host),
        "updated_at": iso(row.updated_at) if row else None,
    }


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "id": problem.id, "tenant_id": problem.tenant_id, "kind": enum_value(problem.kind), "key": problem.key,
        "status": enum_value(problem.status), "summary": problem.summary,
        "details": (problem.details or {}).get("condition") or {}, "occurrences": problem.occurrences,
        "opened_at": iso(problem.opened_at), "last_seen_at": iso(problem.last_seen_at),
        "notified_at": iso(problem.notified_at), "reminded_at": iso(problem.reminded_at),
        "reminders": problem.reminders, "resolved_at": iso(problem.resolved_at),
        "resolved_notified_at": iso(problem.resolved_notified_at), "last_error": problem.last_error,
    }


def check_json(check: ConnectivityCheck) -> dict[str, Any]:
    return {"id": check.id, "connection_id": check.connection_id, "checked_at": iso(check.checked_at),
            "ok": check.ok, "status_code": check.status_code, "latency_ms": check.latency_ms, "error": check.error}


# -- notification settings -------------------------------------------------------------------------------

def _row(session, tenant_id: int) -> NotificationSettings | None:
    return session.scalars(select(NotificationSettings).where(NotificationSettings.tenant_id == tenant_id)).first()


@bp.get("/notifications/settings")
@admin_required
def get_notification_settings():
    with db_session() as session:
        return jsonify(settings_json(_row(session, resolve_tenant(session).id)))


@bp.put("/notifications/settings")
@admin_required
def put_notification_settings():
    body = json_object()
    reject_unknown(body, WRITABLE)
    values: dict[str, Any] = {}
    if "email_enabled" in body:
        values["email_enabled"] = field(body, "email_enabled", bool)
    if "recipients" in body:
        values["recipients"] = check_recipients(body["recipients"])
    if "chat_webhook_url" in body:
        values["chat_webhook_url"] = check_chat_url(body["chat_webhook_url"])
    if "reminder_after_seconds" in body:
        values["reminder_after_seconds"] = _reminder(body["reminder_after_seconds"])
    with db_session() as session:
        tenant = resolve_tenant(session)
        row = _row(session, tenant.id)
        before = settings_json(row)
        if row is None:
            row = NotificationSettings(tenant_id=tenant.id, email_enabled=True, recipients=[])
            session.add(row)
        changed = sorted(name for name, value in values.items() if getattr(row, name) != value)
        for name in changed:
            setattr(row, name, values[name])
        row.updated_at = utcnow()
        session.flush()
        after = settings_json(row)
        if changed or not before["configured"]:
            # The webhook URL is a secret: the log says only whether one is configured.
            record_audit(session, actor=current_principal().actor, action="notifications.settings_changed",
                         tenant_id=tenant.id, target=("notification_settings", row.id),
                         details={"fields": changed, "before": _audited(before), "after": _audited(after)},
                         changes=changes(_audited(before), _audited(after)))
    return jsonify({**after, "changed": changed})


def _audited(data: dict) -> dict:
    return {key: data[key] for key in ("email_enabled", "recipients", "chat_webhook_configured",
                                       "reminder_after_seconds")}


# -- problems -------------------------------------------------------------------------------------------------

@bp.get("/problems")
@admin_required
def list_problems():
    status = query_choice("status", [s.value for s in ProblemStatus])
    kind = query_choice("kind", [k.value for k in ProblemKind])
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = select(Problem).where(Problem.tenant_id == tenant.id)
        if status:
            stmt = stmt.where(Problem.status == ProblemStatus(status))
        if kind:
            stmt = stmt.where(Problem.kind == ProblemKind(kind))
        return jsonify(paginate(session, stmt.order_by(Problem.opened_at.desc(), Problem.id.desc()), problem_json))


# -- connectivity checks ----------------------------------------------------------------------------------

@bp.get("/connectivity")
@admin_required
def list_connectivity_checks():
    with db_session() as session:
        connection = tenant_connection(session, resolve_tenant(session))
        stmt = (select(ConnectivityCheck).where(ConnectivityCheck.connection_id == connection.id)
                .order_by(ConnectivityCheck.checked_at.desc(), ConnectivityCheck.id.desc()))
        return jsonify(paginate(session, stmt, check_json))


@bp.post("/connectivity/check")
@admin_required
def check_connectivity_now():
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = usable_connection(session, tenant, "there is nothing to check")
        record_audit(session, actor=current_principal().actor, action="connectivity.check_requested",
                     tenant_id=tenant.id, target=("wedof_connection", connection.id))
        connection_id = connection.id
    try:
        task_id = send_task(CHECK_CONNECTIVITY, [connection_id])
    except BrokerUnavailable:
        raise ApiError(503, "broker_unavailable", "The task queue is unreachable; the periodic check runs "
                                                  "anyway.") from None
    return jsonify({"task_id": task_id, "connection_id": connection_id}), 202
