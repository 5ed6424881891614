"""The invoice PDF of a folder: a pure function from :class:`InvoiceDocument` to bytes (fpdf2).

Everything printed goes through :func:`_clean`: fpdf2's core fonts (Helvetica) only encode latin-1
and folder data comes from people typing in forms, so text is mapped to latin-1, stripped of control
characters and capped, rather than trusted. Validation happens when the document is built, so an
invoice with inconsistent totals cannot be rendered at all.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Context, Decimal

from fpdf import FPDF
from fpdf.enums import XPos, YPos

MAX_FIELD_CHARS = 500  # wraps to a few lines; keeps a hostile field from filling pages
MAX_ADDRESS_LINES = 6
MAX_DESIGNATION_CHARS = 150
ELLIPSIS = "..."
CENT = Decimal("0.01")

# Typographic characters people paste from word processors, mapped to their latin-1 look-alike.
_TYPOGRAPHY = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201a": ",", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u2022": "-", "\u20ac": "EUR", "\u0153": "oe", "\u0152": "OE",
    "\u2039": "<", "\u203a": ">",
})
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029\x85\x0b\x0c]")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class InvoiceDocument:
    number: str                 # e.g. "F-2026-000042"
    issue_date: date
    seller_name: str            # the training organism's name
    seller_siret: str | None
    seller_address: str | None  # multi-line text, may be None
    beneficiary_name: str
    beneficiary_address: str | None
    training_title: str
    folder_number: str          # the Wedof registration folder externalId
    session_start: date | None
    session_end: date | None
    amount_excl: Decimal
    vat_rate: Decimal | None    # percent, e.g. Decimal("20"); None or 0 = no VAT
    vat_amount: Decimal
    amount_incl: Decimal
    currency: str = "EUR"
    vat_mention: str | None = None  # e.g. "TVA non applicable, art. 261-4-4° a du CGI", printed when VAT is 0/None
    financer: str | None = None     # e.g. "Caisse des Dépôts (CPF)"

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def vat_exempt(self) -> bool:
        return self.vat_rate is None or self.vat_rate == 0


def round_cents(value: Decimal) -> Decimal:
    """Round half up to the cent, as printed; the CSV export uses it too so both always agree."""
    # The default context (28 digits) makes quantize fail on huge values: give it the digits it needs.
    context = Context(prec=max(28, value.adjusted() + 4), rounding=ROUND_HALF_UP)
    cents = value.quantize(CENT, context=context)
    return abs(cents) if cents.is_zero() else cents  # never print "-0,00"


def format_amount(value: Decimal, currency: str) -> str:
    """French style, ``1 234,56 EUR``; a plain space groups thousands so extracted text reads back."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"amount must be a finite Decimal, got {value!r}")
    digits = f"{round_cents(value):,.2f}".replace(",", " ").replace(".", ",")
    return f"{digits} {currency}"


