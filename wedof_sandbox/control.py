"""Control endpoints under ``/_sandbox`` (loopback only, no API key, never fault-injected).

Tests and benchmarks use them to drive activity, read the ground truth, tune faults and chaos, and
read what the sandbox served and delivered.
"""

from __future__ import annotations

from ipaddress import ip_address

from flask import Blueprint, current_app, request

from . import transitions
from .errors import ApiError, invalid
from .httpjson import array_response, json_body, json_response, raw_json
from .simulate import Options, simulate
from .state import SandboxState

control = Blueprint("control", __name__, url_prefix="/_sandbox")
MAX_SIMULATED_CHANGES = 100_000
MAX_FOLDERS = 200_000


def sandbox() -> SandboxState:
    return current_app.config["SANDBOX"]


@control.before_request
def loopback_only():
    try:
        local = ip_address(request.remote_addr or "127.0.0.1").is_loopback
    except ValueError:
        local = False
    if not local:
        return json_response({"detail": "Control endpoints answer loopback clients only."}, 403)
    return None


def _int_field(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(name, f"An integer between {low} and {high}.")
    return value


def _object_body() -> dict:
    body = json_body()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "Expected a JSON object.")
    return body


@control.get("/health")
def health():
    state = sandbox()
    return json_response({"status": "ok", "folders": len(state.store.records), "seed": state.seed})


@control.post("/simulate")
def simulate_changes():
    body = _object_body()
    changes = _int_field(body, "changes", 10, 0, MAX_SIMULATED_CHANGES)
    flags = {}
    for name in ("completion_updates", "organism_billing"):
        flags[name] = body.get(name, True)
        if not isinstance(flags[name], bool):
            raise invalid(name, "A boolean (true or false).")
    state = sandbox()
    state.simulations += 1
    seed = f"simulate:{state.seed}:{state.simulations}"
    options = Options(**flags, payments=state.payments)
    return json_response(simulate(state.store, state.apply, changes, seed, options))


@control.get("/truth")
def truth():
    store = sandbox().store
    if request.args.get("compact") in ("1", "true", "yes"):
        return json_response(store.compact())
    return array_response(store.all_bodies())


@control.post("/reset")
def reset():
    state = sandbox()
    body = _object_body()
    folders = _int_field(body, "folders", state.folders, 0, MAX_FOLDERS)
    seed = _int_field(body, "seed", state.seed, -(2**63), 2**63 - 1)
    state.reset(folders, seed)
    return json_response({"folders": folders, "seed": seed})


@control.get("/deliveries")
def deliveries():
    state = sandbox()
    result = state.deliverer.snapshot()
    if request.args.get("log") in ("1", "true", "yes"):
        result["log"] = state.deliverer.log()
    return json_response(result)


@control.post("/deliveries/drain")
def drain():
    body = _object_body()
    timeout = body.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= 600:
        raise invalid("timeout", "A number of seconds between 0 and 600.")
    state = sandbox()
    drained = state.deliverer.drain(float(timeout))
    return json_response({**state.deliverer.snapshot(), "drained": drained}, 200 if drained else 504)


@control.route("/deliveries/config", methods=["GET", "PUT"])
def delivery_config():
    state = sandbox()
    if request.method == "PUT":
        state.delivery_config.update(json_body(required=True))
    return json_response(state.deliverer.snapshot()["config"])


@control.route("/faults", methods=["GET", "PUT"])
def faults():
    state = sandbox()
    if request.method == "PUT":
        state.fault_config.update(json_body(required=True))
    cfg = state.fault_config
    return json_response({"latency_ms": cfg.latency_ms, "error_rate": cfg.error_rate,
                          "rate_limit_rate": cfg.rate_limit_rate, "retry_after": cfg.retry_after,
                          "drop_rate": cfg.drop_rate, "lost_answer_rate": cfg.lost_answer_rate})


@control.route("/hold", methods=["GET", "PUT", "DELETE"])
def hold():
    state = sandbox()
    if request.method == "PUT":
        state.hold.configure(json_body(required=True))
    elif request.method == "DELETE":
        state.hold.clear()
    return json_response(state.hold.snapshot())


@control.route("/api-changes", methods=["GET", "PUT", "POST", "DELETE"])
def api_changes():
    """Make Wedof's API "change" (see api_changes.py): keys added to / removed from the folders served."""
    store = sandbox().store
    if request.method in ("PUT", "POST"):
        return json_response(store.change_api(json_body(required=True)))
    if request.method == "DELETE":
        return json_response(store.change_api(None))
    return json_response(store.api_changes.snapshot())


@control.get("/requests")
def requests_served():
    return json_response(sandbox().counters.snapshot())


@control.get("/transitions")
def transitions_by_folder():
    """The transitions Wedof accepted, per folder and verb: the truth to count declarations against."""
    return json_response(sandbox().counters.transitions_by_folder())


@control.post("/requests/reset")
def reset_requests():
    sandbox().counters.reset()
    return json_response(sandbox().counters.snapshot())


@control.put("/folders/<external_id>")
def force_folder(external_id: str):
    state = sandbox()
    event = request.args.get("event") or None
    state.apply(external_id, transitions.force_patch(json_body(required=True), event))
    return raw_json(state.store.body(external_id))


@control.post("/folders/<external_id>/moves/<target>")
def external_move(external_id: str, target: str):
    """One move of the attendee or financer (what the simulation does at random), on this folder now."""
    state = sandbox()
    state.apply(external_id, transitions.external_move(target, state.payments))
    return raw_json(state.store.body(external_id))


@control.post("/folders/<external_id>/pay")
def pay(external_id: str):
    """The financer pays a billed folder now; answers the payment recorded (as /api/payments lists it)."""
    state = sandbox()
    change = state.apply(external_id, transitions.external_move("paid", state.payments))
    return json_response(state.payments.of(external_id, change.last_update))


@control.get("/webhooks")
def webhooks():
    return json_response(sandbox().webhooks.all())


@control.get("/training-actions")
def training_actions():
    return json_response(sandbox().store.training_actions)
