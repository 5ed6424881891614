"""The two ways a notice leaves: email over SMTP (smtplib) and a chat incoming webhook (requests).

Neither raises anything but :class:`DeliveryError`, whose message is safe to store and show: an SMTP
password or a webhook URL (its path is the webhook's secret) never appears in it.

One :class:`Mailer` serves a whole run: it connects on the first message and reuses the connection;
once the server cannot be reached, the rest of the run fails fast with the same error instead of
waiting out the timeout once per message (each is recorded and tried again next run).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from urllib.parse import urlsplit

import requests

from bdc.settings import Settings, get_settings
from wedof.outbound import OutboundPolicy, OutboundRefused, fence_session

log = logging.getLogger("worker")

CHAT_TIMEOUT = (3.05, 5.0)  # connect, read: a chat service that hangs must not hold the run
SENDER_NAME = "BDC Wedof"


class DeliveryError(RuntimeError):
    """A message was not delivered; the text names the channel and the cause, never a secret."""


def sender_domain(settings: Settings) -> str:
    return settings.smtp_sender.rpartition("@")[2] or "localhost"


def build_email(settings: Settings, recipients: list[str], subject: str, body: str, message_id: str,
                in_reply_to: str | None = None, problem_ids: list[int] | None = None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((SENDER_NAME, settings.smtp_sender))
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id
    if in_reply_to:
        # Reminders and the "résolu" message thread under the first message in mail clients.
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies back to us
    if problem_ids:
        message["X-BDC-Problems"] = ", ".join(str(i) for i in problem_ids)
    message.set_content(body)
    return message


class Mailer:
    """SMTP per ``SMTP_*``; ``configured`` is False when SMTP_HOST is unset (then nothing is sent)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._down: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if s.smtp_tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        try:
            if s.smtp_tls == "starttls":
                smtp.starttls(context=context)  # refuses to go on in clear when the server offers no STARTTLS
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
        except BaseException:
            _quietly_close(smtp)
            raise
        return smtp

    def send(self, message: EmailMessage, recipients: list[str]) -> None:
        if not self.configured:
            raise DeliveryError("email: SMTP_HOST is not set")
        if self._down is not None:
            raise DeliveryError(self._down)
        for attempt in (1, 2):
            try:
                if self._smtp is None:
                    self._smtp = self._connect()
                refused = self._smtp.send_message(message, from_addr=self.settings.smtp_sender,
                                                  to_addrs=recipients)
                if refused:
                    log.warning("notices: the SMTP server refused %s of %s recipients", len(refused), len(recipients))
                return
            except smtplib.SMTPServerDisconnected:
                # A reused connection the server closed meanwhile: one fresh connection, then give up.
                _quietly_close(self._smtp)
                self._smtp = None
                if attempt == 2:
                    self._down = "email: the SMTP server closed the connection"
                    raise DeliveryError(self._down) from None
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                # This message was refused; the connection is still good for the next one.
                raise DeliveryError(f"email: refused by the SMTP server ({_smtp_code(exc)})") from None
            except (smtplib.SMTPException, OSError) as exc:
                _quietly_close(self._smtp)
                self._smtp = None
                self._down = f"email: {type(exc).__name__}: {_safe(exc)}"
                raise DeliveryError(self._down) from None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(self._smtp)
            self._smtp = None

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _smtp_code(exc: smtplib.SMTPException) -> str:
    code = getattr(exc, "smtp_code", None)
    if code is None and isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {str(answer[0]) for answer in exc.recipients.values()}
        return "all recipients refused: " + ", ".join(sorted(codes))
    return f"code {code}" if code is not None else type(exc).__name__


def _safe(exc: BaseException) -> str:
    # smtplib's errors carry the server's answer, never our password; keep them short anyway.
    text = " ".join(str(exc).split())
    return text[:200] if text else "no detail"


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass


def post_chat(url: str, text: str) -> None:
    """POST ``{"text": ...}`` to an incoming webhook (Slack, Mattermost, Rocket.Chat, Teams); 2xx or DeliveryError.

    Redirects are not followed: a webhook that moves elsewhere is a configuration to fix, not a hop
    to take with the message. Errors never quote the URL (its path is the webhook's secret).
    """
    if urlsplit(url).scheme not in ("https", "http"):
        raise DeliveryError("chat: the webhook URL is not http(s)")
    # The URL was checked when saved; the socket is checked too, since a public name can resolve to
    # an internal address (wedof.outbound).
    policy = OutboundPolicy.any_public_host(get_settings().app_env)
    with fence_session(requests.Session(), policy) as session:
        try:
            response = session.post(url, json={"text": text}, timeout=CHAT_TIMEOUT, allow_redirects=False,
                                    stream=True)
        except OutboundRefused:
            raise DeliveryError("chat: the webhook's host is not a public address; nothing was sent") from None
        except requests.RequestException as exc:
            raise DeliveryError(f"chat: {type(exc).__name__} (no answer from the webhook)") from None
        with response:
            if not 200 <= response.status_code < 300:
                raise DeliveryError(f"chat: the webhook answered HTTP {response.status_code}")
