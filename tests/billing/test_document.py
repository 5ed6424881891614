"""The invoice PDF, rendered by the real fpdf2 and read back with pypdf: what a reader of the file sees."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from io import BytesIO

import pytest
from pypdf import PdfReader

from billing.document import (
    MAX_DESIGNATION_CHARS,
    MAX_FIELD_CHARS,
    InvoiceDocument,
    format_amount,
    render_pdf,
)

MENTION = "TVA non applicable, art. 261-4-4° a du CGI"


def exempt(**changes) -> InvoiceDocument:
    """A CPF bilan as most organisms bill it: no VAT, the exemption mention printed."""
    values = dict(
        number="F-2026-000042", issue_date=date(2026, 1, 15),
        seller_name="Cap Métiers Conseil", seller_siret="123 456 789 00012",
        seller_address="12 rue de l'Église\n75011 Paris",
        beneficiary_name="Amélie Poulain", beneficiary_address="3 place du Tertre\n75018 Paris",
        training_title="Bilan de compétences", folder_number="4185270136",
        session_start=date(2026, 1, 5), session_end=date(2026, 3, 20),
        amount_excl=Decimal("1234.56"), vat_rate=None, vat_amount=Decimal("0"), amount_incl=Decimal("1234.56"),
        vat_mention=MENTION, financer="Caisse des Dépôts (CPF)",
    )
    return InvoiceDocument(**{**values, **changes})


def with_vat(**changes) -> InvoiceDocument:
    values = dict(amount_excl=Decimal("1000"), vat_rate=Decimal("20"), vat_amount=Decimal("200"),
                  amount_incl=Decimal("1200"))
    return exempt(**{**values, **changes})


def read(data: bytes) -> PdfReader:
    assert data.startswith(b"%PDF-")
    return PdfReader(BytesIO(data))


def text_of(doc: InvoiceDocument) -> str:
    return "\n".join(page.extract_text() for page in read(render_pdf(doc)).pages)


def test_an_exempt_invoice_shows_every_field_on_one_page():
    reader = read(render_pdf(exempt()))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    for expected in (
        "FACTURE", "F-2026-000042", "Date : 15/01/2026",
        "Cap Métiers Conseil", "SIRET : 123 456 789 00012", "12 rue de l'Église", "75011 Paris",
        "Amélie Poulain", "3 place du Tertre", "75018 Paris", "Financeur : Caisse des Dépôts (CPF)",
        "Bilan de compétences", "Dossier CPF n° 4185270136", "Session : du 05/01/2026 au 20/03/2026",
        "Désignation", "Montant HT", "Montant TTC",
        "Total HT : 1 234,56 EUR", "TVA (0 %) : 0,00 EUR", "Total TTC : 1 234,56 EUR",
        MENTION,
    ):
        assert expected in text, expected


def test_an_invoice_with_vat_shows_the_rate_and_no_exemption_mention():
    text = text_of(with_vat())  # the mention is set, but VAT applies: it must not be printed
    assert "Total HT : 1 000,00 EUR" in text
    assert "TVA (20 %) : 200,00 EUR" in text
    assert "Total TTC : 1 200,00 EUR" in text
    assert "non applicable" not in text


@pytest.mark.parametrize("rate, printed", [(Decimal("5.5"), "5,5 %"), (Decimal("20.00"), "20 %"),
                                           (Decimal("0"), "0 %"), (Decimal("100"), "100 %")])
def test_the_vat_rate_is_printed_the_french_way(rate, printed):
    vat = (Decimal("1000") * rate / 100).quantize(Decimal("0.01"))
    text = text_of(with_vat(vat_rate=rate, vat_amount=vat, amount_incl=Decimal("1000") + vat))
    assert f"TVA ({printed}) : {format_amount(vat, 'EUR')}" in text


def test_a_zero_rate_counts_as_exempt_and_prints_the_mention():
    text = text_of(exempt(vat_rate=Decimal("0")))
    assert MENTION in text


def test_metadata_carries_the_number_and_the_issue_date():
    reader = read(render_pdf(exempt()))
    assert reader.metadata.title == "Facture F-2026-000042"
    assert reader.metadata.author == "Cap Métiers Conseil"
    assert reader.metadata.creation_date == datetime(2026, 1, 15, tzinfo=UTC)


def test_the_same_document_renders_the_same_bytes():
    assert render_pdf(exempt()) == render_pdf(exempt())
    assert render_pdf(exempt()) != render_pdf(exempt(issue_date=date(2026, 1, 16)))


@pytest.mark.parametrize("value, expected", [
    (Decimal("1234.56"), "1 234,56 EUR"),
    (Decimal("0"), "0,00 EUR"),
    (Decimal("999"), "999,00 EUR"),
    (Decimal("1E+3"), "1 000,00 EUR"),
    (Decimal("1234567.891"), "1 234 567,89 EUR"),
    (Decimal("0.005"), "0,01 EUR"),  # half up, as an accountant rounds, not half even
    (Decimal("999.995"), "1 000,00 EUR"),
    (Decimal("-1234.5"), "-1 234,50 EUR"),
    (Decimal("-0.001"), "0,00 EUR"),
    (Decimal("1E+30"), "1" + " 000" * 10 + ",00 EUR"),  # beyond the default 28-digit context
])
def test_format_amount(value, expected):
    assert format_amount(value, "EUR") == expected


@pytest.mark.parametrize("value", [1234.56, 1234, "1234.56", Decimal("NaN"), Decimal("Infinity"), None])
def test_format_amount_refuses_what_is_not_a_finite_decimal(value):
    with pytest.raises(ValueError, match="finite Decimal"):
        format_amount(value, "EUR")


def test_typographic_characters_become_their_latin1_look_alikes():
    doc = exempt(seller_name="L’Atelier “Bilan” – Conseil — Œuvre & cœur…",
                 training_title="Bilan à 1 500 € ‘express’")
    text = text_of(doc)
    assert "L'Atelier \"Bilan\" - Conseil - OEuvre & coeur..." in text
    assert "Bilan à 1 500 EUR 'express'" in text


def test_characters_outside_latin1_become_question_marks_but_latin_letters_keep_their_base():
    doc = exempt(beneficiary_name="Zoë 😀 王芳 Dvořák Ștefan", training_title="Bilan de compe\u0301tences")
    text = text_of(doc)
    assert "Zoë ? ?? Dvorák Stefan" in text
    assert "Bilan de compétences" in text  # a decomposed accent is recomposed, not lost


def test_control_and_invisible_characters_are_dropped():
    doc = exempt(beneficiary_name="Amé\x00lie\x07 \x1b\u200b\u202ePoulain\u00ad",
                 training_title="Bilan\tde\u00a0compétences\u202fcomplet\x0bà\r\ndistance")
    text = text_of(doc)
    assert "Amélie Poulain" in text
    assert "Bilan de compétences complet à distance" in text


@pytest.mark.parametrize("field", ["number", "seller_name", "seller_siret", "seller_address", "beneficiary_name",
                                   "beneficiary_address", "training_title", "folder_number", "vat_mention",
                                   "financer"])
def test_a_10k_character_field_is_capped_with_an_ellipsis(field):
    reader = read(render_pdf(exempt(**{field: "Q" * 10_000})))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert len(reader.pages) == 1
    # Helvetica wraps the run over lines, so count the letter rather than look for one long run;
    # the title is printed twice: whole in the training block, shortened in the table's designation.
    most = MAX_FIELD_CHARS + (MAX_DESIGNATION_CHARS if field == "training_title" else 0)
    assert most - 10 <= text.count("Q") <= most
    assert "Q..." in text
    assert "Total TTC : 1 234,56 EUR" in text  # the rest of the invoice is still there


def test_hostile_text_everywhere_still_renders_and_keeps_its_readable_parts():
    hostile = "Dupont’s 😀\x00\n\r\t\u202e𝕏 " + "x" * 9_000 + " – fin"
    doc = exempt(**{field: "Dupont " + hostile for field in (
        "number", "seller_name", "seller_siret", "seller_address", "beneficiary_name", "beneficiary_address",
        "training_title", "folder_number", "vat_mention", "financer")})
    reader = read(render_pdf(doc))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert 1 <= len(reader.pages) <= 3  # ten capped fields at once may spill over; nothing more
    assert "Dupont Dupont's ? X" in text  # 𝕏 (mathematical X) keeps its base letter
    assert "Total TTC : 1 234,56 EUR" in text
    assert reader.metadata.title.startswith("Facture Dupont Dupont's")


def test_a_10k_line_address_prints_a_few_lines_only():
    address = "\n".join(f"ligne {i}" for i in range(10_000))
    text = text_of(exempt(seller_address=address))
    assert "ligne 0" in text and "ligne 4" in text
    assert "ligne 5 ..." in text
    assert "ligne 6" not in text


def test_empty_optional_fields_print_nothing_and_leave_no_dangling_label():
    doc = exempt(seller_siret=None, seller_address="", beneficiary_address=" \n \n", session_start=None,
                 session_end=None, vat_mention=None, financer="")
    text = text_of(doc)
    for label in ("SIRET", "Financeur", "Session", "non applicable"):
        assert label not in text
    assert "Amélie Poulain" in text and "Dossier CPF n° 4185270136" in text


def test_only_the_number_is_required_the_other_names_may_be_blank():
    text = text_of(exempt(seller_name="", beneficiary_name=" ", training_title="", folder_number=""))
    assert "N° de facture : F-2026-000042" in text
    assert "Total TTC : 1 234,56 EUR" in text
    assert "Dossier CPF" not in text  # no label left dangling


@pytest.mark.parametrize("start, end, printed", [
    (date(2026, 1, 5), None, "Session : à partir du 05/01/2026"),
    (None, date(2026, 3, 20), "Session : jusqu'au 20/03/2026"),
])
def test_half_known_sessions(start, end, printed):
    assert printed in text_of(exempt(session_start=start, session_end=end))


def test_an_issue_date_given_as_a_datetime_prints_its_day():
    text = text_of(exempt(issue_date=datetime(2026, 1, 15, 23, 30, tzinfo=UTC)))
    assert "Date : 15/01/2026" in text


@pytest.mark.parametrize("changes, field", [
    ({"number": ""}, "number"),
    ({"number": "  \x00\u200b "}, "number"),  # nothing printable is as empty as nothing
    ({"number": None}, "number"),
    ({"seller_name": None}, "seller_name"),
    ({"beneficiary_name": None}, "beneficiary_name"),
    ({"folder_number": 4185270136}, "folder_number"),
    ({"training_title": 42}, "training_title"),
    ({"seller_siret": 12345678900012}, "seller_siret"),
    ({"issue_date": None}, "issue_date"),
    ({"issue_date": "2026-01-15"}, "issue_date"),
    ({"session_end": "2026-03-20"}, "session_end"),
    ({"amount_excl": Decimal("-1"), "amount_incl": Decimal("-1")}, "amount_excl"),
    ({"vat_amount": Decimal("-0.01")}, "vat_amount"),
    ({"amount_incl": Decimal("-1234.56")}, "amount_incl"),
    ({"amount_incl": Decimal("1234.57")}, "amount_incl"),
    ({"amount_incl": Decimal("1234.55")}, "amount_incl"),
    ({"amount_excl": 1234.56}, "amount_excl"),
    ({"amount_excl": 1234, "amount_incl": Decimal("1234")}, "amount_excl"),
    ({"vat_amount": 0}, "vat_amount"),
    ({"amount_incl": "1234.56"}, "amount_incl"),
    ({"amount_excl": Decimal("NaN")}, "amount_excl"),
    ({"vat_rate": 20.0}, "vat_rate"),
    ({"vat_rate": Decimal("-5")}, "vat_rate"),
    ({"vat_rate": Decimal("120")}, "vat_rate"),
    ({"vat_amount": Decimal("10"), "amount_incl": Decimal("1244.56")}, "vat_amount"),  # exempt yet taxed
    ({"currency": "eur"}, "currency"),
    ({"currency": "EURO"}, "currency"),
    ({"currency": "€"}, "currency"),
    ({"currency": "EU1"}, "currency"),
    ({"currency": "EUR\n"}, "currency"),
    ({"currency": "ÉUR"}, "currency"),
    ({"currency": None}, "currency"),
])
def test_an_invalid_document_is_refused_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        exempt(**changes)


def test_replace_validates_too():
    with pytest.raises(ValueError, match="amount_incl"):
        replace(exempt(), amount_incl=Decimal("1"))


def test_totals_are_checked_as_printed_to_the_cent():
    # 1000.004 + 200.004 print as 1 000,00 + 200,00 = 1 200,00: consistent on paper, so accepted.
    doc = with_vat(amount_excl=Decimal("1000.004"), vat_amount=Decimal("200.004"), amount_incl=Decimal("1200.001"))
    assert "Total TTC : 1 200,00 EUR" in text_of(doc)
    with pytest.raises(ValueError, match="amount_incl"):
        with_vat(amount_incl=Decimal("1200.01"))


def test_another_currency_is_printed_as_given():
    assert "Total TTC : 1 234,56 CHF" in text_of(exempt(currency="CHF"))
