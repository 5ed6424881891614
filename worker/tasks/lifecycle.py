"""The lifecycle tasks: evaluate the rules, and carry an action out at Wedof, exactly once.

- ``wedof.evaluate_lifecycle(enrollment_id)``: after its evidence changed or its folder was applied.
- ``wedof.evaluate_lifecycles(tenant_id=None)``: beat, every tenant (or one after a sync), in pages.
- ``wedof.carry_out_action(action_id)``: the one sender of declarations and completion rates. The
  intent is committed first (``sent``); then the folder is READ, and when Wedof already shows what the
  action says (an earlier answer was lost, or someone declared it by hand) the action is ``done``
  without a call; when the folder has gone past where the action applies (the attendee cancelled
  meanwhile, the service was declared done) it is ``cancelled``, nothing sent; else the call is made and Wedof's
  answer applied. A refusal (4xx) is ``refused``
  with Wedof's violations and never retried; transient errors retry under :mod:`worker.policy`, each
  retry reading the folder again before anything is sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select

from bdc.audit import record_audit
from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleSettings,
)
from bdc.types import utcnow
from lifecycle import actions
from lifecycle.evaluate import evaluate_page, settings_of
from lifecycle.rules import moved_past
from wedof.client import WedofClient
from wedof.errors import WedofValidationError
from wedof.mapping import DECLARATIONS, FolderRejected, apply_folder
from worker.celery_app import app, send_soon
from worker.connections import tenant_client
from worker.policy import BadTaskArgument, Failure, PolicyTask, Report, as_id, log, retry_on_conflict
from worker.task_names import CARRY_OUT_ACTION, EVALUATE_LIFECYCLE, EVALUATE_LIFECYCLES

# What Wedof shows once each kind of action is in effect.
REACHED = {
    LifecycleKind.ENTRY: DECLARATIONS["inTraining"].reached,
    LifecycleKind.END: DECLARATIONS["serviceDone"].reached,
    LifecycleKind.ABANDON: DECLARATIONS["serviceDone"].reached,
}


def _send_actions(action_ids: list[int]) -> None:
    """Queue each action's task, once: evaluations leave a queued action alone until it is presumed lost."""
    # Best effort: an action not queued (the broker is away) is handed back by the next evaluation.
    queued = [action_id for action_id in action_ids if send_soon(CARRY_OUT_ACTION, [action_id])]
    if queued:
        with session_scope() as session:
            actions.mark_queued(session, queued)


def _evaluate(settings_id: int, **page) -> tuple[list[int], int | None, int]:
    def unit():
        with session_scope() as session:
            outcome = evaluate_page(session, session.get(LifecycleSettings, settings_id), **page)
            return outcome.to_send, outcome.last_id, outcome.evaluated

    return retry_on_conflict(unit, "lifecycle evaluation")  # two evaluations proposing at once: one wins


@app.task(base=PolicyTask, bind=True, name=EVALUATE_LIFECYCLE, max_retries=3)
def evaluate_lifecycle(self, enrollment_id):
    enrollment_id = as_id(enrollment_id, "enrollment_id")
    with session_scope() as session:
        tenant_id = session.scalar(select(Enrollment.tenant_id).where(Enrollment.id == enrollment_id))
        if tenant_id is None:
            raise BadTaskArgument(f"unknown enrollment id {enrollment_id}")
        settings = settings_of(session, tenant_id)
        settings_id = settings.id if settings is not None else None
    if settings_id is None:
        return {"status": "skipped", "reason": "the tenant has no lifecycle settings"}
    to_send, _last, evaluated = _evaluate(settings_id, enrollment_ids=[enrollment_id])
    _send_actions(to_send)
    return {"status": "ok", "evaluated": evaluated, "to_send": to_send}


@app.task(base=PolicyTask, bind=True, name=EVALUATE_LIFECYCLES, max_retries=0)
def evaluate_lifecycles(self, tenant_id=None):
    """Every tenant with lifecycle settings (or the one given), all enrollments, a page at a time."""
    query = select(LifecycleSettings.id)
    if tenant_id is not None:
        query = query.where(LifecycleSettings.tenant_id == as_id(tenant_id, "tenant_id"))
    with session_scope() as session:
        settings_ids = list(session.scalars(query))
    evaluated = sent = 0
    for settings_id in settings_ids:
        after = 0
        while after is not None:
            to_send, after, count = _evaluate(settings_id, after_id=after)
            _send_actions(to_send)
            evaluated, sent = evaluated + count, sent + len(to_send)
    return {"status": "ok", "tenants": len(settings_ids), "evaluated": evaluated, "sent": sent}


@dataclass(frozen=True)
class Plan:
    action_id: int
    kind: LifecycleKind
    body: dict
    external_id: str
    tenant_id: int
    enrollment_id: int
    trace: bool


class ActionReport(Report):
    """An action's failures go on its row (refused with Wedof's violations, or failed) and notify staff."""

    def __init__(self, action_id: int):
        self.action_id = action_id

    def failed(self, failure: Failure) -> None:
        refused = failure.refused_by_wedof
        with session_scope() as session:
            actions.finish(session, self.action_id, ActionStatus.REFUSED if refused else ActionStatus.FAILED,
                           reason=failure.reason,
                           answer={"violations": failure.details.get("violations", [])} if refused else None)


