"""The Wedof integration's admin API, ``/api/integrations/wedof/*`` (super_admin and tenant_admin).

One blueprint; each area (status and sync, events, synced records, connection, audit log, the caller's
token) lives in its own module and adds its routes to it.
"""

from flask import Blueprint

bp = Blueprint("wedof_admin", __name__, url_prefix="/api/integrations/wedof")

from webapp.admin import (  # noqa: E402,F401
    audit_log,
    billing,
    connection,
    events,
    evidence,
    lifecycle,
    notifications,
    operations,
    privacy,
    records,
    status,
    tokens,
)
