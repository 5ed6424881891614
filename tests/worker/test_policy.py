"""The one failure policy, piece by piece: what each error means, the backoff, hostile task arguments,
and a task called directly (no broker: a failure is final). Real tasks under real workers and Flower
are in test_flower.py, test_resilience.py and the chaos run."""

from __future__ import annotations

import psycopg
import pytest
from celery import Celery
from celery.exceptions import Reject
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from wedof.backoff import backoff_delay
from wedof.errors import (
    WedofAuthenticationError,
    WedofNetworkError,
    WedofRateLimitedError,
    WedofServerError,
    WedofValidationError,
)
from worker.policy import (
    BadTaskArgument,
    Failure,
    PermanentError,
    PolicyTask,
    Refused,
    Report,
    TaskFailed,
    as_id,
    retry_on_conflict,
)


def _db_error(cls, sqlstate=None, invalidated=False):
    orig = psycopg.errors.lookup(sqlstate)("x") if sqlstate else Exception("x")
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize("error, transient", [
    (WedofServerError("boom", status=503), True),
    (WedofNetworkError("reset"), True),
    (WedofRateLimitedError("slow down", status=429, retry_after=7), True),
    (WedofAuthenticationError("revoked", status=401), False),
    (WedofValidationError("no", status=400, violations=[{"propertyPath": "date", "title": "bad"}]), False),
    (_db_error(OperationalError), True),  # connection refused, server restarting
    (_db_error(DBAPIError, invalidated=True), True),  # connection dropped mid-statement
    (_db_error(DBAPIError, "40001"), True),  # serialization failure
    (_db_error(DBAPIError, "40P01"), True),  # deadlock
    (_db_error(IntegrityError, "23505"), False),  # a constraint: retrying the same thing cannot help
    (RedisConnectionError("gone"), True),
    (PermanentError("purged body"), False),
    (Refused("wrong state"), False),
    (KeyError("surprise"), False),
])
def test_what_each_error_means(error, transient):
    failure = Failure.of(error)
    assert failure.transient is transient and failure.reason


def test_a_failure_keeps_what_the_admin_needs():
    refused = Failure.of(WedofValidationError("transition refused", status=400, method="POST", path="/x",
                                              violations=[{"propertyPath": "date", "title": "too early"}] * 12))
    assert refused.reason == "Wedof refused: HTTP 400: transition refused (POST /x)"
    assert refused.details["status_code"] == 400 and len(refused.details["violations"]) == 10
    assert Failure.of(WedofRateLimitedError("slow", status=429, retry_after=7)).retry_after == 7
    assert Failure.of(Refused("no folder")).outcome == "refused_locally"
    assert Failure.of(KeyError("x")).unexpected and not Failure.of(PermanentError("x")).unexpected
    assert Failure.of(WedofServerError("boom")).gave_up(4).reason.startswith("gave up after 4 attempts: ")


@pytest.mark.parametrize("attempt", [1, 2, 5, 12, 40, 10**6])
def test_backoff_doubles_with_jitter_within_its_cap(attempt):
    full = min(60.0, 0.5 * 2 ** min(attempt - 1, 30))
    delays = [backoff_delay(attempt, base=0.5, cap=60.0) for _ in range(200)]
    assert all(full / 2 <= d <= full + 0.001 for d in delays)
    assert len(set(delays)) > 1  # jitter: workers do not come back together


def test_backoff_never_undercuts_retry_after():
    assert all(30 <= backoff_delay(1, base=0.5, cap=60, retry_after=30) <= 31 for _ in range(100))
    assert all(backoff_delay(1, base=0.5, cap=60, retry_after=-5) <= 0.5 for _ in range(100))  # nonsense ignored


@pytest.mark.parametrize("value", ["abc", None, -1, 0, 2**63, True, 1.5, "1e3", [1], {"id": 1}, " ", "9" * 19])
def test_hostile_ids_are_bad_arguments(value):
    with pytest.raises(BadTaskArgument):
        as_id(value, "event_id")


@pytest.mark.parametrize("value, expected", [(42, 42), ("42", 42), (" 7 ", 7)])
def test_ids(value, expected):
    assert as_id(value) == expected


class Recorder(Report):
    def __init__(self):
        self.failures: list[Failure] = []

    def failed(self, failure: Failure) -> None:
        self.failures.append(failure)


app = Celery("policy-test")
recorder = Recorder()


@app.task(base=PolicyTask, bind=True, name="test.policy")
def task_under_policy(self, what):
    what = as_id(what, "what")
    with self.reporting(recorder):
        if what == 1:
            raise WedofValidationError("transition refused", status=400)
        if what == 2:
            raise WedofServerError("down", status=503)
        return {"status": "done"}


def test_a_task_called_directly_records_then_fails_with_the_reason():
    recorder.failures.clear()
    assert task_under_policy(3) == {"status": "done"}
    with pytest.raises(TaskFailed, match="Wedof refused: HTTP 400: transition refused"):
        task_under_policy(1)
    # Called directly there is no broker to retry through: a transient failure is final too.
    with pytest.raises(TaskFailed, match="Wedof unavailable: HTTP 503"):
        task_under_policy(2)
    assert [f.reason for f in recorder.failures] == ["Wedof refused: HTTP 400: transition refused",
                                                     "Wedof unavailable: HTTP 503: down"]
    with pytest.raises(Reject, match="what must be an integer"):
        task_under_policy("x")
    assert len(recorder.failures) == 2  # a bad argument is no failure of the work


def test_an_insert_race_is_retried_then_let_through():
    calls = []

    def lose_twice():
        calls.append(1)
        if len(calls) < 3:
            raise _db_error(IntegrityError, "23505")
        return "won"

    assert retry_on_conflict(lose_twice, "test") == "won" and len(calls) == 3
    with pytest.raises(IntegrityError):
        retry_on_conflict(lambda: (_ for _ in ()).throw(_db_error(IntegrityError, "23505")), "test")
