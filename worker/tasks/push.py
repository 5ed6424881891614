"""Pushes BDC → Wedof: progress (``completionRate``) and the declarations inTraining / terminate / serviceDone.

Each task takes an enrollment id, talks to the Wedof connection of the enrollment's tenant, applies
the folder Wedof answers with (so our copy follows at once), and records the outcome in the audit
log (action ``<task name>``, ``details.outcome`` one of ``sent``, ``already_there``,
``refused_locally``, ``failed``).

- Progress is only sent in the states Wedof accepts it in (``PROGRESS_ALLOWED_STATES``); otherwise
  it is refused locally, with the reason, and Wedof is not called.
- A declaration first reads the folder (GET): when it is already in (or past) the target state the
  call is skipped as ``already_there``. We never guess that from an error text, and a retry after
  an ambiguous failure (5xx on a POST) re-reads before trying again, so nothing is declared twice.
- Validation errors (4xx) are final: audited as ``failed`` with Wedof's reason, no retry.
  Transient errors retry with backoff and jitter, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import Enrollment, WedofConnection
from wedof.client import WedofClient
from wedof.errors import WedofError, WedofRateLimitedError
from wedof.mapping import PROGRESS_ALLOWED_STATES, FolderRejected, apply_folder
from worker.celery_app import app
from worker.connections import ConnectionNotUsable, client_for
from worker.task_names import DECLARE_IN_TRAINING, DECLARE_SERVICE_DONE, DECLARE_TERMINATED, PUSH_PROGRESS
from worker.tasks.common import (
    MAX_COUNTDOWN,
    BadTaskArgument,
    as_id,
    backoff_seconds,
    is_transient_db_error,
    log,
    retry_on_conflict,
    short,
)

MAX_PUSH_RETRIES = 6
SERVICE_DONE_STATES = frozenset({"serviceDoneDeclared", "serviceDoneValidated"})


@dataclass(frozen=True)
class Target:
    enrollment_id: int
    tenant_id: int
    external_id: str
    wedof_state: str | None
    progress: int
    connection_id: int


@dataclass(frozen=True)
class Declaration:
    verb: str
    reached: frozenset[str]  # states in which the declaration is already done (or passed)
    call: Callable[[WedofClient, str], dict]


DECLARATIONS = {
    DECLARE_IN_TRAINING: Declaration(
        "inTraining", frozenset({"inTraining", "terminated"}) | SERVICE_DONE_STATES,
        lambda client, external_id: client.in_training(external_id, date=date.today()),
    ),
    DECLARE_TERMINATED: Declaration(
        "terminate", frozenset({"terminated"}) | SERVICE_DONE_STATES,
        lambda client, external_id: client.terminate(external_id, date=date.today()),
    ),
    DECLARE_SERVICE_DONE: Declaration(
        "serviceDone", SERVICE_DONE_STATES,
        lambda client, external_id: client.service_done(external_id, date=date.today()),
    ),
}


class Refused(RuntimeError):
    """Cannot be pushed, and retrying will not change that (the message says why)."""


def _load_target(enrollment_id: int) -> Target:
    with session_scope() as session:
        enrollment = session.get(Enrollment, enrollment_id)
        if enrollment is None:
            raise Refused("unknown enrollment id")
        if not enrollment.external_id:
            raise Refused("the enrollment has no Wedof folder (no external id)")
        connection_id = session.scalar(
            select(WedofConnection.id).where(WedofConnection.tenant_id == enrollment.tenant_id)
        )
        if connection_id is None:
            raise Refused("the enrollment's tenant has no Wedof connection")
        return Target(enrollment.id, enrollment.tenant_id, enrollment.external_id, enrollment.wedof_state,
                      enrollment.progress or 0, connection_id)


def _client(target: Target) -> WedofClient:
    with session_scope() as session:
        connection = session.get(WedofConnection, target.connection_id)
        if not connection.enabled:
            raise Refused("the Wedof connection is disabled")
        try:
            return client_for(connection)
        except ConnectionNotUsable as exc:
            raise Refused(str(exc)) from None


def _record(action: str, target: Target | None, enrollment_id: int, outcome: str, folder: dict | None = None,
            **details) -> None:
    """Audit the outcome; apply the folder Wedof returned in the same transaction."""
    with session_scope() as session:
        if folder is not None and target is not None:
            try:
                details["apply"] = apply_folder(session, target.tenant_id, folder, kind="all").outcome
            except FolderRejected as exc:
                details["apply"] = f"rejected: {exc}"
        record_audit(session, actor="worker", action=action,
                     tenant_id=target.tenant_id if target else None,
                     target=("enrollment", enrollment_id), details={"outcome": outcome, **details})


def _run_push(task, action: str, enrollment_id, work: Callable[[WedofClient, Target], tuple[str, dict | None, dict]]):
    try:
        enrollment_id = as_id(enrollment_id, "enrollment_id")
    except BadTaskArgument as exc:
        log.error("%s called with a bad argument: %s", action, exc)
        return {"status": "rejected", "reason": str(exc)}
    target = None
    try:
        target = _load_target(enrollment_id)
        with _client(target) as client:
            outcome, folder, details = work(client, target)
        retry_on_conflict(lambda: _record(action, target, enrollment_id, outcome, folder, **details), action)
        return {"status": outcome, **details}
    except Refused as exc:
        _record(action, target, enrollment_id, "failed" if target is None else "refused_locally", reason=str(exc))
        return {"status": "refused_locally", "reason": str(exc)}
    except WedofError as exc:
        if exc.transient and task.request.retries < MAX_PUSH_RETRIES and not task.request.called_directly:
            retry_after = exc.retry_after if isinstance(exc, WedofRateLimitedError) else None
            countdown = min(MAX_COUNTDOWN, backoff_seconds(task.request.retries + 1, retry_after))
            log.warning("%s(%s): %s; retry in %.1fs", action, enrollment_id, exc, countdown)
            raise task.retry(countdown=countdown, exc=exc) from None
        details = {"error": short(str(exc), 1000), "status_code": exc.status}
        if exc.violations:
            details["violations"] = exc.violations[:10]
        _record(action, target, enrollment_id, "failed", **details)
        return {"status": "failed", **details}
    except Exception as exc:
        if is_transient_db_error(exc) and task.request.retries < MAX_PUSH_RETRIES and not task.request.called_directly:
            raise task.retry(countdown=min(MAX_COUNTDOWN, backoff_seconds(task.request.retries + 1)), exc=exc) from None
        log.exception("%s(%s) failed", action, enrollment_id)
        reason = short(f"unexpected error: {type(exc).__name__}: {exc}", 1000)
        try:
            _record(action, target, enrollment_id, "failed", error=reason)
        except Exception:
            log.error("%s(%s): could not audit the failure", action, enrollment_id)
        return {"status": "failed", "error": reason}


def _push_progress(client: WedofClient, target: Target):
    if target.wedof_state not in PROGRESS_ALLOWED_STATES:
        raise Refused(f"Wedof accepts completionRate only in {sorted(PROGRESS_ALLOWED_STATES)}; "
                      f"the folder is {target.wedof_state!r}")
    folder = client.update_registration_folder(target.external_id, completion_rate=int(target.progress))
    return "sent", folder, {"completion_rate": int(target.progress), "external_id": target.external_id}


def _declare(action: str):
    declaration = DECLARATIONS[action]

    def work(client: WedofClient, target: Target):
        current = client.get_registration_folder(target.external_id)
        state = current.get("state")
        if state in declaration.reached:
            return "already_there", current, {"state": state, "external_id": target.external_id}
        folder = declaration.call(client, target.external_id)
        return "sent", folder, {"from_state": state, "state": folder.get("state"), "external_id": target.external_id}

    return work


@app.task(bind=True, name=PUSH_PROGRESS, max_retries=MAX_PUSH_RETRIES)
def push_progress(self, enrollment_id):
    return _run_push(self, PUSH_PROGRESS, enrollment_id, _push_progress)


@app.task(bind=True, name=DECLARE_IN_TRAINING, max_retries=MAX_PUSH_RETRIES)
def declare_in_training(self, enrollment_id):
    return _run_push(self, DECLARE_IN_TRAINING, enrollment_id, _declare(DECLARE_IN_TRAINING))


@app.task(bind=True, name=DECLARE_TERMINATED, max_retries=MAX_PUSH_RETRIES)
def declare_terminated(self, enrollment_id):
    return _run_push(self, DECLARE_TERMINATED, enrollment_id, _declare(DECLARE_TERMINATED))


@app.task(bind=True, name=DECLARE_SERVICE_DONE, max_retries=MAX_PUSH_RETRIES)
def declare_service_done(self, enrollment_id):
    return _run_push(self, DECLARE_SERVICE_DONE, enrollment_id, _declare(DECLARE_SERVICE_DONE))
