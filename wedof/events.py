"""Wedof's webhook events: the one registry of event types, and the parsing of a delivery.

Two delivery formats reach us:

- **wedof** (the real one): the event name is in ``X-Wedof-Event``, the delivery id in
  ``X-Wedof-Delivery``, and the body is the affected object itself (a registration folder, ...).
- **envelope** (the original design notes): ``{"type": "stagiaire.created", "data": {"id": ...}}``,
  where ``data.id`` (or ``data.externalId`` / ``data.folder.externalId``) names the Wedof folder.

:data:`EVENT_TYPES` says, for each event name or a resource's every event, its *disposition*:
``apply`` the folder carried in the body, ``fetch`` the folder by its externalId (the envelope
carries no folder we trust to be whole), or ``ignore`` it (stored with the reason); and the
*handler* the worker runs on the folder. The receiver's classification, the worker's dispatch and
the events our Wedof webhook subscribes to (:data:`SUBSCRIBED_EVENTS`) all derive from it: adding
an event type is one entry. Bodies we cannot read or whose shape we do not know raise
:class:`DeliveryRejected` (the receiver answers 400).

Parsing does no I/O: no database, no Flask. The signature is checked before it is called.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wedof.ids import RULE as FOLDER_NUMBER_RULE
from wedof.ids import folder_number
from wedof.mapping import BILLING_STATES, FOLDER_STATES, apply_folder

EVENT_HEADER = "X-Wedof-Event"
DELIVERY_HEADER = "X-Wedof-Delivery"
SIGNATURE_HEADER = "X-Wedof-Signature"

FORMAT_WEDOF = "wedof"
FORMAT_ENVELOPE = "envelope"

APPLY = "apply"
FETCH = "fetch"
IGNORE = "ignore"
DISPOSITIONS = (APPLY, FETCH, IGNORE)


@dataclass(frozen=True)
class EventType:
    """One entry of the registry: an event name, or ``<resource>.*`` for every event of a resource."""

    pattern: str
    disposition: str  # APPLY | FETCH | IGNORE
    # What the worker runs on the folder, in the transaction that marks the event processed:
    # ``handler(session, tenant_id, folder)`` returning a result with ``.outcome``.
    handler: Callable[..., Any] | None = None
    ignore_reason: str | None = None
    subscribe: tuple[str, ...] = ()  # the event names our Wedof webhook asks for
    payload_format: str = FORMAT_WEDOF


def _names(resource: str, events) -> tuple[str, ...]:
    return tuple(f"{resource}.{event}" for event in events)


# A Wedof delivery carries the whole folder, so its state is the truth whatever the event's name:
# every folder and billing event is applied the same way (level-triggered).
EVENT_TYPES: tuple[EventType, ...] = (
    EventType("registrationFolder.*", APPLY, apply_folder,
              subscribe=_names("registrationFolder", ("created", "updated", *FOLDER_STATES))),
    EventType("registrationFolderBilling.*", APPLY, apply_folder,
              subscribe=_names("registrationFolderBilling", BILLING_STATES)),
    EventType("registrationFolderFile.*", IGNORE,
              ignore_reason="folder files are not synchronised; the folder's own events carry its state"),
    EventType("certificationFolder.*", IGNORE, ignore_reason="certification folders are not synchronised"),
    EventType("certificationFolderSurvey.*", IGNORE, ignore_reason="certification surveys are not synchronised"),
    EventType("certificationPartner.*", IGNORE, ignore_reason="certification partnerships are not synchronised"),
    # The original notes' event types: each names a folder to fetch from Wedof.
    *(EventType(name, FETCH, apply_folder, payload_format=FORMAT_ENVELOPE)
      for name in ("stagiaire.created", "stagiaire.updated", "stagiaire.progression.updated",
                   "formation.inscription", "bilan.completed")),
)
_BY_PATTERN = {(kind.payload_format, kind.pattern): kind for kind in EVENT_TYPES}
SUBSCRIBED_EVENTS: tuple[str, ...] = tuple(name for kind in EVENT_TYPES for name in kind.subscribe)


def event_type_of(event_type: str, payload_format: str = FORMAT_WEDOF) -> EventType:
    """The registry's entry for an event name: exact name first, then its resource's ``.*`` entry."""
    found = _BY_PATTERN.get((payload_format, event_type))
    if found is None and "." in event_type:
        found = _BY_PATTERN.get((payload_format, event_type.split(".", 1)[0] + ".*"))
    if found is not None:
        return found
    what = "envelope event type" if payload_format == FORMAT_ENVELOPE else "event type"
    return EventType(event_type, IGNORE, ignore_reason=f"unknown {what} {event_type!r}", payload_format=payload_format)


# Column sizes of WebhookEvent (event_type, delivery_id).
MAX_EVENT_TYPE_LENGTH = 120
MAX_DELIVERY_ID_LENGTH = 200

# Printable ASCII without spaces: what an event name or a delivery id can reasonably be.
_TOKEN = re.compile(r"[\x21-\x7e]+")


class DeliveryRejected(ValueError):
    """The delivery cannot be read or has a shape we do not know; ``code`` is a snake_case error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParsedDelivery:
    """What one delivery means, ready to be stored in the inbox."""

    payload_format: str  # FORMAT_WEDOF | FORMAT_ENVELOPE
    event_type: str
    delivery_id: str
    delivery_id_derived: bool  # True when no id was sent and it was computed from the content
    folder_external_id: str | None  # the registration folder concerned (None for ignored non-folder events)
    folder: dict | None  # the whole folder, only when disposition == APPLY
    disposition: str  # APPLY | FETCH | IGNORE
    ignore_reason: str | None = None  # set only when disposition == IGNORE

    @property
    def ignored(self) -> bool:
        return self.disposition == IGNORE


