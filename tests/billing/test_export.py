"""The accounting CSV, parsed back with csv.reader as a spreadsheet or an import script would."""

from __future__ import annotations

import csv
import inspect
import io
import itertools
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from billing.export import COLUMNS, InvoiceLine, invoices_csv

LINE = InvoiceLine(
    number="F-2026-000042", issue_date=date(2026, 1, 15), status="paid", folder_number="4185270136",
    beneficiary_name="Amélie Poulain", training_title="Bilan de compétences",
    amount_excl=Decimal("1234.56"), vat_rate=Decimal("20.00"), vat_amount=Decimal("246.91"),
    amount_incl=Decimal("1481.47"), currency="EUR",
    billed_at=datetime(2026, 1, 15, 9, 30, 12, 345678, tzinfo=UTC), paid_at=date(2026, 2, 10),
    paid_amount=Decimal("1481.47"),
)
EMPTY = replace(LINE, issue_date=None, amount_excl=None, vat_rate=None, vat_amount=None, amount_incl=None,
                billed_at=None, paid_at=None, paid_amount=None)


def parse(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(chunks), newline="")))


def row_of(line: InvoiceLine) -> dict[str, str]:
    header, row = parse(invoices_csv([line]))
    assert header == list(COLUMNS)
    return dict(zip(header, row, strict=True))


def test_the_header_names_every_field_in_order():
    assert COLUMNS == ("number", "issue_date", "status", "folder_number", "beneficiary_name", "training_title",
                       "amount_excl", "vat_rate", "vat_amount", "amount_incl", "currency", "billed_at",
                       "paid_at", "paid_amount")
    assert next(invoices_csv([])) == ",".join(COLUMNS) + "\r\n"


def test_a_line_is_written_for_machines():
    assert row_of(LINE) == {
        "number": "F-2026-000042", "issue_date": "2026-01-15", "status": "paid", "folder_number": "4185270136",
        "beneficiary_name": "Amélie Poulain", "training_title": "Bilan de compétences",
        "amount_excl": "1234.56", "vat_rate": "20.00", "vat_amount": "246.91", "amount_incl": "1481.47",
        "currency": "EUR", "billed_at": "2026-01-15T09:30:12Z", "paid_at": "2026-02-10", "paid_amount": "1481.47",
    }


def test_rows_end_with_crlf():
    chunks = list(invoices_csv([LINE, LINE]))
    assert len(chunks) == 3
    assert all(chunk.endswith("\r\n") and chunk.count("\r\n") == 1 for chunk in chunks)


def test_none_is_an_empty_cell():
    row = row_of(EMPTY)
    for name in ("issue_date", "amount_excl", "vat_rate", "vat_amount", "amount_incl", "billed_at", "paid_at",
                 "paid_amount"):
        assert row[name] == "", name
    assert row["number"] == "F-2026-000042"


@pytest.mark.parametrize("value, written", [
    (Decimal("1234.5"), "1234.50"), (Decimal("0"), "0.00"), (Decimal("1E+3"), "1000.00"),
    (Decimal("1234567.891"), "1234567.89"), (Decimal("0.005"), "0.01"), (Decimal("-0.001"), "0.00"),
    (Decimal("-10"), "-10.00"),  # a refund stays a number: amounts are never formula-guarded
])
def test_amounts_have_a_dot_and_two_decimals(value, written):
    assert row_of(replace(LINE, amount_excl=value, paid_amount=value))["amount_excl"] == written
    assert row_of(replace(LINE, paid_amount=value))["paid_amount"] == written


def test_the_vat_rate_is_written_with_two_decimals():
    assert row_of(replace(LINE, vat_rate=Decimal("5.5")))["vat_rate"] == "5.50"


@pytest.mark.parametrize("value", [1234.56, "1234.56", Decimal("NaN"), Decimal("-Infinity")])
def test_an_amount_that_is_not_a_finite_decimal_is_refused(value):
    with pytest.raises(ValueError, match="paid_amount"):
        row_of(replace(LINE, paid_amount=value))


def test_datetimes_are_written_in_utc_with_a_z():
    paris = timezone(timedelta(hours=1))
    row = row_of(replace(LINE, billed_at=datetime(2026, 1, 1, 0, 30, tzinfo=paris),
                         paid_at=datetime(2026, 2, 10, 12, 0, 0, tzinfo=UTC)))
    assert row["billed_at"] == "2025-12-31T23:30:00Z"
    assert row["paid_at"] == "2026-02-10T12:00:00Z"


def test_a_naive_datetime_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="billed_at.*naive"):
        row_of(replace(LINE, billed_at=datetime(2026, 1, 15, 9, 30)))


def test_a_date_column_refuses_a_string():
    with pytest.raises(ValueError, match="issue_date"):
        row_of(replace(LINE, issue_date="2026-01-15"))


TEXT_COLUMNS = ("number", "status", "folder_number", "beneficiary_name", "training_title", "currency")


@pytest.mark.parametrize("column", TEXT_COLUMNS)
@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://evil\",\"x\")", "+33 6 12 34 56 78", "-2+3", "@SUM(A1)",
                                   "\tcmd", "\rcmd"])
def test_a_text_cell_that_would_start_a_formula_gets_a_quote(column, value):
    assert row_of(replace(LINE, **{column: value}))[column] == "'" + value


@pytest.mark.parametrize("value", ["Dupont", " =not at the start", "'already quoted", "a=b", "", "1-2"])
def test_harmless_text_is_left_alone(value):
    assert row_of(replace(LINE, beneficiary_name=value))["beneficiary_name"] == value


@pytest.mark.parametrize("value", [
    'Dupont, "dit le Grand"', "ligne 1\nligne 2", "ligne 1\r\nligne 2", '"', ",,,", "L’œuvre 😀 王芳",
    "NUL\x00inside", "fin de ligne\n", "=1+1,\"\n",
])
def test_hostile_text_round_trips(value):
    expected = "'" + value if value.startswith("=") else value
    row = row_of(replace(LINE, training_title=value, beneficiary_name=value))
    assert row == {**row_of(LINE), "training_title": expected, "beneficiary_name": expected}


def test_the_export_is_a_lazy_generator():
    consumed = []

    def lines():
        for i in itertools.count():
            consumed.append(i)
            yield replace(LINE, number=f"F-2026-{i:06d}")

    rows = invoices_csv(lines())
    assert inspect.isgenerator(rows)
    assert consumed == []  # nothing read before the first row is asked for
    assert next(rows) == ",".join(COLUMNS) + "\r\n"
    assert consumed == []
    first_two = parse(itertools.islice(rows, 2))
    assert [row[0] for row in first_two] == ["F-2026-000000", "F-2026-000001"]
    assert consumed == [0, 1]  # an endless source streams: one line read per row written


def test_each_chunk_is_exactly_one_record_even_with_newlines_inside():
    chunks = list(invoices_csv([replace(LINE, training_title="a\nb"), LINE]))
    assert [len(parse([chunk])) for chunk in chunks] == [1, 1, 1]
