"""An invoice as a document: the PDF from the invoice row's frozen data, stored with a ``Document`` row.

The PDF is rendered from what the row froze at reservation (seller, beneficiary, training) and its
amounts, so it says what Wedof was sent, whatever changes later. It is stored on the invoice once
billed, with a ``Document`` of type invoice beside the beneficiary's other documents; a download
before that (or after a failed store) renders it from the same data.
"""

from __future__ import annotations

import hashlib
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from bdc.models import Document, DocumentType, Enrollment, Invoice
from billing.document import InvoiceDocument, render_pdf

INVOICE_PATH = "/api/integrations/wedof/invoices/{id}/pdf"


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def document_of(invoice: Invoice) -> InvoiceDocument:
    frozen = invoice.document or {}
    return InvoiceDocument(
        number=invoice.number, issue_date=invoice.issue_date,
        seller_name=frozen.get("seller_name") or "", seller_siret=frozen.get("seller_siret"),
        seller_address=frozen.get("seller_address"),
        beneficiary_name=frozen.get("beneficiary_name") or "", beneficiary_address=frozen.get("beneficiary_address"),
        training_title=frozen.get("training_title") or "", folder_number=invoice.folder_number,
        session_start=_day(frozen.get("session_start")), session_end=_day(frozen.get("session_end")),
        amount_excl=invoice.amount_excl, vat_rate=invoice.vat_rate, vat_amount=invoice.vat_amount,
        amount_incl=invoice.amount_incl, currency=invoice.currency,
        vat_mention=frozen.get("vat_mention"), financer=frozen.get("financer"),  # printed only when known
    )


def pdf_of(invoice: Invoice) -> bytes:
    """The stored PDF, or one rendered now from the same frozen data."""
    return invoice.pdf or render_pdf(document_of(invoice))


def attach_pdf(session: Session, invoice: Invoice) -> Document | None:
    """Store the PDF on the invoice and record it as the beneficiary's document (once)."""
    if invoice.pdf is not None or invoice.enrollment_id is None:
        return None
    data = render_pdf(document_of(invoice))
    invoice.pdf = data
    beneficiary_id = session.scalar(select(Enrollment.beneficiary_id).where(Enrollment.id == invoice.enrollment_id))
    document = Document(tenant_id=invoice.tenant_id, beneficiary_id=beneficiary_id, enrollment_id=invoice.enrollment_id,
                        title=f"Facture {invoice.number}", type=DocumentType.INVOICE,
                        url=INVOICE_PATH.format(id=invoice.id), external_id=f"invoice:{invoice.number}"[:64],
                        meta={"invoice_id": invoice.id, "number": invoice.number, "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest(), "content_type": "application/pdf"})
    session.add(document)
    return document
