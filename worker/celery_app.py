"""The Celery application of the workers, beat and Flower: ``celery -A worker.celery_app worker -Q events``.

Rules every task follows:

- **Sessions**: a task opens an explicit ``bdc.db.session_scope()`` per unit of work (one event, one
  sync page, one push outcome). There is no Flask app context in a worker; a transaction never spans
  a Wedof HTTP call, so a slow Wedof never holds database locks.
- **Ids, never payloads**: every task takes database ids, so Flower or the admin API can re-apply it.
- **Fork safety**: prefork children dispose the engines inherited from the parent
  (``worker_process_init``) so no two processes ever share a database connection.

Two queues: ``events`` (webhooks, pushes, maintenance) and ``sync`` (bulk syncs). Run them in separate
worker processes (``-Q events`` and ``-Q sync``) so a long sync never delays a webhook.
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import beat_init, celeryd_init, worker_process_init

from bdc.db import dispose_engines
from bdc.error_tracking import init_error_tracking_or_exit

TASK_MODULES = (
    "worker.tasks.events",
    "worker.tasks.sync",
    "worker.tasks.lifecycle",
    "worker.tasks.billing",
    "worker.tasks.maintenance",
    "worker.tasks.reconcile",
    "worker.tasks.notices",
    "worker.tasks.connectivity",
    "worker.tasks.privacy",
)

app = Celery("bdc")
app.config_from_object("celeryconfig")


@worker_process_init.connect
def _dispose_inherited_engines(**_kwargs) -> None:
    dispose_engines()


# Sentry starts in the worker's main process (before the pool forks: sentry-sdk's Celery
# integration wants it there) and in beat; a no-op unless SENTRY_DSN is set, an exit if it is malformed.
@celeryd_init.connect
def _worker_error_tracking(**_kwargs) -> None:
    init_error_tracking_or_exit("worker")


@beat_init.connect
def _beat_error_tracking(**_kwargs) -> None:
    init_error_tracking_or_exit("beat")


def send_soon(name: str, args: list | None = None, kwargs: dict | None = None) -> bool:
    """Queue a follow-up task, best effort: the beat runs the same work anyway when the broker is away."""
    try:
        # No result to wait for (results would subscribe to the backend); a dead broker fails fast.
        app.send_task(name, args=args or [], kwargs=kwargs or {}, ignore_result=True, retry=True,
                      retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5})
    except Exception as exc:  # noqa: BLE001 - kombu raises many transport-specific errors
        logging.getLogger("worker").warning("could not queue %s%s (%s)", name, args or kwargs or "",
                                            type(exc).__name__)
        return False
    return True


# Task, sync and Wedof metrics, and the worker's or beat's exporter (BDC_METRICS_PORT): signal handlers.
import worker.metrics  # noqa: E402,F401

# Imported here (not only listed in ``include``) so every process using this app, Flower included,
# knows the tasks by name: Flower's async-apply refuses a task it has not registered.
for _module in TASK_MODULES:
    __import__(_module)
