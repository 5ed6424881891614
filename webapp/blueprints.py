"""The list of blueprints the app serves; each area of the webapp adds its own here."""

from __future__ import annotations

from flask import Blueprint


def all_blueprints() -> list[Blueprint]:
    from webapp.health import bp as health

    return [health]
