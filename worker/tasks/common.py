"""Helpers every task shares: argument checks, retry delays, database-error classification.

A task argument comes from a message anyone with broker access (or Flower) can write, so it is
checked before use; a bad one is logged and the task returns, it never raises into a retry loop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from bdc.settings import get_settings

log = logging.getLogger("worker")

# Celery countdowns stay short (the broker holds those messages unacknowledged, and Redis would
# re-deliver any message older than the visibility timeout); longer waits go to the inbox table.
MAX_COUNTDOWN = min(300.0, get_settings().celery_visibility_timeout / 2)
BACKOFF_BASE = get_settings().retry_backoff_base
BACKOFF_CAP = 6 * 3600.0
MAX_EVENT_ATTEMPTS = get_settings().max_event_attempts


class BadTaskArgument(ValueError):
    """A task was called with an argument it cannot use (logged, never retried)."""


def as_id(value: object, what: str = "id") -> int:
    """A positive database id from a task argument (int or digit string), or BadTaskArgument."""
    if isinstance(value, bool):
        raise BadTaskArgument(f"{what} must be an integer, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        number = int(value.strip())
    else:
        raise BadTaskArgument(f"{what} must be an integer, got {type(value).__name__} {str(value)[:40]!r}")
    if not 0 < number < 2**63:
        raise BadTaskArgument(f"{what} must be a positive integer, got {number}")
    return number


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter for attempt ``attempt`` (1-based), never below Retry-After."""
    exponent = min(max(attempt - 1, 0), 20)
    delay = min(BACKOFF_CAP, BACKOFF_BASE * 2**exponent)
    delay = delay / 2 + random.uniform(0, delay / 2)  # "equal jitter": spread, but never near zero
    if retry_after is not None:
        delay = max(delay, retry_after + random.uniform(0, 1))
    return round(delay, 3)


def is_transient_db_error(error: BaseException) -> bool:
    """A lost/refused database connection is worth retrying; a constraint violation is not."""
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


T = TypeVar("T")
CONFLICT_ATTEMPTS = 4


def retry_on_conflict(unit_of_work: Callable[..., T], what: str, *args) -> T:
    """Run a unit of work (it opens its own transaction), again when it lost an insert race.

    Two workers creating the same beneficiary or program at once: one commits, the other hits the
    unique constraint and rolls back; its next try reads the row the first one created.
    """
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return unit_of_work(*args)
        except IntegrityError as exc:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            log.info("%s lost an insert race (%s); trying again", what, type(exc.orig).__name__)
    raise AssertionError("unreachable")


def utcnow() -> datetime:
    return datetime.now(UTC)


def short(text: object, limit: int = 2000) -> str:
    """An error message fit for a database column and an admin's screen."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"
