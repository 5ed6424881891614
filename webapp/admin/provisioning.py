"""Onboarding in one step: a tenant, its admin and its Wedof connection, validated before anything is written.

Used by ``python -m webapp.cli create-tenant``; every check runs first and the rows are written in
one transaction, so hostile input never leaves half a tenant behind.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bdc.audit import changes, record_audit
from bdc.models import Tenant, User, UserRole, WedofConnection
from wedof.outbound import OutboundRefused, check_base_url, wedof_policy

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")


class ProvisioningError(ValueError):
    """The input cannot be used; the message says which part and why."""


@dataclass
class Provisioned:
    tenant: Tenant
    admin: User
    connection: WedofConnection
    generated_secret: str | None


def check_email(email: str) -> str:
    email = (email or "").strip()
    if len(email) > 320 or not EMAIL_RE.match(email):
        raise ProvisioningError(f"not a valid email address: {email[:80]!r}")
    return email.lower()


def check_url(url: str) -> str:
    try:
        return check_base_url(url, wedof_policy())
    except OutboundRefused as refused:
        raise ProvisioningError(f"the Wedof API URL is refused ({refused.rule} rule): {refused.message}") from None


def check_secret(name: str, value: str) -> str:
    value = value.strip()
    if len(value) < 8 or len(value) > 500 or any(c.isspace() for c in value):
        raise ProvisioningError(f"{name} must be 8 to 500 characters without spaces")
    return value


def create_tenant_with_admin(session: Session, *, name: str, slug: str, admin_email: str,
                             wedof_api_url: str = "https://www.wedof.fr/api", wedof_api_key: str | None = None,
                             webhook_secret: str | None = None, actor: str = "cli") -> Provisioned:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ProvisioningError("the tenant name must be 1 to 200 characters")
    slug = (slug or "").strip()
    if not SLUG_RE.match(slug):
        raise ProvisioningError(f"the slug must be lowercase letters, digits and dashes (got {slug[:80]!r})")
    email = check_email(admin_email)
    base_url = check_url(wedof_api_url)
    api_key = check_secret("the Wedof API key", wedof_api_key) if wedof_api_key else None
    generated = None
    if webhook_secret:
        webhook_secret = check_secret("the webhook secret", webhook_secret)
    else:
        generated = webhook_secret = secrets.token_urlsafe(32)
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise ProvisioningError(f"a tenant with the slug {slug!r} already exists")
    if session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise ProvisioningError(f"a user with the email {email!r} already exists")

    tenant = Tenant(name=name, slug=slug)
    session.add(tenant)
    session.flush()
    admin = User(tenant_id=tenant.id, email=email, role=UserRole.TENANT_ADMIN)
    connection = WedofConnection(tenant_id=tenant.id, base_url=base_url, api_key=api_key,
                                 webhook_secret=webhook_secret)
    session.add_all([admin, connection])
    session.flush()
    record_audit(session, actor=actor, action="tenant.created", tenant_id=tenant.id, target=("tenant", tenant.id),
                 details={"slug": slug, "admin_user_id": admin.id, "connection_id": connection.id,
                          "api_key_set": api_key is not None},
                 changes=changes({}, {"name": name, "slug": slug, "base_url": base_url,
                                      "api_key": api_key, "webhook_secret": webhook_secret},
                                 secrets=("api_key", "webhook_secret")))
    return Provisioned(tenant=tenant, admin=admin, connection=connection, generated_secret=generated)
