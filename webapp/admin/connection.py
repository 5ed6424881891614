"""A tenant's Wedof connection: create, read, change, rotate the webhook secret, register the webhook.

The API key and webhook secret are write-only: responses say ``api_key_set`` / ``webhook_secret_set``.
The one exception is a secret the server generates (on create without one, and on rotate): it is
returned exactly once, in that response, so the admin can paste it into Wedof; it is never shown
again, never logged, and the audit log records only which fields changed.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from flask import jsonify

from bdc.audit import CHANGED, changes, record_audit
from bdc.models import WedofConnection
from bdc.settings import SIGNATURE_ALGORITHMS, get_settings
from bdc.types import utcnow
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.scope import current_principal, resolve_tenant, tenant_connection
from webapp.admin.serializers import connection_json, iso
from webapp.admin.validation import field, json_object, reject_unknown
from webapp.auth import admin_required
from webapp.dispatch import BrokerUnavailable, send_task
from webapp.errors import ApiError
from webapp.receiver.connections import forget_cached_connections
from wedof.outbound import OutboundRefused, check_base_url, wedof_policy
from worker.task_names import REGISTER_WEBHOOK

WRITABLE = {"name", "base_url", "api_key", "webhook_secret", "signature_algorithm", "organism_siret", "enabled",
            "rate_limit_per_second"}
SECRET_FIELDS = ("api_key", "webhook_secret")


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def validate_base_url(value: str) -> str:
    """Only Wedof's hosts (and an operator's additions): the tenant's API key travels to this URL."""
    try:
        return check_base_url(value, wedof_policy())
    except OutboundRefused as refused:
        raise ApiError(400, "base_url_refused", f"base_url refused ({refused.rule} rule): {refused.message}.",
                       rule=refused.rule, fields={"base_url": refused.rule}) from None


def keep_previous_secret(connection: WedofConnection, old: str | None, grace: float):
    """Keep ``old`` verifying deliveries for ``grace`` seconds; returns when that ends (None: not kept)."""
    grace_until = utcnow() + timedelta(seconds=grace) if old and grace > 0 else None
    connection.previous_webhook_secret = old if grace_until else None
    connection.previous_secret_expires_at = grace_until
    return grace_until


def _secret(body: dict, name: str) -> str | None:
    value = field(body, name, str, default=None, nullable=True, max_length=500)
    if value is None:
        return None
    value = value.strip()
    if len(value) < 8 or any(c in value for c in "\r\n\t "):
        raise ApiError(422, "validation_error", f"{name} must be at least 8 characters without spaces.",
                       fields={name: "invalid"})
    return value


def _apply(connection: WedofConnection, body: dict) -> dict:
    """Validate and apply the writable fields present in ``body``; returns their old and new values
    (:func:`bdc.audit.changes`: a secret's as "changed")."""
    values: dict = {}
    if "name" in body:
        values["name"] = field(body, "name", str, max_length=200).strip() or "Wedof"
    if "base_url" in body:
        values["base_url"] = validate_base_url(field(body, "base_url", str, max_length=500))
    for name in SECRET_FIELDS:
        if name in body:
            values[name] = _secret(body, name)
    if "signature_algorithm" in body:
        values["signature_algorithm"] = field(body, "signature_algorithm", str, choices=SIGNATURE_ALGORITHMS)
    if "organism_siret" in body:
        siret = field(body, "organism_siret", str, nullable=True)
        if siret is not None and not re.fullmatch(r"\d{14}", siret):
            raise ApiError(422, "validation_error", "organism_siret must be 14 digits.",
                           fields={"organism_siret": "invalid"})
        values["organism_siret"] = siret
    if "enabled" in body:
        values["enabled"] = field(body, "enabled", bool)
    if "rate_limit_per_second" in body:
        values["rate_limit_per_second"] = field(body, "rate_limit_per_second", (int, float), nullable=True,
                                                minimum=0.01, maximum=1000)
    before = {name: getattr(connection, name) for name in values}
    found = changes(before, values, secrets=SECRET_FIELDS)
    for name in found:
        setattr(connection, name, values[name])
    return found


@bp.get("/connection")
@admin_required
def get_connection():
    with db_session() as session:
        return jsonify(connection_json(tenant_connection(session, resolve_tenant(session))))


