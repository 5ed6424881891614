"""Invoice numbers: a per-tenant format, and a gapless sequence that never hands a number out twice.

French invoicing wants numbers in one unbroken chronological series. The counter row is incremented
with ``UPDATE … RETURNING`` in the caller's transaction, the same one that inserts the invoice row:
PostgreSQL holds the row lock until commit (SQLite its write lock), so concurrent reservations queue
behind each other, and a reservation rolled back gives its number back. A format holding ``{year}``
starts a new series each year (its scope is the year); otherwise one series runs forever.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bdc.models import Invoice, InvoiceSequence

MAX_NUMBER_LENGTH = 50
_LITERAL = re.compile(r"[A-Za-z0-9\-_/.]*")
_SEQ_SPEC = re.compile(r"0?[1-9]?d?")
FIELDS = ("year", "seq")


class NumberFormatError(ValueError):
    """The format cannot make valid, unique invoice numbers; the message says why."""


@dataclass(frozen=True)
class Reserved:
    scope: str
    value: int
    number: str


def check_format(number_format: object) -> str:
    """The format if it makes usable numbers: ``{seq}`` once, ``{year}`` at most once, safe literals."""
    if not isinstance(number_format, str) or not number_format.strip():
        raise NumberFormatError("the number format must be a non-empty string, e.g. F-{year}-{seq:06d}")
    try:
        parts = list(string.Formatter().parse(number_format))
    except ValueError as exc:
        raise NumberFormatError(f"the number format is not a valid template: {exc}") from None
    seen: list[str] = []
    for literal, name, spec, conversion in parts:
        if not _LITERAL.fullmatch(literal):
            raise NumberFormatError("the number format may hold only letters, digits and - _ / . outside its fields")
        if name is None:
            continue
        if name not in FIELDS or conversion:
            raise NumberFormatError(f"unknown field {{{name}}}: the number format knows {{year}} and {{seq}}")
        if name == "seq" and not _SEQ_SPEC.fullmatch(spec or ""):
            raise NumberFormatError("{seq} takes a width like {seq:06d}")
        if name == "year" and spec:
            raise NumberFormatError("{year} takes no format")
        seen.append(name)
    if seen.count("seq") != 1 or seen.count("year") > 1:
        raise NumberFormatError("the number format needs {seq} exactly once (and {year} at most once)")
    if len(render(number_format, 999_999, date(9999, 12, 31))) > MAX_NUMBER_LENGTH:
        raise NumberFormatError(f"the numbers it makes would be longer than {MAX_NUMBER_LENGTH} characters")
    return number_format


def render(number_format: str, value: int, issued: date) -> str:
    return number_format.format(year=issued.year, seq=value)


def scope_of(number_format: str, issued: date) -> str:
    return str(issued.year) if "{year}" in number_format else "all"


def reserve(session: Session, tenant_id: int, number_format: str, issued: date) -> Reserved:
    """The next number of the tenant's series, taken in the caller's transaction (commit it with the invoice)."""
    scope = scope_of(number_format, issued)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(InvoiceSequence).values(tenant_id=tenant_id, scope=scope, last_value=0)
                    .on_conflict_do_nothing(index_elements=["tenant_id", "scope"]))
    value = session.execute(
        update(InvoiceSequence)
        .where(InvoiceSequence.tenant_id == tenant_id, InvoiceSequence.scope == scope)
        .values(last_value=InvoiceSequence.last_value + 1)
        .returning(InvoiceSequence.last_value)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return Reserved(scope, value, render(number_format, value, issued))


def preview(session: Session, tenant_id: int, number_format: str, issued: date, ahead: int = 0) -> str:
    """The number the next reservation would take (``ahead`` more after it), without taking it."""
    scope = scope_of(number_format, issued)
    row = session.scalar(select(InvoiceSequence.last_value).where(InvoiceSequence.tenant_id == tenant_id,
                                                                    InvoiceSequence.scope == scope))
    return render(number_format, (row or 0) + 1 + ahead, issued)


def _pattern(number_format: str, issued: date) -> re.Pattern:
    """What the (checked) format's numbers look like this year, the sequence value captured."""
    parts = []
    for literal, name, _spec, _conversion in string.Formatter().parse(number_format):
        parts.append(re.escape(literal))
        if name == "year":
            parts.append(str(issued.year))
        elif name == "seq":
            parts.append(r"(?P<seq>[0-9]+)")
    return re.compile("".join(parts))


def reused_number(session: Session, tenant_id: int, number_format: str, issued: date) -> str | None:
    """A number already used that the format's series would hand out again, or None.

    A new format may start a new series (``{year}`` moved into the literal, say ``F-{year}-{seq}`` to
    ``F-2026-{seq}``): its counter starts again at 1 and its first numbers are ones already issued. The
    unique number then refuses every reservation: releases fail and auto billing stops.
    """
    scope = scope_of(number_format, issued)
    last = session.scalar(select(InvoiceSequence.last_value).where(InvoiceSequence.tenant_id == tenant_id,
                                                                   InvoiceSequence.scope == scope)) or 0
    pattern = _pattern(number_format, issued)
    for used in session.scalars(select(Invoice.number).where(Invoice.tenant_id == tenant_id)):
        match = pattern.fullmatch(used)
        if match and int(match["seq"]) > last and render(number_format, int(match["seq"]), issued) == used:
            return used
    return None
