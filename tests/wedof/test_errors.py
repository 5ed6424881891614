"""Mapping of Wedof HTTP failures to typed errors (pure functions, no network)."""

import pickle
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from wedof.errors import (
    BODY_EXCERPT_LENGTH,
    WedofAuthenticationError,
    WedofError,
    WedofForbiddenError,
    WedofNetworkError,
    WedofNotFoundError,
    WedofProtocolError,
    WedofRateLimitedError,
    WedofServerError,
    WedofValidationError,
    error_from_response,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "cls", "transient"),
    [
        (400, WedofValidationError, False),
        (401, WedofAuthenticationError, False),
        (403, WedofForbiddenError, False),
        (404, WedofNotFoundError, False),
        (405, WedofError, False),
        (409, WedofValidationError, False),
        (422, WedofValidationError, False),
        (429, WedofRateLimitedError, True),
        (500, WedofServerError, True),
        (502, WedofServerError, True),
        (503, WedofServerError, True),
        (599, WedofServerError, True),
    ],
)
def test_status_maps_to_error_class(status, cls, transient):
    error = error_from_response(status, "", {})
    assert type(error) is cls
    assert error.status == status
    assert error.transient is transient


def test_network_and_protocol_transience():
    assert WedofNetworkError("x").transient is True
    assert WedofProtocolError("x").transient is False


def test_validation_error_carries_detail_and_violations():
    body = (
        '{"detail": "Transition refused", "violations": [{"propertyPath": "state", "title": "bad state"},'
        ' "junk", {"propertyPath": null}]}'
    )
    error = error_from_response(400, body, {}, method="POST", path="/registrationFolders/1/terminate")
    assert isinstance(error, WedofValidationError)
    assert error.detail == "Transition refused"
    assert error.violations == [
        {"propertyPath": "state", "title": "bad state"},
        {"propertyPath": "", "title": ""},
    ]
    assert "Transition refused" in str(error) and "/terminate" in str(error)


@pytest.mark.parametrize(
    "body", [None, "", "not json", "[1,2]", '"str"', "{", '{"violations": "nope"}', "[" * 5000, "\x00\xff"]
)
def test_unreadable_error_bodies_still_give_a_typed_error(body):
    error = error_from_response(400, body, {})
    assert isinstance(error, WedofValidationError)
    assert error.violations == []
    assert error.message


def test_body_excerpt_is_short_and_never_contains_the_api_key():
    key = "super-secret-key-123"
    body = '{"detail": "bad key super-secret-key-123", "padding": "' + "x" * 5000 + '"}'
    error = error_from_response(401, body, {}, secrets=(key,))
    assert len(error.body_excerpt) <= BODY_EXCERPT_LENGTH
    for text in (error.body_excerpt, str(error), repr(error), error.detail):
        assert key not in text


def test_rate_limited_parses_retry_after_seconds():
    error = error_from_response(429, "", {"Retry-After": "7"})
    assert error.retry_after == 7.0


def test_rate_limited_without_retry_after():
    assert error_from_response(429, "", {}).retry_after is None


def test_retry_after_http_date():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(30.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "Mon, 99 Foo 2025", "1e400"])
def test_unusable_retry_after_is_none(value):
    assert parse_retry_after(value) is None


def test_errors_survive_pickling_with_their_fields():
    error = error_from_response(429, '{"detail":"slow"}', {"Retry-After": "3"}, method="GET", path="/x")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is WedofRateLimitedError
    assert (clone.status, clone.detail, clone.retry_after, clone.path) == (429, "slow", 3.0, "/x")
    network = pickle.loads(pickle.dumps(WedofNetworkError("down", not_sent=True)))
    assert network.not_sent is True and network.transient is True
