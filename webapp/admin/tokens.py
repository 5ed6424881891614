"""``POST /token/revoke``: the caller revokes the token it calls with (logging out for good).

The token's jti goes into the Redis blocklist until the token would have expired; from then on any
request with it is answered 401 ``token_revoked``. Another token is revoked with the operator CLI
(``revoke-token``), which needs no token of its own. The audit log records the jti, never the token.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app, jsonify
from flask_jwt_extended import get_jwt

from bdc.audit import record_audit
from webapp import token_revocation
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.scope import current_principal
from webapp.admin.validation import json_object, reject_unknown
from webapp.auth import admin_required
from webapp.errors import ApiError


@bp.post("/token/revoke")
@admin_required
def revoke_own_token():
    reject_unknown(json_object(allow_empty=True), set())  # nothing to choose: it is always the caller's token
    principal = current_principal()
    claims = get_jwt()
    jti, expires_at = claims["jti"], claims.get("exp")
    try:
        kept = token_revocation.revoke(current_app.config["SETTINGS"].redis_url, jti, expires_at)
    except token_revocation.RevocationUnavailable:
        raise ApiError(503, "revocation_unavailable", "The token could not be revoked right now; try again.") from None
    expires = datetime.fromtimestamp(expires_at, UTC).isoformat() if isinstance(expires_at, int | float) else None
    with db_session() as session:
        record_audit(session, actor=principal.actor, action="token.revoked", tenant_id=principal.tenant_id,
                     target=("token", jti), details={"via": "api", "expires_at": expires})
    return jsonify({"revoked": True, "jti": jti, "expires_at": expires, "kept_seconds": kept})
