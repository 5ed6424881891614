"""Billing in the admin API: invoices (list, one, PDF, CSV), what is due, release, retry, cancel, settings.

Invoice statuses move only through :mod:`billing.invoices`; sending is the worker's
(``wedof.send_invoice``, sent by name). A release reserves numbers here, in the request's
transaction, and queues the sends after the commit: a number is never sent before it is recorded.
"""

from __future__ import annotations

import calendar
import re
from datetime import date
from decimal import Decimal

from flask import Response, jsonify, stream_with_context
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from bdc.audit import changes, record_audit
from bdc.models import BillingMode, BillingSettings, Invoice, InvoiceStatus
from bdc.types import utcnow
from billing import evaluate, invoices, numbers
from billing.export import InvoiceLine, invoices_csv
from billing.issued import pdf_of
from webapp.admin import bp
from webapp.admin.common import db_session
from webapp.admin.lifecycle import queue_task
from webapp.admin.pagination import paginate
from webapp.admin.scope import current_principal, resolve_tenant, visible_row
from webapp.admin.serializers import billing_settings_json, invoice_json
from webapp.admin.validation import field, json_object, query_choice, query_text, reject_unknown
from webapp.auth import admin_required
from webapp.errors import ApiError
from worker.task_names import SEND_INVOICE

MAX_RELEASE = 500
EXPORT_PAGE = 1000
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _queue_invoices(invoice_ids: list[int], what: str) -> list[str]:
    task_ids = [queue_task(SEND_INVOICE, [invoice_id], what) for invoice_id in invoice_ids]
    if invoice_ids:
        with db_session() as session:
            invoices.mark_queued(session, invoice_ids)
    return task_ids


def _query_day(name: str) -> date | None:
    raw = query_text(name, 10)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a date like 2026-12-01.") from None


def _filtered(tenant_id: int):
    status = query_choice("status", [s.value for s in InvoiceStatus])
    start, end = _query_day("from"), _query_day("to")
    if start and end and end < start:
        raise ApiError(400, "invalid_parameter", "to is before from.")
    text = query_text("q", 100)
    if text and _CONTROL.search(text):  # PostgreSQL refuses NUL in a text parameter: a 500, not an answer
        raise ApiError(400, "invalid_parameter", "q must not hold control characters.")
    stmt = select(Invoice).where(Invoice.tenant_id == tenant_id)
    if status:
        stmt = stmt.where(Invoice.status == InvoiceStatus(status))
    if start:
        stmt = stmt.where(Invoice.issue_date >= start)
    if end:
        stmt = stmt.where(Invoice.issue_date <= end)
    if text:
        # Matched literally: numbers may hold "_" (a format literal, which the old stripping removed from
        # the search), and "%", "_" or "\\" (PostgreSQL's LIKE escape) are characters to find, not patterns.
        stmt = stmt.where(or_(Invoice.number.icontains(text, autoescape=True),
                              Invoice.folder_number.icontains(text, autoescape=True)))
    return stmt


@bp.get("/invoices")
@admin_required
def list_invoices():
    with db_session() as session:
        tenant = resolve_tenant(session)
        stmt = _filtered(tenant.id).order_by(Invoice.id.desc())
        return jsonify(paginate(session, stmt, invoice_json))


@bp.get("/invoices/<int:invoice_id>")
@admin_required
def get_invoice(invoice_id: int):
    with db_session() as session:
        return jsonify(invoice_json(visible_row(session, Invoice, invoice_id, "invoice")))


@bp.get("/invoices/<int:invoice_id>/pdf")
@admin_required
def invoice_pdf(invoice_id: int):
    with db_session() as session:
        invoice = visible_row(session, Invoice, invoice_id, "invoice")
        data, number = pdf_of(invoice), invoice.number
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in number)
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="facture-{safe}.pdf"'})


