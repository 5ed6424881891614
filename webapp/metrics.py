"""The receiver's Prometheus metrics and its ``GET /metrics``.

Under gunicorn every worker is a process of its own: with ``PROMETHEUS_MULTIPROC_DIR`` set (and
emptied at start by ``webapp/gunicorn_conf.py``, which also marks exited workers dead),
prometheus_client writes each worker's values to files in that directory and ``/metrics`` sums
them, whichever worker answers the scrape. Without the variable (the Flask test client, ``flask
run``) the values live in this process's own registry.

Labels stay bounded whatever a client sends: ``endpoint`` is the matched URL rule's template (or
``unmatched``), ``method`` one of the HTTP methods the app knows (or ``other``), ``tenant`` the
slug of a connection the receiver resolved (``unknown`` before that, so a post to a random
connection id creates no series). Label children are bound once and cached: a delivery costs a
few dictionary lookups and memory writes, not prometheus_client's label validation.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Blueprint, Flask, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

log = logging.getLogger(__name__)

UNKNOWN_TENANT = "unknown"
UNMATCHED = "unmatched"
OUTCOMES = ("accepted", "duplicate", "invalid_signature", "bad_request", "too_large", "unknown_connection",
            "disabled", "unavailable")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STARTED = "bdc.metrics.started"  # the request's start time, kept in its WSGI environ

# The receiver's own registry (not prometheus_client's global one), so what /metrics shows in one
# process is the receiver's alone even when a test process has imported the workers' metrics too.
REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "bdc_webhook_deliveries_total", "Webhook deliveries answered by the receiver, by tenant and outcome.",
    ["tenant", "outcome"], registry=REGISTRY)
REQUEST_DURATION = Histogram(
    "bdc_http_request_duration_seconds", "Time to answer an HTTP request, by URL rule, method and status.",
    ["endpoint", "method", "code"], registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
BODY_BYTES = Histogram(
    "bdc_webhook_body_bytes", "Size of the webhook bodies read by the receiver.", registry=REGISTRY,
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304))

# Receiver outcomes (the views' names) -> the catalog's; anything else is classed by its status.
_OUTCOME_OF = {
    "accepted": "accepted", "stored_not_queued": "accepted", "ignored": "accepted",
    "duplicate": "duplicate",
    "missing_signature": "invalid_signature", "invalid_signature": "invalid_signature",
    "webhook_secret_not_configured": "invalid_signature",
    "payload_too_large": "too_large",
    "unknown_connection": "unknown_connection", "no_default_connection": "unknown_connection",
    "connection_disabled": "disabled",
}

_delivery_children: dict[tuple[str, str], object] = {}
_request_children: dict[tuple[str, str, int], object] = {}


def multiprocess_dir() -> str | None:
    """prometheus_client's own variable (its older lower-case spelling too), or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def delivery_outcome(outcome: str, status: int) -> str:
    """The catalog's outcome for what the receiver answered."""
    known = _OUTCOME_OF.get(outcome)
    if known is not None:
        return known
    return "unavailable" if status >= 500 else "bad_request"


def record_delivery(tenant: str | None, outcome: str, status: int) -> None:
    # Never raises: the delivery is answered already (a metric failing must not turn a 202 into a 500).
    try:
        key = (tenant or UNKNOWN_TENANT, delivery_outcome(outcome, status))
        child = _delivery_children.get(key)
        if child is None:
            child = _delivery_children[key] = DELIVERIES.labels(*key)
        child.inc()
    except Exception:  # noqa: BLE001
        log.debug("delivery metric not recorded", exc_info=True)


def observe_body_bytes(size: int) -> None:
    try:
        BODY_BYTES.observe(size)
    except Exception:  # noqa: BLE001
        log.debug("body size not recorded", exc_info=True)


def _start_timer() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _observe_request(response):
    started = request.environ.get(_STARTED)
    if started is not None:
        try:
            rule = request.url_rule
            method = request.method
            key = (rule.rule if rule is not None else UNMATCHED, method if method in _KNOWN_METHODS else "other",
                   response.status_code)
            child = _request_children.get(key)
            if child is None:
                child = _request_children[key] = REQUEST_DURATION.labels(key[0], key[1], str(key[2]))
            child.observe(time.perf_counter() - started)
        except Exception:  # noqa: BLE001
            log.debug("request duration not recorded", exc_info=True)
    return response


def exposition() -> bytes:
    """The text format of every receiver metric: summed over gunicorn's workers in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def token_accepted(authorization: str | None, token: str | None) -> bool:
    """True without a configured token; else only for ``Bearer <token>``, compared in constant time."""
    if not token:
        return True
    if not authorization:
        return False
    scheme, _, offered = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        offered_bytes = offered.strip().encode("latin-1")  # WSGI headers are latin-1 text: back to the bytes sent
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(offered_bytes, token.encode("utf-8"))


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    if not token_accepted(request.headers.get("Authorization"), current_app.config["SETTINGS"].metrics_token):
        return ({"error": "unauthorized", "message": "The metrics need 'Authorization: Bearer <METRICS_TOKEN>'."},
                401, {"WWW-Authenticate": 'Bearer realm="metrics"'})
    return exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def init_app(app: Flask) -> None:
    """Time every request and serve ``/metrics``."""
    app.before_request(_start_timer)
    app.after_request(_observe_request)
    app.register_blueprint(bp)
