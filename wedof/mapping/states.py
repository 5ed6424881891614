"""The one table from a Wedof registration-folder ``state`` to the BDC enrollment status.

Every state Wedof documents is listed explicitly (wedof-api.md §4), so a reader can check the table
line by line; a state we do not know (a new Wedof state, a typo, ``None``) counts as *enrolled*:
the folder exists but nothing says the bilan started, ended or was abandoned.
"""

from __future__ import annotations

from bdc.models.enums import EnrollmentStatus

ENROLLMENT_STATUS_BY_STATE: dict[str, EnrollmentStatus] = {
    # Before the training starts.
    "notProcessed": EnrollmentStatus.ENROLLED,
    "validated": EnrollmentStatus.ENROLLED,
    "waitingAcceptation": EnrollmentStatus.ENROLLED,
    "accepted": EnrollmentStatus.ENROLLED,
    # Running.
    "inTraining": EnrollmentStatus.ACTIVE,
    # Done, whatever the billing side says.
    "terminated": EnrollmentStatus.COMPLETED,
    "serviceDoneDeclared": EnrollmentStatus.COMPLETED,
    "serviceDoneValidated": EnrollmentStatus.COMPLETED,
    # Abandoned: canceled, refused or rejected by anyone.
    "canceledByAttendee": EnrollmentStatus.WITHDRAWN,
    "canceledByAttendeeNotRealized": EnrollmentStatus.WITHDRAWN,
    "canceledByOrganism": EnrollmentStatus.WITHDRAWN,
    "canceledByFinancer": EnrollmentStatus.WITHDRAWN,
    "rejectedWithoutTitulaireSuite": EnrollmentStatus.WITHDRAWN,
    "refusedByAttendee": EnrollmentStatus.WITHDRAWN,
    "refusedByOrganism": EnrollmentStatus.WITHDRAWN,
    "refusedByFinancer": EnrollmentStatus.WITHDRAWN,
}

# Wedof accepts a completionRate update only in these states (wedof-api.md §6, quirk 3).
PROGRESS_ALLOWED_STATES = frozenset({"inTraining", "terminated"})

# Reaching one of these means the bilan is over: its report document is created (once).
REPORT_STATES = frozenset({"terminated", "serviceDoneDeclared", "serviceDoneValidated"})

# The history key holding the date a folder reached each report state.
REPORT_STATE_DATE_KEYS = {
    "terminated": "terminatedDate",
    "serviceDoneDeclared": "serviceDoneDeclaredDate",
    "serviceDoneValidated": "serviceDoneValidatedDate",
}


def enrollment_status_for(state: str | None) -> EnrollmentStatus:
    """The enrollment status for a Wedof folder state; unknown or missing states are *enrolled*."""
    if not isinstance(state, str):
        return EnrollmentStatus.ENROLLED
    return ENROLLMENT_STATUS_BY_STATE.get(state, EnrollmentStatus.ENROLLED)
