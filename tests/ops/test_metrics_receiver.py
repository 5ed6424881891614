"""The receiver's metrics through the Flask test client, on the real Redis and a fresh database:
every delivery outcome labelled with the resolved tenant's slug, bounded labels whatever a client
sends (random connection ids, paths and methods create no series), and the /metrics token."""

from __future__ import annotations

import json
import random
import string

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import Tenant, WedofConnection
from tests.webapp.conftest import (  # noqa: F401 - fixtures
    build_receiver,
    create_connection,
    folder_body,
    receiver,
)
from webapp import metrics

RULE = "/api/webhooks/wedof/<int:connection_id>"


def scrape(client, headers: dict | None = None) -> dict[tuple, float]:
    """What /metrics serves: {(sample name, sorted labels): value}."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data[:300]
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples if sample.name.startswith("bdc_")}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def slug_of(database_url: str, connection_id: int) -> str:
    with session_scope(database_url) as session:
        return session.scalar(select(Tenant.slug).join(WedofConnection, WedofConnection.tenant_id == Tenant.id)
                              .where(WedofConnection.id == connection_id))


def test_each_outcome_is_counted_under_the_resolved_tenant(receiver):  # noqa: F811
    tenant = slug_of(receiver.database_url, receiver.connection_id)
    disabled_id = create_connection(receiver.database_url, enabled=False, slug=f"{tenant}-off")
    before = scrape(receiver.client)

    body = folder_body()
    assert receiver.post(body, delivery="m-1").status_code == 202
    assert receiver.post(body, delivery="m-1").status_code == 200
    assert receiver.post(body, delivery="m-2", secret="not-the-secret").status_code == 401
    assert receiver.post(b"{not json", delivery="m-3").status_code == 400
    assert receiver.post(body, delivery="m-4", content_type="text/plain").status_code == 415
    assert receiver.post(body, path=f"/api/webhooks/wedof/{disabled_id}", delivery="m-5").status_code == 409
    assert receiver.post(body, path="/api/webhooks/wedof/987654", delivery="m-6").status_code == 404
    after = scrape(receiver.client)

    def delta(tenant_label: str, outcome: str) -> float:
        return (value(after, "bdc_webhook_deliveries_total", tenant=tenant_label, outcome=outcome)
                - value(before, "bdc_webhook_deliveries_total", tenant=tenant_label, outcome=outcome))

    assert delta(tenant, "accepted") == 1 and delta(tenant, "duplicate") == 1
    assert delta(tenant, "invalid_signature") == 1 and delta(tenant, "bad_request") == 2  # 400 and 415
    assert delta(f"{tenant}-off", "disabled") == 1
    assert delta("unknown", "unknown_connection") == 1  # no connection resolved: no tenant learnt
    # Bodies read (accepted, duplicate, bad signature, bad JSON, disabled): five observations.
    assert value(after, "bdc_webhook_body_bytes_count") - value(before, "bdc_webhook_body_bytes_count") == 5
    assert value(after, "bdc_webhook_body_bytes_sum") - value(before, "bdc_webhook_body_bytes_sum") == (
        4 * len(body) + len(b"{not json"))
    # Latency by URL rule template, method and status.
    assert (value(after, "bdc_http_request_duration_seconds_count", endpoint=RULE, method="POST", code="202")
            - value(before, "bdc_http_request_duration_seconds_count", endpoint=RULE, method="POST", code="202")) == 1
    assert value(after, "bdc_http_request_duration_seconds_count", endpoint=RULE, method="POST", code="404") >= 1


def test_too_large_bodies_are_counted(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    small = build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url, webhook_max_body_bytes="1024")
    tenant = slug_of(small.database_url, small.connection_id)
    before = scrape(small.client)
    assert small.post(folder_body(padding="x" * 2000)).status_code == 413
    after = scrape(small.client)
    assert (value(after, "bdc_webhook_deliveries_total", tenant=tenant, outcome="too_large")
            - value(before, "bdc_webhook_deliveries_total", tenant=tenant, outcome="too_large")) == 1


def _series(samples: dict) -> set[tuple]:
    return set(samples)


def test_random_connection_ids_paths_and_methods_create_no_series(receiver):  # noqa: F811
    body = folder_body()
    rng = random.Random(14)
    # One of each kind first, so the series they legitimately use exist.
    receiver.post(body, path="/api/webhooks/wedof/999999")
    receiver.client.get("/no/such/path")
    receiver.client.post("/no/such/path", data=body)
    receiver.client.open("/no/such/path", method="BREW")
    before = scrape(receiver.client)

    for _ in range(40):
        receiver.post(body, path=f"/api/webhooks/wedof/{rng.randrange(10**6, 2**31 - 1)}",
                      delivery=f"r-{rng.random()}")
        receiver.post(body, path=f"/api/webhooks/wedof/{rng.randrange(2**31, 10**15)}")  # past INTEGER
        word = "".join(rng.choices(string.ascii_letters + string.digits, k=12))
        receiver.client.get(f"/{word}/{rng.random()}")
        receiver.client.post(f"/api/webhooks/wedof/{word}", data=body)  # not an int: no rule matches
        receiver.client.open(f"/{word}", method=rng.choice(["BREW", "PROPFIND", word.upper()]))
    after = scrape(receiver.client)

    assert _series(after) - _series(before) == set()
    assert (value(after, "bdc_webhook_deliveries_total", tenant="unknown", outcome="unknown_connection")
            - value(before, "bdc_webhook_deliveries_total", tenant="unknown", outcome="unknown_connection")) == 80
    assert (value(after, "bdc_http_request_duration_seconds_count", endpoint="unmatched", method="other", code="405")
            + value(after, "bdc_http_request_duration_seconds_count", endpoint="unmatched", method="other",
                    code="404")) >= 40
    # Endpoint labels are rule templates (the registry is the process's: other tests' apps may have added theirs).
    rules = {rule.rule for rule in receiver.app.url_map.iter_rules()}
    endpoints_before = {dict(key[1])["endpoint"] for key in before if key[0].startswith("bdc_http_request")}
    endpoints = {dict(key[1])["endpoint"] for key in after if key[0].startswith("bdc_http_request")}
    assert endpoints <= rules | {"unmatched"} | endpoints_before
    assert not any(char.isdigit() for endpoint in endpoints - rules for char in endpoint)
    methods = {dict(key[1])["method"] for key in after if key[0].startswith("bdc_http_request")}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_metrics_are_open_without_a_token(receiver):  # noqa: F811
    assert receiver.client.get("/metrics").status_code == 200


HOSTILE_AUTHORIZATIONS = [
    None, "", "Bearer", "Bearer ", "Bearer wrong-token", "Basic bWV0cmljczpzZWNyZXQ=", "metrics-token-9f2c",
    "Bearer metrics-token-9f2", "Bearer metrics-token-9f2cX", "Bearer xmetrics-token-9f2c", "Token metrics-token-9f2c",
    "Bearer metrics-token-9f2c\x00", "Bearer " + "A" * 10000, "Bearer métrics-token-9f2c", "Bearer ☃",
]


@pytest.fixture
def guarded(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    return build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url, metrics_token="metrics-token-9f2c")


@pytest.mark.parametrize("authorization", HOSTILE_AUTHORIZATIONS)
def test_a_configured_token_refuses_every_other_credential(guarded, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = guarded.client.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == "unauthorized"
    assert b"bdc_" not in response.data and b"metrics-token-9f2c" not in response.data


def test_the_token_in_the_query_string_is_not_enough(guarded):
    assert guarded.client.get("/metrics?token=metrics-token-9f2c").status_code == 401


@pytest.mark.parametrize("authorization", ["Bearer metrics-token-9f2c", "bearer metrics-token-9f2c",
                                           "Bearer  metrics-token-9f2c "])
def test_the_configured_token_opens_the_metrics(guarded, authorization):
    samples = scrape(guarded.client, {"Authorization": authorization})
    assert any(name.startswith("bdc_http_request_duration_seconds") for name, _labels in samples)


def test_token_check_refuses_non_latin1_headers_without_raising():
    assert metrics.token_accepted("Bearer \u2603", "secret") is False
    assert metrics.token_accepted("Bearer secret", "secret") is True
    assert metrics.token_accepted(None, None) is True and metrics.token_accepted("anything", "") is True


@pytest.mark.parametrize(("outcome", "status", "expected"), [
    ("accepted", 202, "accepted"), ("stored_not_queued", 202, "accepted"), ("ignored", 202, "accepted"),
    ("duplicate", 200, "duplicate"), ("missing_signature", 401, "invalid_signature"),
    ("webhook_secret_not_configured", 401, "invalid_signature"), ("payload_too_large", 413, "too_large"),
    ("no_default_connection", 404, "unknown_connection"), ("connection_disabled", 409, "disabled"),
    ("database_unavailable", 503, "unavailable"), ("connection_misconfigured", 503, "unavailable"),
    ("internal_error", 500, "unavailable"), ("invalid_json", 400, "bad_request"),
    ("unsupported_media_type", 415, "bad_request"), ("whatever-new", 400, "bad_request"),
])
def test_receiver_outcomes_map_onto_the_catalog(outcome, status, expected):
    assert metrics.delivery_outcome(outcome, status) == expected
    assert expected in metrics.OUTCOMES


def test_the_log_line_names_the_tenant_not_the_secret(receiver, caplog):  # noqa: F811
    import logging

    with caplog.at_level(logging.INFO, logger="webapp.receiver"):
        receiver.post(folder_body(), delivery="log-1")
    [line] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "webapp.receiver"]
    assert line["tenant"] == slug_of(receiver.database_url, receiver.connection_id)
    assert receiver.secret not in json.dumps(line)
