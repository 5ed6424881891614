"""Random bodies and headers at the receiver: never a 5xx, never a row without a valid signature."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import WebhookEvent
from wedof.signatures import compute_signature, verify_signature

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["externalId", "type", "data", "id", "folder", "state", "x"]), inner, max_size=4),
    max_leaves=10,
)
BODIES = st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode()))
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
EVENTS = st.one_of(HEADER_TEXT, st.sampled_from([
    "registrationFolder.updated", "registrationFolderBilling.paid", "certificationFolder.success", "x.y"]))
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", ""])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, event=st.none() | EVENTS, delivery=st.none() | HEADER_TEXT, content_type=CONTENT_TYPES,
       signing=st.sampled_from(["valid", "wrong_secret", "random", "none"]), random_signature=HEADER_TEXT,
       path_suffix=st.sampled_from(["", "/{id}", "/0", "/-1", "/abc", "/{id}0"]))
def test_random_deliveries(receiver, body, event, delivery, content_type, signing, random_signature, path_suffix):
    headers = {"Content-Type": content_type}
    if event is not None:
        headers["X-Wedof-Event"] = event
    if delivery is not None:
        headers["X-Wedof-Delivery"] = delivery
    if signing == "valid":
        headers["X-Wedof-Signature"] = compute_signature(receiver.secret, body)
    elif signing == "wrong_secret":
        headers["X-Wedof-Signature"] = compute_signature("another-secret", body)
    elif signing == "random":
        headers["X-Wedof-Signature"] = random_signature
    path = "/api/webhooks/wedof" + path_suffix.format(id=receiver.connection_id)
    before = _count(receiver.database_url)

    response = receiver.client.post(path, data=body, headers=headers)

    assert response.status_code < 500, response.get_data(as_text=True)
    assert set(response.get_json()) >= ({"status", "event_id"} if response.status_code < 300 else {"error", "message"})
    stored = _count(receiver.database_url) - before
    signed = verify_signature(receiver.secret, body, headers.get("X-Wedof-Signature"))
    if stored:
        assert stored == 1 and signed and response.status_code == 202
        assert path.endswith(f"/{receiver.connection_id}")


def _count(database_url: str) -> int:
    with session_scope(database_url) as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent))
