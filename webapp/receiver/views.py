"""``POST /api/webhooks/wedof[/<connection_id>]``: verify, store durably, enqueue, answer fast.

Order of the checks, and why:
1. the connection (404 when unknown; nothing else can be checked without its secret);
2. content type (415) and body size (413), before the body is trusted with any work;
3. the signature over the exact raw bytes (401; a connection without a secret is refused too,
   never treated as "unsigned is fine"); only then is a disabled connection reported (409), so
   only the holder of the secret learns that state;
4. the delivery's shape (400), the INSERT and COMMIT (503 when the database cannot take it);
5. publishing ``PROCESS_EVENT`` by name (:mod:`webapp.receiver.publisher`). A broker outage does
   not fail the request: the event is durable, answered 202 and left ``received`` for the sweeper.

The row's moves belong to :mod:`bdc.inbox`: it is inserted already ``queued`` with the task id
the publish then uses (one statement per delivery), and put back to ``received`` only when the
publish fails (:func:`bdc.inbox.unpublished`), so the sweeper enqueues it within seconds.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wsgi import get_input_stream

from bdc import inbox
from bdc.crypto import SecretDecryptionError
from bdc.types import utcnow
from webapp.dispatch import BrokerUnavailable
from webapp.errors import ApiError
from webapp.metrics import observe_body_bytes, record_delivery
from webapp.receiver.connections import (
    ReceivingConnection,
    find_connection,
    forget_cached_connections,
    reloaded_connection,
)
from webapp.receiver.flood import count_bad_signature
from webapp.receiver.publisher import publish_process_event
from webapp.receiver.storage import headers_to_store, run_with_reconnect
from wedof.events import SIGNATURE_HEADER, DeliveryRejected, ParsedDelivery, parse_delivery
from wedof.signatures import verify_signature

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")
log = logging.getLogger("webapp.receiver")

_MAX_CONNECTION_ID = 2**31 - 1  # an INTEGER primary key; larger ids cannot exist


@bp.post("/wedof")
def receive_for_env_connection():
    return _receive(None)


@bp.post("/wedof/<int:connection_id>")
def receive_for_connection(connection_id: int):
    return _receive(connection_id)


def _receive(connection_id: int | None):
    started = time.perf_counter()
    context: dict = {"connection": connection_id if connection_id is not None else "env"}
    status, outcome = 500, "internal_error"  # what the app's error handler answers if anything unforeseen raises
    try:
        response, status, outcome = _handle(connection_id, context)
        return response, status
    except ApiError as exc:
        status, outcome = exc.status, exc.error
        retry_after = exc.extra.get("retry_after")
        headers = {"Retry-After": str(retry_after)} if retry_after else {}
        return jsonify({"error": exc.error, "message": exc.message}), exc.status, headers
    finally:
        if outcome != "too_many_bad_signatures":  # a flood is logged once, when it starts (flood.py)
            _log_delivery(context, outcome, status, started)
        record_delivery(context.get("tenant"), outcome, status)


def _handle(connection_id: int | None, context: dict):
    database_url = current_app.config["DATABASE_URL"]
    connection = _connection(database_url, connection_id)
    context["connection"] = connection.id
    context["tenant"] = connection.tenant_slug
    _check_content_type()
    body = _read_body(current_app.config["SETTINGS"].webhook_max_body_bytes)
    observe_body_bytes(len(body))
    try:
        signed_with_previous = _check_signature(connection, body, count_failure=False)
    except ApiError as refused:
        # Maybe rotated through another process a moment ago: check once against a fresh copy.
        fresh = _reloaded(database_url, connection_id) if refused.status == 401 else None
        if fresh is None:
            raise _counted(connection, refused) from None
        connection = fresh
        signed_with_previous = _check_signature(connection, body)
    if signed_with_previous:
        context["signed_with"] = "previous_secret"
    if not connection.enabled:
        raise ApiError(409, "connection_disabled",
                       "This Wedof connection is disabled; enable it to receive deliveries again.")
    try:
        delivery = parse_delivery(request.headers, body)
    except DeliveryRejected as exc:
        raise ApiError(400, exc.code, exc.message) from None
    context.update(delivery=delivery.delivery_id, event=delivery.event_type, format=delivery.payload_format)
    return _store_and_enqueue(database_url, connection, delivery, body, context, signed_with_previous)


def _connection(database_url: str, connection_id: int | None) -> ReceivingConnection:
    if connection_id is not None and connection_id > _MAX_CONNECTION_ID:
        connection = None
    else:
        try:
            connection = find_connection(database_url, connection_id)
        except SecretDecryptionError:
            raise ApiError(503, "connection_misconfigured",
                           "The connection's webhook secret cannot be decrypted with SECRET_ENCRYPTION_KEY; "
                           "an operator must set the secret again.") from None
        except SQLAlchemyError:
            raise _database_unavailable() from None
    if connection is None:
        if connection_id is None:
            raise ApiError(404, "no_default_connection",
                           "No Wedof connection is configured from the environment (WEDOF_WEBHOOK_SECRET); "
                           "use /api/webhooks/wedof/<connection id>.")
        raise ApiError(404, "unknown_connection", f"No Wedof connection has the id {connection_id}.")
    return connection


def _reloaded(database_url: str, connection_id: int | None) -> ReceivingConnection | None:
    """A fresh copy of the connection, or None: also when the database cannot be read (the cached copy's
    refusal stands; a database outage must not turn a bad signature into a 5xx)."""
    try:
        return reloaded_connection(database_url, connection_id)
    except (SQLAlchemyError, SecretDecryptionError):
        return None


def _check_content_type() -> None:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Deliveries must be sent as Content-Type: application/json.")


def _read_body(limit: int) -> bytes:
    too_large = ApiError(413, "payload_too_large", f"The body exceeds the limit of {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    # Our own stream, not request.stream: Flask's is capped at MAX_CONTENT_LENGTH and silently
    # truncates a chunked body there, which would pass the size check and fail as "bad signature".
    # This one is bounded by Content-Length, or by the server for chunked bodies.
    stream = get_input_stream(request.environ, max_content_length=None)
    chunks: list[bytes] = []
    remaining = limit + 1  # read at most one byte past the limit, whatever Content-Length claims
    declared = request.content_length  # the stream ends there: no read is needed to learn it
    try:
        while remaining > 0:
            chunk = stream.read(min(remaining, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
            if declared is not None and limit + 1 - remaining >= declared:
                break
    except RequestEntityTooLarge:
        raise too_large from None
    if remaining <= 0:
        raise too_large
    return b"".join(chunks)


def _check_signature(connection: ReceivingConnection, body: bytes, count_failure: bool = True) -> bool:
    """Raises unless the body is signed with the connection's secret; True when it was the previous one's.

    ``count_failure``: a bad signature counts towards the connection's flood limit (see :func:`_counted`).
    """
    refuse = _refused_signature if count_failure else _plain_refusal
    if not connection.webhook_secret:
        raise ApiError(401, "webhook_secret_not_configured",
                       "This connection has no webhook secret, so no delivery can be trusted. An operator must set "
                       "the connection's webhook secret (WEDOF_WEBHOOK_SECRET for the environment's connection) "
                       "and the same secret on the Wedof webhook.")
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise refuse(connection, "missing_signature", f"The {SIGNATURE_HEADER} header is missing.")
    try:
        valid = verify_signature(connection.webhook_secret, body, header, connection.signature_algorithm)
    except ValueError:
        raise ApiError(503, "connection_misconfigured",
                       f"The connection's signature algorithm {connection.signature_algorithm!r} is not supported; "
                       "an operator must fix it.") from None
    if valid:
        return False
    # During a rotation's grace window Wedof may still sign with the old secret (retries, or before
    # its webhook was updated): accepted, and the row says so.
    previous = connection.previous_secret_valid(utcnow())
    if previous and verify_signature(previous, body, header, connection.signature_algorithm):
        return True
    raise refuse(connection, "invalid_signature", f"The {SIGNATURE_HEADER} header does not match the body.")


def _plain_refusal(_connection: ReceivingConnection, error: str, message: str) -> ApiError:
    return ApiError(401, error, message)


def _counted(connection: ReceivingConnection, refused: ApiError) -> ApiError:
    """A refusal from an uncounted check, counted now if it was a bad signature."""
    if refused.error in ("missing_signature", "invalid_signature"):
        return _refused_signature(connection, refused.error, refused.message)
    return refused


def _refused_signature(connection: ReceivingConnection, error: str, message: str) -> ApiError:
    """401, or 429 once this connection has seen too many bad signatures this minute (webapp.receiver.flood)."""
    settings = current_app.config["SETTINGS"]
    counted = count_bad_signature(settings.redis_url, connection.id)
    if counted is not None and counted[0] > settings.webhook_bad_signature_limit:
        failures, retry_after = counted
        if failures == settings.webhook_bad_signature_limit + 1:  # one line when the flood starts, not one each
            log.warning(json.dumps({"msg": "webhook_signature_flood", "connection": connection.id,
                                    "limit_per_minute": settings.webhook_bad_signature_limit}))
        return ApiError(429, "too_many_bad_signatures",
                        f"Too many deliveries with a bad signature for this connection; retry in {retry_after} s.",
                        retry_after=retry_after)
    return ApiError(401, error, message)


def _store_and_enqueue(database_url: str, connection: ReceivingConnection, delivery: ParsedDelivery, body: bytes,
                       context: dict, signed_with_previous: bool = False):
    new = inbox.NewDelivery(
        connection_id=connection.id, delivery_id=delivery.delivery_id, event_type=delivery.event_type,
        payload_format=delivery.payload_format, folder_external_id=delivery.folder_external_id,
        ignore_reason=(delivery.ignore_reason or "ignored") if delivery.ignored else None,
        headers=headers_to_store(request.headers, connection.webhook_secret, connection.previous_secret),
        body=body.decode("utf-8"), signed_with_previous_secret=signed_with_previous)
    try:
        stored = run_with_reconnect(database_url, lambda conn: inbox.store(conn, new))
    except IntegrityError:
        # The connection vanished between lookup and INSERT (foreign key): it no longer exists.
        forget_cached_connections()
        raise ApiError(404, "unknown_connection", f"No Wedof connection has the id {connection.id}.") from None
    except SQLAlchemyError:
        raise _database_unavailable() from None
    context["event_id"] = stored.event_id
    if stored.duplicate:
        return _json({"status": "duplicate", "event_id": stored.event_id}), 200, "duplicate"
    if delivery.ignored:
        return _json({"status": "ignored", "event_id": stored.event_id, "reason": delivery.ignore_reason}), 202, "ignored"
    if _enqueue(stored):
        return _json({"status": "accepted", "event_id": stored.event_id}), 202, "accepted"
    try:
        run_with_reconnect(database_url, lambda conn: inbox.unpublished(conn, stored.event_id, stored.task_id))
    except SQLAlchemyError:
        # Still durable: left "queued", the sweeper re-sends it after its longer threshold.
        log.warning("could not mark event %s as not queued", stored.event_id)
    return _json({"status": "accepted", "event_id": stored.event_id}), 202, "stored_not_queued"


def _json(payload: dict):
    # The answers of the common path: plain json.dumps of a small dict costs less than jsonify's provider.
    return current_app.response_class(json.dumps(payload), mimetype="application/json")


def _enqueue(stored: inbox.StoredEvent) -> bool:
    try:
        publish_process_event(stored.event_id, stored.task_id)
    except BrokerUnavailable:
        return False  # the sweeper enqueues "received" events later
    return True


def _database_unavailable() -> ApiError:
    return ApiError(503, "database_unavailable", "The delivery could not be stored; please retry later.")


def _log_delivery(context: dict, outcome: str, status: int, started: float) -> None:
    # One line per delivery. Never the body, the signature or a secret: only ids and the outcome.
    fields = {"msg": "webhook_delivery", **context, "outcome": outcome, "status": status,
              "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
    log.info(json.dumps(fields, ensure_ascii=True, default=str))
