"""Send tasks to the workers by name; the webapp never imports the code that runs them.

Publishing is bounded in time: when the broker is down the caller learns it in about a second
and carries on (the event is already stored; the sweeper enqueues it later).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Celery

from worker.task_names import QUEUE_OF

log = logging.getLogger(__name__)

_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


class BrokerUnavailable(RuntimeError):
    """The task could not be published; the caller keeps the work in the database."""


@lru_cache(maxsize=1)
def task_sender() -> Celery:
    sender = Celery("bdc-webapp")
    sender.config_from_object("celeryconfig")
    return sender


def send_task(name: str, args: list | tuple = (), *, task_id: str | None = None, countdown: float | None = None) -> str:
    """Publish ``name(*args)`` on its queue and return the task id, or raise BrokerUnavailable."""
    try:
        result = task_sender().send_task(
            name, args=list(args), queue=QUEUE_OF.get(name), task_id=task_id, countdown=countdown,
            # Results are read from our own tables; watching them would make every publish subscribe to a
            # result channel, which with the broker down stalls ~20 s instead of failing within a second.
            ignore_result=True, retry=True, retry_policy=_PUBLISH_RETRY,
        )
    except Exception as exc:  # kombu raises many transport-specific errors; all mean "not published"
        log.warning("could not publish %s: %s", name, exc.__class__.__name__)
        raise BrokerUnavailable(str(exc)) from exc
    return result.id
