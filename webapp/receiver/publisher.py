"""Publish ``PROCESS_EVENT(event_id)`` by name, cheaply and within a bound.

The message is built by Celery itself (``amqp.create_task_message``, protocol 2, from the shared
sender of :mod:`webapp.dispatch`) once per thread as a template, checked against a message Celery
builds for a real delivery, and filled in with each delivery's ids; it is then pushed onto the
queue's Redis list the way kombu's Redis transport does (one ``LPUSH`` of its JSON envelope), and
Celery's ``task-sent`` monitoring event (built by Celery's ``Event``) is published on the events
channel in the same round trip, so Flower shows the task from the moment it is sent, as for any
``send_task``. Going through ``send_task`` itself costs a third of the receiver's throughput
(kombu's per-command client objects and retry wrappers; measured with bench/webhook_ingest.py:
0.21–0.27× the bare endpoint against 0.29–0.40× for this path, same runs). Tests compare both
messages with the ones ``send_task`` produces and have a real Celery worker run the task.

What this path leaves out: Celery's publish signals. For any broker other than plain Redis it falls
back to ``send_task``. A dead broker fails fast (1 s connect timeout, one retry), so the request is
still answered 202 with the event kept for the sweeper.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import threading
import uuid

import redis
from celery.events.event import Event
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset

from webapp.dispatch import BrokerUnavailable, task_sender
from worker.task_names import PROCESS_EVENT, QUEUE_OF

log = logging.getLogger(__name__)

QUEUE = QUEUE_OF[PROCESS_EVENT]
# Used only by the send_task fallback: one quick retry, then report the broker as unavailable.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def publish_process_event(event_id: int, task_id: str) -> None:
    """Enqueue the processing of a stored event, or raise BrokerUnavailable."""
    sender = task_sender()
    client, channel = _route(sender)
    if client is None:
        _publish_with_send_task(sender, event_id, task_id)
        return
    commands = [("LPUSH", QUEUE, redis_envelope(sender, event_id, task_id))]
    if channel is not None:
        commands.append(("PUBLISH", channel, sent_event_envelope(sender, event_id, task_id)))
    for attempt in (1, 2):  # a pooled connection the broker dropped is replaced once
        try:
            _send(client, commands)
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if attempt == 2:
                log.warning("could not publish %s for event %s: %s", PROCESS_EVENT, event_id, exc.__class__.__name__)
                raise BrokerUnavailable(str(exc)) from exc
        except redis.RedisError as exc:  # e.g. OOM with noeviction: the broker refuses the message
            log.warning("broker refused %s for event %s: %s", PROCESS_EVENT, event_id, exc.__class__.__name__)
            raise BrokerUnavailable(str(exc)) from exc


def redis_envelope(sender, event_id: int, task_id: str) -> str:
    """The JSON kombu's Redis transport stores for ``send_task(PROCESS_EVENT, [event_id])`` on our queue.

    Built from a template made once per thread (Celery's ``reply_to`` is per thread) by Celery
    itself: only the task id, the argument and the delivery tag differ between two deliveries, and
    building the whole message with ``create_task_message`` costs more than the rest of the publish.
    """
    template = _templates.__dict__.get("template")
    if template is None or template.sender is not sender:
        template = _templates.template = _EnvelopeTemplate.build(sender)
    return template.render(event_id, task_id)


def celery_envelope(sender, event_id: int, task_id: str, delivery_tag: str) -> str:
    """The same envelope built by Celery for this very delivery (the template's reference)."""
    headers, properties, body, _sent_event = sender.amqp.create_task_message(
        task_id, PROCESS_EVENT, [event_id], {}, reply_to=sender.thread_oid, ignore_result=True,
        create_sent_event=False,
    )
    return json.dumps({
        "body": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,  # persistent, as the queue's exchange declares
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": delivery_tag,
        },
    })


# Stand-ins that cannot occur in a real message; the template replaces them per delivery.
_TASK_MARK = "@@task-id@@"
_ARG_MARK = 7391046258193
_BODY_MARK = "@@body@@"
_TAG_MARK = "@@delivery-tag@@"
_templates = threading.local()


class _EnvelopeTemplate:
    """Celery's envelope with stand-ins where the task id, the event id and the tag go."""

    def __init__(self, sender, envelope: str | None, body: str | None):
        self.sender = sender
        self._envelope = envelope  # None: Celery's message did not fit the template, build each one
        self._body = body

    @classmethod
    def build(cls, sender) -> _EnvelopeTemplate:
        headers, properties, body, _sent_event = sender.amqp.create_task_message(
            _TASK_MARK, PROCESS_EVENT, [_ARG_MARK], {}, reply_to=sender.thread_oid, ignore_result=True,
            create_sent_event=False,
        )
        envelope = json.dumps({
            "body": _BODY_MARK, "content-encoding": "utf-8", "content-type": "application/json",
            "headers": headers,
            "properties": {**properties, "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": QUEUE},
                           "priority": 0, "body_encoding": "base64", "delivery_tag": _TAG_MARK},
        })
        template = cls(sender, envelope, json.dumps(body))
        # Guard against a Celery whose message holds something else per task (a timestamp, a
        # counter): the template must render exactly what Celery builds, or is not used.
        probe = template.render(41, "template-check", delivery_tag="tag-check")
        if probe != celery_envelope(sender, 41, "template-check", "tag-check"):
            log.warning("Celery's task message does not fit the publish template; building each message")
            template = cls(sender, None, None)
        return template

    def render(self, event_id: int, task_id: str, delivery_tag: str | None = None) -> str:
        delivery_tag = delivery_tag or new_delivery_tag()
        if self._envelope is None:
            return celery_envelope(self.sender, event_id, task_id, delivery_tag)
        arg = str(int(event_id))
        body = base64.b64encode(self._body.replace(str(_ARG_MARK), arg).encode("utf-8")).decode("ascii")
        return (self._envelope.replace(_TASK_MARK, json.dumps(task_id)[1:-1]).replace(str(_ARG_MARK), arg)
                .replace(_BODY_MARK, body).replace(_TAG_MARK, delivery_tag))