def derive_delivery_id(event_type: str, body: bytes) -> str:
    """A stable id for a delivery that came without one: the same event and bytes give the same id,
    so a re-sent identical delivery is recognised as a duplicate."""
    digest = hashlib.sha256(event_type.encode("utf-8") + b"\n" + bytes(body)).hexdigest()
    return f"sha256:{digest}"


def folder_external_id(folder: Any) -> str:
    """The externalId of a registration folder object, or raise DeliveryRejected."""
    if not isinstance(folder, dict):
        raise DeliveryRejected("invalid_shape", "the body must be a JSON object (a Wedof registration folder)")
    if "externalId" not in folder:
        raise DeliveryRejected("missing_external_id", "the registration folder has no externalId")
    external_id = folder_number(folder["externalId"])
    if external_id is None:
        raise DeliveryRejected("invalid_external_id", f"the registration folder's externalId must be {FOLDER_NUMBER_RULE}")
    return external_id


def parse_delivery(headers: Mapping[str, str], body: bytes) -> ParsedDelivery:
    """Read one (already authenticated) delivery; raise DeliveryRejected when it is unreadable."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    payload = _load_json(body)
    header_event = _clean_header(lowered.get(EVENT_HEADER.lower()))
    header_delivery = _clean_header(lowered.get(DELIVERY_HEADER.lower()))
    if header_delivery is not None:
        _check_token("invalid_delivery_id", DELIVERY_HEADER, header_delivery, MAX_DELIVERY_ID_LENGTH)

    if _looks_like_envelope(payload):
        return _parse_envelope(payload, body, header_delivery)
    if header_event is None:
        raise DeliveryRejected(
            "missing_event_type",
            f"no {EVENT_HEADER} header and the body is not a {{\"type\", \"data\"}} envelope",
        )
    _check_token("invalid_event_type", EVENT_HEADER, header_event, MAX_EVENT_TYPE_LENGTH)
    if not isinstance(payload, dict):
        raise DeliveryRejected("invalid_shape", "the body must be a JSON object (the Wedof object the event is about)")

    kind = event_type_of(header_event, FORMAT_WEDOF)
    disposition, reason = kind.disposition, kind.ignore_reason
    external_id = folder_external_id(payload) if disposition == APPLY else None
    delivery_id = header_delivery or derive_delivery_id(header_event, body)
    return ParsedDelivery(
        payload_format=FORMAT_WEDOF,
        event_type=header_event,
        delivery_id=delivery_id,
        delivery_id_derived=header_delivery is None,
        folder_external_id=external_id,
        folder=payload if disposition == APPLY else None,
        disposition=disposition,
        ignore_reason=reason,
    )


def _parse_envelope(payload: dict, body: bytes, header_delivery: str | None) -> ParsedDelivery:
    event_type = payload["type"].strip()
    _check_token("invalid_event_type", "type", event_type, MAX_EVENT_TYPE_LENGTH)
    data = payload["data"]
    kind = event_type_of(event_type, FORMAT_ENVELOPE)
    disposition, reason = kind.disposition, kind.ignore_reason
    external_id = _envelope_folder_id(data)
    if disposition == FETCH and external_id is None:
        raise DeliveryRejected(
            "missing_external_id",
            "an envelope event must name the Wedof folder in data.id, data.externalId or data.folder.externalId",
        )
    # The notes' envelopes carry their own id; a Wedof delivery header wins when both are present.
    delivery_id = header_delivery
    if delivery_id is None and "id" in payload:
        delivery_id = _envelope_delivery_id(payload["id"])
    derived = delivery_id is None
    return ParsedDelivery(
        payload_format=FORMAT_ENVELOPE,
        event_type=event_type,
        delivery_id=delivery_id or derive_delivery_id(event_type, body),
        delivery_id_derived=derived,
        folder_external_id=external_id,
        folder=None,
        disposition=disposition,
        ignore_reason=reason,
    )


def _envelope_folder_id(data: dict) -> str | None:
    folder = data.get("folder")
    for candidate in (data.get("externalId"), data.get("id"), folder.get("externalId") if isinstance(folder, dict) else None):
        if candidate is not None:
            external_id = folder_number(candidate)
            if external_id is None:
                raise DeliveryRejected("invalid_external_id", "the envelope names its folder with an unusable id")
            return external_id
    return None


def _envelope_delivery_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DeliveryRejected("invalid_delivery_id", "the envelope's id must be a string or a number")
    value = value.strip()
    _check_token("invalid_delivery_id", "id", value, MAX_DELIVERY_ID_LENGTH)
    return value


def _looks_like_envelope(payload: Any) -> bool:
    # A real folder also has a string "type" ("cpf", "individual"), but never a "data" object and
    # always an externalId, so the three keys together tell the shapes apart.
    return (
        isinstance(payload, dict)
        and isinstance(payload.get("type"), str)
        and isinstance(payload.get("data"), dict)
        and "externalId" not in payload
    )


def _load_json(body: bytes) -> Any:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be the raw request bytes")
    if not body.strip():
        raise DeliveryRejected("empty_body", "the request body is empty")
    try:
        # UTF-8 only (RFC 8259): the inbox stores the body as text, byte for byte what was signed.
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise DeliveryRejected("invalid_json", "the request body is not UTF-8 encoded JSON") from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise DeliveryRejected("invalid_json", "the request body is not valid JSON") from None


def _clean_header(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _check_token(code: str, name: str, value: str, max_length: int) -> None:
    if not value or len(value) > max_length or not _TOKEN.fullmatch(value):
        raise DeliveryRejected(code, f"{name} must be 1 to {max_length} printable characters without spaces")
