"""Security headers on the integration page, the admin API and the receiver; a page with no inline code.

The page's Content-Security-Policy allows scripts and styles from our own origin only, so any inline
<script>, on*= handler or style= attribute in the served HTML would be blocked by the browser: the
HTML is parsed here to make sure there is none (the browser tests then run the page under the policy).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.webapp.conftest import ADMIN_API, TENANT_SECRETS, folder_body, wedof_delivery_headers

STATIC_DIR = Path(__file__).resolve().parents[2] / "webapp" / "static"
COMMON = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            assert words[0] not in parsed, f"directive {words[0]} given twice"
            parsed[words[0]] = words[1:]
    return parsed


def assert_common_headers(response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, name
    assert len(response.headers.getlist("Content-Security-Policy")) == 1


def assert_page_policy(response) -> None:
    assert_common_headers(response)
    policy = response.headers["Content-Security-Policy"]
    found = directives(policy)
    assert found["default-src"] == ["'none'"]
    assert found["script-src"] == ["'self'"] and found["style-src"] == ["'self'"]
    assert found["frame-ancestors"] == ["'none'"] and found["base-uri"] == ["'none'"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "*" not in policy


def assert_api_policy(response) -> None:
    assert_common_headers(response)
    found = directives(response.headers["Content-Security-Policy"])
    assert found["default-src"] == ["'none'"] and found["frame-ancestors"] == ["'none'"]


class InlineCodeFinder(HTMLParser):
    """Everything in a document that a script-src/style-src 'self' policy would block."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._open_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=...> inline handler")
            if name == "style":
                self.found.append(f"<{tag} style=...> inline style")
            if name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                    "javascript:"):
                self.found.append(f"<{tag} {name}=javascript:...>")
        if tag == "script":
            self._open_script = attributes
            if not attributes.get("src"):
                self.found.append("<script> without src")
            else:
                self.scripts.append(attributes["src"])
        if tag == "style":
            self.found.append("<style> element")

    def handle_data(self, data):
        if self._open_script is not None and data.strip():
            self.found.append(f"<script> with inline code: {data.strip()[:60]!r}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._open_script = None


def inline_code(html: str) -> InlineCodeFinder:
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder


def test_the_finder_sees_inline_code():
    # The parser below must catch what it is there to catch, or the page test proves nothing.
    html = ('<p style="color:red" onclick="x()">a</p><script>alert(1)</script><script src="/s.js"></script>'
            '<a href=" JavaScript:alert(1)">b</a><style>p{}</style><button onmouseover=y>c</button>')
    found = inline_code(html).found
    assert len(found) == 7, found


@pytest.mark.parametrize("who", [None, "admin_a", "expired", "trainer_a"])
def test_the_page_sends_its_policy_and_has_no_inline_code(admin_world, who):
    path = "/integrations/wedof" + (f"?token={admin_world.tokens[who]}" if who else "")
    response = admin_world.client.get(path)
    assert response.status_code in (200, 401, 403) and "text/html" in response.content_type
    assert_page_policy(response)
    finder = inline_code(response.get_data(as_text=True))
    assert finder.found == []
    # The page's scripts are our own static files, served as JavaScript with nosniff.
    assert finder.scripts and all(src.startswith("/static/") for src in finder.scripts)
    for src in finder.scripts:
        asset = admin_world.client.get(src)
        assert asset.status_code == 200 and "javascript" in asset.content_type
        assert asset.headers["X-Content-Type-Options"] == "nosniff"


def test_the_static_scripts_do_nothing_the_policy_blocks():
    # Under script-src 'self' these would throw (eval) or be ignored (inline handlers, style attributes).
    forbidden = re.compile(r"\beval\(|new Function\(|setAttribute\(\s*[\"'](?:on\w+|style)[\"']|\.innerHTML\s*=|"
                           r"\.outerHTML\s*=|insertAdjacentHTML|document\.write|setTimeout\(\s*[\"']|\.cssText\s*=")
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert scripts
    for script in scripts:
        hits = [line for line in script.read_text().splitlines() if forbidden.search(line)]
        assert hits == [], f"{script.name}: {hits}"


@pytest.mark.parametrize("path,who,status", [("/status", "admin_a", 200), ("/events?status=failed", "admin_b", 200),
                                             ("/status", None, 401), ("/status", "trainer_a", 403),
                                             ("/events/999999", "admin_a", 404)])
def test_admin_api_answers_carry_the_api_policy(admin_world, path, who, status):
    response = admin_world.call("GET", path, who=who)
    assert response.status_code == status
    assert_api_policy(response)


def test_the_receiver_and_probes_carry_the_headers_too(admin_world):
    body = folder_body("4270885999")
    headers = wedof_delivery_headers(body, delivery="dlv-headers", secret=TENANT_SECRETS["a"]["webhook_secret"])
    response = admin_world.client.post(f"/api/webhooks/wedof/{admin_world.connections['a']}", data=body,
                                       headers=headers)
    assert response.status_code == 202
    assert_api_policy(response)
    unsigned = admin_world.client.post(f"/api/webhooks/wedof/{admin_world.connections['a']}", data=body,
                                       headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401
    assert_api_policy(unsigned)
    for path in ("/healthz", "/openapi.json", "/no-such-page"):
        assert_api_policy(admin_world.client.get(path))


def test_the_api_policy_is_not_the_page_policy(admin_world):
    page = admin_world.client.get("/integrations/wedof")
    api = admin_world.client.get(ADMIN_API + "/status", headers=admin_world.headers("super"))
    assert "script-src" in page.headers["Content-Security-Policy"]
    assert "script-src" not in api.headers["Content-Security-Policy"]
