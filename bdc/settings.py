"""Settings read from the environment (and an optional ``.env``), validated once at start-up.

A bad value stops the process with a message that names the variable, so an operator never
discovers a typo in production hours later. In development the two signing/encryption secrets
may be left unset: a random pair is generated once under ``./var/`` so ``make run`` just works.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from cryptography.fernet import Fernet
from dotenv import dotenv_values

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("BDC_VAR_DIR", PROJECT_ROOT / "var"))
SIGNATURE_ALGORITHMS = ("sha256", "sha512")
SMTP_TLS_MODES = ("none", "starttls", "ssl")
ENVIRONMENTS = ("development", "test", "production")
WEEK = 7 * 24 * 3600
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    app_env: str = "development"
    wedof_api_key: str | None = None
    wedof_api_url: str = "https://www.wedof.fr/api"
    wedof_org_id: str | None = None
    wedof_webhook_secret: str | None = None
    wedof_signature_algorithm: str = "sha256"
    wedof_sync_enabled: bool = True
    wedof_sync_interval: int = 3600
    wedof_rate_limit: float = 5.0
    # Hosts a connection's base_url may name besides Wedof's own (wedof.outbound): an operator's choice.
    wedof_allowed_hosts: tuple[str, ...] = ()
    # How long deliveries signed with a rotated-out webhook secret are still accepted.
    webhook_secret_grace_seconds: float = 24 * 3600.0
    # Bad signatures per connection and minute before they are answered 429 (webapp.receiver.flood).
    webhook_bad_signature_limit: int = 30
    # Admin API requests allowed per user (the token's identity) and per remote address (webapp.rate_limits).
    admin_rate_limit: str = "120/minute"
    admin_rate_limit_per_address: str = "600/minute"
    database_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    jwt_secret_key: str = ""
    secret_encryption_key: str = ""
    flower_basic_auth: str | None = None
    flower_url: str = "http://127.0.0.1:5555"
    public_base_url: str = "http://127.0.0.1:8000"
    webhook_max_body_bytes: int = 1024 * 1024
    raw_body_retention_days: int = 30
    # A beneficiary's personal data, once all its bilans ended (a tenant may set its own, privacy.retention).
    personal_data_retention_days: int = 365
    # Tuning knobs with production defaults; tests and the chaos run shorten them.
    sweep_interval: float = 60.0
    sweep_received_after: float = 10.0
    sweep_queued_after: float = 300.0
    sweep_processing_after: float = 600.0
    sweep_batch: int = 500
    max_event_attempts: int = 8
    retry_backoff_base: float = 2.0
    celery_visibility_timeout: int = 3600
    sync_overlap_seconds: int = 600
    sync_lock_timeout: int = 300
    sync_page_size: int = 100
    lifecycle_interval: float = 900.0
    action_lost_after: float = 600.0
    billing_interval: float = 600.0
    billing_batch: int = 200
    payment_check_after: float = 6 * 3600.0
    # Operations: metrics exporters, staff notices, connectivity checks, reconciliation, error tracking.
    metrics_port: int = 0  # a worker's or beat's own exporter; 0 = none
    metrics_addr: str = "127.0.0.1"
    metrics_token: str | None = None  # when set, the receiver's /metrics wants "Authorization: Bearer <token>"
    smtp_host: str | None = None  # unset: no email is sent
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "bdc-wedof-sync@localhost"
    smtp_timeout: float = 10.0
    notice_interval: float = 60.0
    notice_reminder_after: float = 24 * 3600.0
    connectivity_interval: float = 900.0
    reconcile_interval: float = 3600.0
    drift_notice_after: int = 2
    sentry_dsn: str | None = None
    sentry_environment: str | None = None
    sentry_traces_sample_rate: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def env_connection_configured(self) -> bool:
        """True when the environment describes a Wedof connection (the default tenant's)."""
        return bool(self.wedof_api_key or self.wedof_webhook_secret)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _int(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise SettingsError(f"{name} must be {bounds}, got {value}")
    return value


def _float(name: str, raw: str, minimum: float, maximum: float | None = None) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value != value or not value > minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"greater than {minimum}"
        raise SettingsError(f"{name} must be {bounds}, got {raw!r}")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - urlparse checks the host and port only when asked
    except ValueError:
        raise SettingsError(f"{name} must be a valid URL, got {raw!r}") from None
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}, got {raw!r}")
    return value.rstrip("/") if parsed.scheme.startswith("http") else value


def _sample_rate(raw: str) -> float:
    value = _float("SENTRY_TRACES_SAMPLE_RATE", raw, -1.0, 1.0)
    if value < 0:
        raise SettingsError(f"SENTRY_TRACES_SAMPLE_RATE must be between 0 and 1, got {raw!r}")
    return value


def _rate_limit(name: str, raw: str) -> str:
    """A flask-limiter rate such as ``120/minute`` (several separated by ``;``), each allowing at least one call."""
    from limits import parse_many  # flask-limiter's own parser, so what passes here is what it will enforce

    text = raw.strip()
    try:
        items = parse_many(text) if text else []
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise SettingsError(f"{name} must look like 120/minute (a count per second, minute, hour or day; several "
                            f"separated by ';'), got {raw!r}")
    return text


def _database_url(raw: str | None) -> str:
    if not raw:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{VAR_DIR / 'bdc.sqlite3'}"
    value = raw.strip()
    # Heroku-style URLs name the driver "postgres"; SQLAlchemy wants psycopg 3 spelled out.
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            value = "postgresql+psycopg://" + value[len(prefix):]
    if not (value.startswith("sqlite:") or value.startswith("postgresql+psycopg://")):
        raise SettingsError(f"DATABASE_URL must be a sqlite:/// or postgresql:// URL, got {raw!r}")
    return value


def _dev_secrets() -> dict[str, str]:
    """Secrets generated once for development, kept under ./var so restarts keep them."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    generated = {"JWT_SECRET_KEY": secrets.token_urlsafe(48), "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    path.write_text(json.dumps(generated))
    path.chmod(0o600)
    return generated


def _fernet_keys(raw: str) -> str:
    # Several comma-separated keys allow rotation: the first encrypts, all decrypt.
    for key in raw.split(","):
        try:
            Fernet(key.strip().encode())
        except (ValueError, TypeError):
            raise SettingsError(
                "SECRET_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
                "(generate one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
            ) from None
    return raw.strip()


def _allowed_hosts(raw: str) -> tuple[str, ...]:
    from wedof.outbound import valid_host_name

    hosts = []
    for item in raw.split(","):
        host = item.strip().lower().rstrip(".")
        if not host:
            continue
        if not valid_host_name(host):
            raise SettingsError(f"WEDOF_ALLOWED_HOSTS must be comma-separated host names (no scheme, port or "
                                f"IP address), got {item.strip()[:80]!r}")
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def _wedof_api_url(raw: str, app_env: str, allowed_hosts: tuple[str, ...]) -> str:
    from wedof.outbound import OutboundPolicy, OutboundRefused, check_base_url

    value = _url("WEDOF_API_URL", raw, ("http", "https"))
    try:
        return check_base_url(value, OutboundPolicy.for_wedof(app_env, allowed_hosts))
    except OutboundRefused as refused:
        raise SettingsError(f"WEDOF_API_URL is refused ({refused.rule}): {refused.message}") from None


def load_settings(environ: dict[str, str] | None = None, env_file: str | os.PathLike | None = ".env") -> Settings:
    """Build validated settings from ``environ`` (default ``os.environ``) over an optional ``.env`` file."""
    values: dict[str, str] = {}
    if env_file and environ is None:
        path = Path(env_file)
        if not path.is_absolute():
            path = PROJECT_ROOT / path
        if path.exists():
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    get = values.get

    app_env = (get("APP_ENV") or "development").strip().lower()
    if app_env not in ENVIRONMENTS:
        raise SettingsError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}, got {get('APP_ENV')!r}")

    algorithm = (get("WEDOF_SIGNATURE_ALGORITHM") or "sha256").strip().lower()
    if algorithm not in SIGNATURE_ALGORITHMS:
        raise SettingsError(
            f"WEDOF_SIGNATURE_ALGORITHM must be one of {', '.join(SIGNATURE_ALGORITHMS)}, got {get('WEDOF_SIGNATURE_ALGORITHM')!r}"
        )

    org_id = (get("WEDOF_ORG_ID") or "").strip() or None
    if org_id is not None and not re.fullmatch(r"\d{14}", org_id):
        raise SettingsError(f"WEDOF_ORG_ID must be the organism's 14-digit SIRET, got {org_id!r}")

    flower_auth = (get("FLOWER_BASIC_AUTH") or "").strip() or None
    if flower_auth is not None and not re.fullmatch(r"[^:\s]+:\S+", flower_auth):
        raise SettingsError("FLOWER_BASIC_AUTH must look like user:password")

    jwt_secret = (get("JWT_SECRET_KEY") or "").strip()
    encryption_key = (get("SECRET_ENCRYPTION_KEY") or "").strip()
    if app_env == "production":
        for name, value in (("JWT_SECRET_KEY", jwt_secret), ("SECRET_ENCRYPTION_KEY", encryption_key)):
            if not value:
                raise SettingsError(f"{name} is required when APP_ENV=production")
    if not jwt_secret or not encryption_key:
        generated = _dev_secrets()
        jwt_secret = jwt_secret or generated["JWT_SECRET_KEY"]
        encryption_key = encryption_key or generated["SECRET_ENCRYPTION_KEY"]
    if len(jwt_secret) < 16:
        raise SettingsError("JWT_SECRET_KEY must be at least 16 characters long")

    smtp_tls = (get("SMTP_TLS") or "starttls").strip().lower()
    if smtp_tls not in SMTP_TLS_MODES:
        raise SettingsError(f"SMTP_TLS must be one of {', '.join(SMTP_TLS_MODES)}, got {get('SMTP_TLS')!r}")
    smtp_sender = (get("SMTP_SENDER") or "bdc-wedof-sync@localhost").strip()
    if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", smtp_sender):
        raise SettingsError(f"SMTP_SENDER must be an email address, got {smtp_sender!r}")
    sentry_dsn = (get("SENTRY_DSN") or "").strip() or None
    if sentry_dsn is not None:
        sentry_dsn = _url("SENTRY_DSN", sentry_dsn, ("http", "https"))

    allowed_hosts = _allowed_hosts(get("WEDOF_ALLOWED_HOSTS") or "")
    return Settings(
        app_env=app_env,
        wedof_api_key=(get("WEDOF_API_KEY") or "").strip() or None,
        wedof_api_url=_wedof_api_url(get("WEDOF_API_URL") or "https://www.wedof.fr/api", app_env, allowed_hosts),
        wedof_allowed_hosts=allowed_hosts,
        wedof_org_id=org_id,
        wedof_webhook_secret=(get("WEDOF_WEBHOOK_SECRET") or "").strip() or None,
        wedof_signature_algorithm=algorithm,
        wedof_sync_enabled=_bool("WEDOF_SYNC_ENABLED", get("WEDOF_SYNC_ENABLED") or "true"),
        wedof_sync_interval=_int("WEDOF_SYNC_INTERVAL", get("WEDOF_SYNC_INTERVAL") or "3600", 60, 7 * 24 * 3600),
        wedof_rate_limit=_float("WEDOF_RATE_LIMIT", get("WEDOF_RATE_LIMIT") or "5", 0),
        database_url=_database_url(get("DATABASE_URL")),
        redis_url=_url("REDIS_URL", get("REDIS_URL") or "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")),
        jwt_secret_key=jwt_secret,
        secret_encryption_key=_fernet_keys(encryption_key),
        flower_basic_auth=flower_auth,
        flower_url=_url("FLOWER_URL", get("FLOWER_URL") or "http://127.0.0.1:5555", ("http", "https")),
        public_base_url=_url("PUBLIC_BASE_URL", get("PUBLIC_BASE_URL") or "http://127.0.0.1:8000", ("http", "https")),
        webhook_max_body_bytes=_int("WEBHOOK_MAX_BODY_BYTES", get("WEBHOOK_MAX_BODY_BYTES") or str(1024 * 1024), 1024),
        webhook_secret_grace_seconds=_float("WEBHOOK_SECRET_GRACE_SECONDS",
                                            get("WEBHOOK_SECRET_GRACE_SECONDS") or "86400", -0.1, 30 * 24 * 3600),
        webhook_bad_signature_limit=_int("WEBHOOK_BAD_SIGNATURE_LIMIT", get("WEBHOOK_BAD_SIGNATURE_LIMIT") or "30", 1,
                                         1_000_000),
        admin_rate_limit=_rate_limit("ADMIN_RATE_LIMIT", get("ADMIN_RATE_LIMIT") or "120/minute"),
        admin_rate_limit_per_address=_rate_limit("ADMIN_RATE_LIMIT_PER_ADDRESS",
                                                 get("ADMIN_RATE_LIMIT_PER_ADDRESS") or "600/minute"),
        raw_body_retention_days=_int("RAW_BODY_RETENTION_DAYS", get("RAW_BODY_RETENTION_DAYS") or "30", 1),
        personal_data_retention_days=_int("PERSONAL_DATA_RETENTION_DAYS", get("PERSONAL_DATA_RETENTION_DAYS") or "365",
                                          1, 100 * 365),
        sweep_interval=_float("BDC_SWEEP_INTERVAL", get("BDC_SWEEP_INTERVAL") or "60", 0.4, 3600),
        sweep_received_after=_float("BDC_SWEEP_RECEIVED_AFTER", get("BDC_SWEEP_RECEIVED_AFTER") or "10", -0.1, WEEK),
        sweep_queued_after=_float("BDC_SWEEP_QUEUED_AFTER", get("BDC_SWEEP_QUEUED_AFTER") or "300", -0.1, WEEK),
        sweep_processing_after=_float("BDC_SWEEP_PROCESSING_AFTER", get("BDC_SWEEP_PROCESSING_AFTER") or "600", -0.1, WEEK),
        sweep_batch=_int("BDC_SWEEP_BATCH", get("BDC_SWEEP_BATCH") or "500", 1, 100_000),
        max_event_attempts=_int("BDC_MAX_EVENT_ATTEMPTS", get("BDC_MAX_EVENT_ATTEMPTS") or "8", 1, 100),
        retry_backoff_base=_float("BDC_RETRY_BACKOFF_BASE", get("BDC_RETRY_BACKOFF_BASE") or "2", 0, 3600),
        celery_visibility_timeout=_int("CELERY_VISIBILITY_TIMEOUT", get("CELERY_VISIBILITY_TIMEOUT") or "3600", 10),
        sync_overlap_seconds=_int("BDC_SYNC_OVERLAP_SECONDS", get("BDC_SYNC_OVERLAP_SECONDS") or "600", 0, WEEK),
        sync_lock_timeout=_int("BDC_SYNC_LOCK_TIMEOUT", get("BDC_SYNC_LOCK_TIMEOUT") or "300", 10, WEEK),
        sync_page_size=_int("BDC_SYNC_PAGE_SIZE", get("BDC_SYNC_PAGE_SIZE") or "100", 1, 1000),
        lifecycle_interval=_float("BDC_LIFECYCLE_INTERVAL", get("BDC_LIFECYCLE_INTERVAL") or "900", 0.4, 24 * 3600),
        action_lost_after=_float("BDC_ACTION_LOST_AFTER", get("BDC_ACTION_LOST_AFTER") or "600", 1, WEEK),
        billing_interval=_float("BDC_BILLING_INTERVAL", get("BDC_BILLING_INTERVAL") or "600", 0.4, 24 * 3600),
        billing_batch=_int("BDC_BILLING_BATCH", get("BDC_BILLING_BATCH") or "200", 1, 10_000),
        payment_check_after=_float("BDC_PAYMENT_CHECK_AFTER", get("BDC_PAYMENT_CHECK_AFTER") or "21600", 0, WEEK),
        metrics_port=_int("BDC_METRICS_PORT", get("BDC_METRICS_PORT") or "0", 0, 65535),
        metrics_addr=(get("BDC_METRICS_ADDR") or "127.0.0.1").strip(),
        metrics_token=(get("METRICS_TOKEN") or "").strip() or None,
        smtp_host=(get("SMTP_HOST") or "").strip() or None,
        smtp_port=_int("SMTP_PORT", get("SMTP_PORT") or "587", 1, 65535),
        smtp_tls=smtp_tls,
        smtp_username=(get("SMTP_USERNAME") or "").strip() or None,
        smtp_password=get("SMTP_PASSWORD") or None,
        smtp_sender=smtp_sender,
        smtp_timeout=_float("SMTP_TIMEOUT", get("SMTP_TIMEOUT") or "10", 0, 300),
        notice_interval=_float("BDC_NOTICE_INTERVAL", get("BDC_NOTICE_INTERVAL") or "60", 0.4, 24 * 3600),
        notice_reminder_after=_float("BDC_NOTICE_REMINDER_AFTER", get("BDC_NOTICE_REMINDER_AFTER") or "86400", 0,
                                     30 * 24 * 3600),
        connectivity_interval=_float("BDC_CONNECTIVITY_INTERVAL", get("BDC_CONNECTIVITY_INTERVAL") or "900", 0.4,
                                     24 * 3600),
        reconcile_interval=_float("BDC_RECONCILE_INTERVAL", get("BDC_RECONCILE_INTERVAL") or "3600", 0.4, WEEK),
        drift_notice_after=_int("BDC_DRIFT_NOTICE_AFTER", get("BDC_DRIFT_NOTICE_AFTER") or "2", 1, 100),
        sentry_dsn=sentry_dsn,
        sentry_environment=(get("SENTRY_ENVIRONMENT") or "").strip() or None,
        sentry_traces_sample_rate=_sample_rate(get("SENTRY_TRACES_SAMPLE_RATE") or "0"),
    )


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, loaded on first use."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    global _cached
    _cached = None
