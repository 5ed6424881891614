"""A worker killed while it scans for unacknowledged messages does not hold redelivery for minutes.

kombu restores the messages of dead workers under a Redis lock that expires after 300 s by default;
``celeryconfig`` shortens it. These tests run kombu's own channel against the real Redis server, so
they fail if kombu stops honouring the transport option or the lock stops expiring.
"""

from __future__ import annotations

import importlib
import time

import pytest
from kombu import Connection

from bdc.settings import reset_settings_cache


@pytest.fixture
def broker_options(monkeypatch, redis_url):
    import celeryconfig

    def load(visibility_timeout: int) -> dict:
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT", str(visibility_timeout))
        reset_settings_cache()
        return dict(importlib.reload(celeryconfig).broker_transport_options)

    yield load
    monkeypatch.undo()
    reset_settings_cache()
    importlib.reload(celeryconfig)


def test_the_restore_lock_outlives_a_scan_but_not_a_killed_worker(broker_options):
    assert broker_options(3600)["unacked_mutex_expire"] == 300  # kombu's default where a scan may be long
    assert broker_options(20)["unacked_mutex_expire"] == 5
    assert broker_options(10)["unacked_mutex_expire"] == 5


def test_a_message_comes_back_once_a_dead_workers_restore_lock_expires(broker_options, redis_client, redis_url):
    options = broker_options(20)
    with Connection(redis_url, transport_options=options) as connection:
        channel = connection.default_channel
        assert channel.unacked_mutex_expire == options["unacked_mutex_expire"]  # kombu took the option
        queue = connection.SimpleQueue("redelivery-lock-test")
        queue.put({"n": 1})
        taken = channel.basic_get("redelivery-lock-test", no_ack=False)  # now unacknowledged
        assert taken is not None and redis_client.llen("redelivery-lock-test") == 0
        # A worker took it long ago and died, and died inside a restore scan, leaving the lock behind.
        redis_client.zadd(channel.unacked_index_key, {taken.delivery_tag: time.time() - 3600})
        left_behind = redis_client.lock(channel.unacked_mutex_key, timeout=channel.unacked_mutex_expire)
        assert left_behind.acquire(blocking=False)

        channel.qos.restore_visible(interval=1)
        assert redis_client.llen("redelivery-lock-test") == 0  # the lock is held: nothing restored yet

        deadline = time.monotonic() + options["unacked_mutex_expire"] + 5
        while redis_client.llen("redelivery-lock-test") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            channel.qos.restore_visible(interval=1)
        assert redis_client.llen("redelivery-lock-test") == 1
        queue.close()
