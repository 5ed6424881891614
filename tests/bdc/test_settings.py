"""Settings reject bad values with a message naming the variable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bdc.settings import SettingsError, load_settings

BASE = {"APP_ENV": "test", "JWT_SECRET_KEY": "x" * 32, "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def test_defaults_follow_the_real_wedof_api(tmp_path, monkeypatch):
    monkeypatch.setattr("bdc.settings.VAR_DIR", tmp_path)
    settings = load_settings(dict(BASE))
    assert settings.wedof_api_url == "https://www.wedof.fr/api"
    assert settings.wedof_signature_algorithm == "sha256"
    assert settings.wedof_sync_interval == 3600
    assert settings.wedof_sync_enabled is True
    assert settings.database_url == f"sqlite:///{tmp_path / 'bdc.sqlite3'}"
    assert not settings.env_connection_configured


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEDOF_SYNC_INTERVAL", "hourly"),
        ("WEDOF_SYNC_INTERVAL", "5"),
        ("WEDOF_SYNC_ENABLED", "maybe"),
        ("WEDOF_SIGNATURE_ALGORITHM", "md5"),
        ("WEDOF_API_URL", "ftp://www.wedof.fr/api"),
        ("WEDOF_ORG_ID", "1234"),
        ("DATABASE_URL", "mysql://localhost/bdc"),
        ("REDIS_URL", "http://localhost:6379"),
        ("SECRET_ENCRYPTION_KEY", "not-a-fernet-key"),
        ("JWT_SECRET_KEY", "short"),
        ("FLOWER_BASIC_AUTH", "nopassword"),
        ("APP_ENV", "staging-ish"),
        ("WEDOF_RATE_LIMIT", "-1"),
        ("BDC_SWEEP_INTERVAL", "0"),
        ("BDC_SWEEP_QUEUED_AFTER", "soon"),
        ("BDC_SWEEP_BATCH", "0"),
        ("BDC_MAX_EVENT_ATTEMPTS", "1000"),
        ("CELERY_VISIBILITY_TIMEOUT", "1"),
        ("BDC_SYNC_PAGE_SIZE", "5000"),
        ("BDC_RETRY_BACKOFF_BASE", "nan"),
        ("BDC_ACTION_LOST_AFTER", "0"),
        ("BDC_LIFECYCLE_INTERVAL", "forever"),
        ("BDC_BILLING_INTERVAL", "0"),
        ("BDC_BILLING_BATCH", "0"),
        ("BDC_PAYMENT_CHECK_AFTER", "-5"),
        ("BDC_PAYMENT_CHECK_AFTER", "9999999"),
        ("BDC_METRICS_PORT", "70000"),
        ("BDC_METRICS_PORT", "-1"),
        ("SMTP_PORT", "smtp"),
        ("SMTP_TLS", "sometimes"),
        ("SMTP_SENDER", "not an address"),
        ("SMTP_SENDER", "a@b\nBcc: victim@example.org"),
        ("SMTP_TIMEOUT", "0"),
        ("BDC_NOTICE_INTERVAL", "0"),
        ("BDC_NOTICE_REMINDER_AFTER", "-1"),
        ("BDC_CONNECTIVITY_INTERVAL", "never"),
        ("BDC_RECONCILE_INTERVAL", "0"),
        ("BDC_DRIFT_NOTICE_AFTER", "0"),
        ("SENTRY_DSN", "ftp://key@sentry.example.org/1"),
        ("SENTRY_DSN", "http://public@[::1/1"),
        ("SENTRY_TRACES_SAMPLE_RATE", "-0.05"),
        ("SENTRY_TRACES_SAMPLE_RATE", "2"),
        ("WEDOF_API_URL", "https://[broken/api"),
    ],
)
def test_bad_values_fail_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({**BASE, name: value})


def test_production_requires_real_secrets():
    with pytest.raises(SettingsError, match="JWT_SECRET_KEY"):
        load_settings({"APP_ENV": "production", "SECRET_ENCRYPTION_KEY": BASE["SECRET_ENCRYPTION_KEY"]})
    with pytest.raises(SettingsError, match="SECRET_ENCRYPTION_KEY"):
        load_settings({"APP_ENV": "production", "JWT_SECRET_KEY": "x" * 32})


def test_development_generates_secrets_once_and_keeps_them(tmp_path, monkeypatch):
    monkeypatch.setattr("bdc.settings.VAR_DIR", tmp_path)
    first = load_settings({"APP_ENV": "development"})
    second = load_settings({"APP_ENV": "development"})
    assert first.jwt_secret_key == second.jwt_secret_key
    assert first.secret_encryption_key == second.secret_encryption_key
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_postgres_urls_are_normalised_to_psycopg3():
    settings = load_settings({**BASE, "DATABASE_URL": "postgres://u:p@db:5432/bdc", "WEDOF_ORG_ID": "12345678900012"})
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/bdc"
    assert settings.wedof_org_id == "12345678900012"


def test_env_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("WEDOF_SYNC_INTERVAL=7200\nWEDOF_API_KEY=from-file\n")
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WEDOF_API_KEY", "from-env")
    settings = load_settings(env_file=env_file)
    assert settings.wedof_sync_interval == 7200
    assert settings.wedof_api_key == "from-env"


def test_tuning_knobs_have_production_defaults_and_can_be_shortened():
    defaults = load_settings(dict(BASE))
    assert (defaults.sweep_interval, defaults.sweep_received_after, defaults.sweep_queued_after,
            defaults.sweep_processing_after, defaults.celery_visibility_timeout, defaults.lifecycle_interval,
            defaults.action_lost_after, defaults.billing_interval, defaults.payment_check_after) == (
        60, 10, 300, 600, 3600, 900, 600, 600, 21600)
    short = load_settings({**BASE, "BDC_SWEEP_INTERVAL": "1", "BDC_SWEEP_QUEUED_AFTER": "2.5", "BDC_SYNC_PAGE_SIZE": "25",
                           "BDC_ACTION_LOST_AFTER": "20"})
    assert (short.sweep_interval, short.sweep_queued_after, short.sync_page_size, short.action_lost_after) == \
        (1.0, 2.5, 25, 20.0)


def test_the_worker_reads_its_settings_when_used(app_env):
    """No module constant freezes a setting at import: a changed value applies to the next call."""
    from worker import policy

    app_env(celery_visibility_timeout="60")
    assert policy.max_countdown() == 30
    app_env(celery_visibility_timeout="3600")
    assert policy.max_countdown() == 300
