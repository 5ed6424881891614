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
- Failures follow :mod:`worker.policy`: refusals (ours or Wedof's 4xx, with its violations) are
  audited and end the task in FAILURE; transient errors retry with backoff and jitter.
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
from wedof.mapping import DECLARATIONS, PROGRESS_ALLOWED_STATES, FolderRejected, apply_folder
from worker.celery_app import app
from worker.connections import ConnectionNotUsable, client_for
from worker.policy import Failure, PolicyTask, Refused, Report, as_id, retry_on_conflict
from worker.task_names import DECLARE_IN_TRAINING, DECLARE_SERVICE_DONE, DECLARE_TERMINATED, PUSH_PROGRESS

# Which declaration each task makes, and the client call that makes it (dated today).
DECLARATION_OF_TASK = {DECLARE_IN_TRAINING: "inTraining", DECLARE_TERMINATED: "terminated",
                       DECLARE_SERVICE_DONE: "serviceDone"}
_CALLS: dict[str, Callable[[WedofClient, str], dict]] = {
    "inTraining": lambda client, external_id: client.in_training(external_id, date=date.today()),
    "terminated": lambda client, external_id: client.terminate(external_id, date=date.today()),
    "serviceDone": lambda client, external_id: client.service_done(external_id, date=date.today()),
}


@dataclass(frozen=True)
class Target:
    enrollment_id: int
    tenant_id: int
    external_id: str
    wedof_state: str | None
    progress: int
    connection_id: int


class PushReport(Report):
    """A push's failures go to the audit log, on the enrollment, with Wedof's reason and violations."""

    def __init__(self, action: str, enrollment_id: int):
        self.action, self.enrollment_id = action, enrollment_id
        self.target: Target | None = None

    def failed(self, failure: Failure) -> None:
        _record(self.action, self.target, self.enrollment_id, failure.outcome, reason=failure.reason,
                **failure.details)


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
                details["apply"] = apply_folder(session, target.tenant_id, folder).outcome
            except FolderRejected as exc:
                details["apply"] = f"rejected: {exc}"
        record_audit(session, actor="worker", action=action,
                     tenant_id=target.tenant_id if target else None,
                     target=("enrollment", enrollment_id), details={"outcome": outcome, **details})


def _push(task, action: str, enrollment_id, work: Callable[[WedofClient, Target], tuple[str, dict | None, dict]]):
    enrollment_id = as_id(enrollment_id, "enrollment_id")
    report = PushReport(action, enrollment_id)
    with task.reporting(report):
        report.target = target = _load_target(enrollment_id)
        with _client(target) as client:
            outcome, folder, details = work(client, target)
        retry_on_conflict(lambda: _record(action, target, enrollment_id, outcome, folder, **details), action)
        return {"status": outcome, **details}


def _push_progress(client: WedofClient, target: Target):
    if target.wedof_state not in PROGRESS_ALLOWED_STATES:
        raise Refused(f"Wedof accepts completionRate only in {sorted(PROGRESS_ALLOWED_STATES)}; "
                      f"the folder is {target.wedof_state!r}")
    folder = client.update_registration_folder(target.external_id, completion_rate=int(target.progress))
    return "sent", folder, {"completion_rate": int(target.progress), "external_id": target.external_id}


def _declare(action: str):
    name = DECLARATION_OF_TASK[action]
    declaration, call = DECLARATIONS[name], _CALLS[name]

    def work(client: WedofClient, target: Target):
        current = client.get_registration_folder(target.external_id)
        state = current.get("state")
        if state in declaration.reached:
            return "already_there", current, {"state": state, "external_id": target.external_id}
        folder = call(client, target.external_id)
        return "sent", folder, {"from_state": state, "state": folder.get("state"), "external_id": target.external_id}

    return work


@app.task(base=PolicyTask, bind=True, name=PUSH_PROGRESS)
def push_progress(self, enrollment_id):
    return _push(self, PUSH_PROGRESS, enrollment_id, _push_progress)


@app.task(base=PolicyTask, bind=True, name=DECLARE_IN_TRAINING)
def declare_in_training(self, enrollment_id):
    return _push(self, DECLARE_IN_TRAINING, enrollment_id, _declare(DECLARE_IN_TRAINING))


@app.task(base=PolicyTask, bind=True, name=DECLARE_TERMINATED)
def declare_terminated(self, enrollment_id):
    return _push(self, DECLARE_TERMINATED, enrollment_id, _declare(DECLARE_TERMINATED))


@app.task(base=PolicyTask, bind=True, name=DECLARE_SERVICE_DONE)
def declare_service_done(self, enrollment_id):
    return _push(self, DECLARE_SERVICE_DONE, enrollment_id, _declare(DECLARE_SERVICE_DONE))
