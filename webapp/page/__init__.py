"""The integration page ``/integrations/wedof``: one server-rendered page for operators.

Jinja renders the page; a little JavaScript (static/integration.js) reads the admin API with the
token, runs "Sync now" with live progress and retries events. The token comes from ``?token=``
(checked here, then kept in sessionStorage and removed from the address bar so it does not stay in
the history) or from the small form on the page.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_jwt_extended.exceptions import JWTExtendedException, RevokedTokenError
from jwt.exceptions import PyJWTError

from bdc.settings import get_settings
from webapp.admin import bp as admin_bp
from webapp.auth import authenticate_admin
from webapp.errors import ApiError

bp = Blueprint("integration_page", __name__)


@bp.get("/integrations/wedof")
def integration_page():
    error, status = None, 200
    if request.args.get("token"):
        try:
            authenticate_admin()
        except ApiError as exc:
            error, status = exc.message, exc.status
        except RevokedTokenError:
            error, status = "Jeton révoqué.", 401
        except JWTExtendedException:
            error, status = "Jeton invalide.", 401
        except PyJWTError as exc:
            expired = exc.__class__.__name__ == "ExpiredSignatureError"
            error, status = ("Jeton expiré." if expired else "Jeton invalide."), 401
    return render_template(
        "integration.html",
        api_base=admin_bp.url_prefix,
        flower_url=get_settings().flower_url,
        token_error=error,
    ), status
