"""The audit log's record of a change: old and new values, a secret only as "changed"."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from bdc.audit import CHANGED, changes
from bdc.models import ActionStatus


def test_only_changed_fields_with_old_and_new_values():
    before = {"enabled": True, "name": "Wedof", "rate": None, "day": date(2026, 1, 2)}
    after = {"enabled": False, "name": "Wedof", "rate": 2.5, "day": date(2026, 1, 3)}
    assert changes(before, after) == {"enabled": {"old": True, "new": False}, "rate": {"old": None, "new": 2.5},
                                      "day": {"old": "2026-01-02", "new": "2026-01-03"}}


def test_secrets_are_recorded_as_changed_never_by_value():
    found = changes({"api_key": "old-key-123", "webhook_secret": None}, {"api_key": "new-key-456",
                                                                         "webhook_secret": "s3cr3t-value"},
                    secrets=("api_key", "webhook_secret"))
    assert found == {"api_key": CHANGED, "webhook_secret": CHANGED}
    assert "key-" not in str(found) and "s3cr3t" not in str(found)


def test_values_are_made_json_safe_and_fields_can_be_restricted():
    moment = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    found = changes({"status": ActionStatus.PROPOSED, "at": None, "amount": Decimal("1.10"), "other": 1},
                    {"status": ActionStatus.APPROVED, "at": moment, "amount": Decimal("2.20"), "other": 2},
                    fields=("status", "at", "amount"))
    assert found == {"status": {"old": "proposed", "new": "approved"},
                     "at": {"old": None, "new": "2026-12-02T09:30:00+00:00"},
                     "amount": {"old": "1.10", "new": "2.20"}}


def test_nothing_changed_is_nothing_recorded():
    assert changes({"a": 1}, {"a": 1}) == {}
    assert changes({}, {}) == {}
