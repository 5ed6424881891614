"""Real servers the notices tests talk to: an SMTP server (aiosmtpd) that keeps what it receives, and
a chat webhook (a loopback HTTP server) that keeps what is posted; plus the rows the tests start from.

Both listen on 127.0.0.1 only. ``SmtpServer`` can be created before it is started (its port is
reserved, nothing listens), which is how a test has "SMTP down" and then "SMTP back".
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from bdc import inbox
from bdc.db import session_scope
from bdc.models import EventStatus, NotificationSettings, Tenant, WebhookEvent, WedofConnection
from tests.support.processes import free_port

STAFF = ["direction@organisme-test.fr", "Assistante@Organisme-Test.fr"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)


class _Keeper:
    def __init__(self):
        self.messages: list[Received] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1:<port>; ``start()``/``stop()`` any number of times on the same port."""

    def __init__(self, port: int | None = None, credentials: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.keeper = _Keeper()
        self.credentials = credentials
        self.logins: list[str] = []
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[Received]:
        with self.keeper.lock:
            return list(self.keeper.messages)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = self.credentials is not None and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        options = {}
        if self.credentials is not None:
            options = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self._controller = Controller(self.keeper, hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self, **more) -> dict[str, str]:
        return {"smtp_host": "127.0.0.1", "smtp_port": str(self.port), "smtp_tls": "none",
                "smtp_sender": "alertes@bdc-wedof.test", **more}


class ChatServer:
    """A loopback incoming webhook: keeps each POSTed JSON body; answers ``status`` (200 by default)."""

    def __init__(self, status: int = 200, location: str | None = None):
        self.posts: list[tuple[str, dict]] = []
        self.status = status
        self.location = location
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.posts.append((self.path, body))
                self.send_response(outer.status)
                if outer.location:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hooks/T000-secret-path") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- rows ---------------------------------------------------------------------------------------------------

def make_tenant(name: str = "Organisme Test", api_url: str = "http://127.0.0.1:9/api", api_key: str | None = "key",
                recipients: list[str] | None = None, chat_url: str | None = None, email_enabled: bool = True,
                reminder_after: int | None = None, enabled: bool = True) -> tuple[int, int]:
    """A tenant, its connection and its notification settings; returns (tenant_id, connection_id)."""
    slug = f"t-{uuid.uuid4().hex[:10]}"
    with session_scope() as session:
        tenant = Tenant(name=name, slug=slug)
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, base_url=api_url, api_key=api_key, webhook_secret="hook-secret",
                                     rate_limit_per_second=500, enabled=enabled)
        session.add(connection)
        session.add(NotificationSettings(tenant_id=tenant.id, recipients=list(STAFF if recipients is None else recipients),
                                         chat_webhook_url=chat_url, email_enabled=email_enabled,
                                         reminder_after_seconds=reminder_after))
        session.flush()
        return tenant.id, connection.id


# A reason as the worker writes it, with a beneficiary's data inside: none of it may reach a message.
PERSONAL_REASON = ("folder refused: folder 4270885603: attendee Camille Martin <camille.martin@example.org> "
                   "born 1985-03-02 has no valid phone 0612345678")
PERSONAL_BITS = ("Camille", "Martin", "camille.martin", "example.org", "1985", "4270885603", "0612345678")


def fail_events(connection_id: int, count: int, reason: str = PERSONAL_REASON) -> list[int]:
    """``count`` deliveries stored, claimed and failed through the inbox's own transitions."""
    ids = []
    for _ in range(count):
        task_id = str(uuid.uuid4())
        with session_scope() as session:
            event = WebhookEvent(connection_id=connection_id, delivery_id=str(uuid.uuid4()),
                                 event_type="registrationFolder.updated", body="{}", status=EventStatus.QUEUED,
                                 task_id=task_id, headers={})
            session.add(event)
            session.flush()
            ids.append(event.id)
        with session_scope() as session:
            claimed = inbox.claim(session, ids[-1], task_id)
            assert isinstance(claimed, inbox.ClaimedEvent)
            assert inbox.finish(session, ids[-1], task_id, EventStatus.FAILED, reason, error=reason)
    return ids


def retry_and_finish(event_ids: list[int]) -> None:
    """An admin retries the failed events and a worker processes them (the inbox's transitions again)."""
    for event_id in event_ids:
        with session_scope() as session:
            requeued = inbox.requeue(session, session.get(WebhookEvent, event_id), failed_too=True, reason="retry")
            assert requeued is not None
        with session_scope() as session:
            assert isinstance(inbox.claim(session, event_id, requeued.task_id), inbox.ClaimedEvent)
            assert inbox.finish(session, event_id, requeued.task_id, EventStatus.PROCESSED, "apply: updated")
