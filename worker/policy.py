"""One failure policy for every task: ``@app.task(base=PolicyTask, bind=True, name=...)``.

A task body does its work and lets errors out; this module alone decides what they mean.

- **Bad argument** (:class:`BadTaskArgument`: a message anyone with broker access or Flower can
  write): logged once, the message rejected (Celery ``Reject``, Flower shows REJECTED), never retried.
- **Transient** (Wedof network errors, 5xx and 429, a lost or refused database connection, a
  serialization failure or deadlock, Redis away): retried after :func:`wedof.backoff.backoff_delay`.
  A wait up to :func:`max_countdown` is a Celery countdown (the broker holds the message); a longer
  one is handed to the row the task works on when it can take it (the inbox's ``next_attempt_at``,
  which the sweeper honours) and the task ends in RETRY. When the attempts run out, it is permanent.
- **Permanent** (anything else: a 4xx from Wedof, a refused folder, a local refusal): the reason is
  recorded where the admin looks (the task's :class:`Report`: its inbox row, its sync run, the
  audit log), then the task ends in state FAILURE with :class:`TaskFailed`, whose message is that
  reason. Flower lists it with its id arguments, ready to be re-applied once the cause is fixed.

A body that knows where its failures belong wraps its work in ``with self.reporting(report):``;
outside such a block (or without one) failures are only logged.

Celery's ``autoretry_for``/``retry_backoff`` is not used: its countdown is whole seconds from 1 s,
it ignores Retry-After, it counts attempts in the message only (an event counts them on its row,
across the sweeper's re-sends), and it would end a task in FAILURE before its reason is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TypeVar

from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from bdc.settings import get_settings
from bdc.types import utcnow
from wedof.backoff import backoff_delay
from wedof.errors import WedofError, WedofRateLimitedError

log = logging.getLogger("worker")

BACKOFF_CAP = 6 * 3600.0  # the longest wait between two attempts
# SQLSTATEs a retry of the same transaction can succeed after: serialization failure, deadlock.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


class BadTaskArgument(ValueError):
    """A task was called with an argument it cannot use (rejected, never retried)."""


class PermanentError(RuntimeError):
    """Retrying cannot help; the message says why. ``outcome`` names it in the audit log."""

    outcome = "failed"


class Refused(PermanentError):
    """Refused by us before Wedof was called (wrong state, no folder, no connection)."""

    outcome = "refused_locally"


class TaskFailed(Exception):
    """How a task ends in FAILURE: the message is the reason the admin reads (Flower, logs)."""


class Superseded(Exception):
    """Another task took the work over while this one ran: this one ends quietly."""


def max_countdown() -> float:
    """The longest wait kept in the broker: below Redis's visibility timeout, which re-delivers
    any unacknowledged message older than it."""
    return min(300.0, get_settings().celery_visibility_timeout / 2)


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


def short(text: object, limit: int = 2000) -> str:
    """An error message fit for a database column and an admin's screen."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def is_transient_db_error(error: BaseException) -> bool:
    """A lost/refused connection or a serialization failure is worth retrying; a constraint is not."""
    if isinstance(error, IntegrityError):
        return False
    if isinstance(error, OperationalError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    return bool(error.connection_invalidated) or getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


@dataclass(frozen=True)
class Failure:
    """What went wrong, as the policy and the admin see it."""

    reason: str
    transient: bool
    retry_after: float | None = None
    outcome: str = "failed"
    details: dict = field(default_factory=dict)  # status_code, violations: shown in the audit log
    unexpected: bool = False  # a bug or a case nobody foresaw: logged with its traceback

    @classmethod
    def of(cls, error: BaseException) -> Failure:
        if isinstance(error, PermanentError):
            return cls(str(error), False, outcome=error.outcome)
        if isinstance(error, WedofError):
            details: dict = {"status_code": error.status}
            if error.violations:
                details["violations"] = error.violations[:10]
            if error.transient:
                retry_after = error.retry_after if isinstance(error, WedofRateLimitedError) else None
                return cls(f"Wedof unavailable: {error}", True, retry_after=retry_after, details=details)
            return cls(f"Wedof refused: {error}", False, details=details)
        if is_transient_db_error(error):
            return cls(f"database unavailable: {type(error).__name__}: {short(error, 300)}", True)
        if isinstance(error, RedisError):
            return cls(f"Redis unavailable: {type(error).__name__}: {error}", True)
        return cls(f"unexpected error: {type(error).__name__}: {short(error, 500)}", False, unexpected=True)

    @property
    def refused_by_wedof(self) -> bool:
        """Wedof answered 4xx: the request itself was refused (never retried)."""
        return 400 <= (self.details.get("status_code") or 0) < 500

    def gave_up(self, attempts: int) -> Failure:
        return replace(self, reason=f"gave up after {attempts} attempts: {self.reason}", transient=False)


class Report:
    """Where a task's failures are recorded. This one records nothing: the log has them."""

    #: The attempt being made, when the work counts its own (an inbox row); else Celery's retries count.
    attempt: int | None = None
    #: Whether a long wait can be handed to the row (swept later) instead of a capped countdown.
    can_park = False

    def attempt_allowed(self, attempt: int, task: Task) -> bool:
        return task.max_retries is None or attempt <= task.max_retries + 1

    def retrying(self, failure: Failure, delay: float, parked: bool) -> bool:
        """A transient failure, retried in ``delay`` s. False: the work is no longer this task's."""
        return True

    def failed(self, failure: Failure) -> None:
        """A permanent failure (or the last attempt's): record it where the admin sees it."""


NO_REPORT = Report()
_PASS_THROUGH = (Retry, Reject, Ignore, TaskFailed, Superseded)


class PolicyTask(Task):
    """The base of every task: the failure policy above, applied around ``run``."""

    max_retries = 6

    def __call__(self, *args, **kwargs):
        # ``run`` directly: Task.__call__ would push a second request context (the tracer already did).
        try:
            return self.run(*args, **kwargs)
        except Superseded as exc:
            log.warning("%s: %s", self.name, exc)
            return {"status": "skipped", "reason": str(exc)}
        except _PASS_THROUGH:
            raise
        except BadTaskArgument as exc:
            log.error("%s rejected: %s", self.name, exc)
            raise Reject(str(exc), requeue=False) from None
        except Exception as exc:  # noqa: BLE001 - this is the one place failures are classified
            raise self._outcome(exc, NO_REPORT) from exc

    @contextmanager
    def reporting(self, report: Report) -> Iterator[None]:
        """Failures inside the block are recorded through ``report`` before the task ends or retries."""
        try:
            yield
        except _PASS_THROUGH:
            raise
        except BadTaskArgument:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._outcome(exc, report) from exc

    def _outcome(self, error: BaseException, report: Report) -> BaseException:
        """The exception that ends this try: a Retry, a TaskFailed, or Superseded."""
        failure = Failure.of(error)
        if failure.unexpected:
            log.error("%s%s: unexpected error", self.name, list(self.request.args or ()), exc_info=error)
        if failure.transient and not self.request.called_directly:  # called directly: no broker to retry through
            attempt = report.attempt if report.attempt is not None else self.request.retries + 1
            if report.attempt_allowed(attempt + 1, self):
                return self._retry(error, failure, report, attempt)
            failure = failure.gave_up(attempt)
        try:
            report.failed(failure)
        except Exception as bookkeeping:  # noqa: BLE001
            if isinstance(bookkeeping, Superseded) or not Failure.of(bookkeeping).transient:
                raise
            # The reason could not be recorded (the database is away): run again later rather
            # than end with nothing to show where the admin looks.
            log.warning("%s: failure not recorded (%s); retrying", self.name, type(bookkeeping).__name__)
            return self.retry(countdown=min(30.0, max_countdown()), exc=error, throw=False,
                              max_retries=self.request.retries + 1)
        log.error("%s%s failed: %s", self.name, list(self.request.args or ()), failure.reason)
        return TaskFailed(failure.reason)

    def _retry(self, error: BaseException, failure: Failure, report: Report, attempt: int) -> BaseException:
        settings = get_settings()
        delay = backoff_delay(attempt, base=settings.retry_backoff_base, cap=BACKOFF_CAP,
                              retry_after=failure.retry_after)
        parked = report.can_park and delay > max_countdown()
        if not parked:
            delay = min(delay, max_countdown())
        try:
            if not report.retrying(failure, delay, parked):
                return Superseded("the work was taken over by another task")
        except Exception as bookkeeping:  # noqa: BLE001
            if isinstance(bookkeeping, Superseded) or not Failure.of(bookkeeping).transient:
                raise
            # The database is away too: retry the same message; what it works on still names it.
            parked, delay = False, min(delay, max_countdown())
        log.warning("%s%s attempt %s failed (%s); next attempt in %.1fs%s", self.name,
                    list(self.request.args or ()), attempt, failure.reason, delay,
                    " (parked for the sweeper)" if parked else "")
        if parked:
            # State RETRY without a new message: the row is due at next_attempt_at and swept then.
            return Retry(f"{failure.reason}; next attempt at {utcnow() + timedelta(seconds=delay):%H:%M:%S} UTC",
                         exc=error)
        return self.retry(countdown=delay, exc=error, throw=False)


T = TypeVar("T")
CONFLICT_ATTEMPTS = 4


def retry_on_conflict(unit_of_work: Callable[..., T], what: str, *args) -> T:
    """Run a unit of work (it opens its own transaction), again when it lost an insert race.

    Two workers creating the same beneficiary or program at once: one commits, the other hits the
    unique constraint and rolls back; its next try reads the row the first one created.
    """
    retrying = Retrying(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(CONFLICT_ATTEMPTS),
                        reraise=True,
                        before_sleep=lambda state: log.info("%s lost an insert race; trying again", what))
    return retrying(unit_of_work, *args)
