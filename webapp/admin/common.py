"""What every admin view shares: its database session and the audited task sender."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from flask import current_app

from bdc.db import session_scope

log = logging.getLogger(__name__)


@contextmanager
def db_session():
    """The request's unit of work on the app's database (commit on success, rollback on error)."""
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        yield session


# Primary keys are 32-bit integers on PostgreSQL; a larger id cannot exist, and asking the
# database for one would raise (a 500) instead of answering "not found".
MAX_ID = 2**31 - 1


def get_by_id(session, model, object_id: int):
    """``session.get`` that answers None for ids no row can have."""
    if not 0 < object_id <= MAX_ID:
        return None
    return session.get(model, object_id)


_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def publish(name: str, args: list, task_id: str | None = None) -> str:
    """Send task ``name(*args)`` by name on its queue; returns the task id or raises BrokerUnavailable.

    Like ``webapp.dispatch.send_task`` but with ``ignore_result``: the admin API reads progress from
    the SyncRun row and from the PROGRESS state the worker stores itself, and watching results would
    make Celery subscribe to a result channel per publish (with the broker down: ~20 s of
    result-store reconnects instead of a 503 within about a second).
    """
    from webapp.dispatch import BrokerUnavailable, task_sender
    from worker.task_names import QUEUE_OF

    try:
        result = task_sender().send_task(name, args=list(args), queue=QUEUE_OF.get(name), task_id=task_id,
                                         ignore_result=True, retry=True, retry_policy=_PUBLISH_RETRY)
    except Exception as exc:  # kombu raises many transport-specific errors; all mean "not published"
        log.warning("could not publish %s: %s", name, exc.__class__.__name__)
        raise BrokerUnavailable(str(exc)) from exc
    return result.id
