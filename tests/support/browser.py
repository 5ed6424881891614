"""What the page's browser tests share: Debian's Chromium under Playwright, the stack's environment and an
admin's token."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"  # the system one: a browser is never downloaded
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextmanager
def chromium():
    """A headless Chromium, closed afterwards whatever the test did."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def page_stack_env(redis_base_url: str, redis_db: int, database_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of a stack the page is opened on (its own Redis database; no scheduled sync)."""
    return {"APP_ENV": "test", "DATABASE_URL": database_url, "REDIS_URL": f"{redis_base_url.rsplit('/', 1)[0]}/{redis_db}",
            "BDC_VAR_DIR": str(var_dir), "WEDOF_SYNC_ENABLED": "false",
            "SECRET_ENCRYPTION_KEY": os.environ["SECRET_ENCRYPTION_KEY"], "JWT_SECRET_KEY": os.environ["JWT_SECRET_KEY"],
            "FLOWER_URL": "http://127.0.0.1:5555", "PUBLIC_BASE_URL": "http://127.0.0.1:8000"}


def admin_token(user_id: int, tenant_id: int) -> str:
    """A tenant admin's token, signed with the environment's JWT key as the stack's receiver checks it."""
    from flask_jwt_extended import create_access_token

    from webapp.app import create_app

    with create_app().app_context():
        return create_access_token(identity=str(user_id), additional_claims={"role": "tenant_admin",
                                                                             "tenant_id": tenant_id})


# Reported from every document the page opens (expose_function survives navigations and reloads).
_REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => window.__reportCsp(
  {directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile}));
"""


class CspWatch:
    """Content-Security-Policy violations a page reports: its own event and Chromium's console message."""

    def __init__(self, page):
        self.events: list[dict] = []
        self.console: list[str] = []
        page.expose_function("__reportCsp", self._event)
        page.add_init_script(_REPORT_CSP)
        page.on("console", self._console)

    def _event(self, report: dict) -> None:
        self.events.append(report)

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(message.text)

    @property
    def violations(self) -> list:
        return [*self.events, *self.console]
