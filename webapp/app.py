"""The Flask application factory: ``create_app(config)`` as a list of named ``register_*`` steps."""

from __future__ import annotations

import logging

from flask import Flask

from bdc.error_tracking import init_error_tracking
from bdc.settings import get_settings
from webapp.errors import register_error_handlers
from webapp.extensions import jwt


def create_app(config: dict | None = None) -> Flask:
    settings = get_settings()
    init_error_tracking("webapp", settings)  # a no-op unless SENTRY_DSN is set
    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        DATABASE_URL=settings.database_url,
        JWT_SECRET_KEY=settings.jwt_secret_key,
        JWT_TOKEN_LOCATION=["headers", "query_string"],
        JWT_QUERY_STRING_NAME="token",
        MAX_CONTENT_LENGTH=settings.webhook_max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.update(config or {})
    register_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_rate_limits(app)
    register_security_headers(app)
    register_metrics(app)
    register_error_handlers(app)
    return app


def register_logging(app: Flask) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


def register_extensions(app: Flask) -> None:
    jwt.init_app(app)


def register_metrics(app: Flask) -> None:
    # Request timing and GET /metrics (webapp.metrics: multiprocess under gunicorn).
    from webapp import metrics

    metrics.init_app(app)


def register_rate_limits(app: Flask) -> None:
    # The admin API and the integration page only: the receiver, health and metrics are never limited here.
    from webapp import rate_limits
    from webapp.admin import bp as wedof_admin
    from webapp.page import bp as integration_page

    rate_limits.init_app(app, [wedof_admin, integration_page])


def register_security_headers(app: Flask) -> None:
    # CSP, framing, referrer and sniffing headers on every answer (webapp.security_headers).
    from webapp import security_headers

    security_headers.init_app(app)


def register_blueprints(app: Flask) -> None:
    # Each part of the web application is one blueprint; imported here to keep start-up explicit.
    from webapp import blueprints

    for blueprint in blueprints.all_blueprints():
        app.register_blueprint(blueprint)
