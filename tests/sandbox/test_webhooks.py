"""Webhook registration and signed deliveries to a real local receiver, including the chaos modes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
import requests

from tests.sandbox.receiver import WebhookReceiver

SECRET = "s3cr3t-ñ"


def register(sbx, url: str, events=None, secret=SECRET, **extra) -> dict:
    response = sbx.api("POST", "/webhooks", json={"url": url, "events": events or [], "name": "test",
                                                  "secret": secret, "enabled": True, "ignoreSsl": False, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def drain(sbx) -> dict:
    stats = sbx.control("POST", "/deliveries/drain", json={"timeout": 30})
    assert stats["drained"] and stats["pending"] == 0
    return stats


def move_first_folder(sbx, count: int = 1) -> str:
    """Make ``count`` PUT changes to one folder; return its externalId."""
    external_id = sbx.control("GET", "/truth", params={"compact": 1})[0]["externalId"]
    for i in range(count):
        assert sbx.api("PUT", f"/registrationFolders/{external_id}", json={"notes": f"note {i}"}).status_code == 200
    return external_id


def test_register_read_delete(sbx):
    hook = register(sbx, "http://127.0.0.1:9/hook", events=["registrationFolder.*"])
    assert set(hook) == {"id", "url", "secret", "type", "events", "enabled", "ignoreSsl", "name", "createdOn",
                         "updatedOn", "_links"}
    assert sbx.api("GET", f"/webhooks/{hook['id']}").json() == hook
    assert sbx.api("DELETE", f"/webhooks/{hook['id']}").status_code == 204
    assert sbx.api("GET", f"/webhooks/{hook['id']}").status_code == 404
    assert sbx.api("DELETE", f"/webhooks/{hook['id']}").status_code == 404


@pytest.mark.parametrize("body,path", [
    ({"url": "https://example.com/hook"}, "url"), ({"url": "ftp://127.0.0.1/x"}, "url"), ({"events": []}, "url"),
    ({"url": "http://127.0.0.1/h", "events": "all"}, "events"), ({"url": "http://127.0.0.1/h", "secret": 5}, "secret"),
    ({"url": "http://127.0.0.1/h", "enabled": "yes"}, "enabled"),
])
def test_bad_webhook_bodies(sbx, body, path):
    response = sbx.api("POST", "/webhooks", json=body)
    assert response.status_code == 400 and response.json()["violations"][0]["propertyPath"] == path
    assert sbx.api("POST", "/webhooks", data=b"[", headers={"Content-Type": "application/json"}).status_code == 400


def test_signed_delivery_carries_the_exact_folder_bytes(sbx):
    with WebhookReceiver(secret=SECRET) as receiver:
        register(sbx, receiver.url)
        external_id = sbx.control("GET", "/truth", params={"compact": 1})[0]["externalId"]
        sbx.control("PUT", f"/folders/{external_id}", json={"state": "accepted"})
        moved = sbx.api("POST", f"/registrationFolders/{external_id}/inTraining", json={"date": "2025-12-01"})
        assert moved.status_code == 200
        stats = drain(sbx)
    # Four sender threads, as deliveries at Wedof: the two may arrive in either order.
    events = sorted(r.headers["x-wedof-event"] for r in receiver.received)
    assert events == ["registrationFolder.accepted", "registrationFolder.inTraining"]
    (last,) = [r for r in receiver.received if r.headers["x-wedof-event"] == "registrationFolder.inTraining"]
    assert last.body == moved.content  # the body is the folder itself, byte for byte
    assert last.headers["content-type"] == "application/json"
    expected = hmac.new(SECRET.encode(), last.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(last.headers["x-wedof-signature"], expected)
    assert len({r.delivery_id for r in receiver.received}) == 2
    assert stats["acknowledged"] == stats["deliveries"] == 2 and stats["failed_permanently"] == 0


@pytest.mark.parametrize("algorithm,encoding", [("sha512", "hex"), ("sha256", "prefixed"), ("sha256", "base64")])
def test_signature_variants(sbx, algorithm, encoding):
    sbx.control("PUT", "/deliveries/config", json={"signature_algorithm": algorithm, "signature_encoding": encoding})
    with WebhookReceiver(secret=SECRET, algorithm=algorithm, encoding=encoding) as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx)
        drain(sbx)
    (delivery,) = receiver.received
    assert delivery.status == 200
    digest = hmac.new(SECRET.encode(), delivery.body, getattr(hashlib, algorithm)).digest()
    signature = delivery.headers["x-wedof-signature"]
    if encoding == "base64":
        assert base64.b64decode(signature) == digest
    elif encoding == "prefixed":
        assert signature == f"{algorithm}={digest.hex()}"
    else:
        assert signature == digest.hex()


def test_event_filters_and_disabled_hooks(sbx):
    with WebhookReceiver() as only_updates, WebhookReceiver() as only_training, WebhookReceiver() as disabled:
        register(sbx, only_updates.url, events=["registrationFolder.updated"])
        register(sbx, only_training.url, events=["registrationFolder.inTraining"])
        register(sbx, disabled.url, enabled=False)
        move_first_folder(sbx, count=2)
        drain(sbx)
    assert len(only_updates.received) == 2 and not only_training.received and not disabled.received
    assert all(r.headers["x-wedof-event"] == "registrationFolder.updated" for r in only_updates.received)


def test_failed_deliveries_are_retried_until_acknowledged(sbx):
    with WebhookReceiver(fail_first=2) as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx)
        stats = drain(sbx)
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert len({r.delivery_id for r in receiver.received}) == 1
    assert stats["retried"] == 2 and stats["acknowledged"] == 1 and stats["sent"] == 3


def test_unreachable_receiver_fails_permanently_after_bounded_attempts(sbx):
    register(sbx, "http://127.0.0.1:9/nothing-listens-here")
    move_first_folder(sbx)
    stats = drain(sbx)
    assert stats["failed_permanently"] == 1 and stats["sent"] == 4 and stats["acknowledged"] == 0
    log = sbx.control("GET", "/deliveries", params={"log": 1})["log"]
    assert [e["attempt"] for e in log] == [1, 2, 3, 4] and all(e["status"] is None for e in log)


def test_duplicate_mode_resends_the_same_delivery(sbx):
    sbx.control("PUT", "/deliveries/config", json={"duplicate_rate": 1})
    with WebhookReceiver(secret=SECRET) as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx, count=3)
        stats = drain(sbx)
    ids = [r.delivery_id for r in receiver.received]
    assert len(ids) == 6 and len(set(ids)) == 3 and all(ids.count(i) == 2 for i in ids)
    assert stats["duplicates_sent"] == 3 and stats["acknowledged"] == 3


def test_out_of_order_mode_sends_an_older_folder_after_a_newer_one(sbx):
    sbx.control("PUT", "/deliveries/config", json={"out_of_order_rate": 1})
    with WebhookReceiver() as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx, count=4)
        stats = drain(sbx)
    stamps = [r.folder()["lastUpdate"] for r in receiver.received]
    assert len(stamps) == 4 and stamps != sorted(stamps)
    assert stats["out_of_order"] >= 1 and stats["acknowledged"] == 4


def test_bad_signature_copies_are_rejected_and_not_retried(sbx):
    sbx.control("PUT", "/deliveries/config", json={"bad_signature_rate": 1})
    with WebhookReceiver(secret=SECRET) as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx, count=2)
        stats = drain(sbx)
    assert sorted(r.status for r in receiver.received) == [200, 200, 401, 401]
    assert stats["bad_signature"] == stats["bad_signature_rejected"] == 2
    assert stats["acknowledged"] == 2 and stats["retried"] == 0


def test_malformed_copies_are_signed_but_not_json(sbx):
    sbx.control("PUT", "/deliveries/config", json={"malformed_rate": 1})
    with WebhookReceiver(secret=SECRET) as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx)
        stats = drain(sbx)
    bad = [r for r in receiver.received if r.status == 400]
    assert len(bad) == 1 and len(receiver.accepted()) == 1
    with pytest.raises(ValueError):
        json.loads(bad[0].body)
    assert stats["malformed"] == stats["malformed_rejected"] == 1 and stats["retried"] == 0


def test_simulation_delivers_one_webhook_per_change(sbx):
    with WebhookReceiver(secret=SECRET) as receiver:
        register(sbx, receiver.url)
        summary = sbx.control("POST", "/simulate", json={"changes": 25, "completion_updates": True})
        stats = drain(sbx)
    assert stats["acknowledged"] == summary["applied"] == len(receiver.received)
    truth = {f["externalId"]: f for f in sbx.control("GET", "/truth")}
    latest = {}
    for r in receiver.received:
        folder = r.folder()
        if folder["lastUpdate"] > latest.get(folder["externalId"], {}).get("lastUpdate", ""):
            latest[folder["externalId"]] = folder
    for external_id, folder in latest.items():
        assert truth[external_id] == folder


def test_delivery_config_rejects_bad_values(sbx):
    for bad in ({"duplicate_rate": 2}, {"signature_algorithm": "md5"}, {"retry_delays": "fast"}, {"nope": 1}):
        response = requests.put(f"{sbx.url}/_sandbox/deliveries/config", json=bad, timeout=10)
        assert response.status_code == 400 and response.json()["violations"]
    assert sbx.control("GET", "/deliveries/config")["duplicate_rate"] == 0


def test_a_held_delivery_without_a_successor_is_still_delivered(sbx):
    sbx.control("PUT", "/deliveries/config", json={"out_of_order_rate": 1})
    with WebhookReceiver() as receiver:
        register(sbx, receiver.url)
        move_first_folder(sbx)
        stats = drain(sbx)  # drain releases held deliveries instead of waiting for a later change
    assert len(receiver.accepted()) == 1 and stats["out_of_order"] == 0


def test_reset_drops_webhooks_and_statistics(sbx):
    with WebhookReceiver() as receiver:
        hook = register(sbx, receiver.url)
        move_first_folder(sbx)
        drain(sbx)
        sbx.control("POST", "/reset", json={"folders": 60, "seed": 7})
        assert sbx.api("GET", f"/webhooks/{hook['id']}").status_code == 404
        assert sbx.control("GET", "/deliveries")["deliveries"] == 0
        move_first_folder(sbx)
        drain(sbx)
    assert len(receiver.received) == 1


def test_webhook_without_secret_gets_no_signature_header(sbx):
    with WebhookReceiver() as receiver:
        register(sbx, receiver.url, secret=None)
        move_first_folder(sbx)
        drain(sbx)
    (delivery,) = receiver.received
    assert "x-wedof-signature" not in delivery.headers and delivery.headers["x-wedof-delivery"]
