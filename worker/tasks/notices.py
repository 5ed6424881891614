"""``bdc.send_notices``: every BDC_NOTICE_INTERVAL, look at what is wrong and tell each tenant's staff.

The work is :func:`worker.notices.service.run`; this task adds the failure policy (a periodic task
never retries: its next tick is the retry) and a Redis lock, so a slow run (an SMTP server timing out)
and the next tick never send the same message twice.
"""

from __future__ import annotations

from redis.exceptions import LockError

from bdc.settings import get_settings
from worker.celery_app import app
from worker.connections import redis_client
from worker.notices import service
from worker.policy import PolicyTask, log
from worker.task_names import SEND_NOTICES

LOCK_KEY = "bdc:lock:send_notices"


def lock_timeout() -> float:
    # Long enough for a run whose SMTP server times out on every tenant; a dead worker's lock expires.
    return max(300.0, 10 * get_settings().notice_interval)


@app.task(base=PolicyTask, bind=True, name=SEND_NOTICES, max_retries=0)
def send_notices(self):
    """Observe the conditions, move the problems, deliver the messages that are due."""
    lock = redis_client().lock(LOCK_KEY, timeout=lock_timeout(), blocking=False)
    if not lock.acquire():
        return {"status": "skipped", "reason": "another run is sending notices"}
    try:
        return service.run()
    finally:
        try:
            lock.release()
        except LockError:  # it expired during a very long run; nothing to release
            log.warning("send_notices: the lock expired before the run ended")
