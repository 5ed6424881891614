"""The workers' Celery consumer: Celery's own, with one fix for a Redis outage (issue #14).

Celery 5.7.0 (with kombu 5.7.0 and redis-py 8.1.0, the newest releases) ends a worker with
``Unrecoverable error: AttributeError("'NoneType' object has no attribute 'hostname'")`` when Redis
goes away while the worker holds an unacknowledged message (a task running, ``acks_late``) and waits
on BRPOP for more (a free pool slot). On the connection loss ``Consumer.on_connection_error_after_connected``
first calls ``connection.collect()``: closing the default channel fails half-way (its pending BRPOP
reply cannot be read from the dead socket) and the transport is detached (``transport.client = None``).
Celery 5.7.0 then calls ``connection.close()``, which closes that channel again; this time it goes on
to restore the unacknowledged messages, builds a Redis pool from ``transport.client.hostname``, and the
AttributeError escapes the consumer. Celery 5.6.3 did not call ``close()`` after ``collect()``.

The fix: once ``collect()`` has run, the connection forgets its default channel, so the ``close()``
that follows has nothing left to close twice. The messages that channel could not restore stay in
Redis's unacknowledged index: their late ack still reaches Redis once it is back, or Redis hands them
out again after the visibility timeout (and the inbox sweeper catches an event whose task was lost).
Reproduced and kept fixed by tests/worker/test_resilience.py (three outages with a task in flight).
Wired in celeryconfig.py (``worker_consumer``); drop it once Celery no longer closes a collected connection.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc):
        if self.connection is not None:
            _forget_default_channel_after_collect(self.connection)
        super().on_connection_error_after_connected(exc)


def _forget_default_channel_after_collect(connection) -> None:
    collect = connection.collect

    def collect_then_forget(*args, **kwargs):
        try:
            return collect(*args, **kwargs)
        finally:
            # Closed by collect(), or dead with the transport collect() detached: never to be closed again.
            connection._default_channel = None

    connection.collect = collect_then_forget
