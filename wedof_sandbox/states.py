"""The registration-folder state machine, as the organism sees it through the API (wedof-api.md §4).

Two kinds of moves exist: the organism's transitions (POST ``/registrationFolders/{id}/<verb>``) and
moves made by the attendee or the financer on EDOF (acceptance, refusal, cancellation, validation of the
service done, payment), which only the simulation performs.
"""

from __future__ import annotations

STATES = (
    "notProcessed", "validated", "waitingAcceptation", "accepted", "inTraining", "terminated",
    "serviceDoneDeclared", "serviceDoneValidated",
    "canceledByAttendee", "canceledByAttendeeNotRealized", "canceledByOrganism", "canceledByFinancer",
    "rejectedWithoutTitulaireSuite", "refusedByAttendee", "refusedByOrganism", "refusedByFinancer",
)
TYPES = ("cpf", "individual", "company", "opco", "opcoCfa", "kairosAif", "poleEmploi")
BILLING_STATES = ("notBillable", "depositWait", "depositPaid", "toBill", "billed", "paid")
CONTROL_STATES = ("notInControl", "inControl", "released")
SERVICE_DONE_STATES = ("serviceDoneDeclared", "serviceDoneValidated")
COMPLETION_STATES = ("inTraining", "terminated")

# verb -> {from state: to state}
ORGANISM_TRANSITIONS: dict[str, dict[str, str]] = {
    "validate": {"notProcessed": "validated"},  # -> waitingAcceptation for France Travail folders
    "inTraining": {"accepted": "inTraining"},
    "terminate": {"inTraining": "terminated"},
    "serviceDone": {"terminated": "serviceDoneDeclared", "inTraining": "serviceDoneDeclared"},
    "refuse": {s: "refusedByOrganism" for s in ("notProcessed", "validated", "waitingAcceptation")},
    "cancel": {s: "canceledByOrganism" for s in ("validated", "waitingAcceptation", "accepted")},
}
VERBS = (*ORGANISM_TRANSITIONS, "billing")

# Moves made outside the organism (attendee, financer); used by the simulation only.
EXTERNAL_MOVES: dict[str, tuple[str, ...]] = {
    "notProcessed": ("rejectedWithoutTitulaireSuite",),
    "validated": ("accepted", "accepted", "accepted", "refusedByAttendee", "rejectedWithoutTitulaireSuite"),
    "waitingAcceptation": ("accepted", "refusedByFinancer"),
    "accepted": ("canceledByAttendee", "canceledByAttendeeNotRealized", "canceledByFinancer"),
    "serviceDoneDeclared": ("serviceDoneValidated",),
}

# The history path a folder walked to reach each state (the *Date keys it has set).
HISTORY_PATH: dict[str, tuple[str, ...]] = {
    "notProcessed": ("notProcessed",),
    "validated": ("notProcessed", "validated"),
    "waitingAcceptation": ("notProcessed", "validated"),
    "accepted": ("notProcessed", "validated", "accepted"),
    "inTraining": ("notProcessed", "validated", "accepted", "inTraining"),
    "terminated": ("notProcessed", "validated", "accepted", "inTraining", "terminated"),
    "serviceDoneDeclared": ("notProcessed", "validated", "accepted", "inTraining", "terminated",
                            "serviceDoneDeclared"),
    "serviceDoneValidated": ("notProcessed", "validated", "accepted", "inTraining", "terminated",
                             "serviceDoneDeclared", "serviceDoneValidated"),
    "canceledByAttendee": ("notProcessed", "validated", "accepted", "canceledByAttendee"),
    "canceledByAttendeeNotRealized": ("notProcessed", "validated", "accepted", "canceledByAttendeeNotRealized"),
    "canceledByOrganism": ("notProcessed", "validated", "accepted", "canceledByOrganism"),
    "canceledByFinancer": ("notProcessed", "validated", "accepted", "canceledByFinancer"),
    "rejectedWithoutTitulaireSuite": ("notProcessed", "validated", "rejectedWithoutTitulaireSuite"),
    "refusedByAttendee": ("notProcessed", "validated", "refusedByAttendee"),
    "refusedByOrganism": ("notProcessed", "refusedByOrganism"),
    "refusedByFinancer": ("notProcessed", "validated", "refusedByFinancer"),
}

REASONS: dict[str, list[dict[str, str]]] = {
    "terminated": [
        {"code": "8", "label": "Fin de formation"},
        {"code": "9", "label": "Abandon du stagiaire"},
        {"code": "10", "label": "Exclusion du stagiaire"},
        {"code": "11", "label": "Force majeure"},
    ],
    "refused": [
        {"code": "1", "label": "Session complète"},
        {"code": "2", "label": "Prérequis non remplis"},
        {"code": "3", "label": "Formation annulée"},
    ],
    "canceled": [
        {"code": "4", "label": "Annulation à la demande du stagiaire"},
        {"code": "5", "label": "Session annulée par l'organisme"},
        {"code": "6", "label": "Stagiaire injoignable"},
    ],
}
REASON_TYPE_OF_VERB = {"terminate": "terminated", "serviceDone": "terminated", "refuse": "refused",
                       "cancel": "canceled"}


def history_key(state: str) -> str:
    return f"{state}Date"


def is_final(state: str) -> bool:
    return state.startswith(("canceled", "refused", "rejected")) or state == "serviceDoneValidated"
