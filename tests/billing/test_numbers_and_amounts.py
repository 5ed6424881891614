"""Invoice numbers (format, gapless series under concurrency) and amounts from the folder's own numbers."""

from __future__ import annotations

import json
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bdc import db as bdc_db
from bdc.models import InvoiceSequence, Tenant
from billing import numbers
from billing.amounts import NoPrice, invoice_amounts
from wedof.mapping import read_folder

SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "wedof" / "registration-folder.activepieces-sample.json"


@pytest.mark.parametrize("number_format, value, issued, expected", [
    ("F-{year}-{seq:06d}", 42, date(2026, 12, 1), "F-2026-000042"),
    ("FAC{seq}", 7, date(2026, 1, 1), "FAC7"),
    ("{year}/{seq:04d}", 12345, date(2027, 1, 1), "2027/12345"),
])
def test_a_format_renders_its_numbers(number_format, value, issued, expected):
    assert numbers.render(numbers.check_format(number_format), value, issued) == expected


@pytest.mark.parametrize("hostile", [
    None, "", "   ", 42, "F-{year}", "{seq}{seq}", "{year}{year}{seq}", "{seq!r}", "{name}-{seq}", "{seq:>10}",
    "{year:04d}{seq}", "F {seq}", "F-{seq}<script>", "{", "{seq", "F-{0}", "{seq.real}", "X" * 60 + "{seq}",
    "F-{seq:099d}", "é{seq}",
])
def test_a_format_that_cannot_make_safe_unique_numbers_is_refused(hostile):
    with pytest.raises(numbers.NumberFormatError):
        numbers.check_format(hostile)


def test_the_series_is_per_year_when_the_format_holds_the_year(session):
    tenant = Tenant(name="T", slug="t")
    session.add(tenant)
    session.flush()
    got = [numbers.reserve(session, tenant.id, "F-{year}-{seq:03d}", date(2026, 12, 31)).number,
           numbers.reserve(session, tenant.id, "F-{year}-{seq:03d}", date(2026, 12, 31)).number,
           numbers.reserve(session, tenant.id, "F-{year}-{seq:03d}", date(2027, 1, 1)).number,
           numbers.reserve(session, tenant.id, "N{seq}", date(2027, 1, 1)).number]
    assert got == ["F-2026-001", "F-2026-002", "F-2027-001", "N1"]
    assert numbers.preview(session, tenant.id, "F-{year}-{seq:03d}", date(2026, 6, 1), ahead=1) == "F-2026-004"


def test_a_rolled_back_reservation_gives_its_number_back(db_url, app_env):
    app_env(database_url=db_url)
    with bdc_db.session_scope() as session:
        tenant = Tenant(name="T", slug="t")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    with pytest.raises(RuntimeError), bdc_db.session_scope() as session:
        numbers.reserve(session, tenant_id, "F{seq}", date(2026, 1, 1))
        raise RuntimeError("the invoice row could not be written")
    with bdc_db.session_scope() as session:
        assert numbers.reserve(session, tenant_id, "F{seq}", date(2026, 1, 1)).number == "F1"


def test_concurrent_reservations_make_one_gapless_series(db_url, app_env):
    """Eight threads, each reserving in its own transaction, some rolled back: no gap, no number twice."""
    app_env(database_url=db_url)
    with bdc_db.session_scope() as session:
        tenant = Tenant(name="T", slug="t")
        session.add(tenant)
        session.flush()
        tenant_id = tenant.id
    kept, errors, lock = [], [], threading.Lock()

    def worker(n: int):
        for i in range(10):
            try:
                with bdc_db.session_scope() as session:
                    value = numbers.reserve(session, tenant_id, "F{seq}", date(2026, 1, 1)).value
                    if (n + i) % 4 == 0:
                        raise LookupError("rolled back on purpose")
                with lock:
                    kept.append(value)
            except LookupError:
                pass
            except Exception as exc:  # noqa: BLE001 - SQLite may answer "database is locked": counted
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [e for e in errors if "locked" not in str(e)], errors
    assert sorted(kept) == list(range(1, len(kept) + 1)), "a gap or a repeat in the series"
    with bdc_db.session_scope() as session:
        assert session.scalar(select(func.max(InvoiceSequence.last_value))) == len(kept)


def test_the_published_sample_folder_makes_its_invoice_amounts():
    folder = json.loads(SAMPLE.read_text())
    amounts = invoice_amounts(read_folder(folder).amounts)
    assert (amounts.excl, amounts.vat_rate, amounts.vat, amounts.incl) == (
        Decimal("1075.00"), Decimal("20.00"), Decimal("215.00"), Decimal("1290.00"))
    assert not amounts.exempt


def test_the_amounts_wedof_billed_win_over_the_price():
    billed = {"totalExcl": 1075, "totalIncl": 1290, "amountHtNet": 1000, "amountTtc": 1200, "vatHtAmount20": 1000}
    amounts = invoice_amounts(billed)
    assert (amounts.excl, amounts.vat, amounts.incl, amounts.vat_rate) == (
        Decimal("1000.00"), Decimal("200.00"), Decimal("1200.00"), Decimal("20.00"))


def test_an_exempt_training_has_no_vat_and_an_odd_rate_is_computed():
    exempt = invoice_amounts({"totalExcl": 1500, "totalIncl": 1500})
    assert (exempt.vat, exempt.vat_rate, exempt.exempt) == (Decimal("0.00"), Decimal("0.00"), True)
    odd = invoice_amounts({"totalExcl": 1000, "totalIncl": 1100})
    assert odd.vat_rate == Decimal("10.00")


@pytest.mark.parametrize("hostile", [
    None, {}, {"totalExcl": 1000}, {"totalExcl": "abc", "totalIncl": 1}, {"totalExcl": 0, "totalIncl": 0},
    {"totalExcl": -5, "totalIncl": 10}, {"totalExcl": 1200, "totalIncl": 1000},
    {"totalExcl": 1e12, "totalIncl": 1e12}, {"totalExcl": True, "totalIncl": True}, "not a dict",
    {"totalExcl": float("nan"), "totalIncl": 1},
])
def test_a_folder_without_a_usable_price_gets_no_invoice(hostile):
    with pytest.raises(NoPrice):
        invoice_amounts(hostile)


def test_hostile_numbers_in_a_folder_are_left_out_when_it_is_read():
    folder = json.loads(SAMPLE.read_text())
    folder["trainingActionInfo"].update(totalExcl="1 075", totalIncl=float("inf"), vatExclTax20={"x": 1})
    folder["amountTtc"] = [1]
    amounts = read_folder(folder).amounts
    assert "totalIncl" not in amounts and "vatExclTax20" not in amounts and "amountTtc" not in amounts
    with pytest.raises(NoPrice):
        invoice_amounts(amounts)
