"""ADMIN_RATE_LIMIT and ADMIN_RATE_LIMIT_PER_ADDRESS: sensible defaults, flask-limiter's syntax, clear refusals."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from bdc.settings import SettingsError, load_settings

BASE = {"APP_ENV": "test", "JWT_SECRET_KEY": "x" * 32, "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode()}


def test_defaults():
    settings = load_settings(dict(BASE))
    assert (settings.admin_rate_limit, settings.admin_rate_limit_per_address) == ("120/minute", "600/minute")


@pytest.mark.parametrize("value", ["30/minute", "5 per 2 seconds", "100/minute;2000/hour", " 10/second "])
def test_accepted_values(value):
    settings = load_settings({**BASE, "ADMIN_RATE_LIMIT": value, "ADMIN_RATE_LIMIT_PER_ADDRESS": value})
    assert settings.admin_rate_limit == settings.admin_rate_limit_per_address == value.strip()


@pytest.mark.parametrize("name", ["ADMIN_RATE_LIMIT", "ADMIN_RATE_LIMIT_PER_ADDRESS"])
@pytest.mark.parametrize("value", ["120", "lots", "0/minute", "-1/minute", "10/fortnight", "10/minute;",
                                   "10/minute; x", "1e9/minute", "10 minute", "10/minute\nX: y"])
def test_bad_values_name_the_variable_and_the_expected_form(name, value):
    with pytest.raises(SettingsError, match=rf"{name} must look like 120/minute") as raised:
        load_settings({**BASE, name: value})
    assert repr(value) in str(raised.value)