def _plan(session, action: LifecycleAction) -> Plan:
    enrollment = session.get(Enrollment, action.enrollment_id)
    settings = settings_of(session, action.tenant_id)
    return Plan(action.id, action.kind, dict(action.body or {}), enrollment.external_id, action.tenant_id,
                enrollment.id, bool(settings and settings.trace_activities))


def already_there(plan: Plan, folder: dict) -> bool:
    """Whether Wedof already shows what the action says (read before any call, never guessed from an error)."""
    if plan.kind == LifecycleKind.PROGRESS:
        return folder.get("completionRate") == plan.body["completionRate"]
    if plan.kind == LifecycleKind.CANCEL:
        return str(folder.get("state") or "").startswith("canceled")
    return folder.get("state") in REACHED[plan.kind]


def _call(client: WedofClient, plan: Plan) -> dict:
    body, external_id = plan.body, plan.external_id
    if plan.kind == LifecycleKind.ENTRY:
        return client.in_training(external_id, date=body["date"])
    if plan.kind == LifecycleKind.PROGRESS:
        return client.update_registration_folder(external_id, completion_rate=body["completionRate"])
    if plan.kind == LifecycleKind.CANCEL:
        return client.cancel(external_id, code=body["code"], description=body.get("description"))
    return client.service_done(external_id, date=body["date"], code=body["code"],
                               absence_duration=body["absenceDuration"],
                               force_majeure_absence=body["forceMajeureAbsence"],
                               training_duration=body["trainingDuration"])


def _trace(client: WedofClient, plan: Plan) -> None:
    """The declaration as a Wedof activity of the folder; a failure here never undoes the declaration."""
    try:
        client.create_folder_activity(plan.external_id, title=f"BDC: {plan.kind.value} declared",
                                      description=f"{plan.body}", event_time=utcnow())
    except Exception as exc:  # noqa: BLE001 - logged and audited; the declaration itself is done
        log.warning("action %s: the Wedof activity was not recorded (%s)", plan.action_id, exc)
        with session_scope() as session:
            record_audit(session, actor="worker", action="lifecycle.activity_failed", tenant_id=plan.tenant_id,
                         target=("lifecycle_action", plan.action_id), details={"error": str(exc)[:500]})


def _answer(folder: dict) -> dict:
    history = folder.get("history") if isinstance(folder.get("history"), dict) else {}
    return {"state": folder.get("state"), "completionRate": folder.get("completionRate"),
            "lastUpdate": folder.get("lastUpdate"),
            "history": {k: history.get(k) for k in ("inTrainingDate", "terminatedDate", "serviceDoneDeclaredDate",
                                                     "canceledByOrganismDate") if k in history}}


# Each Wedof call is one attempt (see tenant_client), so transient failures spend retries fast: 16 attempts
# span about 45 min of Wedof or database trouble in production (backoff from 2 s, at most 5 min apart)
# before the action is failed and staff are told.
@app.task(base=PolicyTask, bind=True, name=CARRY_OUT_ACTION, max_retries=15)
def carry_out_action(self, action_id):
    action_id = as_id(action_id, "action_id")
    task_id = self.request.id or f"direct-{uuid.uuid4()}"
    with session_scope() as session:
        action = actions.start(session, action_id, task_id)
        if action is None:
            row = session.get(LifecycleAction, action_id)
            if row is None:
                raise BadTaskArgument(f"unknown action id {action_id}")
            return {"status": "skipped", "reason": f"the action is {row.status.value}"}
        plan = _plan(session, action)
    with self.reporting(ActionReport(action_id)):
        with tenant_client(plan.tenant_id) as client:
            outcome, folder = read_then_call(client, plan)

        def record():
            with session_scope() as session:
                if outcome == "moved_on":
                    actions.moved_on(session, action_id, str(folder.get("state")))
                else:
                    actions.finish(session, action_id, ActionStatus.DONE,
                                   answer={"outcome": outcome, **_answer(folder)})
                try:
                    apply_folder(session, plan.tenant_id, folder)  # our copy follows Wedof at once
                except FolderRejected as exc:
                    log.warning("action %s: Wedof's answer was not applied: %s", action_id, exc)

        retry_on_conflict(record, f"action {action_id}")
    send_soon(EVALUATE_LIFECYCLE, [plan.enrollment_id])  # the next rule may be due now (a rate after the entry)
    return {"status": "cancelled" if outcome == "moved_on" else "done", "outcome": outcome, "action_id": action_id}


def read_then_call(client: WedofClient, plan: Plan) -> tuple[str, dict]:
    """Read the folder, then call only if Wedof does not show the action yet and still allows it."""
    current = client.get_registration_folder(plan.external_id)
    if already_there(plan, current):
        return "already_there", current
    if moved_past(plan.kind, current.get("state")):
        return "moved_on", current
    try:
        folder = _call(client, plan)
    except WedofValidationError:
        # Refused: read again before calling it a refusal. Another hand may have declared it since
        # the read (a task presumed lost that was not): then it is done, and nothing was sent twice.
        current = client.get_registration_folder(plan.external_id)
        if already_there(plan, current):
            return "already_there", current
        raise
    if plan.trace:
        _trace(client, plan)
    return "sent", folder
