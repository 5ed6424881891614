"""Publish ``PROCESS_EVENT(event_id)`` by name on the shared task sender, cheaply and within a bound.

It uses the same Celery sender as :mod:`webapp.dispatch` but asks Celery not to watch for the
task's result (``ignore_result``): the receiver never reads results, and watching one makes
Celery subscribe to a Redis result channel on every publish, which costs a round trip per
delivery and, with the broker down, stalls the request for ~20 s of result-store reconnects
instead of failing in about a second.
"""

from __future__ import annotations

import logging

from webapp.dispatch import BrokerUnavailable, task_sender
from worker.task_names import PROCESS_EVENT, QUEUE_OF

log = logging.getLogger(__name__)

# One quick retry: a dropped pooled connection is re-opened; a dead broker is reported fast.
_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def publish_process_event(event_id: int, task_id: str) -> None:
    """Enqueue the processing of a stored event, or raise BrokerUnavailable."""
    try:
        task_sender().send_task(
            PROCESS_EVENT, args=[event_id], queue=QUEUE_OF[PROCESS_EVENT], task_id=task_id,
            ignore_result=True, retry=True, retry_policy=_RETRY_POLICY,
        )
    except Exception as exc:  # kombu raises many transport-specific errors; all mean "not published"
        log.warning("could not publish %s for event %s: %s", PROCESS_EVENT, event_id, exc.__class__.__name__)
        raise BrokerUnavailable(str(exc)) from exc
