"""The one list of Wedof folder states, and what each means for the BDC.

The table from a registration folder's ``state`` to the BDC enrollment status lists every state
Wedof documents (wedof-api.md §4), so a reader can check it line by line; its keys are THE list of
folder states (:data:`FOLDER_STATES`: the webhook subscription and the declarations derive from
it). A state we do not know (a new Wedof state, a typo, ``None``) counts as *enrolled*: the folder
exists but nothing says the bilan started, ended or was abandoned.
"""

from __future__ import annotations

from dataclasses import dataclass

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

FOLDER_STATES: tuple[str, ...] = tuple(ENROLLMENT_STATUS_BY_STATE)
# A folder's billingState (wedof-api.md §3, §5).
BILLING_STATES = ("notBillable", "depositWait", "depositPaid", "toBill", "billed", "paid")

# Wedof accepts a completionRate update only in these states (wedof-api.md §6, quirk 3).
PROGRESS_ALLOWED_STATES = frozenset({"inTraining", "terminated"})
SERVICE_DONE_STATES = frozenset({"serviceDoneDeclared", "serviceDoneValidated"})


@dataclass(frozen=True)
class Declaration:
    """A lifecycle declaration the organism makes: ``POST /registrationFolders/{id}/<verb>``."""

    verb: str
    allowed_from: frozenset[str]  # the states Wedof accepts it from
    reached: frozenset[str]  # the states in which it is already done (or passed): never sent again


# serviceDone also works from inTraining: Wedof passes through terminated by itself.
DECLARATIONS = {
    "inTraining": Declaration("inTraining", frozenset({"accepted"}),
                              frozenset({"inTraining", "terminated"}) | SERVICE_DONE_STATES),
    "terminated": Declaration("terminate", frozenset({"inTraining"}), frozenset({"terminated"}) | SERVICE_DONE_STATES),
    "serviceDone": Declaration("serviceDone", frozenset({"inTraining", "terminated"}), SERVICE_DONE_STATES),
}

# Reaching one of these means the bilan is over: its report document is created (once).
REPORT_STATES = frozenset({"terminated"}) | SERVICE_DONE_STATES

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
