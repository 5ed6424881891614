"""The receiver's direct Redis publish is the message Celery would send, and a real worker runs it."""

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
