"""Tasks that only the error-tracking tests load into a real worker (``celery worker --include`` this).

They run on the product's Celery app, so the worker's own Sentry wiring (worker/celery_app.py) is
what reports them.
"""

from __future__ import annotations

import logging

import sentry_sdk

from worker.celery_app import app

log = logging.getLogger("worker")


@app.task(name="tests.ops.error_tracking_state", ignore_result=False)
def error_tracking_state() -> dict:
    """Whether Sentry is on in this (prefork child) process, and how."""
    client = sentry_sdk.get_client()
    return {"active": client.is_active(), "dsn": client.options.get("dsn") if client.is_active() else None,
            "component": sentry_sdk.get_global_scope()._tags.get("component")}


@app.task(name="tests.ops.fail_with_personal_data")
def fail_with_personal_data(attendee: dict) -> None:
    # A message anyone with broker access can write: personal data in the arguments, the log and
    # the error, as a careless task could have.
    log.info("mapping the attendee %s", attendee)
    raise ValueError(f"cannot map the attendee {attendee!r}")
