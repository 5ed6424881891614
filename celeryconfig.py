"""Celery configuration shared by the workers, beat, Flower and the webapp's task sender.

Why each reliability setting is here:
- acks late + reject on worker lost: a task killed mid-run (SIGKILL, OOM) goes back to the queue.
- prefetch 1: a worker never hoards tasks another worker could run.
- visibility_timeout: Redis re-delivers an unacknowledged task after this long; it must exceed the
  longest countdown we ever set (short countdowns only: longer waits go to the inbox table).
"""

from bdc.settings import get_settings
from worker.schedule import build_beat_schedule
from worker.task_names import EVENTS_QUEUE, QUEUE_OF

_settings = get_settings()
# Overridable so a test can see a SIGKILLed worker's message come back in seconds, not an hour.
VISIBILITY_TIMEOUT = _settings.celery_visibility_timeout

broker_url = _settings.redis_url
result_backend = _settings.redis_url
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": VISIBILITY_TIMEOUT,  # 1 h by default: longer than any countdown (≤ 5 min)
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
if VISIBILITY_TIMEOUT < 60:
    # With a short timeout (tests) look for unacknowledged messages to restore every second,
    # not every ~100 s (kombu's default interval × throttle).
    broker_transport_options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
# The restore scan runs under a Redis lock that expires after kombu's 300 s: a worker killed during a
# scan would hold every other worker's redelivery for five minutes. One scan takes milliseconds.
broker_transport_options["unacked_mutex_expire"] = min(300, max(5, VISIBILITY_TIMEOUT // 4))
result_backend_transport_options = {"socket_timeout": 5, "socket_connect_timeout": 5}

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_ignore_result = True  # results are kept only where an admin needs them (sync progress)
result_expires = 7 * 24 * 3600
task_track_started = True
task_send_sent_event = True
worker_send_task_events = True
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
timezone = "UTC"
enable_utc = True

# Celery's consumer with a fix for a Redis outage under a busy worker (#14): see worker/consumer.py.
worker_consumer = "worker.consumer:Consumer"

task_default_queue = EVENTS_QUEUE
task_routes = {name: {"queue": queue} for name, queue in QUEUE_OF.items()}

# A hard ceiling so a hung HTTP call cannot hold a worker slot forever.
task_soft_time_limit = 15 * 60
task_time_limit = 16 * 60
worker_max_tasks_per_child = 1000

# Beat: every entry expires before its next run, so a backlog never replays stale ticks.
beat_schedule = build_beat_schedule(_settings)
