"""The Wedof API surface under ``/api`` (paths, status codes and shapes of wedof-api.md §8)."""

from __future__ import annotations

import hmac
import select
import socket
import time

from flask import Blueprint, Response, current_app, g, request

from . import transitions
from .errors import ApiError, invalid, not_found
from .httpjson import array_response, json_body, json_response, raw_json
from .listing import parse_folder_query, query_certification_folders, query_folders
from .state import SandboxState
from .states import REASONS, VERBS

api = Blueprint("api", __name__, url_prefix="/api")


def sandbox() -> SandboxState:
    return current_app.config["SANDBOX"]


def _drop_connection() -> Response:
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        return Response(b"", status=444)  # no socket to cut (test client): see faults.py
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return Response(b"", status=444)  # never reaches the client: the socket is already shut


def _client_gone() -> bool:
    """True when the client closed its connection (a killed process): readable, yet nothing to read."""
    sock = request.environ.get("werkzeug.socket")
    if sock is None:
        return False
    # Read (and keep) the body first: until it is read, the socket has its bytes to offer, not the
    # end of the stream that says the client is gone.
    request.get_data(cache=True)
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset by the peer, or already closed
        return True


@api.before_request
def faults_then_auth():
    state = sandbox()
    state.counters.request()
    g.served = False
    if state.hold.wait(request.method, request.path, "before", until=_client_gone) and _client_gone():
        state.hold.abandoned()
        return _drop_connection()  # the client died while held: this request never reaches Wedof
    cfg = state.fault_config
    if cfg.latency_ms:
        state.counters.fault("latency")
        time.sleep(cfg.latency_ms / 1000)
    kind, status = state.faults.draw()
    if kind is not None:
        state.counters.fault(kind)
        if kind == "drop":
            return _drop_connection()
        if kind == "rate_limit":
            return json_response({"detail": "Too many requests, slow down."}, 429,
                                 {"Retry-After": str(cfg.retry_after)})
        return json_response({"detail": f"Injected server error {status}."}, status)
    key = request.headers.get("X-Api-Key")  # header names are case-insensitive
    if not key:
        return json_response({"detail": "Missing API key (X-Api-Key header)."}, 401)
    if not hmac.compare_digest(key.encode(), state.api_key.encode()):
        return json_response({"detail": "Invalid API key."}, 401)
    g.served = True
    return None


@api.after_request
def count(response: Response) -> Response:
    state = sandbox()
    rule = request.url_rule.rule if request.url_rule else "<unmatched>"
    state.counters.response(f"{request.method} {rule}", response.status_code, g.get("served", False))
    state.hold.wait(request.method, request.path, "after")  # processed; the answer waits
    if request.method in ("POST", "PUT") and g.get("served") and response.status_code < 300 \
            and state.faults.answer_lost():
        state.counters.fault("lost_answer")
        return _drop_connection()  # applied, but the client never hears it
    return response


@api.get("/users/me")
def users_me():
    state = sandbox()
    return json_response({"id": 1, "email": "admin@sandbox.example.fr", "firstName": "Sandrine",
                          "lastName": "Box", "phoneNumber": None, "roles": ["ROLE_ADMIN"],
                          "_links": {"self": {"href": "/api/users/me"}, "organism": state.organism_link}})


@api.get("/organisms/me")
def organisms_me():
    state = sandbox()
    return json_response({"id": 1, "name": state.organism_name, "siret": state.siret,
                          "_links": {"self": {"href": f"/api/organisms/{state.siret}"}}})


def _page_headers(total: int, page: int, limit: int) -> dict:
    return {"X-Total-Count": str(total), "X-Current-Page": str(page), "X-Item-Per-Page": str(limit)}


@api.get("/registrationFolders")
def list_folders():
    query = parse_folder_query(request.args)
    store = sandbox().store
    total, bodies = query_folders(store, query)
    return array_response(bodies, store.api_changes.listing_headers(_page_headers(total, query.page, query.limit)))


@api.get("/registrationFolders/<external_id>")
def get_folder(external_id: str):
    return raw_json(sandbox().store.body(external_id))


@api.put("/registrationFolders/<external_id>")
def update_folder(external_id: str):
    state = sandbox()
    state.apply(external_id, transitions.update(json_body(required=True)))
    return raw_json(state.store.body(external_id))


@api.post("/registrationFolders/<external_id>/<verb>")
def transition(external_id: str, verb: str):
    if verb not in VERBS:
        raise not_found(f"No route POST /api/registrationFolders/{{externalId}}/{verb[:40]}")
    state = sandbox()
    body = json_body()
    change = state.apply(external_id, transitions.transition(verb, body, state.bill_owner))
    state.counters.transition(external_id, verb)
    return raw_json(change.body)


@api.get("/payments")
def list_payments():
    total, items, page, limit = sandbox().payments.query(request.args)
    return json_response(items, 200, _page_headers(total, page, limit))


@api.get("/registrationFolders/<external_id>/files")
def folder_files(external_id: str):
    state = sandbox()
    with state.store.lock:
        files = state.store.record(external_id).folder["files"]
        return json_response(files)


@api.get("/registrationFoldersReasons")
def reasons():
    kind = request.args.get("type")
    if kind not in REASONS:
        raise ApiError(400, "type must be one of terminated, refused, canceled.",
                       [{"propertyPath": "type", "title": "Expected terminated, refused or canceled."}])
    return json_response(REASONS[kind])


ACTIVITY_TYPES = ("phone", "email", "meeting", "chat", "sms", "training", "remark", "file")


@api.post("/activities/<entity>/<external_id>")
def create_activity(entity: str, external_id: str):
    state = sandbox()
    _activity_folder(state, entity, external_id)
    body = json_body(required=True)
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > 255:
        raise invalid("title", "This value should not be blank (255 characters at most).")
    if body.get("type") not in ACTIVITY_TYPES:
        raise invalid("type", f"This value should be one of {', '.join(ACTIVITY_TYPES)}.")
    for name in ("description", "eventTime", "origin", "link", "userEmail"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise invalid(name, "This value should be a string.")
    return json_response(state.add_activity(entity, external_id, body), 201)


@api.get("/activities/<entity>/<external_id>")
def list_activities(entity: str, external_id: str):
    state = sandbox()
    _activity_folder(state, entity, external_id)
    return json_response(state.activities_of(entity, external_id))


def _activity_folder(state: SandboxState, entity: str, external_id: str) -> None:
    if entity != "RegistrationFolder":
        raise not_found(f"No activities for {entity[:40]} in this sandbox")
    with state.store.lock:
        state.store.record(external_id)  # 404 when unknown


@api.get("/certificationFolders")
def list_certification_folders():
    total, bodies, page, limit = query_certification_folders(sandbox().store, request.args)
    return array_response(bodies, _page_headers(total, page, limit))


@api.get("/certificationFolders/<external_id>")
def get_certification_folder(external_id: str):
    body = sandbox().store.certification_bodies.get(external_id)
    if body is None:
        raise not_found(f"Certification folder {external_id} not found")
    return raw_json(body)


@api.post("/webhooks")
def create_webhook():
    return json_response(sandbox().webhooks.create(json_body(required=True)), 201)


@api.get("/webhooks/<int:hook_id>")
def get_webhook(hook_id: int):
    return json_response(sandbox().webhooks.get(hook_id))


@api.delete("/webhooks/<int:hook_id>")
def delete_webhook(hook_id: int):
    sandbox().webhooks.delete(hook_id)
    return Response(status=204)
