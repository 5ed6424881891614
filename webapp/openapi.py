"""``GET /openapi.json``: the admin API described as OpenAPI 3.0 (hand-written, checked by schemathesis).

The document is built from small helpers so every operation lists the same error shape and the
statuses it can really answer; tests/webapp/test_openapi.py fuzzes the app against it.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from bdc.models import (
    ActionStatus,
    AppointmentPhase,
    AppointmentStatus,
    BeneficiaryStatus,
    BillingMode,
    EnrollmentStatus,
    EventStatus,
    InvoiceStatus,
    LifecycleKind,
    LifecycleMode,
    NoticeKind,
    ProblemKind,
    ProblemStatus,
    ProgramStatus,
    ReportStatus,
    SyncStatus,
)

bp = Blueprint("openapi", __name__)

PREFIX = "/api/integrations/wedof"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more) -> dict:
    return {"type": kind, "nullable": True, **more}


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_TIME = _nullable("string", format="date-time")

_ERROR_TEXT = {
    400: "Unreadable input (JSON or parameter)", 401: "Missing, invalid or expired token",
    403: "The role may not use this API", 404: "Unknown object, or another tenant's",
    409: "The object's state does not allow it", 422: "A field is missing or invalid",
    429: "Too many requests from this user or address (error rate_limited); wait Retry-After seconds",
    503: "Redis (the token revocation check), the task queue, or Wedof for a check, is unreachable",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds until the limit's window ends",
                                "schema": {"type": "integer", "minimum": 1}}}


def _errors(*codes: int) -> dict:
    return {str(code): {"description": _ERROR_TEXT[code], "content": {"application/json": {"schema": _ref("Error")}},
                        **({"headers": _RETRY_AFTER} if code == 429 else {})}
            for code in codes}


def _ok(code: int, schema: dict, description: str = "OK") -> dict:
    return {str(code): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _page_of(item: str) -> dict:
    return {"type": "object", "required": ["items", "page", "per_page", "total", "pages"], "properties": {
        "items": {"type": "array", "items": _ref(item)}, "page": _INT, "per_page": _INT, "total": _INT,
        "pages": _INT}}


def _param(name: str, where: str = "query", schema: dict | None = None, required: bool = False, description=""):
    return {"name": name, "in": where, "required": required, "schema": schema or _STR, "description": description}


TENANT = {"$ref": "#/components/parameters/TenantId"}
TENANT_HEADER = {"$ref": "#/components/parameters/TenantHeader"}
PAGING = [{"$ref": "#/components/parameters/Page"}, {"$ref": "#/components/parameters/PerPage"}]
SCOPED = [TENANT, TENANT_HEADER]
# Every operation: bad input, the token (missing, revoked, wrong role), the rate limits, Redis away.
AUTH_ERRORS = (400, 401, 403, 404, 429, 503)


def _op(summary: str, responses: dict, *, params=(), body: dict | None = None, errors=(), tag="admin") -> dict:
    op = {"summary": summary, "tags": [tag], "parameters": list(params),
          "responses": {**responses, **_errors(*sorted(set(AUTH_ERRORS) | set(errors)))}}
    if body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": body}}}
    return op


def _id_param(name: str) -> dict:
    return _param(name, "path", {"type": "integer", "minimum": 1}, required=True)


def _obj(props: dict, required: list[str] | None = None, **more) -> dict:
    schema = {"type": "object", "properties": props, **more}
    if required:
        schema["required"] = required
    return schema


SCHEMAS = {
    "Error": _obj({"error": _STR, "message": _STR}, ["error", "message"]),
    "Connection": _obj({
        "id": _INT, "tenant_id": _INT, "name": _STR, "base_url": _STR, "api_key_set": _BOOL,
        "webhook_secret_set": _BOOL, "previous_secret_accepted_until": _TIME,
        "signature_algorithm": _STR, "organism_siret": _nullable("string"),
        "enabled": _BOOL, "is_env_default": _BOOL, "rate_limit_per_second": _nullable("number"),
        "wedof_webhook_id": _nullable("string"), "webhook_url": _STR, "sync_cursor": _TIME,
        "last_sync_at": _TIME, "created_at": _TIME, "updated_at": _TIME,
        "webhook_secret": {"type": "string", "description": "only when the server generated it; shown once"},
    }, ["id", "tenant_id", "api_key_set", "webhook_secret_set", "webhook_url"]),
    "ConnectionInput": _obj({
        "name": {"type": "string", "maxLength": 200}, "base_url": {"type": "string", "format": "uri"},
        "api_key": {"type": "string", "writeOnly": True}, "webhook_secret": {"type": "string", "writeOnly": True},
        "signature_algorithm": {"type": "string", "enum": ["sha256", "sha512"]},
        "organism_siret": _nullable("string", pattern=r"^\d{14}$"), "enabled": _BOOL,
        "rate_limit_per_second": _nullable("number", minimum=0.01, maximum=1000),
    }, additionalProperties=False),
    "SyncRun": _obj({
        "id": _INT, "connection_id": _INT, "kind": {"type": "string", "enum": ["all", "stagiaires", "formations"]},
        "trigger": _STR, "full": _BOOL, "status": {"type": "string", "enum": [s.value for s in SyncStatus]},
        "task_id": _nullable("string"), "pages": _INT, "fetched": _INT, "applied": _INT, "unchanged": _INT,
        "failed": _INT, "total": _nullable("integer"), "progress": _nullable("integer"), "cursor_from": _TIME,
        "cursor_to": _TIME, "created_at": _TIME, "started_at": _TIME, "finished_at": _TIME,
        "error": _nullable("string"), "flower_url": _nullable("string"),
        "task": _nullable("object", properties={"state": _STR, "meta": _nullable("object")}),
    }, ["id", "status", "kind"]),
    "Event": _obj({
        "id": _INT, "connection_id": _INT, "delivery_id": _STR, "event_type": _STR, "payload_format": _STR,
        "folder_external_id": _nullable("string"), "status": {"type": "string", "enum": [s.value for s in EventStatus]},
        "status_reason": _nullable("string"), "attempts": _INT, "last_error": _nullable("string"),
        "task_id": _nullable("string"), "received_at": _TIME, "queued_at": _TIME, "started_at": _TIME,
        "processed_at": _TIME, "next_attempt_at": _TIME, "flower_url": _nullable("string"),
    }, ["id", "status", "event_type"]),
    "Enrollment": _obj({
        "id": _INT, "beneficiary_id": _INT, "program_id": _INT, "program_name": _nullable("string"),
        "status": {"type": "string", "enum": [s.value for s in EnrollmentStatus]},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "external_id": _nullable("string"),
        "wedof_state": _nullable("string"), "wedof_billing_state": _nullable("string"),
        "wedof_last_update": _TIME, "enrolled_at": _TIME, "completed_at": _TIME,
        "first_name": _nullable("string"), "last_name": _nullable("string"), "email": _nullable("string"),
    }, ["id", "progress", "status"]),
    "Stagiaire": _obj({
        "id": _INT, "external_id": _nullable("string"),
        "status": {"type": "string", "enum": [s.value for s in BeneficiaryStatus]},
        "first_name": _nullable("string"), "last_name": _nullable("string"), "email": _nullable("string"),
        "enrollments": {"type": "array", "items": _ref("Enrollment")}, "updated_at": _TIME,
    }, ["id", "status", "enrollments"]),
    "Formation": _obj({
        "id": _INT, "external_id": _nullable("string"), "name": _STR, "category": _nullable("string"),
        "status": {"type": "string", "enum": [s.value for s in ProgramStatus]},
        "duration_hours": _nullable("number"), "start_date": _nullable("string"), "end_date": _nullable("string"),
        "enrollment_count": _INT, "updated_at": _TIME,
    }, ["id", "name", "status"]),
    "AuditEntry": _obj({
        "id": _INT, "tenant_id": _nullable("integer"), "actor": _STR, "action": _STR,
        "target_type": _nullable("string"), "target_id": _nullable("string"), "details": {"type": "object"},
        "created_at": _TIME,
    }, ["id", "actor", "action"]),
    "Appointment": _obj({
        "id": _INT, "tenant_id": _INT, "beneficiary_id": _INT, "enrollment_id": _INT,
        "phase": {"type": "string", "enum": [p.value for p in AppointmentPhase]},
        "starts_at": _TIME, "ends_at": _TIME, "status": {"type": "string", "enum": [s.value for s in AppointmentStatus]},
        "attended_minutes": _nullable("integer"), "trainer_id": _nullable("integer"), "notes": _nullable("string"),
        "updated_at": _TIME, "evaluation": {"type": "string", "enum": ["queued", "pending"]},
    }, ["id", "enrollment_id", "phase", "status"]),
    "Evidence": _obj({
        "enrollment_id": _INT, "synthesis_delivered_on": _nullable("string", format="date"),
        "withdrawn_on": _nullable("string", format="date"), "withdrawal_reason": _nullable("string"),
        "session_start_date": _nullable("string", format="date"), "session_end_date": _nullable("string", format="date"),
        "indicative_duration_hours": _nullable("number"), "evaluation": {"type": "string", "enum": ["queued", "pending"]},
    }, ["enrollment_id"]),
    "Action": _obj({
        "id": _INT, "tenant_id": _INT, "enrollment_id": _INT, "external_id": _nullable("string"),
        "kind": {"type": "string", "enum": [k.value for k in LifecycleKind]},
        "status": {"type": "string", "enum": [s.value for s in ActionStatus]},
        "mode": {"type": "string", "enum": [m.value for m in LifecycleMode]},
        "body": _nullable("object"), "evidence": {"type": "object"}, "reason": _nullable("string"), "late": _BOOL,
        "wedof_answer": _nullable("object"), "decided_by": _nullable("string"), "decided_at": _TIME,
        "sent_at": _TIME, "finished_at": _TIME, "created_at": _TIME, "flower_url": _nullable("string"),
    }, ["id", "kind", "status", "mode"]),
    "LifecycleSettings": _obj({
        "modes": _obj({k.value: {"type": "string", "enum": [m.value for m in LifecycleMode]} for k in LifecycleKind}),
        "normal_end_code": _nullable("string"), "abandon_code": _nullable("string"), "cancel_code": _nullable("string"),
        "inactivity_days": _INT, "time_zone": _STR, "trace_activities": _BOOL, "updated_at": _TIME,
        "configured": _BOOL,
        "reasons": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "object"}}},
        "reasons_error": _nullable("string"),
    }, ["modes", "inactivity_days", "time_zone"]),
    "LifecycleSettingsInput": _obj({
        **{f"{k.value}_mode": {"type": "string", "enum": [m.value for m in LifecycleMode]} for k in LifecycleKind},
        "normal_end_code": _nullable("string", maxLength=64), "abandon_code": _nullable("string", maxLength=64),
        "cancel_code": _nullable("string", maxLength=64),
        "inactivity_days": {"type": "integer", "minimum": 1, "maximum": 365},
        "time_zone": {"type": "string", "maxLength": 64}, "trace_activities": _BOOL,
    }, additionalProperties=False),
    "AppointmentInput": _obj({
        "enrollment_id": {"type": "integer", "minimum": 1},
        "phase": {"type": "string", "enum": [p.value for p in AppointmentPhase]},
        "starts_at": {"type": "string", "format": "date-time"}, "ends_at": {"type": "string", "format": "date-time"},
        "status": {"type": "string", "enum": [s.value for s in AppointmentStatus]},
        "attended_minutes": _nullable("integer", minimum=0), "trainer_id": _nullable("integer", minimum=1),
        "notes": _nullable("string", maxLength=4000),
    }, additionalProperties=False),
    "Notice": _obj({
        "id": _INT, "kind": {"type": "string", "enum": [k.value for k in NoticeKind]}, "message": _STR,
        "target_type": _nullable("string"), "target_id": _nullable("string"), "created_at": _TIME,
        "acknowledged_at": _TIME,
    }, ["id", "kind", "message"]),
    "Status": _obj({
        "tenant": _obj({"id": _INT, "name": _STR, "slug": _STR}), "configured": _BOOL, "connected": _BOOL,
        "error": _nullable("string"), "webhook_url": _nullable("string"),
        "connection": {"allOf": [_ref("Connection")], "nullable": True},
        "last_sync": {"allOf": [_ref("SyncRun")], "nullable": True},
        "events_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        "queues": _obj({"events": _nullable("integer"), "sync": _nullable("integer"), "error": _nullable("string")}),
    }, ["configured", "connected", "queues", "events_by_status"]),
}

_EVENT_DETAIL = {"allOf": [_ref("Event"), _obj({"headers": {"type": "object"}, "body_preview": _nullable("string"),
                                                "body_size": _nullable("integer"), "body_purged_at": _TIME})]}
_MONEY = _nullable("string", pattern=r"^-?[0-9]+\.[0-9]{2}$")
SCHEMAS.update({
    "Invoice": _obj({
        "id": _INT, "tenant_id": _INT, "enrollment_id": _nullable("integer"), "folder_number": _STR, "number": _STR,
        "issue_date": {"type": "string", "format": "date"},
        "status": {"type": "string", "enum": [s.value for s in InvoiceStatus]},
        "mode": {"type": "string", "enum": [m.value for m in BillingMode]},
        "amount_excl": _MONEY, "vat_rate": _MONEY, "vat_amount": _MONEY, "amount_incl": _MONEY, "currency": _STR,
        "beneficiary_name": _nullable("string"), "training_title": _nullable("string"), "reason": _nullable("string"),
        "violations": {"type": "array", "items": {}}, "refused": _BOOL, "wedof_answer": _nullable("object"),
        "released_by": _nullable("string"), "sent_at": _TIME, "billed_at": _TIME,
        "paid_on": _nullable("string", format="date"), "paid_amount": _MONEY, "created_at": _TIME, "pdf_url": _STR,
        "flower_url": _nullable("string"),
    }, ["id", "number", "status", "folder_number"]),
    "BillingSettings": _obj({
        "mode": {"type": "string", "enum": [m.value for m in BillingMode]}, "number_format": _STR,
        "vat_mention": _nullable("string"), "seller_address": _nullable("string"), "configured": _BOOL,
    }, ["mode", "number_format", "configured"]),
    "BillingSettingsInput": _obj({
        "mode": {"type": "string", "enum": [m.value for m in BillingMode]},
        "number_format": {"type": "string", "maxLength": 100},
        "vat_mention": _nullable("string", maxLength=300), "seller_address": _nullable("string", maxLength=500),
    }, additionalProperties=False),
})
_TOTAL = _obj({"count": _INT, "amount_incl": _STR})
_DAY = {"type": "string", "format": "date"}
_INVOICE_FILTERS = [_param("status", schema={"type": "string", "enum": [s.value for s in InvoiceStatus]}),
                    _param("from", schema=_DAY), _param("to", schema=_DAY),
                    _param("q", schema={"type": "string", "maxLength": 100})]
_ACCEPTED_TASK = _obj({"task_id": _STR}, ["task_id"])

PATHS = {
    "/status": {"get": _op("Connection status, live Wedof check, last sync, events and queue depths",
                           _ok(200, _ref("Status")), params=SCOPED)},
    "/sync": {"post": _op(
        "Start a sync now (queued on the sync queue)",
        _ok(202, _obj({"task_id": _STR, "run_id": _INT}, ["task_id", "run_id"]), "Accepted"), params=SCOPED,
        body=_obj({"type": {"type": "string", "enum": ["all", "stagiaires", "formations", "beneficiaries", "programs"]},
                   "full": _BOOL}, additionalProperties=False), errors=(409, 422, 503))},
    "/sync-runs": {"get": _op("Sync history", _ok(200, _page_of("SyncRun")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in SyncStatus]})])},
    "/sync-runs/{run_id}": {"get": _op("One sync run with live progress", _ok(200, _ref("SyncRun")),
                                       params=[_id_param("run_id"), *SCOPED])},
    "/events": {"get": _op("Webhook events (no bodies)", _ok(200, _page_of("Event")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in EventStatus]}),
        _param("type", schema={"type": "string", "maxLength": 120})])},
    "/events/{event_id}": {"get": _op("One event: error, attempts, headers, body preview",
                                      _ok(200, _EVENT_DETAIL), params=[_id_param("event_id"), *SCOPED])},
    "/events/{event_id}/retry": {"post": _op(
        "Re-enqueue a failed or stuck event", _ok(202, _obj({"event_id": _INT, "task_id": _STR, "status": _STR},
                                                            ["event_id", "task_id"]), "Accepted"),
        params=[_id_param("event_id"), *SCOPED], errors=(409, 503))},
    "/events/retry-failed": {"post": _op(
        "Re-enqueue every failed event of the tenant (at most 500 per call)",
        _ok(202, _obj({"retried": _INT, "event_ids": {"type": "array", "items": _INT},
                       "task_ids": {"type": "array", "items": _STR},
                       "not_published": {"type": "array", "items": _INT}}, ["retried"]), "Accepted"),
        params=SCOPED, errors=(422,))},
    "/stagiaires": {"get": _op("Synced beneficiaries with their folders", _ok(200, _page_of("Stagiaire")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in BeneficiaryStatus]}),
        _param("q", schema={"type": "string", "maxLength": 120})])},
    "/stagiaires/{beneficiary_id}/progression": {"post": _op(
        "Send a completion rate (0-100) to Wedof, recorded first as an approved lifecycle action",
        _ok(202, _obj({"enrollment_id": _INT, "progress": _INT, "action_id": _INT, "task_id": _STR},
                      ["task_id", "action_id"]), "Accepted"),
        params=[_id_param("beneficiary_id"), *SCOPED],
        body=_obj({"progress": {"type": "integer", "minimum": 0, "maximum": 100},
                   "enrollment_id": _nullable("integer", minimum=1)}, ["progress"], additionalProperties=False),
        errors=(409, 422, 503))},
    "/formations": {"get": _op("Synced programs", _ok(200, _page_of("Formation")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in ProgramStatus]})])},
    "/bilans": {"get": _op("Bilan de compétences enrollments", _ok(200, _page_of("Enrollment")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in EnrollmentStatus]}),
        _param("wedof_state", schema={"type": "string", "maxLength": 64})])},
    "/bilans/{enrollment_id}/transition": {"post": _op(
        "Declare the entry or the service done by hand, with the admin's date (an approved lifecycle action)",
        _ok(202, _obj({"enrollment_id": _INT, "to": _STR, "action_id": _INT, "body": {"type": "object"},
                       "task": _STR, "task_id": _STR}, ["task_id", "action_id"]), "Accepted"),
        params=[_id_param("enrollment_id"), *SCOPED],
        body=_obj({"to": {"type": "string", "enum": ["inTraining", "serviceDone"]},
                   "date": {"type": "string", "format": "date"}, "code": _nullable("string", maxLength=64),
                   "absence_duration": {"type": "number", "minimum": 0}, "force_majeure_absence": _BOOL},
                  ["to", "date"], additionalProperties=False), errors=(409, 422, 503))},
    "/bilans/{enrollment_id}/appointments": {"get": _op(
        "A bilan's appointments and evidence", _ok(200, _obj({"items": {"type": "array", "items": _ref("Appointment")},
                                                              "evidence": _ref("Evidence")}, ["items"])),
        params=[_id_param("enrollment_id"), *SCOPED])},
    "/bilans/{enrollment_id}/evidence": {"put": _op(
        "Record or correct the synthesis hand-over and a withdrawal (null clears)", _ok(200, _ref("Evidence")),
        params=[_id_param("enrollment_id"), *SCOPED],
        body=_obj({"synthesis_delivered_on": _nullable("string", format="date"),
                   "withdrawn_on": _nullable("string", format="date"),
                   "withdrawal_reason": _nullable("string", maxLength=500)}, additionalProperties=False))},
    "/bilans/{enrollment_id}/evaluate": {"post": _op(
        "Run the lifecycle rules for this bilan now (queued)", _ok(202, _obj({"enrollment_id": _INT, "task_id": _STR},
                                                                             ["task_id"]), "Accepted"),
        params=[_id_param("enrollment_id"), *SCOPED], errors=(422, 503))},
    "/appointments": {"post": _op(
        "Record an appointment (a bilan session)", _ok(201, _ref("Appointment"), "Created"), params=SCOPED,
        body=_ref("AppointmentInput"))},
    "/appointments/{appointment_id}": {"patch": _op(
        "Correct an appointment", _ok(200, _ref("Appointment")), params=[_id_param("appointment_id"), *SCOPED],
        body=_ref("AppointmentInput"))},
    "/appointments/{appointment_id}/attendance": {"post": _op(
        "Mark an appointment attended (with its minutes) or missed", _ok(200, _ref("Appointment")),
        params=[_id_param("appointment_id"), *SCOPED],
        body=_obj({"status": {"type": "string", "enum": ["attended", "missed"]},
                   "attended_minutes": _nullable("integer", minimum=0)}, ["status"], additionalProperties=False))},
    "/appointments/{appointment_id}/cancel": {"post": _op(
        "Cancel an appointment", _ok(200, _ref("Appointment")), params=[_id_param("appointment_id"), *SCOPED])},
    "/lifecycle/actions": {"get": _op("Lifecycle actions, newest first", _ok(200, _page_of("Action")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in ActionStatus]}),
        _param("kind", schema={"type": "string", "enum": [k.value for k in LifecycleKind]}),
        _param("late", schema={"type": "string", "enum": ["true", "false"]}),
        _param("enrollment_id", schema={"type": "integer", "minimum": 1})])},
    "/lifecycle/actions/{action_id}": {"get": _op("One lifecycle action", _ok(200, _ref("Action")),
                                                  params=[_id_param("action_id"), *SCOPED])},
    "/lifecycle/actions/{action_id}/approve": {"post": _op(
        "Approve a proposed action: it is sent (queued)", _ok(202, _obj({"action_id": _INT, "status": _STR,
                                                                         "task_id": _STR}, ["task_id"]), "Accepted"),
        params=[_id_param("action_id"), *SCOPED], errors=(409, 422, 503))},
    "/lifecycle/actions/{action_id}/reject": {"post": _op(
        "Reject a proposed or blocked action, saying why", _ok(200, _ref("Action")),
        params=[_id_param("action_id"), *SCOPED],
        body=_obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, ["reason"],
                  additionalProperties=False), errors=(409, 422))},
    "/lifecycle/actions/{action_id}/retry": {"post": _op(
        "Send a refused or failed action again once the cause is fixed (queued)", _ok(202, _obj({"action_id": _INT, "status": _STR, "task_id": _STR},
                                                             ["task_id"]), "Accepted"),
        params=[_id_param("action_id"), *SCOPED], errors=(409, 422, 503))},
    "/lifecycle/settings": {
        "get": _op("The tenant's lifecycle settings, with Wedof's live reason lists", _ok(200, _ref("LifecycleSettings")),
                   params=SCOPED),
        "put": _op("Change the lifecycle settings (reason codes checked against Wedof's list)",
                   _ok(200, _ref("LifecycleSettings")), params=SCOPED, body=_ref("LifecycleSettingsInput"),
                   errors=(422, 503)),
    },
    "/notices": {"get": _op("Notices for staff (refused or failed actions, late entries)", _ok(200, _page_of("Notice")),
                            params=[*SCOPED, *PAGING, _param("open", schema={"type": "string",
                                                                             "enum": ["true", "false"]})])},
    "/notices/{notice_id}/acknowledge": {"post": _op(
        "Mark a notice as read", _ok(200, _ref("Notice")), params=[_id_param("notice_id"), *SCOPED], errors=(422,))},
    "/connection": {
        "get": _op("The tenant's Wedof connection (secrets never shown)", _ok(200, _ref("Connection")),
                   params=SCOPED),
        "post": _op("Create the tenant's connection; a generated webhook secret is returned once",
                    _ok(201, _ref("Connection"), "Created"), params=SCOPED, body=_ref("ConnectionInput"),
                    errors=(409, 422)),
        "patch": _op("Change the connection (secrets are write-only)",
                     _ok(200, {"allOf": [_ref("Connection"), _obj({"changed": {"type": "array", "items": _STR}})]}),
                     params=SCOPED, body=_ref("ConnectionInput"), errors=(422,)),
    },
    "/connection/rotate-secret": {"post": _op(
        "Generate a new webhook secret, returned exactly once; the previous one is accepted during the grace "
        "window, and the Wedof webhook is registered again with the new one (queued) when the API key is set",
        _ok(200, _obj({"webhook_secret": _STR, "webhook_url": _STR, "message": _STR,
                       "previous_secret_accepted_until": _TIME, "register_task_id": _nullable("string")},
                      ["webhook_secret"])),
        params=SCOPED)},
    "/connection/register-webhook": {"post": _op(
        "Create the webhook at Wedof (queued)",
        _ok(202, {"allOf": [_ACCEPTED_TASK, _obj({"connection_id": _INT, "webhook_url": _STR})]}, "Accepted"),
        params=SCOPED, errors=(409, 503))},
    "/invoices": {"get": _op("Invoices, newest first", _ok(200, _page_of("Invoice")),
                             params=[*SCOPED, *PAGING, *_INVOICE_FILTERS])},
    "/invoices/{invoice_id}": {"get": _op("One invoice", _ok(200, _ref("Invoice")),
                                          params=[_id_param("invoice_id"), *SCOPED])},
    "/invoices/{invoice_id}/pdf": {"get": _op(
        "The invoice as a PDF", {"200": {"description": "The PDF", "content": {"application/pdf": {
            "schema": {"type": "string", "format": "binary"}}}}}, params=[_id_param("invoice_id"), *SCOPED])},
    "/invoices/export.csv": {"get": _op(
        "Invoices as CSV for accounting (same filters as the list)", {"200": {"description": "CSV", "content": {
            "text/csv": {"schema": {"type": "string"}}}}}, params=[*SCOPED, *_INVOICE_FILTERS])},
    "/invoices/due": {"get": _op(
        "Folders due an invoice (toBill, none yet), with amounts and the number each would take",
        _ok(200, _obj({"mode": _STR, "items": {"type": "array", "items": {"type": "object"}}, "total": _INT,
                       "amount_incl": _STR})), params=SCOPED)},
    "/invoices/summary": {"get": _op(
        "The month's billing figures: to bill, reserved, billed, paid, failed", _ok(200, _obj({
            "month": _STR, "mode": _STR, "to_bill": {"type": "object"}, "reserved": _TOTAL, "billed": _TOTAL,
            "paid": _TOTAL, "failed": _TOTAL})),
        params=[*SCOPED, _param("month", schema={"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"})])},
    "/invoices/release": {"post": _op(
        "Approve mode: number and send the given due folders, or all of them (queued)",
        _ok(202, _obj({"released": {"type": "array", "items": _ref("Invoice")}, "not_released": {"type": "object"}}),
            "Accepted"), params=SCOPED,
        body=_obj({"enrollment_ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 500},
                   "all": _BOOL}, additionalProperties=False), errors=(409, 422, 503))},
    "/invoices/{invoice_id}/retry": {"post": _op(
        "Send a failed invoice again with its number once the cause is fixed (queued)",
        _ok(202, _obj({"invoice_id": _INT, "status": _STR, "task_id": _STR}, ["task_id"]), "Accepted"),
        params=[_id_param("invoice_id"), *SCOPED], errors=(409, 422, 503))},
    "/invoices/{invoice_id}/cancel": {"post": _op(
        "Cancel a reserved invoice never sent to Wedof (its number stays used)", _ok(200, _ref("Invoice")),
        params=[_id_param("invoice_id"), *SCOPED],
        body=_obj({"reason": {"type": "string", "minLength": 1, "maxLength": 500}}, ["reason"],
                  additionalProperties=False), errors=(409, 422))},
    "/billing/settings": {
        "get": _op("The tenant's billing settings (mode off until saved)", _ok(200, _ref("BillingSettings")),
                   params=SCOPED),
        "put": _op("Change the billing settings (the number format is checked)", _ok(200, _ref("BillingSettings")),
                   params=SCOPED, body=_ref("BillingSettingsInput"), errors=(409, 422)),
    },
    "/audit-log": {"get": _op("Audit log, newest first", _ok(200, _page_of("AuditEntry")), params=[
        *SCOPED, *PAGING, _param("action", schema={"type": "string", "maxLength": 100})])},
}


# -- staff notices: notification settings, problems, connectivity checks (webapp/admin/notifications.py) --
SCHEMAS.update({
    "NotificationSettings": _obj({
        "configured": _BOOL, "email_enabled": _BOOL, "recipients": {"type": "array", "items": _STR},
        "chat_webhook_configured": _BOOL, "reminder_after_seconds": _nullable("integer"),
        "reminder_after_default": _INT, "smtp_configured": _BOOL, "updated_at": _TIME,
        "changed": {"type": "array", "items": _STR},
    }, ["configured", "email_enabled", "recipients", "chat_webhook_configured", "smtp_configured"]),
    "NotificationSettingsInput": _obj({
        "email_enabled": _BOOL,
        "recipients": {"type": "array", "maxItems": 20, "items": {"type": "string", "format": "email",
                                                                  "maxLength": 254}},
        "chat_webhook_url": _nullable("string", format="uri", maxLength=1000, writeOnly=True,
                                      description="https only (http to loopback in development/test); write-only"),
        "reminder_after_seconds": _nullable("integer", minimum=300, maximum=2592000),
    }, additionalProperties=False),
    "Problem": _obj({
        "id": _INT, "tenant_id": _INT, "kind": {"type": "string", "enum": [k.value for k in ProblemKind]},
        "key": _STR, "status": {"type": "string", "enum": [s.value for s in ProblemStatus]}, "summary": _STR,
        "details": {"type": "object"}, "occurrences": _INT, "opened_at": _TIME, "last_seen_at": _TIME,
        "notified_at": _TIME, "reminded_at": _TIME, "reminders": _INT, "resolved_at": _TIME,
        "resolved_notified_at": _TIME, "last_error": _nullable("string"),
    }, ["id", "kind", "status", "summary"]),
    "ConnectivityCheck": _obj({
        "id": _INT, "connection_id": _INT, "checked_at": _TIME, "ok": _BOOL, "status_code": _nullable("integer"),
        "latency_ms": _nullable("number"), "error": _nullable("string"),
    }, ["id", "connection_id", "ok"]),
})
PATHS.update({
    "/notifications/settings": {
        "get": _op("Who hears about problems: recipients, chat webhook (write-only), reminder period",
                   _ok(200, _ref("NotificationSettings")), params=SCOPED),
        "put": _op("Change the notification settings (addresses and the webhook URL are checked)",
                   _ok(200, _ref("NotificationSettings")), params=SCOPED, body=_ref("NotificationSettingsInput"),
                   errors=(422,)),
    },
    "/problems": {"get": _op("Problems staff are told about (open, reminded, resolved), newest first",
                             _ok(200, _page_of("Problem")), params=[
        *SCOPED, *PAGING, _param("status", schema={"type": "string", "enum": [s.value for s in ProblemStatus]}),
        _param("kind", schema={"type": "string", "enum": [k.value for k in ProblemKind]})])},
    "/connectivity": {"get": _op("The connection's connectivity checks (users/me), newest first",
                                 _ok(200, _page_of("ConnectivityCheck")), params=[*SCOPED, *PAGING])},
    "/connectivity/check": {"post": _op(
        "Check the connection's key now (queued)",
        _ok(202, {"allOf": [_ACCEPTED_TASK, _obj({"connection_id": _INT})]}, "Accepted"), params=SCOPED,
        errors=(409, 422, 503))},
})


# -- operations: reconciliation reports, Wedof API drift, deliveries, sync durations (webapp/admin/operations.py) --
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_KEYS = {"type": "array", "items": _STR}
SCHEMAS.update({
    "ReconciliationReport": _obj({
        "id": _INT, "connection_id": _INT, "created_at": _TIME,
        "status": {"type": "string", "enum": [s.value for s in ReportStatus]}, "drift": _INT,
        "wedof_states": _COUNTS, "local_states": _COUNTS, "wedof_billing": _COUNTS, "local_billing": _COUNTS,
        "wedof_newest_update": _TIME, "local_newest_update": _TIME, "details": {"type": "object"},
        "sync_run_id": _nullable("integer"), "error": _nullable("string"),
    }, ["id", "status", "drift"]),
    "ApiDrift": _obj({
        "id": _INT, "observed_at": _TIME, "last_seen_at": _TIME, "unknown_keys": _KEYS, "missing_keys": _KEYS,
        "samples": _INT,
    }, ["id", "unknown_keys", "missing_keys"]),
    "Operations": _obj({
        "tenant": _obj({"id": _INT, "name": _STR}), "connection_id": _nullable("integer"), "generated_at": _TIME,
        "reconciliation": _obj({
            "last": {"allOf": [_ref("ReconciliationReport")], "nullable": True},
            "series": {"type": "array", "items": _obj({
                "id": _INT, "created_at": _TIME, "status": {"type": "string", "enum": [s.value for s in ReportStatus]},
                "drift": _INT, "error": _nullable("string")})}}, ["last", "series"]),
        "api_drift": _obj({"current": {"allOf": [_ref("ApiDrift")], "nullable": True},
                           "history": {"type": "array", "items": _ref("ApiDrift")}}, ["current", "history"]),
        "deliveries": _obj({"hours": _INT, "series": {"type": "array", "items": _obj(
            {"hour": _TIME, "deliveries": _INT, "failures": _INT}, ["hour", "deliveries", "failures"])}},
            ["hours", "series"]),
        "sync_runs": {"type": "array", "items": _obj({
            "id": _INT, "started_at": _TIME, "finished_at": _TIME, "duration_seconds": {"type": "number"},
            "status": {"type": "string", "enum": [s.value for s in SyncStatus]}, "kind": _STR, "trigger": _STR,
            "full": _BOOL, "fetched": _INT, "applied": _INT, "failed": _INT}, ["id", "duration_seconds"])},
    }, ["tenant", "connection_id", "reconciliation", "api_drift", "deliveries", "sync_runs"]),
})
PATHS.update({
    "/operations": {"get": _op(
        "Operations view: last reconciliation report and the reports over time, Wedof API drift and its changes, "
        "deliveries and failures per hour, sync durations", _ok(200, _ref("Operations")), params=[
            *SCOPED, _param("hours", schema={"type": "integer", "minimum": 1, "maximum": 168}),
            _param("reports", schema={"type": "integer", "minimum": 1, "maximum": 500}),
            _param("runs", schema={"type": "integer", "minimum": 1, "maximum": 100}),
            _param("drift_changes", schema={"type": "integer", "minimum": 1, "maximum": 100})])},
    "/reconcile": {"post": _op(
        "Count Wedof's folders against ours now: a reconciliation report (queued)",
        _ok(202, {"allOf": [_ACCEPTED_TASK, _obj({"connection_id": _INT})]}, "Accepted"), params=SCOPED,
        body=_obj({}, additionalProperties=False), errors=(409, 422, 503))},
})
PATHS.update({
    "/token/revoke": {"post": _op(
        "Revoke the token of this request: from now until it expires it is answered 401 token_revoked",
        _ok(200, _obj({"revoked": _BOOL, "jti": _STR, "expires_at": _TIME, "kept_seconds": _nullable("integer")},
                      ["revoked", "jti", "expires_at", "kept_seconds"])),
        body=_obj({}, additionalProperties=False), errors=(422,))},
})
# -- personal data: export, erasure, retention consent and period (webapp/admin/privacy.py) --
_BENEFICIARY = [_id_param("beneficiary_id"), *SCOPED]
_RETENTION = _obj({"retention_days": _INT, "tenant_retention_days": _nullable("integer"),
                   "default_retention_days": _INT}, ["retention_days", "default_retention_days"])
PATHS.update({
    "/beneficiaries/{beneficiary_id}/export": {"get": _op(
        "Everything held about the beneficiary as one JSON document (access right; audited). Document contents "
        "are not included; the inbox events' raw bodies only with include_raw_bodies=true",
        _ok(200, _obj({"format": _STR, "beneficiary": {"type": "object"}, "raw_bodies_included": _BOOL},
                      ["format", "beneficiary", "raw_bodies_included"])),
        params=[*_BENEFICIARY, _param("include_raw_bodies", schema={"type": "string", "enum": ["true", "false"]})])},
    "/beneficiaries/{beneficiary_id}/erase": {"post": _op(
        "Erase the beneficiary's personal data (cannot be undone; audited): invoices and declarations are kept "
        "without the person, later webhooks and syncs leave its fields empty",
        _ok(200, _obj({"beneficiary_id": _INT, "erased": _BOOL}, ["beneficiary_id", "erased"])),
        params=_BENEFICIARY, body=_obj({"confirm": _BOOL}, ["confirm"], additionalProperties=False), errors=(422,))},
    "/beneficiaries/{beneficiary_id}/retention-consent": {"put": _op(
        "Record or withdraw the beneficiary's written consent to keep its data past the retention period",
        _ok(200, _obj({"beneficiary_id": _INT, "retention_consent": _BOOL}, ["beneficiary_id", "retention_consent"])),
        params=_BENEFICIARY, body=_obj({"consent": _BOOL}, ["consent"], additionalProperties=False), errors=(422,))},
    "/privacy/settings": {
        "get": _op("The tenant's personal-data retention period (days after its bilans end)", _ok(200, _RETENTION),
                   params=SCOPED),
        "put": _op("Set the tenant's retention period in days, or null for the global default", _ok(200, _RETENTION),
                   params=SCOPED, body=_obj({"retention_days": _nullable("integer", minimum=1, maximum=36500)},
                                            ["retention_days"], additionalProperties=False), errors=(422,))},
})


def build_spec() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "bdc-wedof-sync admin API", "version": "1.0.0",
                 "description": "The Wedof integration's admin API. BDC JWT (roles super_admin, tenant_admin). "
                                "A super_admin picks the tenant with ?tenant_id= or X-Tenant-Id (optional when "
                                "only one tenant exists); a tenant_admin is pinned to its own tenant and gets "
                                "404 for other tenants' objects."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {PREFIX + path: item for path, item in PATHS.items()},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": SCHEMAS,
            "parameters": {
                "TenantId": _param("tenant_id", schema={"type": "integer", "minimum": 1},
                                   description="super_admin: the tenant to act on"),
                "TenantHeader": _param("X-Tenant-Id", "header", {"type": "integer", "minimum": 1},
                                       description="same as tenant_id (the query parameter wins)"),
                "Page": _param("page", schema={"type": "integer", "minimum": 1}),
                "PerPage": _param("per_page", schema={"type": "integer", "minimum": 1, "maximum": 100}),
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(build_spec())
