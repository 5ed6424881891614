"""Optional error tracking with Sentry: ``init_error_tracking("webapp")`` once per process.

Nothing happens (no ``sentry_sdk.init`` at all, so nothing can be sent) unless ``SENTRY_DSN`` is set.
When it is, sentry-sdk reports unhandled errors of the Flask app and of Celery tasks, and every event
and breadcrumb goes through :func:`scrub_event` first: trainees' personal data (names, emails, phone
numbers, birth dates and places, addresses) and secrets (API keys, signatures, tokens, cookies,
passwords in URLs) never leave the process. Local variables are not attached to stack traces: a
``name = attendee["firstName"]`` could not be told from any other string.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from bdc.settings import Settings, SettingsError, get_settings

FILTERED = "[Filtered]"

# Keys whose values are personal data or secrets, compared lower-case without separators, so that
# firstName, first_name and First-Name are one key. Wedof's attendee fields are all here.
SENSITIVE_KEYS = frozenset({
    "firstname", "firstname2", "firstname3", "lastname", "birthname", "usedname", "fullname", "username",
    "email", "mail", "emailaddress", "phone", "phonenumber", "phonefixed", "mobile", "telephone",
    "dateofbirth", "birthdate", "birthday", "gender", "address", "roadname", "roadnumber", "street",
    "zipcode", "postalcode", "nir", "socialsecuritynumber", "iban", "bic",
    "xapikey", "apikey", "authorization", "proxyauthorization", "cookie", "cookies", "setcookie",
    "xwedofsignature", "signature", "password", "passwd", "secret", "token", "accesstoken",
    "refreshtoken", "jwt", "dsn", "credentials", "remoteaddr", "xforwardedfor", "xrealip", "ipaddress",
})
# Any key containing one of these is sensitive too (nameCityOfBirth, webhook_secret, api_token...).
SENSITIVE_PARTS = ("birth", "email", "phone", "firstname", "lastname", "password", "secret", "token",
                   "apikey", "signature", "cookie", "authorization")
# Strings never scrubbed as text: the event's own timestamps would lose their date.
_UNTOUCHED_KEYS = frozenset({"timestamp", "start_timestamp", "release"})

_KEY_VALUE = re.compile(
    r"""(?P<key>["']?[A-Za-z_][\w-]*["']?)(?P<sep>\s*[:=]\s*)"""
    r"""(?P<value>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[^\s,;&{}\[\]()"']+)""")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")  # not name@1.2.0
_PHONE = re.compile(
    r"(?<![\w+])(?:(?:\+|00)\d{1,3}[\s.-]?(?:\(0\)\s?)?\d{1,4}(?:[\s.-]?\d{2,4}){2,5}"  # +33 6 12 34 56 78
    r"|0[1-9](?:[\s.-]?\d{2}){4})(?![\w])")  # 06 12 34 56 78, 0612345678, 06.12.34.56.78
_DATE = re.compile(r"(?<!\d)(?:\d{4}-\d{2}-\d{2}|\d{2}/\d{2}/\d{4})(?!\d)")

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _normal(key: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(key).lower())


def is_sensitive_key(key: object) -> bool:
    name = _normal(key)
    return name in SENSITIVE_KEYS or any(part in name for part in SENSITIVE_PARTS)


def _filter_key_values(text: str) -> str:
    # By hand rather than re.sub: after a harmless key (``http:``) the scan goes on right after its
    # separator, so ``http://x/?email=...`` still finds ``email=``.
    out, position = [], 0
    while (match := _KEY_VALUE.search(text, position)) is not None:
        if is_sensitive_key(match.group("key").strip("\"'")):
            value = match.group("value")
            quote = value[0] if value[:1] in "\"'" else ""
            out.append(f"{text[position:match.end('sep')]}{quote}{FILTERED}{quote}")
            position = match.end()
        else:
            out.append(text[position:match.end("sep")])
            position = match.end("sep")
    out.append(text[position:])
    return "".join(out)


def scrub_text(text: str) -> str:
    """A free text (an exception message, a log line, a URL) without personal values or secrets."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)  # before key=value takes only "Bearer"
    text = _filter_key_values(text)
    text = _URL_CREDENTIALS.sub(f"{FILTERED}@", text)
    text = _EMAIL.sub("[email]", text)
    text = _PHONE.sub("[phone]", text)
    return _DATE.sub("[date]", text)


def scrub(value: Any) -> Any:
    """``value`` with sensitive keys' values replaced and every string scrubbed, at any depth."""
    if isinstance(value, dict):
        return {key: (FILTERED if is_sensitive_key(key) and item not in (None, "")
                      else item if key in _UNTOUCHED_KEYS else scrub(item))
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _scrub_body(data: Any) -> Any:
    # A raw JSON body (the webhook's) is scrubbed field by field, then kept as JSON text.
    if isinstance(data, str):
        try:
            parsed = json.loads(data)
        except ValueError:
            return scrub_text(data)
        return json.dumps(scrub(parsed), ensure_ascii=False)
    return scrub(data)


def scrub_event(event: dict, _hint: dict | None = None) -> dict:
    """``before_send``: the whole event scrubbed; no user, no cookies, no client address."""
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        request.pop("env", None)  # REMOTE_ADDR, SERVER_NAME: nothing we need
        if "data" in request:
            request["data"] = _scrub_body(request["data"])
    event.pop("user", None)
    return scrub(event)


def scrub_breadcrumb(crumb: dict, _hint: dict | None = None) -> dict:
    """``before_breadcrumb``: a log line or HTTP call remembered without personal data."""
    return scrub(crumb)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return all(_HOST_LABEL.fullmatch(label) for label in host.split("."))


def check_settings(settings: Settings) -> None:
    """Refuse Sentry settings sentry-sdk would choke on, or silently ignore, with a clear message."""
    from sentry_sdk.utils import BadDsn, Dsn

    raw = settings.sentry_dsn or ""
    expected = "expected https://<public key>@<host>/<project id>, as Sentry shows it under Client Keys"
    if re.search(r"[\s\x00-\x1f\x7f]", raw):
        raise SettingsError(f"SENTRY_DSN must not contain spaces or control characters; {expected}")
    try:
        dsn = Dsn(raw)
    except (BadDsn, ValueError) as exc:
        raise SettingsError(f"SENTRY_DSN is not a Sentry DSN ({exc}); {expected}") from None
    if not re.fullmatch(r"[\w-]+", dsn.public_key or "") or not _valid_host(dsn.host or ""):
        raise SettingsError(f"SENTRY_DSN has a malformed key or host; {expected}")
    environment = settings.sentry_environment
    if environment is not None and (not _ENVIRONMENT.fullmatch(environment) or environment.lower() == "none"):
        raise SettingsError("SENTRY_ENVIRONMENT must be 1 to 64 letters, digits, '.', '_' or '-' (e.g. production), "
                            f"got {environment!r}")
    if not 0.0 <= settings.sentry_traces_sample_rate <= 1.0:
        raise SettingsError(f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, got {settings.sentry_traces_sample_rate}")


def _release() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"bdc-wedof-sync@{version('bdc-wedof-sync')}"
    except PackageNotFoundError:
        return None


def init_error_tracking(component: str, settings: Settings | None = None) -> bool:
    """Start Sentry for this process when SENTRY_DSN is set; ``component`` tags its events
    (webapp, worker, beat). Returns whether error tracking is on."""
    settings = settings or get_settings()
    if not settings.sentry_dsn:
        return False
    check_settings(settings)

    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.sentry_environment or settings.app_env,
        release=_release(),
        # 0 turns tracing off altogether (no transactions built, none discarded and reported).
        traces_sample_rate=settings.sentry_traces_sample_rate or None,
        trace_propagation_targets=[],  # no sentry-trace/baggage headers on our calls to Wedof
        # send_default_pii stays at its default, False (no user, IP or cookies); sentry-sdk 2.x warns
        # when it is passed at all (its data_collection option replaces it).
        include_local_variables=False,
        integrations=[FlaskIntegration(), CeleryIntegration()],
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
    )
    # On the global scope, so every thread and request of the process carries it.
    sentry_sdk.get_global_scope().set_tag("component", component)
    return True


def init_error_tracking_or_exit(component: str) -> bool:
    """:func:`init_error_tracking` for Celery's signal handlers, whose exceptions Celery only logs:
    a bad Sentry setting stops the worker or beat at start, as any other bad setting does."""
    try:
        return init_error_tracking(component)
    except SettingsError as exc:
        raise SystemExit(f"Invalid setting: {exc}") from None
