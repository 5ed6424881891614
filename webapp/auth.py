"""BDC-style JWT authentication for the admin API and the integration page.

The BDC host issues the tokens (flask-jwt-extended, shared ``JWT_SECRET_KEY``): identity = the
user id as a string, claims ``role`` and ``tenant_id``. We trust the signed claims, so a token
from the BDC works here without a copy of its user table. One extra check where we can: when a
user row with that id exists in our database and is deactivated, the token is refused (401), so
disabling an account takes effect before its tokens expire. A missing row is not an error. A token
whose ``jti`` was revoked (webapp.token_revocation) is refused with ``token_revoked``.

Every authentication failure leaves as ``{"error", "message"}`` JSON: jwt-extended's default
loaders (``{"msg": ...}``) are replaced below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import wraps

from flask import current_app, g
from flask_jwt_extended import create_access_token, get_jwt, get_jwt_identity, verify_jwt_in_request

from bdc.db import session_scope
from bdc.models import User, UserRole
from webapp import token_revocation
from webapp.errors import ApiError, error_response
from webapp.extensions import jwt

ADMIN_ROLES = frozenset({UserRole.SUPER_ADMIN.value, UserRole.TENANT_ADMIN.value})


@dataclass(frozen=True)
class Principal:
    """Who is calling: from the token's identity and claims."""

    user_id: str
    role: str
    tenant_id: int | None

    @property
    def is_super_admin(self) -> bool:
        return self.role == UserRole.SUPER_ADMIN.value

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"user:{self.user_id}"


# -- jwt-extended error shapes ------------------------------------------------------------------

@jwt.unauthorized_loader
def _missing_token(reason: str):
    return error_response(401, "unauthorized", "A bearer token is required (Authorization: Bearer <token>).")


@jwt.invalid_token_loader
def _invalid_token(reason: str):
    return error_response(401, "invalid_token", "The token is invalid.")


@jwt.expired_token_loader
def _expired_token(_header, _payload):
    return error_response(401, "token_expired", "The token has expired; ask for a new one.")


@jwt.revoked_token_loader
def _revoked_token(_header, _payload):
    return error_response(401, "token_revoked", "The token has been revoked.")


@jwt.token_in_blocklist_loader
def _token_in_blocklist(_header, payload) -> bool:
    """True when the token's jti was revoked (webapp.token_revocation); asked once per request.

    A token without a usable jti could never be revoked, so it is refused. Redis unreachable: 503, not
    "not revoked": failing open would let a revoked token back in for as long as Redis is away.
    """
    jti = payload.get("jti")
    if not token_revocation.valid_jti(jti):
        raise ApiError(401, "invalid_token", "The token has no usable jti claim.")
    checked = g.setdefault("_revoked_jtis", {})
    if jti not in checked:
        try:
            checked[jti] = token_revocation.is_revoked(current_app.config["SETTINGS"].redis_url, jti)
        except token_revocation.RevocationUnavailable:
            raise ApiError(503, "revocation_check_unavailable",
                           "Whether the token was revoked cannot be checked right now; try again shortly.") from None
    return checked[jti]


@jwt.needs_fresh_token_loader
def _needs_fresh(_header, _payload):
    return error_response(401, "fresh_token_required", "A fresh token is required.")


@jwt.user_lookup_error_loader
def _user_lookup_error(_header, _payload):
    return error_response(401, "unknown_user", "The token's user is unknown.")


@jwt.token_verification_failed_loader
def _verification_failed(_header, _payload):
    return error_response(401, "invalid_token", "The token's claims were refused.")


# -- checks ---------------------------------------------------------------------------------------

def _principal_from_claims(identity: object, claims: dict) -> Principal:
    role = claims.get("role")
    raw_tenant = claims.get("tenant_id")
    if not isinstance(identity, str) or not identity or not isinstance(role, str):
        raise ApiError(401, "invalid_token", "The token lacks a user id or a role.")
    tenant_id: int | None
    if raw_tenant is None or raw_tenant == "":
        tenant_id = None
    else:
        try:
            tenant_id = int(raw_tenant)
        except (TypeError, ValueError):
            raise ApiError(401, "invalid_token", "The token's tenant_id is not a number.") from None
    return Principal(user_id=identity, role=role, tenant_id=tenant_id)


def _reject_disabled_user(principal: Principal) -> None:
    if not principal.user_id.isdigit():
        return  # not one of our ids: a BDC-only account, trusted on its signed claims
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        user = session.get(User, int(principal.user_id))
        if user is not None and not user.is_active:
            raise ApiError(401, "user_inactive", "This account has been deactivated.")


def authenticate_admin() -> Principal:
    """Verify the request's token and require an admin role; returns the caller.

    A missing, malformed or expired token raises jwt-extended's errors, which its (overridden)
    loaders turn into 401 JSON through Flask's error handlers.
    """
    verify_jwt_in_request()
    principal = _principal_from_claims(get_jwt_identity(), get_jwt())
    if principal.role not in ADMIN_ROLES:
        raise ApiError(403, "forbidden", "Only super_admin and tenant_admin may use the Wedof integration.")
    if principal.role == UserRole.TENANT_ADMIN.value and principal.tenant_id is None:
        raise ApiError(403, "forbidden", "This tenant_admin token names no tenant.")
    _reject_disabled_user(principal)
    g.principal = principal
    return principal


def admin_required(view):
    """Decorator: the view runs only for a super_admin or tenant_admin; ``g.principal`` is set."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        authenticate_admin()
        return view(*args, **kwargs)

    return wrapper


def issue_token(user: User, expires: timedelta | None = None) -> str:
    """A token shaped like the BDC's own (needs an app context)."""
    return create_access_token(
        identity=str(user.id),
        additional_claims={"role": str(user.role.value if hasattr(user.role, "value") else user.role),
                           "tenant_id": user.tenant_id},
        expires_delta=expires if expires is not None else timedelta(hours=12),
    )
