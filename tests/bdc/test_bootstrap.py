"""The environment's connection is applied idempotently, audited without secrets."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import func, select

from bdc.bootstrap import ensure_env_connection
from bdc.models import AuditLog, Tenant, WedofConnection
from bdc.settings import load_settings

BASE = {"APP_ENV": "test", "JWT_SECRET_KEY": "x" * 32, "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def test_nothing_is_created_without_a_configured_connection(session):
    assert ensure_env_connection(session, load_settings(dict(BASE))) is None
    assert session.scalar(select(func.count()).select_from(Tenant)) == 0


def test_env_connection_is_created_once_and_refreshed_when_the_environment_changes(session):
    env = {**BASE, "WEDOF_API_KEY": "key-1", "WEDOF_WEBHOOK_SECRET": "secret-1", "WEDOF_SYNC_ENABLED": "false"}
    first = ensure_env_connection(session, load_settings(env))
    again = ensure_env_connection(session, load_settings(env))
    session.commit()
    assert first.id == again.id and first.is_env_default
    # Turning the periodic sync off must not stop webhooks from being accepted.
    assert first.enabled is True
    assert session.scalar(select(func.count()).select_from(AuditLog)) == 1  # the second run changed nothing

    changed = ensure_env_connection(session, load_settings({**env, "WEDOF_API_KEY": "key-2"}))
    session.commit()
    assert changed.id == first.id and changed.api_key == "key-2"
    assert session.scalar(select(func.count()).select_from(WedofConnection)) == 1
    entries = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert entries[-1].details == {"fields": ["api_key"], "changes": {"api_key": "changed"}}
    assert all("key-" not in str(e.details) and "secret-1" not in str(e.details) for e in entries)