def render_pdf(doc: InvoiceDocument) -> bytes:
    """One A4 page (more only if the fields are very long), the same bytes for the same document."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    # fpdf2 stamps "now" by default; the issue date makes the output reproducible.
    pdf.set_creation_date(datetime.combine(doc.issue_date, time(), tzinfo=UTC))
    pdf.set_title(f"Facture {_clean(doc.number)}")
    pdf.set_author(_clean(doc.seller_name))
    pdf.set_subject(f"Dossier CPF n° {_clean(doc.folder_number)}")
    pdf.set_lang("fr")
    pdf.add_page()

    _text(pdf, _clean(doc.seller_name), size=13, style="B")
    if _clean(doc.seller_siret):
        _text(pdf, f"SIRET : {_clean(doc.seller_siret)}")
    _text(pdf, _clean_lines(doc.seller_address))

    pdf.ln(8)
    _text(pdf, "FACTURE", size=20, style="B")
    _text(pdf, f"N° de facture : {_clean(doc.number)}", style="B")
    _text(pdf, f"Date : {_fr_date(doc.issue_date)}")

    pdf.ln(6)
    _text(pdf, "Bénéficiaire", size=9, style="B")
    _text(pdf, _clean(doc.beneficiary_name), style="B")
    _text(pdf, _clean_lines(doc.beneficiary_address))
    if _clean(doc.financer):
        _text(pdf, f"Financeur : {_clean(doc.financer)}")

    pdf.ln(6)
    _text(pdf, "Action de formation", size=9, style="B")
    _text(pdf, _clean(doc.training_title))
    if _clean(doc.folder_number):
        _text(pdf, f"Dossier CPF n° {_clean(doc.folder_number)}")
    _text(pdf, _session(doc.session_start, doc.session_end))

    pdf.ln(6)
    excl, vat, incl = (format_amount(a, doc.currency) for a in (doc.amount_excl, doc.vat_amount, doc.amount_incl))
    rate = _fr_rate(doc.vat_rate)
    pdf.set_font("Helvetica", size=9)
    with pdf.table(col_widths=(62, 28, 20, 28, 32), text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
                   line_height=5, padding=1.5) as table:
        table.row(("Désignation", "Montant HT", "Taux TVA", "TVA", "Montant TTC"))
        # The block above prints the whole title; a shorter one keeps the row, and the page, short.
        table.row((_clean(doc.training_title, limit=MAX_DESIGNATION_CHARS), excl, rate, vat, incl))

    pdf.ln(4)
    _text(pdf, f"Total HT : {excl}", align="R")
    _text(pdf, f"TVA ({rate}) : {vat}", align="R")
    _text(pdf, f"Total TTC : {incl}", size=11, style="B", align="R")
    if doc.vat_exempt and _clean(doc.vat_mention):
        pdf.ln(6)
        _text(pdf, _clean(doc.vat_mention), size=9, style="I")

    return bytes(pdf.output())


def _text(pdf: FPDF, text: str, *, size: float = 10, style: str = "", align: str = "L") -> None:
    """A wrapped paragraph of cleaned text; nothing for empty text (an absent optional field)."""
    if not text:
        return
    pdf.set_font("Helvetica", style=style, size=size)
    pdf.multi_cell(0, size * 0.5, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _clean(text: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    """One line of latin-1 text, safe for the core fonts: never raises, never longer than ``limit``."""
    if not text:
        return ""
    text = unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY)  # NFC: "e" + U+0301 becomes "é"
    text = " ".join("".join(_latin1(char) for char in text).split())
    return text if len(text) <= limit else text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def _clean_lines(text: str | None) -> str:
    """A multi-line address: its non-empty lines, cleaned, at most a few and capped as a whole."""
    lines = [line for line in (_clean(part) for part in _LINE_BREAKS.split(text or "")) if line]
    if len(lines) > MAX_ADDRESS_LINES:
        lines = lines[: MAX_ADDRESS_LINES - 1] + [lines[MAX_ADDRESS_LINES - 1] + " " + ELLIPSIS]
    joined = "\n".join(lines)
    return joined if len(joined) <= MAX_FIELD_CHARS else joined[: MAX_FIELD_CHARS - len(ELLIPSIS)] + ELLIPSIS


def _latin1(char: str) -> str:
    category = unicodedata.category(char)
    if category[0] == "Z" or char.isspace():
        return " "  # every kind of space (no-break, narrow no-break...) prints as a plain one
    if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return ""  # controls, zero-width and bidi marks, lone surrogates: nothing to print
    if ord(char) < 0x100:
        return char
    # Letters from other Latin alphabets keep their base letter ("ř" -> "r", "ﬁ" -> "fi").
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if decomposed and all(ord(c) < 0x100 and unicodedata.category(c)[0] != "C" for c in decomposed):
        return decomposed
    return "" if unicodedata.combining(char) else "?"


def _fr_date(value: date) -> str:
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"  # strftime("%Y") drops zero padding


def _fr_rate(rate: Decimal | None) -> str:
    return f"{(rate or Decimal(0)).normalize():f}".replace(".", ",") + " %"


def _session(start: date | None, end: date | None) -> str:
    if start and end:
        return f"Session : du {_fr_date(start)} au {_fr_date(end)}"
    if start:
        return f"Session : à partir du {_fr_date(start)}"
    if end:
        return f"Session : jusqu'au {_fr_date(end)}"
    return ""


def _validate(doc: InvoiceDocument) -> None:
    for name in ("number", "seller_name", "beneficiary_name", "training_title", "folder_number"):
        value = getattr(doc, name)
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    # Only the number must be there: it is what the invoice is (the other fields print blank if missing).
    if not _clean(doc.number):
        raise ValueError("number is empty")
    for name in ("seller_siret", "seller_address", "beneficiary_address", "vat_mention", "financer"):
        value = getattr(doc, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None, got {type(value).__name__}")
    if not isinstance(doc.issue_date, date):
        raise ValueError(f"issue_date must be a date, got {type(doc.issue_date).__name__}")
    for name in ("session_start", "session_end"):
        value = getattr(doc, name)
        if value is not None and not isinstance(value, date):
            raise ValueError(f"{name} must be a date or None, got {type(value).__name__}")
    if not isinstance(doc.currency, str) or not _CURRENCY.fullmatch(doc.currency):
        raise ValueError(f"currency must be 3 uppercase letters (ISO 4217), got {doc.currency!r}")

    for name in ("amount_excl", "vat_amount", "amount_incl"):
        value = getattr(doc, name)
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    if doc.vat_rate is not None:
        if not isinstance(doc.vat_rate, Decimal) or not doc.vat_rate.is_finite():
            raise ValueError(f"vat_rate must be a finite Decimal or None, got {doc.vat_rate!r}")
        if not 0 <= doc.vat_rate <= 100:
            raise ValueError(f"vat_rate must be a percentage between 0 and 100, got {doc.vat_rate}")
    # Compared as printed: the three amounts on the page must add up.
    excl, vat, incl = (round_cents(a) for a in (doc.amount_excl, doc.vat_amount, doc.amount_incl))
    if doc.vat_exempt and vat:
        raise ValueError(f"vat_amount must be 0 when vat_rate is {doc.vat_rate}, got {doc.vat_amount}")
    if incl != excl + vat:
        raise ValueError(f"amount_incl {incl} != amount_excl {excl} + vat_amount {vat}")