@bp.get("/invoices/export.csv")
@admin_required
def export_invoices():
    """Accounting export: every invoice of the period (issue date) and status, streamed a page at a time."""
    with db_session() as session:
        tenant_id = resolve_tenant(session).id
        stmt = _filtered(tenant_id).order_by(Invoice.issue_date, Invoice.id)

    def lines():
        offset = 0
        while True:
            with db_session() as session:
                batch = [_line(invoice) for invoice in session.scalars(stmt.offset(offset).limit(EXPORT_PAGE))]
            yield from batch
            if len(batch) < EXPORT_PAGE:
                return
            offset += EXPORT_PAGE

    return Response(stream_with_context(invoices_csv(lines())), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="factures.csv"'})


def _line(invoice: Invoice) -> InvoiceLine:
    frozen = invoice.document or {}
    return InvoiceLine(number=invoice.number, issue_date=invoice.issue_date, status=invoice.status.value,
                       folder_number=invoice.folder_number, beneficiary_name=frozen.get("beneficiary_name") or "",
                       training_title=frozen.get("training_title") or "", amount_excl=invoice.amount_excl,
                       vat_rate=invoice.vat_rate, vat_amount=invoice.vat_amount, amount_incl=invoice.amount_incl,
                       currency=invoice.currency, billed_at=invoice.billed_at, paid_at=invoice.paid_on,
                       paid_amount=invoice.paid_amount)


@bp.get("/invoices/due")
@admin_required
def due_invoices():
    """Folders due an invoice (toBill, none yet), with their amounts and the number each would take."""
    with db_session() as session:
        tenant = resolve_tenant(session)
        settings = evaluate.settings_of(session, tenant.id)
        dues = evaluate.due(session, tenant.id, limit=MAX_RELEASE)
        issued = evaluate.tenant_today(session, tenant.id)
        fmt = settings.number_format if settings else BillingSettings.defaults(tenant.id).number_format
        items, ahead = [], 0
        for item in dues:
            row = {"enrollment_id": item.enrollment.id, "folder_number": item.enrollment.external_id,
                   "wedof_state": item.enrollment.wedof_state, "problem": item.problem,
                   "amounts": item.amounts.as_json() if item.amounts else None, "next_number": None}
            if item.amounts is not None:
                row["next_number"] = numbers.preview(session, tenant.id, fmt, issued, ahead)
                ahead += 1
            items.append(row)
        due_total = sum((i.amounts.incl for i in dues if i.amounts), Decimal(0))
        return jsonify({"mode": evaluate.mode_of(settings).value, "items": items, "total": len(items),
                        "amount_incl": f"{due_total:.2f}"})


@bp.post("/invoices/release")
@admin_required
def release_invoices():
    """Approve mode: number and send the given due folders (``enrollment_ids``), or every due one (``all``)."""
    body = json_object()
    reject_unknown(body, {"enrollment_ids", "all"})
    release_all = field(body, "all", bool, default=False)
    ids = field(body, "enrollment_ids", list, default=None, nullable=True)
    if release_all == (ids is not None):
        raise ApiError(422, "validation_error", "Give either enrollment_ids or all: true.",
                       fields={"enrollment_ids": "required unless all is true"})
    if ids is not None:
        if not ids or len(ids) > MAX_RELEASE or not all(type(i) is int and 0 < i < 2**31 for i in ids):
            raise ApiError(422, "validation_error", f"enrollment_ids must be 1 to {MAX_RELEASE} enrollment ids.",
                           fields={"enrollment_ids": "whole numbers"})
    try:
        with db_session() as session:
            tenant = resolve_tenant(session)
            settings = evaluate.settings_of(session, tenant.id)
            if release_all:
                ids = [item.enrollment.id for item in evaluate.due(session, tenant.id, limit=MAX_RELEASE)]
            try:
                created, why = evaluate.release(session, settings, list(dict.fromkeys(ids)),
                                                current_principal().actor)
            except evaluate.NotReleasable as exc:
                raise ApiError(409, "billing_mode", str(exc)) from None
            released = [invoice_json(invoice) for invoice in created]
    except IntegrityError:
        # Another release (or the beat) numbered one of these folders while this one waited for the
        # counter: the unique live index refused a second invoice, and the rollback gave the numbers back.
        raise ApiError(409, "release_conflict", "Another release numbered some of these folders at the same "
                                                "time; nothing was released by this request. Reload the due "
                                                "folders and try again.") from None
    _queue_invoices([i["id"] for i in released], "the invoices are reserved; the billing beat sends them.")
    return jsonify({"released": released, "not_released": {str(k): v for k, v in why.items()}}), 202


@bp.post("/invoices/<int:invoice_id>/retry")
@admin_required
def retry_invoice(invoice_id: int):
    """A failed invoice goes again with the same number, once the cause is fixed (the folder is read first)."""
    reject_unknown(json_object(allow_empty=True), set())
    with db_session() as session:
        invoice = visible_row(session, Invoice, invoice_id, "invoice")
        if not invoices.retry(session, invoice.id, current_principal().actor):
            raise ApiError(409, "not_retryable", f"The invoice is {invoice.status.value}; only a failed invoice "
                                                 "can be sent again.", invoice_status=invoice.status.value)
    task_ids = _queue_invoices([invoice_id], "the invoice is reserved again; the billing beat sends it.")
    return jsonify({"invoice_id": invoice_id, "status": "reserved", "task_id": task_ids[0]}), 202


@bp.post("/invoices/<int:invoice_id>/cancel")
@admin_required
def cancel_invoice(invoice_id: int):
    body = json_object()
    reject_unknown(body, {"reason"})
    reason = field(body, "reason", str, max_length=500).strip()
    if not reason:
        raise ApiError(422, "validation_error", "Say why the invoice is cancelled.", fields={"reason": "required"})
    with db_session() as session:
        invoice = visible_row(session, Invoice, invoice_id, "invoice")
        if not invoices.cancel(session, invoice.id, current_principal().actor, reason):
            raise ApiError(409, "not_cancellable", f"The invoice is {invoice.status.value}; only a reserved invoice "
                                                   "never sent to Wedof, or one Wedof refused, can be cancelled.",
                           invoice_status=invoice.status.value)
        session.refresh(invoice)
        return jsonify(invoice_json(invoice))


@bp.get("/invoices/summary")
@admin_required
def billing_summary():
    """The month's figures for the page: to bill now, billed, paid and failed, with their totals."""
    month = query_text("month", 7)
    # Strict: int() also took "+2026-1", " 2026-1" or full-width digits, and echoed year 1 as "1-01".
    if month is not None and (not _MONTH.fullmatch(month) or month.startswith("0000")):
        raise ApiError(400, "invalid_parameter", "month must look like 2026-12.")
    with db_session() as session:
        tenant = resolve_tenant(session)
        # No month named: the tenant's own (invoices are dated in its calendar, not in UTC).
        if month:
            year, number = (int(part) for part in month.split("-"))
        else:
            today = evaluate.tenant_today(session, tenant.id)
            year, number = today.year, today.month
        first = date(year, number, 1)
        last = date(year, number, calendar.monthrange(year, number)[1])
        dues = evaluate.due(session, tenant.id, limit=10_000)

        def total(*conditions):
            count, amount = session.execute(select(func.count(Invoice.id), func.sum(Invoice.amount_incl))
                                            .where(Invoice.tenant_id == tenant.id, *conditions)).one()
            return {"count": count, "amount_incl": f"{amount or 0:.2f}"}

        in_month = (Invoice.issue_date >= first, Invoice.issue_date <= last)
        due_total = sum((d.amounts.incl for d in dues if d.amounts), Decimal(0))
        return jsonify({
            "month": first.strftime("%Y-%m"),
            "mode": evaluate.mode_of(evaluate.settings_of(session, tenant.id)).value,
            "to_bill": {"count": len(dues), "amount_incl": f"{due_total:.2f}",
                        "without_price": sum(1 for d in dues if d.amounts is None)},
            "reserved": total(Invoice.status.in_((InvoiceStatus.RESERVED, InvoiceStatus.SENT))),
            "billed": total(Invoice.status.in_((InvoiceStatus.BILLED, InvoiceStatus.PAID)), *in_month),
            "paid": total(Invoice.status == InvoiceStatus.PAID, Invoice.paid_on >= first, Invoice.paid_on <= last),
            "failed": total(Invoice.status == InvoiceStatus.FAILED),
        })


# -- settings ------------------------------------------------------------------------------------------

@bp.get("/billing/settings")
@admin_required
def get_billing_settings():
    with db_session() as session:
        tenant = resolve_tenant(session)
        settings = evaluate.settings_of(session, tenant.id)
        # No row: billing is off; shown are the defaults an admin gets when saving.
        data = billing_settings_json(settings or BillingSettings.defaults(tenant.id), settings is not None)
        if settings is None:
            data["mode"] = BillingMode.OFF.value
        return jsonify(data)


@bp.put("/billing/settings")
@admin_required
def put_billing_settings():
    body = json_object()
    reject_unknown(body, {"mode", "number_format", "vat_mention", "seller_address"})
    values: dict = {}
    if "mode" in body:
        values["mode"] = BillingMode(field(body, "mode", str, choices=tuple(m.value for m in BillingMode)))
    if "number_format" in body:
        try:
            values["number_format"] = numbers.check_format(field(body, "number_format", str, max_length=100))
        except numbers.NumberFormatError as exc:
            raise ApiError(422, "validation_error", str(exc), fields={"number_format": "invalid"}) from None
    for name, limit in (("vat_mention", 300), ("seller_address", 500)):
        if name in body:
            text = field(body, name, str, nullable=True, max_length=limit)
            values[name] = text.strip() or None if text is not None else None
    with db_session() as session:
        tenant = resolve_tenant(session)
        settings = evaluate.settings_of(session, tenant.id)
        if settings is None:
            settings = BillingSettings.defaults(tenant.id)
            session.add(settings)
            session.flush()
        if "number_format" in values and values["number_format"] != settings.number_format:
            used = numbers.reused_number(session, tenant.id, values["number_format"],
                                         evaluate.tenant_today(session, tenant.id))
            if used is not None:
                raise ApiError(409, "number_format_reuses_numbers",
                               f"This format would hand out {used} again, a number already used: choose one "
                               "whose numbers cannot meet the issued ones (another prefix, say).",
                               fields={"number_format": "reuses issued numbers"})
        before = billing_settings_json(settings, True)
        for name, value in values.items():
            setattr(settings, name, value)
        settings.updated_at = utcnow()
        session.flush()
        after = billing_settings_json(settings, True)
        record_audit(session, actor=current_principal().actor, action="billing.settings_changed",
                     tenant_id=tenant.id, target=("billing_settings", settings.id),
                     details={"before": before, "after": after}, changes=changes(before, after))
    return jsonify(after)
