"""``wedof.process_event``: apply one stored webhook delivery to the data layer, exactly once.

The inbox row (:mod:`bdc.inbox`) is the source of truth: the task claims it, runs the handler the
event registry (:mod:`wedof.events`) names for its event type, on the folder the delivery carries
or fetched from Wedof when it carries only an id, and marks the row ``processed`` in the SAME
transaction as the handler's writes: the effect commits together with the "done" mark, or not at all.
Failures follow :mod:`worker.policy`, counted on the row: a transient one defers it, a permanent
one (or the last attempt) marks it ``failed`` with the reason and ends the task in FAILURE.
"""

from __future__ import annotations

import uuid

from bdc import api_drift, inbox
from bdc.db import session_scope
from bdc.models import EventStatus, WedofConnection
from billing.evaluate import worth_billing
from lifecycle.evaluate import worth_evaluating
from privacy import forget_event_body
from wedof.drift import observe_one as observe_drift
from wedof.events import EVENT_HEADER, FETCH, DeliveryRejected, event_type_of, parse_delivery
from wedof.mapping import FolderRejected
from worker.celery_app import app, send_soon
from worker.connections import ConnectionNotUsable, client_for
from worker.policy import (
    BadTaskArgument,
    Failure,
    PermanentError,
    PolicyTask,
    Report,
    Superseded,
    as_id,
    retry_on_conflict,
)
from worker.task_names import BILL_FOLDER, EVALUATE_LIFECYCLE, PROCESS_EVENT


class EventReport(Report):
    """A claimed event's failures go on its inbox row; its attempts are counted there too."""

    can_park = True

    def __init__(self, event: inbox.ClaimedEvent, task_id: str):
        self.event, self.task_id, self.attempt = event, task_id, event.attempts

    def attempt_allowed(self, attempt: int, task) -> bool:
        return inbox.attempt_allowed(attempt)

    def retrying(self, failure: Failure, delay: float, parked: bool) -> bool:
        with session_scope() as session:
            return inbox.defer(session, self.event.id, self.task_id, delay, failure.reason, countdown=not parked)

    def failed(self, failure: Failure) -> None:
        with session_scope() as session:
            if not inbox.finish(session, self.event.id, self.task_id, EventStatus.FAILED, failure.reason,
                                error=failure.reason):
                raise Superseded(f"event {self.event.id} was taken over before it could be marked failed")


def _parse(event: inbox.ClaimedEvent):
    if event.body is None:
        raise PermanentError("the raw body was purged; the folder will be refreshed by the next sync")
    headers = dict(event.headers)
    if not any(str(k).lower() == EVENT_HEADER.lower() for k in headers):
        headers[EVENT_HEADER] = event.event_type
    try:
        return parse_delivery(headers, event.body.encode("utf-8"))
    except DeliveryRejected as exc:
        raise PermanentError(f"unreadable delivery ({exc.code}): {exc.message}") from None


def _fetch_folder(event: inbox.ClaimedEvent, external_id: str) -> dict:
    with session_scope() as session:
        connection = session.get(WedofConnection, event.connection_id)
        if connection is None:
            raise PermanentError(f"connection {event.connection_id} no longer exists")
        try:
            client = client_for(connection)
        except ConnectionNotUsable as exc:
            raise PermanentError(str(exc)) from None
    with client:
        return client.get_registration_folder(external_id)


def handle_event(event: inbox.ClaimedEvent, task_id: str) -> dict:
    """Run the registry's handler for a claimed event and mark it done in the same transaction."""
    parsed = _parse(event)
    kind = event_type_of(parsed.event_type, parsed.payload_format)
    if kind.handler is None:
        with session_scope() as session:
            inbox.finish(session, event.id, task_id, EventStatus.IGNORED, kind.ignore_reason)
        return {"status": "ignored", "reason": kind.ignore_reason}
    folder = _fetch_folder(event, parsed.folder_external_id) if kind.disposition == FETCH else parsed.folder

    def handle_and_mark():
        with session_scope() as session:
            try:
                result = kind.handler(session, event.tenant_id, folder)
            except FolderRejected as exc:
                raise PermanentError(f"folder refused: {exc}") from None
            if not inbox.finish(session, event.id, task_id, EventStatus.PROCESSED,
                                f"{kind.disposition}: {result.outcome}"):
                raise Superseded(f"event {event.id} is no longer held by task {task_id}")  # rolls back
            if result.erased:
                forget_event_body(session, event.id)  # the delivery repeats an erased person's data: not kept
            moved = result.enrollment_id is not None and result.outcome in ("created", "updated")
            # Billing asks even when nothing changed: a repeated toBill webhook finds a folder still due
            # (its first evaluation may have been lost with the broker); the check is one indexed read.
            return (result, moved and worth_evaluating(session, event.tenant_id, result.enrollment_id),
                    result.enrollment_id is not None and worth_billing(session, event.tenant_id, result.enrollment_id))

    try:
        result, evaluate, bill = retry_on_conflict(handle_and_mark, f"event {event.id}")
    finally:  # the folder's API drift, applied or refused: its own transaction, never raising into the mapping
        api_drift.note(event.connection_id, observe_drift(folder))
    if evaluate:
        send_soon(EVALUATE_LIFECYCLE, [result.enrollment_id])  # the folder moved: a declaration may be due, or void
    if bill:
        send_soon(BILL_FOLDER, [result.enrollment_id])  # toBill: an invoice is due; billed, paid: one moves on
    return {"status": "processed", "outcome": result.outcome, "enrollment_id": result.enrollment_id}


@app.task(base=PolicyTask, bind=True, name=PROCESS_EVENT, max_retries=None)
def process_event(self, event_id):
    event_id = as_id(event_id, "event_id")
    task_id = self.request.id or f"direct-{uuid.uuid4()}"
    with session_scope() as session:
        claimed = inbox.claim(session, event_id, task_id)
    if isinstance(claimed, inbox.NotClaimed):
        if claimed.status is None:
            raise BadTaskArgument(f"unknown event id {event_id}")
        return {"status": "skipped", "reason": claimed.reason}
    with self.reporting(EventReport(claimed, task_id)):
        if not inbox.attempt_allowed(claimed.attempts):
            # A message that keeps killing its worker (OOM, segfault) is claimed again each time: stop.
            raise PermanentError(f"gave up after {claimed.attempts - 1} attempts")
        return handle_event(claimed, task_id)
