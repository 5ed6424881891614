"""Flask app factory for the sandbox: API blueprint, control blueprint, JSON errors everywhere."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.exceptions import HTTPException

from .api import api
from .control import control
from .errors import ApiError
from .httpjson import json_response
from .state import SandboxState

log = logging.getLogger("wedof_sandbox")


def create_app(state: SandboxState) -> Flask:
    app = Flask("wedof_sandbox")
    app.config["SANDBOX"] = state
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.json.ensure_ascii = False
    app.register_blueprint(api)
    app.register_blueprint(control)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return json_response(exc.body(), exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return json_response({"detail": exc.description or exc.name}, exc.code or 500)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error")  # the client gets no stack trace
        return json_response({"detail": "Internal error in the sandbox."}, 500)

    return app
