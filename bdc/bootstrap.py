"""Make the database match what the environment declares: the default tenant and its Wedof connection.

``WEDOF_API_KEY`` / ``WEDOF_WEBHOOK_SECRET`` describe one connection, the one that answers on
``/api/webhooks/wedof``. Running this at start-up (make run, the CLI) is idempotent.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc.audit import changes, record_audit
from bdc.models import Tenant, WedofConnection
from bdc.settings import Settings

DEFAULT_TENANT_SLUG = "default"


def ensure_env_connection(session: Session, settings: Settings) -> WedofConnection | None:
    """Create or refresh the environment's connection; None when the environment names none."""
    if not settings.env_connection_configured:
        return None
    connection = session.scalar(select(WedofConnection).where(WedofConnection.is_env_default.is_(True)))
    if connection is None:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == DEFAULT_TENANT_SLUG))
        if tenant is None:
            tenant = Tenant(name="Default organisation", slug=DEFAULT_TENANT_SLUG)
            session.add(tenant)
            session.flush()
        connection = session.scalar(select(WedofConnection).where(WedofConnection.tenant_id == tenant.id))
        if connection is None:
            connection = WedofConnection(tenant_id=tenant.id)
            session.add(connection)
        connection.is_env_default = True
    changed = {
        "base_url": settings.wedof_api_url,
        "api_key": settings.wedof_api_key,
        "webhook_secret": settings.wedof_webhook_secret,
        "signature_algorithm": settings.wedof_signature_algorithm,
        "organism_siret": settings.wedof_org_id,
    }
    # WEDOF_SYNC_ENABLED only governs the periodic sync (beat); webhooks keep flowing either way.
    before = {name: getattr(connection, name) for name in changed}
    differs = changes(before, changed, secrets=("api_key", "webhook_secret"))
    for name in differs:
        setattr(connection, name, changed[name])
    session.flush()
    if differs:
        # Secrets are recorded as "changed", never by value.
        record_audit(session, actor="system", action="connection.configured_from_env", tenant_id=connection.tenant_id,
                     target=("wedof_connection", connection.id), details={"fields": sorted(differs)},
                     changes=differs)
    return connection
