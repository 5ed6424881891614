"""The invoices as CSV for the accountant: one row per invoice, streamed, safe to open in a spreadsheet.

Values are written for machines first (ISO dates, dot decimals, UTC timestamps), and every free-text
cell that a spreadsheet would read as a formula is defused, since names and titles come from forms.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from billing.document import round_cents


@dataclass(frozen=True)
class InvoiceLine:
    number: str
    issue_date: date | None
    status: str
    folder_number: str
    beneficiary_name: str
    training_title: str
    amount_excl: Decimal | None
    vat_rate: Decimal | None
    vat_amount: Decimal | None
    amount_incl: Decimal | None
    currency: str
    billed_at: datetime | None
    paid_at: date | datetime | None
    paid_amount: Decimal | None


COLUMNS = (
    "number", "issue_date", "status", "folder_number", "beneficiary_name", "training_title",
    "amount_excl", "vat_rate", "vat_amount", "amount_incl", "currency", "billed_at", "paid_at", "paid_amount",
)
_AMOUNTS = frozenset({"amount_excl", "vat_rate", "vat_amount", "amount_incl", "paid_amount"})
_DATES = frozenset({"issue_date", "billed_at", "paid_at"})
# OWASP "CSV injection": what makes Excel or LibreOffice read a cell as a formula (or start one).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def invoices_csv(lines: Iterable[InvoiceLine]) -> Iterator[str]:
    """The header, then one CSV row per line, each yielded as soon as it is written (``\\r\\n`` ends).

    A generator: nothing is read from ``lines`` before the first row is asked for, so a web response
    can stream a large export; a bad value raises when its row is reached.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def row(values: Iterable[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(values)
        return buffer.getvalue()

    yield row(COLUMNS)
    for line in lines:
        yield row(_cell(name, getattr(line, name), line) for name in COLUMNS)


def _cell(name: str, value: object, line: InvoiceLine) -> str:
    if value is None:
        return ""
    if name in _AMOUNTS:
        # Not guarded: a negative amount is a number, and it must stay one for the spreadsheet.
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"invoice {line.number!r}: {name} must be a finite Decimal, got {value!r}")
        return f"{round_cents(value):.2f}"
    if name in _DATES:
        return _iso(name, value, line)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _iso(name: str, value: object, line: InvoiceLine) -> str:
    if isinstance(value, datetime):
        # Same rule as the UTC columns of bdc.types: a naive datetime is a bug, not "probably UTC".
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"invoice {line.number!r}: {name} is a naive datetime; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    if isinstance(value, date):
        return value.isoformat()
    raise ValueError(f"invoice {line.number!r}: {name} must be a date, got {type(value).__name__}")
