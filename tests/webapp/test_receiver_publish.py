"""The receiver's direct Redis publish is the message (and the ``task-sent`` event) Celery would send,
and a real worker runs it. These tests fail when Celery or kombu change the format we imitate."""

from __future__ import annotations

import json
import sys

import redis
from celery import Celery

from tests.support.processes import ManagedProcess
from tests.support.services import wait_until
from worker.task_names import EVENTS_QUEUE, PROCESS_EVENT

# A stand-in worker app: same task name and queue as the real one, records what it ran.
probe_app = Celery("receiver-probe")
probe_app.config_from_object("celeryconfig")


@probe_app.task(name=PROCESS_EVENT, bind=True)
def probe_process_event(self, event_id):
    redis.Redis.from_url(probe_app.conf.broker_url).set(f"probe:{event_id}", self.request.id)


def _comparable(raw: bytes) -> dict:
    message = json.loads(raw)
    for key in ("id", "root_id", "origin"):
        message["headers"].pop(key)
    for key in ("delivery_tag", "correlation_id", "reply_to"):
        message["properties"].pop(key)
    return message


def test_envelope_equals_celery_send_task(receiver, redis_client):
    from webapp.dispatch import task_sender
    from webapp.receiver.publisher import publish_process_event

    sender = task_sender()
    sender.conf.task_send_sent_event = False  # the one part the direct path leaves out
    try:
        sender.send_task(PROCESS_EVENT, args=[41], queue=EVENTS_QUEUE, task_id="by-celery", ignore_result=True)
    finally:
        sender.conf.task_send_sent_event = True
    publish_process_event(41, "by-receiver")

    by_receiver, by_celery = redis_client.lrange(EVENTS_QUEUE, 0, -1)  # LPUSH: newest first
    assert json.loads(by_receiver)["headers"]["id"] == "by-receiver"
    assert _comparable(by_receiver) == _comparable(by_celery)


def _events_published(redis_client, publish) -> list[dict]:
    """Every Celery event published on the broker while ``publish()`` runs, decoded."""
    import base64
    import time

    pubsub = redis_client.pubsub()
    pubsub.psubscribe("*celeryev*")
    pubsub.get_message(timeout=1)  # the subscription's own confirmation
    publish()
    messages, deadline = [], time.monotonic() + 2
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "pmessage":
            envelope = json.loads(message["data"])
            envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
            messages.append({"channel": message["channel"].decode(), **envelope})
    pubsub.close()
    return messages


def test_the_task_sent_event_equals_celerys(receiver, redis_client):
    """Flower sees a task the receiver sends exactly as one sent with send_task: same event, same channel."""
    from webapp.dispatch import task_sender
    from webapp.receiver.publisher import publish_process_event

    sender = task_sender()
    [by_celery] = _events_published(redis_client, lambda: sender.send_task(
        PROCESS_EVENT, args=[41], queue=EVENTS_QUEUE, task_id="by-celery", ignore_result=True))
    [by_receiver] = _events_published(redis_client, lambda: publish_process_event(41, "by-receiver"))
    assert (by_celery["body"]["uuid"], by_receiver["body"]["uuid"]) == ("by-celery", "by-receiver")
    assert by_receiver["body"]["clock"] > by_celery["body"]["clock"]  # the sender's own Lamport clock
    for event in (by_celery, by_receiver):
        for key in ("uuid", "root_id", "timestamp", "clock"):
            event["body"].pop(key)
        event["properties"].pop("delivery_tag")
    assert by_receiver == by_celery
    assert by_receiver["channel"].endswith(".celeryev/task.sent") and by_receiver["body"]["type"] == "task-sent"


def test_a_real_celery_worker_runs_the_published_task(receiver, redis_client, redis_url, output_dir):
    body = b'{"externalId": "4270885603", "state": "inTraining"}'
    response = receiver.post(body, delivery="worker-run")
    assert response.status_code == 202
    event = receiver.events()[0]

    env = {"REDIS_URL": redis_url, "DATABASE_URL": receiver.database_url}
    worker = ManagedProcess("receiver-probe-worker", [
        sys.executable, "-m", "celery", "-A", "tests.webapp.test_receiver_publish:probe_app", "worker",
        "-Q", EVENTS_QUEUE, "--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ], env=env, log_dir=output_dir / "logs").start()
    try:
        ran_as = wait_until(lambda: redis_client.get(f"probe:{event.id}"), timeout=60,
                            message="the probe worker running the published task")
    finally:
        worker.stop()
    assert ran_as.decode() == event.task_id
