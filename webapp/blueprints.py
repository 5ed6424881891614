"""The list of blueprints the app serves; each area of the webapp adds its own here."""

from __future__ import annotations

from flask import Blueprint


def all_blueprints() -> list[Blueprint]:
    from webapp.admin import bp as wedof_admin
    from webapp.health import bp as health
    from webapp.openapi import bp as openapi
    from webapp.page import bp as integration_page
    from webapp.receiver import bp as webhooks

    return [health, webhooks, wedof_admin, openapi, integration_page]
