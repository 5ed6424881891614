"""The integration page as served HTML: token handling, no secrets, static assets, JSON-free errors."""

from __future__ import annotations

import pytest

from tests.webapp.conftest import TENANT_SECRETS


def test_page_without_token_shows_the_form(admin_world):
    response = admin_world.client.get("/integrations/wedof")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "text/html" in response.content_type
    assert 'id="token-form"' in html and 'id="sync-now"' in html and 'id="failed-events"' in html
    assert 'data-api-base="/api/integrations/wedof"' in html and 'data-flower-url="http://127.0.0.1:5555"' in html


def test_page_with_a_valid_token(admin_world):
    response = admin_world.client.get(f"/integrations/wedof?token={admin_world.tokens['admin_a']}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="token-error"' not in html
    for secrets in TENANT_SECRETS.values():
        assert not any(value in html for value in secrets.values())


@pytest.mark.parametrize("who,status,text", [("expired", 401, "Jeton expiré."), ("forged", 401, "Jeton invalide."),
                                             ("garbage", 401, "Jeton invalide."), ("trainer_a", 403, "Only")])
def test_page_with_a_bad_token_says_why(admin_world, who, status, text):
    response = admin_world.client.get(f"/integrations/wedof?token={admin_world.tokens[who]}")
    html = response.get_data(as_text=True)
    assert response.status_code == status and 'id="token-error"' in html and text in html


def test_page_escapes_what_it_echoes(admin_world):
    response = admin_world.client.get("/integrations/wedof?token=<script>alert(1)</script>")
    assert response.status_code == 401 and "<script>alert(1)" not in response.get_data(as_text=True)


@pytest.mark.parametrize("asset,kind", [("integration.js", "javascript"), ("integration.css", "css")])
def test_static_assets(admin_world, asset, kind):
    response = admin_world.client.get(f"/static/{asset}")
    assert response.status_code == 200 and kind in response.content_type


def test_page_script_never_uses_innerhtml(admin_world):
    # Event types and errors come from outside; the script writes them with textContent only.
    script = admin_world.client.get("/static/integration.js").get_data(as_text=True)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


# -- billing ---------------------------------------------------------------------------------------------

def test_page_serves_the_billing_section_and_its_script(admin_world):
    import re

    html = admin_world.client.get(f"/integrations/wedof?token={admin_world.tokens['admin_a']}").get_data(as_text=True)
    for element in ('id="billing"', 'id="billing-month"', 'id="billing-export"', 'id="billing-totals"',
                    'data-figure="to_bill"', 'data-figure="billed"', 'data-figure="paid"', 'data-figure="failed"',
                    'id="billing-due"', 'id="billing-release-all"', 'id="billing-dry-run"', 'id="billing-failed"',
                    'id="billing-reserved"', 'id="billing-recent"', 'id="billing-message"'):
        assert element in html, element
    assert "Facturation" in html and "Simulation : aucun numéro réservé" in html
    # Every script is a file of ours, billing's before the page's (which hands it the token helpers);
    # nothing inline (a CSP may forbid it) and nothing from a CDN.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert [attrs.strip() for attrs, _ in scripts] == ['src="/static/billing.js"', 'src="/static/operations.js"',
                                                       'src="/static/integration.js"']
    assert all(body.strip() == "" for _, body in scripts)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html)
    # Buttons are real buttons, each with a text.
    for attrs, text in re.findall(r"<button\b([^>]*)>(.*?)</button>", html, flags=re.S):
        assert 'type="' in attrs and text.strip(), attrs
    assert re.search(r'<label for="billing-month">', html)


def test_billing_script_is_served_and_writes_text_only(admin_world):
    response = admin_world.client.get("/static/billing.js")
    script = response.get_data(as_text=True)
    assert response.status_code == 200 and "javascript" in response.content_type
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script
    for path in ("/invoices/summary", "/invoices/due", "/invoices/release", "/retry", "/cancel", "/pdf",
                 "/invoices/export.csv"):
        assert path in script, path
    page_script = admin_world.client.get("/static/integration.js").get_data(as_text=True)
    assert "window.BdcBilling" in page_script and "createObjectURL" in page_script