@bp.post("/connection")
@admin_required
def create_connection():
    body = json_object()
    reject_unknown(body, WRITABLE)
    with db_session() as session:
        tenant = resolve_tenant(session)
        if tenant_connection(session, tenant, required=False) is not None:
            raise ApiError(409, "connection_exists", "This tenant already has a Wedof connection; PATCH it.")
        connection = WedofConnection(tenant_id=tenant.id, name="Wedof", base_url="https://www.wedof.fr/api",
                                     signature_algorithm="sha256", enabled=True)
        created = _apply(connection, body)
        generated = None
        if not connection.webhook_secret:
            generated = connection.webhook_secret = new_webhook_secret()
            created["webhook_secret"] = CHANGED
        session.add(connection)
        session.flush()
        record_audit(session, actor=current_principal().actor, action="connection.created", tenant_id=tenant.id,
                     target=("wedof_connection", connection.id), details={"fields": sorted(created)},
                     changes=created)
        data = connection_json(connection)
    forget_cached_connections()
    if generated:
        data["webhook_secret"] = generated  # shown once: paste it into Wedof's webhook settings
    return jsonify(data), 201


@bp.patch("/connection")
@admin_required
def update_connection():
    body = json_object()
    reject_unknown(body, WRITABLE)
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant)
        old_secret = connection.webhook_secret
        updated = _apply(connection, body)
        changed = sorted(updated)
        if "webhook_secret" in updated:  # a secret set by hand is a rotation too: the old one gets its window
            keep_previous_secret(connection, old_secret, get_settings().webhook_secret_grace_seconds)
        if changed:
            session.flush()
            record_audit(session, actor=current_principal().actor, action="connection.updated",
                         tenant_id=tenant.id, target=("wedof_connection", connection.id),
                         details={"fields": changed}, changes=updated)
        data = connection_json(connection)
    if changed:
        forget_cached_connections()  # the receiver must check the next delivery against the new values
    data["changed"] = changed
    return jsonify(data)


@bp.post("/connection/rotate-secret")
@admin_required
def rotate_secret():
    """A new secret; the old one still verifies deliveries for WEBHOOK_SECRET_GRACE_SECONDS, so none is lost
    while Wedof learns the new one (the webhook is registered again with it, and the old webhook deleted)."""
    json_object(allow_empty=True)
    grace = get_settings().webhook_secret_grace_seconds
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant)
        secret = new_webhook_secret()
        grace_until = keep_previous_secret(connection, connection.webhook_secret, grace)
        connection.webhook_secret = secret
        record_audit(session, actor=current_principal().actor, action="connection.secret_rotated",
                     tenant_id=tenant.id, target=("wedof_connection", connection.id),
                     details={"fields": ["webhook_secret"], "previous_secret_accepted_until": iso(grace_until)},
                     changes={"webhook_secret": CHANGED})
        url, connection_id, can_register = connection.webhook_url, connection.id, bool(connection.api_key)
    forget_cached_connections()
    task_id = None
    if can_register:
        try:
            task_id = send_task(REGISTER_WEBHOOK, [connection_id])
        except BrokerUnavailable:
            task_id = None  # rotated all the same; the message says to register again
    if task_id:
        message = "Shown once. The Wedof webhook is being registered again with this secret."
    else:
        message = ("Shown once: paste this secret into Wedof's webhook settings, or POST connection/register-webhook"
                   " once the API key is set and the task queue is reachable.")
    return jsonify({"webhook_secret": secret, "webhook_url": url, "message": message,
                    "previous_secret_accepted_until": iso(grace_until), "register_task_id": task_id})


@bp.post("/connection/register-webhook")
@admin_required
def register_webhook():
    json_object(allow_empty=True)
    with db_session() as session:
        tenant = resolve_tenant(session)
        connection = tenant_connection(session, tenant)
        if not connection.api_key or not connection.webhook_secret:
            raise ApiError(409, "connection_not_configured",
                           "Set the API key and the webhook secret before registering the webhook.")
        record_audit(session, actor=current_principal().actor, action="connection.webhook_registration_requested",
                     tenant_id=tenant.id, target=("wedof_connection", connection.id))
        connection_id, url = connection.id, connection.webhook_url
    try:
        task_id = send_task(REGISTER_WEBHOOK, [connection_id])
    except BrokerUnavailable:
        raise ApiError(503, "broker_unavailable", "The task queue is unreachable; try again.") from None
    return jsonify({"task_id": task_id, "connection_id": connection_id, "webhook_url": url}), 202
