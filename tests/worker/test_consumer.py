"""worker/consumer.py imitates nothing, but it leans on two details of Celery and kombu: these tests fail when
either changes, so the workaround is looked at again (kept, adapted or dropped) rather than silently useless."""

from __future__ import annotations

import inspect

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

from worker.consumer import Consumer, _forget_default_channel_after_collect


def test_celery_still_collects_then_closes_the_connection_on_a_connection_loss():
    source = inspect.getsource(CeleryConsumer.on_connection_error_after_connected)
    collect, close = source.find(".collect("), source.find("connection.close")
    assert collect != -1, "Celery no longer calls connection.collect() on a connection loss: revisit worker/consumer.py"
    assert close > collect, (
        "Celery no longer closes the collected connection: the double close is gone, drop worker/consumer.py")


def test_kombu_connections_still_keep_their_default_channel_where_the_fix_forgets_it():
    assert "_default_channel" in inspect.getsource(Connection)
    connection = Connection("memory://")
    connection.default_channel  # noqa: B018 - opens it
    assert connection._default_channel is not None
    _forget_default_channel_after_collect(connection)
    connection.collect()
    assert connection._default_channel is None  # the close() Celery makes next has nothing to close twice
    connection.close()


def test_the_workers_use_this_consumer():
    from worker.celery_app import app

    assert app.conf.worker_consumer == "worker.consumer:Consumer"
    assert issubclass(Consumer, CeleryConsumer)