def sent_event_envelope(sender, event_id: int, task_id: str, delivery_tag: str | None = None) -> str:
    """The ``task-sent`` event ``send_task`` publishes for this task, as kombu's Redis transport stores it.

    The fields ``amqp.send_task_message`` gives it, made into an event by Celery's own ``Event`` with
    the sender's clock, as ``EventDispatcher.publish`` does (tests compare it with Celery's own).
    """
    hostname = _event_hostname()
    event = Event("task-sent", hostname=hostname, utcoffset=utcoffset(), pid=os.getpid(),
                  clock=sender.clock.forward(), uuid=task_id, root_id=task_id, parent_id=None, name=PROCESS_EVENT,
                  args=f"[{int(event_id)}]", kwargs="{}", retries=0, eta=None, expires=None, queue=QUEUE,
                  exchange="", routing_key=QUEUE)
    return json.dumps({
        "body": base64.b64encode(json.dumps(event).encode("utf-8")).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"hostname": hostname},
        "properties": {
            "delivery_mode": 1,  # events are transient
            "delivery_info": {"exchange": "celeryev", "routing_key": "task.sent"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": delivery_tag or new_delivery_tag(),
        },
    })


_tags: tuple[int, int, itertools.count] = (0, 0, itertools.count())


def new_delivery_tag() -> str:
    """A unique delivery tag in uuid4's shape: a random per-process prefix and a counter.

    kombu only needs tags unique among the unacknowledged messages; ``uuid4`` for each would read
    ``os.urandom`` (a system call that lets the GIL go) twice a delivery.
    """
    global _tags
    if _tags[0] != os.getpid():
        _tags = (os.getpid(), int.from_bytes(os.urandom(8), "big"), itertools.count())
    return str(uuid.UUID(int=(_tags[1] << 64) | (next(_tags[2]) & (2**64 - 1)), version=4))


