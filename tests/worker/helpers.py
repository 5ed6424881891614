"""Shared helpers of the worker tests: a tenant + connection, inbox rows as the receiver writes them,
and a field-by-field comparison of the data layer with the sandbox's ground truth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import requests
from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import (
    Beneficiary,
    Enrollment,
    EventStatus,
    Program,
    Tenant,
    User,
    WebhookEvent,
    WedofConnection,
)
from wedof.client import WedofClient
from wedof.mapping import enrollment_status_for
from wedof.mapping.values import datetime_utc, percent, whole_percent
from worker.task_names import QUEUE_OF

# The statuses an event ends in: waiting for one of them means the worker is done with it.
DONE = {EventStatus.PROCESSED, EventStatus.FAILED, EventStatus.IGNORED}


def make_connection(api_url: str, api_key: str, slug: str | None = None, rate: float = 500.0,
                    secret: str = "hook-secret") -> tuple[int, int]:
    """A tenant and its Wedof connection; returns (tenant_id, connection_id)."""
    slug = slug or f"t-{uuid.uuid4().hex[:10]}"
    with session_scope() as session:
        tenant = Tenant(name=slug, slug=slug)
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, base_url=api_url, api_key=api_key,
                                     webhook_secret=secret, rate_limit_per_second=rate)
        session.add(connection)
        session.flush()
        return tenant.id, connection.id


def insert_event(connection_id: int, body: bytes | str, event_type: str = "registrationFolder.updated",
                 delivery_id: str | None = None, payload_format: str = "wedof",
                 folder_external_id: str | None = None, status: EventStatus = EventStatus.RECEIVED) -> tuple[int, str]:
    """Store a delivery the way the receiver does (task id chosen before the insert); returns (id, task_id)."""
    text = body.decode() if isinstance(body, bytes) else body
    delivery_id = delivery_id or str(uuid.uuid4())
    task_id = str(uuid.uuid4())
    with session_scope() as session:
        event = WebhookEvent(connection_id=connection_id, delivery_id=delivery_id, event_type=event_type,
                             payload_format=payload_format, body=text, status=status, task_id=task_id,
                             folder_external_id=folder_external_id,
                             headers={"X-Wedof-Event": event_type, "X-Wedof-Delivery": delivery_id,
                                      "X-Wedof-Signature": "[redacted]"})
        session.add(event)
        session.flush()
        return event.id, task_id


def send(app, name: str, args: list, task_id: str | None = None) -> str:
    return app.send_task(name, args=args, queue=QUEUE_OF[name], task_id=task_id or str(uuid.uuid4())).id


def event_row(event_id: int) -> WebhookEvent:
    with session_scope() as session:
        return session.get(WebhookEvent, event_id)


def events_in(event_ids, statuses) -> bool:
    with session_scope() as session:
        rows = session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(list(event_ids)))).all()
        return len(rows) == len(list(event_ids)) and all(r.status in statuses for r in rows)


def envelope(external_id: str, kind: str = "stagiaire.updated") -> bytes:
    return json.dumps({"id": str(uuid.uuid4()), "type": kind, "data": {"externalId": external_id}}).encode()


def after_page(monkeypatch, number: int, action: Callable[[], None]) -> None:
    """Run ``action`` once, right after the Wedof client yields page ``number`` of a listing.

    How a test changes the sandbox (over its real HTTP control API) at an exact point of a sync.
    """
    original = WedofClient.iter_pages
    done: list[bool] = []

    def iter_pages(self, **params):
        for page in original(self, **params):
            yield page
            if page[0] == number and not done:
                done.append(True)
                action()

    monkeypatch.setattr(WedofClient, "iter_pages", iter_pages)


def sandbox_truth(sandbox) -> list[dict]:
    """Every folder as the sandbox holds it now (its ground truth)."""
    return json.loads(requests.get(f"{sandbox.url}/_sandbox/truth", timeout=120).content)


def truth_mismatches(tenant_id: int, folders: list[dict], complete: bool = False) -> list[str]:
    """Every difference between the sandbox's folders and the tenant's rows, field by field.

    ``complete``: ``folders`` is the whole truth, so any other enrollment of the tenant is an error too.
    """
    problems: list[str] = []
    with session_scope() as session:
        rows = session.execute(
            select(Enrollment, Beneficiary, User, Program)
            .join(Beneficiary, Enrollment.beneficiary_id == Beneficiary.id)
            .join(User, Beneficiary.user_id == User.id)
            .join(Program, Enrollment.program_id == Program.id)
            .where(Enrollment.tenant_id == tenant_id)
        ).all()
        held = {row.Enrollment.external_id: row for row in rows}
        for folder in folders:
            external_id = folder["externalId"]
            row = held.pop(external_id, None)
            if row is None:
                problems.append(f"{external_id}: missing")
                continue
            enrollment, beneficiary, user, program = row
            rate = percent(folder.get("completionRate"))
            expected = {
                "status": enrollment_status_for(folder["state"]),
                "wedof_state": folder["state"],
                "progress": whole_percent(rate) if rate is not None else 0,
                "wedof_last_update": datetime_utc(folder["lastUpdate"]),
                "attendee": str(folder["attendee"]["id"]),
                "first_name": folder["attendee"].get("firstName"),
                "last_name": folder["attendee"].get("lastName"),
                "program": folder["trainingActionInfo"]["externalId"],
            }
            actual = {
                "status": enrollment.status,
                "wedof_state": enrollment.wedof_state,
                "progress": enrollment.progress,
                "wedof_last_update": enrollment.wedof_last_update,
                "attendee": beneficiary.external_id,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "program": program.external_id,
            }
            for key, value in expected.items():
                if actual[key] != value:
                    problems.append(f"{external_id}.{key}: expected {value!r}, got {actual[key]!r}")
        if complete:
            problems.extend(f"{external_id}: not in the sandbox" for external_id in held)
    return problems
