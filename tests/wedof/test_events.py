"""Delivery parsing and event classification: both formats, the real sample, hostile bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wedof.events import (
    APPLY,
    EVENT_TYPES,
    FETCH,
    FORMAT_ENVELOPE,
    FORMAT_WEDOF,
    IGNORE,
    SUBSCRIBED_EVENTS,
    DeliveryRejected,
    ParsedDelivery,
    derive_delivery_id,
    event_type_of,
    parse_delivery,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wedof"
SAMPLE = FIXTURES / "registration-folder.activepieces-sample.json"
CERT_SAMPLE = FIXTURES / "certification-folder.activepieces-sample.json"


def wedof_headers(event="registrationFolder.updated", delivery="d-1") -> dict[str, str]:
    headers = {"X-Wedof-Event": event}
    if delivery is not None:
        headers["X-Wedof-Delivery"] = delivery
    return headers


def test_real_sample_is_applied_as_is():
    body = SAMPLE.read_bytes()
    parsed = parse_delivery(wedof_headers("registrationFolder.terminated", "abc-123"), body)
    assert parsed == ParsedDelivery(
        payload_format=FORMAT_WEDOF, event_type="registrationFolder.terminated", delivery_id="abc-123",
        delivery_id_derived=False, folder_external_id="12345678901234", folder=json.loads(body),
        disposition=APPLY, ignore_reason=None,
    )


def test_header_names_are_case_insensitive():
    parsed = parse_delivery({"x-wedof-event": "registrationFolderBilling.toBill", "x-wedof-delivery": "z"},
                            b'{"externalId": "42"}')
    assert (parsed.event_type, parsed.delivery_id, parsed.disposition) == ("registrationFolderBilling.toBill", "z", APPLY)


def test_numeric_external_id_is_accepted_as_string():
    assert parse_delivery(wedof_headers(), b'{"externalId": 4270885603}').folder_external_id == "4270885603"


@pytest.mark.parametrize("event, disposition", [
    ("registrationFolder.created", APPLY),
    ("registrationFolder.serviceDoneValidated", APPLY),
    ("registrationFolderBilling.paid", APPLY),
    ("certificationFolder.success", IGNORE),
    ("certificationFolderSurvey.initialExperienceAnswered", IGNORE),
    ("certificationPartner.active", IGNORE),
    ("registrationFolderFile.added", IGNORE),
    ("attendee.updated", IGNORE),
    ("registrationFolder", IGNORE),
    ("registrationFolderX.created", IGNORE),
])
def test_wedof_event_classification(event, disposition):
    kind = event_type_of(event)
    assert kind.disposition == disposition
    assert (kind.ignore_reason is None) == (disposition != IGNORE)
    assert (kind.handler is None) == (disposition == IGNORE)


@pytest.mark.parametrize("event, payload_format, disposition", [
    ("stagiaire.created", FORMAT_ENVELOPE, FETCH),
    ("bilan.completed", FORMAT_ENVELOPE, FETCH),
    ("stagiaire.deleted", FORMAT_ENVELOPE, IGNORE),
    ("registrationFolder.updated", FORMAT_ENVELOPE, IGNORE),  # a Wedof name is no envelope type
    ("stagiaire.created", FORMAT_WEDOF, IGNORE),  # and an envelope name is no Wedof event
])
def test_classification_depends_on_the_format(event, payload_format, disposition):
    assert event_type_of(event, payload_format).disposition == disposition


def test_the_webhook_subscribes_to_every_folder_and_billing_event_the_registry_applies():
    from wedof.mapping import BILLING_STATES, FOLDER_STATES

    expected = ({f"registrationFolder.{s}" for s in ("created", "updated", *FOLDER_STATES)}
                | {f"registrationFolderBilling.{s}" for s in BILLING_STATES})
    assert set(SUBSCRIBED_EVENTS) == expected and len(SUBSCRIBED_EVENTS) == len(expected) == 24
    # Every subscribed event is one the receiver applies, and the worker has a handler for it.
    assert all(event_type_of(name).disposition == APPLY and event_type_of(name).handler for name in SUBSCRIBED_EVENTS)
    # One entry per pattern and format: an event type is declared once.
    keys = [(kind.payload_format, kind.pattern) for kind in EVENT_TYPES]
    assert len(keys) == len(set(keys))


def test_certification_sample_is_ignored_with_reason():
    parsed = parse_delivery(wedof_headers("certificationFolder.success"), CERT_SAMPLE.read_bytes())
    assert parsed.disposition == IGNORE and parsed.ignored
    assert "certification" in parsed.ignore_reason
    assert parsed.folder is None and parsed.folder_external_id is None


def test_unknown_event_is_ignored_not_rejected():
    parsed = parse_delivery(wedof_headers("somethingNew.happened"), b'{"whatever": 1}')
    assert parsed.disposition == IGNORE and "somethingNew.happened" in parsed.ignore_reason


@pytest.mark.parametrize("event", ["stagiaire.created", "stagiaire.updated", "stagiaire.progression.updated",
                                   "formation.inscription", "bilan.completed"])
def test_envelope_events_are_fetched_by_id(event):
    body = json.dumps({"type": event, "data": {"id": "4270885603"}}).encode()
    parsed = parse_delivery({}, body)
    assert parsed.payload_format == FORMAT_ENVELOPE
    assert (parsed.event_type, parsed.disposition, parsed.folder_external_id, parsed.folder) == (event, FETCH, "4270885603", None)
    assert parsed.delivery_id_derived and parsed.delivery_id == derive_delivery_id(event, body)


@pytest.mark.parametrize("data", [{"externalId": "77"}, {"folder": {"externalId": "77"}}, {"id": 77}])
def test_envelope_folder_id_sources(data):
    assert parse_delivery({}, json.dumps({"type": "stagiaire.updated", "data": data}).encode()).folder_external_id == "77"


def test_envelope_delivery_id_from_header_then_body_then_derived():
    body = json.dumps({"id": "evt_1", "type": "bilan.completed", "data": {"id": "5"}}).encode()
    assert parse_delivery({"X-Wedof-Delivery": "hdr"}, body).delivery_id == "hdr"
    parsed = parse_delivery({}, body)
    assert (parsed.delivery_id, parsed.delivery_id_derived) == ("evt_1", False)


def test_unknown_envelope_type_is_ignored():
    parsed = parse_delivery({}, b'{"type": "paiement.created", "data": {}}')
    assert parsed.disposition == IGNORE and parsed.payload_format == FORMAT_ENVELOPE


def test_derived_delivery_id_is_stable_and_content_bound():
    body = b'{"externalId": "1"}'
    first = parse_delivery(wedof_headers(delivery=None), body)
    assert first.delivery_id_derived
    assert first.delivery_id == parse_delivery(wedof_headers(delivery=None), body).delivery_id
    assert first.delivery_id != parse_delivery(wedof_headers(delivery=None), b'{"externalId": "2"}').delivery_id
    assert first.delivery_id != parse_delivery(wedof_headers("registrationFolder.created", None), body).delivery_id


@pytest.mark.parametrize("headers, body, code", [
    (wedof_headers(), b"", "empty_body"),
    (wedof_headers(), b"{not json", "invalid_json"),
    (wedof_headers(), b"\xff\xfe\x00garbage", "invalid_json"),
    (wedof_headers(), '{"externalId": "1"}'.encode("utf-16"), "invalid_json"),
    (wedof_headers(), b"[" * 100000, "invalid_json"),
    (wedof_headers(), b'[{"externalId": "1"}]', "invalid_shape"),
    (wedof_headers(), b'"12345"', "invalid_shape"),
    (wedof_headers(), b"42", "invalid_shape"),
    (wedof_headers(), b'{"state": "accepted"}', "missing_external_id"),
    (wedof_headers(), b'{"externalId": ""}', "invalid_external_id"),
    (wedof_headers(), b'{"externalId": "../users/me"}', "invalid_external_id"),
    (wedof_headers(), b'{"externalId": true}', "invalid_external_id"),
    (wedof_headers(), b'{"externalId": {"a": 1}}', "invalid_external_id"),
    (wedof_headers(), json.dumps({"externalId": "1" * 65}).encode(), "invalid_external_id"),
    ({}, b'{"externalId": "1"}', "missing_event_type"),
    (wedof_headers("has space"), b'{"externalId": "1"}', "invalid_event_type"),
    (wedof_headers("x" * 121), b'{"externalId": "1"}', "invalid_event_type"),
    (wedof_headers(delivery="d" * 201), b'{"externalId": "1"}', "invalid_delivery_id"),
    ({}, b'{"type": "stagiaire.created", "data": {}}', "missing_external_id"),
    ({}, b'{"type": "stagiaire.created", "data": {"id": "a/b"}}', "invalid_external_id"),
    ({}, b'{"type": "stagiaire.created", "data": {"id": "1"}, "id": [1]}', "invalid_delivery_id"),
    ({}, b'{"type": "", "data": {"id": "1"}}', "invalid_event_type"),
])
def test_rejected_deliveries(headers, body, code):
    with pytest.raises(DeliveryRejected) as info:
        parse_delivery(headers, body)
    assert info.value.code == code and info.value.message


@settings(max_examples=300, deadline=None)
@given(
    headers=st.dictionaries(st.sampled_from(["X-Wedof-Event", "X-Wedof-Delivery", "x-other"]), st.text(max_size=40)),
    body=st.one_of(st.binary(max_size=200), st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
            st.sampled_from(["externalId", "type", "data", "id", "folder", "x"]), inner, max_size=4),
        max_leaves=12).map(lambda value: json.dumps(value).encode())),
)
def test_any_input_parses_or_is_rejected_cleanly(headers, body):
    try:
        parsed = parse_delivery(headers, body)
    except DeliveryRejected as exc:
        assert exc.code and exc.message
        return
    assert parsed.disposition in (APPLY, FETCH, IGNORE)
    assert 0 < len(parsed.delivery_id) <= 200 and 0 < len(parsed.event_type) <= 120
    if parsed.disposition == APPLY:
        assert parsed.folder is not None and parsed.folder_external_id
    if parsed.disposition == FETCH:
        assert parsed.folder_external_id