_hostname: tuple[int, str] = (0, "")


def _event_hostname() -> str:
    """Celery's name for a sender that is no worker (``gen<pid>@<host>``), built once per process."""
    global _hostname
    if _hostname[0] != os.getpid():
        _hostname = (os.getpid(), anon_nodename())
    return _hostname[1]


def _sent_event_channel(client: redis.Redis) -> str:
    # kombu's fanout topic for the "celeryev" exchange: "/<db>.celeryev/<routing key>".
    return f"/{client.connection_pool.connection_kwargs.get('db', 0)}.celeryev/task.sent"


def _send(client: redis.Redis, commands: list[tuple]) -> None:
    """The commands in one round trip on this thread's connection; an error of the first one raises.

    No redis-py per-command client machinery (retry wrapper, option parsing): our caller already
    retries once on a fresh connection. Only the first command (the task) matters: a refused event
    costs Flower a line, never the task.
    """
    connection = _thread_connection(client)
    try:
        connection.send_packed_command(connection.pack_commands(commands))
        first_error = None
        for position, _command in enumerate(commands):
            try:
                connection.read_response()
            except redis.ResponseError as exc:  # the broker answered (e.g. OOM): the connection is in step
                if position == 0:
                    first_error = exc
                else:
                    log.warning("broker refused the task-sent event: %s", exc)
        if first_error is not None:
            raise first_error
    except redis.ResponseError:
        raise
    except BaseException:
        connection.disconnect()  # never keep a connection with a reply left unread; the next send reconnects
        raise


_connections = threading.local()


def _thread_connection(client: redis.Redis) -> redis.Connection:
    """A connection of this thread's own, outside the client's pool.

    A pool's checkout checks each connection for unread data (two ``settimeout`` calls and a
    ``recv``) and takes its lock twice; :func:`_send` reads every reply or disconnects, so its own
    connection never holds one (about 30 µs less a delivery, measured). One per thread and
    process: a forked or new thread opens its own.
    """
    pool = client.connection_pool
    held = getattr(_connections, "held", None)
    if held is None or held[0] is not pool or held[1] != os.getpid():
        held = _connections.held = (pool, os.getpid(), pool.connection_class(**pool.connection_kwargs))
    return held[2]


_routes: dict[int, tuple[object, redis.Redis | None, str | None]] = {}


def _route(sender) -> tuple[redis.Redis | None, str | None]:
    """The sender's Redis client (None: use send_task) and its task-sent channel (None: no events).

    Read from the sender's configuration once per sender: Celery's settings lookups cost more than
    the rest of building the message (measured, about 12 µs a delivery).
    """
    route = _routes.get(id(sender))
    if route is None or route[0] is not sender:
        client = _redis_client(sender)
        channel = _sent_event_channel(client) if client is not None and sender.conf.task_send_sent_event else None
        route = _routes[id(sender)] = (sender, client, channel)
    return route[1], route[2]


def _redis_client(sender) -> redis.Redis | None:
    """A pooled client for the sender's broker, or None when the fast path does not apply."""
    url = str(sender.conf.broker_url or "")
    options = sender.conf.broker_transport_options or {}
    if not url.startswith(("redis://", "rediss://")) or options.get("global_keyprefix") or options.get("sep"):
        return None
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                # redis-py pools are thread-safe and reset themselves in a forked child.
                client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
                _clients[url] = client
    return client


def _publish_with_send_task(sender, event_id: int, task_id: str) -> None:
    try:
        sender.send_task(PROCESS_EVENT, args=[event_id], queue=QUEUE, task_id=task_id, ignore_result=True,
                         retry=True, retry_policy=_RETRY_POLICY)
    except Exception as exc:  # kombu raises many transport-specific errors; all mean "not published"
        log.warning("could not publish %s for event %s: %s", PROCESS_EVENT, event_id, exc.__class__.__name__)
        raise BrokerUnavailable(str(exc)) from exc
