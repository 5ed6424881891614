"""Liveness and readiness probes for load balancers and docker-compose health checks."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from bdc.db import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


def _check_database() -> str:
    try:
        with get_engine(current_app.config["DATABASE_URL"]).connect() as conn:
            conn.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"unreachable: {exc.__class__.__name__}"


def _check_broker() -> str:
    try:
        client = redis.Redis.from_url(current_app.config["SETTINGS"].redis_url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
        return "ok"
    except Exception as exc:
        return f"unreachable: {exc.__class__.__name__}"
