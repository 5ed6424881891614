"""Which tenant a request acts on, and the 404-not-403 rule for other tenants' objects.

A super_admin chooses the tenant with ``?tenant_id=`` or the ``X-Tenant-Id`` header. When it names
none and exactly one tenant exists, that one is used (single-organisation installs need no
parameter); with several tenants it must choose (400 ``tenant_required``). A tenant_admin is
always pinned to its own tenant: naming another one, or asking for another tenant's object,
answers 404 so the existence of other tenants never leaks.
"""

from __future__ import annotations

from typing import TypeVar

from flask import g, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bdc.models import Tenant, WedofConnection
from webapp.admin.common import get_by_id
from webapp.auth import Principal
from webapp.errors import ApiError
from wedof.outbound import OutboundRefused, check_base_url, wedof_policy

T = TypeVar("T")

TENANT_HEADER = "X-Tenant-Id"


def requested_tenant_id() -> int | None:
    """The tenant the caller names (query beats header), or None; 400 when it is not a number."""
    raw = request.args.get("tenant_id")
    if raw is None:
        raw = request.headers.get(TENANT_HEADER)
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, "invalid_tenant_id", "tenant_id must be a positive whole number.")
    return int(raw)


def current_principal() -> Principal:
    return g.principal


def resolve_tenant(session: Session) -> Tenant:
    """The tenant this request acts on (404 when unknown or not the caller's)."""
    principal = current_principal()
    wanted = requested_tenant_id()
    if not principal.is_super_admin:
        if wanted is not None and wanted != principal.tenant_id:
            raise ApiError(404, "not_found", "No such tenant.")
        wanted = principal.tenant_id
    if wanted is None:
        if session.scalar(select(func.count()).select_from(Tenant)) == 1:
            return session.scalars(select(Tenant)).one()
        raise ApiError(400, "tenant_required",
                       "Choose a tenant with ?tenant_id= or the X-Tenant-Id header.")
    tenant = get_by_id(session, Tenant, wanted)
    if tenant is None:
        raise ApiError(404, "not_found", "No such tenant.")
    return tenant


def ensure_visible(tenant_id: int | None, what: str = "object") -> None:
    """404 unless the caller may see an object of ``tenant_id``.

    A super_admin sees every tenant's objects, unless it narrowed the request to one tenant.
    """
    principal = current_principal()
    if principal.is_super_admin:
        wanted = requested_tenant_id()
        allowed = wanted is None or wanted == tenant_id
    else:
        allowed = tenant_id is not None and tenant_id == principal.tenant_id
    if not allowed:
        raise ApiError(404, "not_found", f"No such {what}.")


def visible_row(session: Session, model: type[T], row_id: int, what: str) -> T:
    """The row of ``model`` with this id, or 404 when it does not exist or the caller may not see it."""
    row = get_by_id(session, model, row_id)
    if row is None:
        raise ApiError(404, "not_found", f"No such {what}.")
    ensure_visible(row.tenant_id, what)
    return row


def tenant_connection(session: Session, tenant: Tenant, *, required: bool = True) -> WedofConnection | None:
    connection = session.scalar(select(WedofConnection).where(WedofConnection.tenant_id == tenant.id))
    if connection is None and required:
        raise ApiError(404, "no_connection",
                       "This tenant has no Wedof connection yet; create one with POST connection.")
    return connection


def usable_connection(session: Session, tenant: Tenant, purpose: str) -> WedofConnection:
    """The tenant's connection when it can call Wedof (enabled, with an API key); else 409 saying ``purpose``
    cannot happen (``purpose``: what the request would have done, e.g. "nothing to check")."""
    connection = tenant_connection(session, tenant)
    if not connection.enabled or not connection.api_key:
        raise ApiError(409, "connection_not_usable",
                       f"The connection is disabled or has no Wedof API key: {purpose}.")
    refuse_fenced_url(connection, purpose)
    return connection


def refuse_fenced_url(connection: WedofConnection, purpose: str) -> None:
    """409 when the stored base_url breaks the outbound rule (stored before the allowed hosts changed)."""
    try:
        check_base_url(connection.base_url, wedof_policy())
    except OutboundRefused as refused:
        raise ApiError(409, "connection_not_usable", f"The connection's base_url is refused ({refused.rule} rule): "
                       f"{refused.message}; {purpose}.", rule=refused.rule) from None
