"""Erasure (on request) and anonymisation (by retention): one code path.

What goes: the person's names, email, phone, address, birth date and the Wedof facts about them
(custom fields), free-text notes, the bilan results the host recorded (evaluations other than the
completion rate Wedof reports), every document row (and its file when stored here), the raw bodies of
the inbox events of their folders (and any header but the technical ones).
What stays, minus personal values: the folders' enrollments (state, billing, progress, dates: they keep
flowing from Wedof), the declarations made to Wedof (they are CPF records), the invoices (number, date,
amounts: French accounting law) with the buyer's name replaced by :data:`ERASED_NAME` and no address.
A tombstone keyed by the Wedof attendee id makes later webhooks and syncs leave the person's fields empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc.audit import record_audit
from bdc.models import Beneficiary, Enrollment, ErasedAttendee, WebhookEvent
from bdc.types import utcnow
from billing.document import render_pdf
from billing.issued import document_of
from privacy.holdings import Holdings, holdings_of
from wedof.mapping.apply import completion_evaluation_key

ERASED_NAME = "Bénéficiaire effacé"
ERASED_VALUE = "[effacé]"
REQUEST, RETENTION = "request", "retention"
# Inbox headers that say nothing about a person (the rest is dropped from an erased folder's events).
TECHNICAL_HEADERS = {"content-type", "content-length", "x-wedof-event", "x-wedof-delivery", "x-wedof-signature"}
_IDENTIFYING_FACTS = ("wedof_email", "wedof_pole_emploi_id")  # custom_fields keys that name the person
_SHORTEST_SCRUBBED = 3  # shorter values (initials, "FR") would blank unrelated text


def _personal_values(holdings: Holdings) -> set[str]:
    """The person's values as text, to find them repeated in free-form data (audit details, reasons)."""
    b, u = holdings.beneficiary, holdings.user
    facts = b.custom_fields or {}
    # Not the city or country alone: they name no one, and would blank unrelated text (a seller's address).
    values = [b.phone, b.address, b.birth_date.isoformat() if b.birth_date else None,
              *(str(facts[key]) for key in _IDENTIFYING_FACTS if facts.get(key))]
    if u is not None:
        full = " ".join(p for p in (u.first_name, u.last_name) if p)
        values += [u.first_name, u.last_name, u.email, full]
    return {v for v in values if v and len(v.strip()) >= _SHORTEST_SCRUBBED}


def scrub(value: Any, personal: set[str]) -> Any:
    """``value`` with every text holding one of ``personal`` replaced by :data:`ERASED_VALUE`."""
    if isinstance(value, str):
        return ERASED_VALUE if any(p in value for p in personal) else value
    if isinstance(value, dict):
        return {k: scrub(v, personal) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, personal) for v in value]
    return value


def _remove_stored_file(url: str | None) -> bool:
    """Delete a document's file when it is stored here (a file: URL); other URLs are the host's to delete."""
    if not url or urlparse(url).scheme != "file":
        return False
    path = Path(unquote(urlparse(url).path))
    if path.is_file():
        path.unlink()
        return True
    return False


def forget_raw_body(event: WebhookEvent, now) -> bool:
    """Drop an inbox event's raw body and its non-technical headers (True when there was a body)."""
    had_body = event.body is not None
    if had_body:
        event.body, event.body_purged_at = None, now
    headers = event.headers or {}
    kept = {name: value for name, value in headers.items() if name.lower() in TECHNICAL_HEADERS}
    if kept != headers:
        event.headers = kept
    return had_body


def forget_event_body(session: Session, event_id: int) -> bool:
    """The same for one event by id: a delivery for an erased attendee, once applied."""
    event = session.get(WebhookEvent, event_id)
    return event is not None and forget_raw_body(event, utcnow())


def lock_folders(session: Session, beneficiary_id: int) -> None:
    """Take the row locks the mapping takes on an attendee's enrollments, so an apply in flight ends
    first (and is overwritten) or starts after the tombstone is committed (and sees it)."""
    session.execute(select(Enrollment.id).where(Enrollment.beneficiary_id == beneficiary_id)
                    .order_by(Enrollment.id).with_for_update())


def anonymise(session: Session, beneficiary: Beneficiary, *, reason: str, actor: str) -> dict:
    """Empty everything personal held about ``beneficiary`` (see the module docstring), tombstone its
    attendee id and audit it, in the caller's transaction; returns what was done, as counts."""
    if reason not in (REQUEST, RETENTION):
        raise ValueError(f"reason must be {REQUEST!r} or {RETENTION!r}, not {reason!r}")
    now = utcnow()
    lock_folders(session, beneficiary.id)
    holdings = holdings_of(session, beneficiary)
    personal = _personal_values(holdings)
    user = holdings.user
    if user is not None:
        user.first_name = user.last_name = user.email = None
        user.is_active = False
    for name in ("phone", "birth_date", "address", "city", "postal_code", "country"):
        setattr(beneficiary, name, None)
    beneficiary.custom_fields = {}
    beneficiary.anonymised_at = now
    for enrollment in holdings.enrollments:
        enrollment.withdrawal_reason = None
    for appointment in holdings.appointments:
        appointment.notes = None
    # The completion rate is Wedof's progress of the folder (it keeps flowing); other evaluations are results.
    mirrors = {completion_evaluation_key(number) for number in holdings.folder_numbers}
    results = [e for e in holdings.evaluations if e.external_id not in mirrors]
    files = sum(_remove_stored_file(document.url) for document in holdings.documents)
    for row in (*results, *holdings.documents):
        session.delete(row)
    for action in holdings.lifecycle_actions:
        action.body, action.evidence = scrub(action.body, personal), scrub(action.evidence, personal)
        action.reason, action.wedof_answer = scrub(action.reason, personal), scrub(action.wedof_answer, personal)
    for invoice in holdings.invoices:
        invoice.document = {**(invoice.document or {}), "beneficiary_name": ERASED_NAME, "beneficiary_address": None}
        if invoice.pdf is not None:  # the stored PDF printed the name: printed again from the same numbers
            invoice.pdf = render_pdf(document_of(invoice))
    bodies = sum(forget_raw_body(event, now) for event in holdings.inbox_events)
    for event in holdings.inbox_events:
        event.last_error, event.status_reason = scrub(event.last_error, personal), scrub(event.status_reason, personal)
    for entry in holdings.audit_entries:
        entry.details = scrub(entry.details, personal)
    for notice in holdings.notices:
        notice.message = scrub(notice.message, personal)
    if beneficiary.external_id and holdings.tombstone is None:
        session.add(ErasedAttendee(tenant_id=beneficiary.tenant_id, attendee_id=beneficiary.external_id,
                                   reason=reason, erased_at=now))
    done = {"evaluations_deleted": len(results), "documents_deleted": len(holdings.documents),
            "files_deleted": files, "raw_bodies_deleted": bodies, "invoices_kept": len(holdings.invoices),
            "lifecycle_actions_kept": len(holdings.lifecycle_actions), "enrollments_kept": len(holdings.enrollments)}
    record_audit(session, actor=actor, action="beneficiary.erased" if reason == REQUEST else "beneficiary.anonymised",
                 tenant_id=beneficiary.tenant_id, target=("beneficiary", beneficiary.id),
                 details={"reason": reason, **done})
    session.flush()
    return done
