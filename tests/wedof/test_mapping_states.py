"""The Wedof state → enrollment status table, checked once for every state Wedof documents."""

from __future__ import annotations

import pytest

from bdc.models import BeneficiaryStatus, EnrollmentStatus
from wedof.mapping import (
    ENROLLMENT_STATUS_BY_STATE,
    PROGRESS_ALLOWED_STATES,
    REPORT_STATES,
    beneficiary_status_for,
    enrollment_status_for,
)

E = EnrollmentStatus
# Written out independently of the code, from wedof-api.md §4 "States".
EXPECTED = {
    "notProcessed": E.ENROLLED,
    "validated": E.ENROLLED,
    "waitingAcceptation": E.ENROLLED,
    "accepted": E.ENROLLED,
    "inTraining": E.ACTIVE,
    "terminated": E.COMPLETED,
    "serviceDoneDeclared": E.COMPLETED,
    "serviceDoneValidated": E.COMPLETED,
    "canceledByAttendee": E.WITHDRAWN,
    "canceledByAttendeeNotRealized": E.WITHDRAWN,
    "canceledByOrganism": E.WITHDRAWN,
    "canceledByFinancer": E.WITHDRAWN,
    "rejectedWithoutTitulaireSuite": E.WITHDRAWN,
    "refusedByAttendee": E.WITHDRAWN,
    "refusedByOrganism": E.WITHDRAWN,
    "refusedByFinancer": E.WITHDRAWN,
}


@pytest.mark.parametrize(("state", "status"), sorted(EXPECTED.items()))
def test_every_documented_state_maps_to_its_status(state, status):
    assert enrollment_status_for(state) == status


def test_the_table_holds_exactly_the_documented_states():
    assert ENROLLMENT_STATUS_BY_STATE == EXPECTED


@pytest.mark.parametrize(
    "state", [None, "", "unknown", "INTRAINING", "intraining", 42, ["inTraining"], {"s": 1}]
)
def test_unknown_or_garbage_states_are_enrolled(state):
    assert enrollment_status_for(state) == E.ENROLLED


def test_progress_push_states_and_report_states():
    assert PROGRESS_ALLOWED_STATES == {"inTraining", "terminated"}
    assert REPORT_STATES == {"terminated", "serviceDoneDeclared", "serviceDoneValidated"}
    assert all(EXPECTED[state] == E.COMPLETED for state in REPORT_STATES)


B = BeneficiaryStatus


@pytest.mark.parametrize(
    ("statuses", "current", "expected"),
    [
        ([], B.ACTIVE, B.ACTIVE),
        ([E.ENROLLED], B.ACTIVE, B.ACTIVE),
        ([E.ACTIVE, E.COMPLETED], B.ACTIVE, B.ACTIVE),
        ([E.COMPLETED], B.ACTIVE, B.COMPLETED),
        ([E.COMPLETED, E.COMPLETED], B.ACTIVE, B.COMPLETED),
        ([E.COMPLETED, E.WITHDRAWN], B.ACTIVE, B.COMPLETED),
        ([E.WITHDRAWN], B.ACTIVE, B.ACTIVE),
        ([E.ACTIVE], B.COMPLETED, B.ACTIVE),  # a new bilan started: active again
        ([E.COMPLETED], B.ARCHIVED, B.ARCHIVED),  # staff decisions stand
        ([E.ACTIVE], B.INACTIVE, B.INACTIVE),
    ],
)
def test_beneficiary_status_follows_enrollments(statuses, current, expected):
    assert beneficiary_status_for(statuses, current) == expected
