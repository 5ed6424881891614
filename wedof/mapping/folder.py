"""Read a Wedof registration folder into clean, typed data, before any row is touched.

:func:`read_folder` either returns a :class:`FolderData` whose every value fits its column, or
raises :class:`FolderRejected`. Doing all the reading first is what makes an application
all-or-nothing: a hostile folder can never leave half of its rows written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bdc.models.enums import EnrollmentStatus, SyncKind
from wedof.ids import folder_number
from wedof.mapping import values
from wedof.mapping.states import REPORT_STATE_DATE_KEYS, enrollment_status_for

KINDS = tuple(SyncKind)

MAX_ATTENDEE_ID_LENGTH = 64
MAX_PROGRAM_ID_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 4000

_BILAN_TITLE = re.compile(r"bilans?\s+de\s+competences?")
# Keys only certification folders have: such a body is not a registration folder.
_CERTIFICATION_MARKERS = ("certifiedData", "cdcState", "examinationType", "certificateId")


class FolderRejected(ValueError):
    """The folder can never be applied as it is (permanent: retrying the same body cannot help)."""

    def __init__(self, reason: str, external_id: str | None = None):
        super().__init__(reason if external_id is None else f"folder {external_id}: {reason}")
        self.reason = reason
        self.external_id = external_id


@dataclass(frozen=True)
class AttendeeData:
    external_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    birth_date: date | None
    address: str | None
    city: str | None
    postal_code: str | None
    country: str | None
    # Extra facts for the BDC, already under their custom_fields keys; None means "remove the key".
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProgramData:
    external_id: str
    name: str
    description: str | None
    category: str
    duration_hours: float | None
    start_date: date | None
    end_date: date | None


@dataclass(frozen=True)
class FolderData:
    external_id: str
    last_update: datetime | None
    state: str | None
    billing_state: str | None
    status: EnrollmentStatus
    completion_rate: float | None  # clamped 0–100; None = Wedof sent no usable rate
    enrolled_at: datetime | None
    completed_at: datetime | None
    in_training_at: datetime | None
    permalink: str | None
    report_state_date: datetime | None
    amounts: dict[str, float] | None  # the price and billed amounts, as Wedof's numbers (see AMOUNT_KEYS)
    bill_number: str | None
    attendee: AttendeeData | None
    program: ProgramData | None


def read_folder(folder: Any, kind: SyncKind = SyncKind.ALL) -> FolderData:
    """Clean data for one folder, or :class:`FolderRejected` saying why it cannot be applied."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")  # a caller bug, not bad data
    if not isinstance(folder, Mapping):
        raise FolderRejected(f"a registration folder is a JSON object, not {type(folder).__name__}")
    external_id = _folder_id(folder.get("externalId"))
    try:
        return _read(folder, external_id, kind)
    except FolderRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - any surprise in hostile data is a rejection, never a crash
        raise FolderRejected(f"unreadable folder ({type(exc).__name__})", external_id) from exc


def read_version(folder: Any) -> tuple[str, datetime | None, str | None] | None:
    """(externalId, lastUpdate, attendee email) read cheaply; ``None`` when the externalId is unusable.

    Enough to tell a folder we already hold at this version; anything else goes to :func:`read_folder`.
    """
    if not isinstance(folder, Mapping):
        return None
    try:
        external_id = _folder_id(folder.get("externalId"))
        last_update = values.datetime_utc(folder.get("lastUpdate"))
        attendee = folder.get("attendee")
        email = values.email(attendee.get("email")) if isinstance(attendee, Mapping) else None
    except Exception:  # noqa: BLE001 - hostile data: the full reading decides what it is
        return None
    return external_id, last_update, email


@dataclass(frozen=True)
class FolderReading:
    """What applying a folder needs from its JSON alone: no database, so any thread can read it."""

    version: tuple[str, datetime | None, str | None] | None  # see read_version
    data: FolderData | FolderRejected | None  # None: not read yet (done when needed)


def read_folders(folders: Sequence[Any], kind: SyncKind = SyncKind.ALL, *, in_full: bool = True) -> list[FolderReading]:
    """Read a page ahead of applying it (a sync reads the next page while the database works).

    ``in_full=False`` reads only each folder's version: enough when most folders turn out to be
    held already (a re-sync), the others being read in full when applied.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    return [
        FolderReading(read_version(folder), read_or_reject(folder, kind) if in_full else None) for folder in folders
    ]


def read_or_reject(folder: Any, kind: SyncKind = SyncKind.ALL) -> FolderData | FolderRejected:
    """:func:`read_folder`, with the rejection returned rather than raised (one per page slot)."""
    try:
        return read_folder(folder, kind)
    except FolderRejected as rejected:
        return rejected


def _read(folder: Mapping, external_id: str, kind: str) -> FolderData:
    if any(key in folder for key in _CERTIFICATION_MARKERS):
        raise FolderRejected("a certification folder, not a registration folder", external_id)
    history = _mapping(folder.get("history"))
    state = values.short_text(folder.get("state"), 64)
    attendee = program = None
    if kind in (SyncKind.ALL, SyncKind.STAGIAIRES):
        attendee = _attendee(folder.get("attendee"), external_id)
    if kind in (SyncKind.ALL, SyncKind.FORMATIONS):
        program = _program(folder.get("trainingActionInfo"), external_id)
    report_key = REPORT_STATE_DATE_KEYS.get(state or "")
    return FolderData(
        external_id=external_id,
        last_update=values.datetime_utc(folder.get("lastUpdate")),
        state=state,
        billing_state=values.short_text(folder.get("billingState"), 32),
        status=enrollment_status_for(state),
        completion_rate=values.percent(folder.get("completionRate")),
        enrolled_at=values.datetime_utc(history.get("acceptedDate"))
        or values.datetime_utc(folder.get("createdOn")),
        completed_at=(
            values.datetime_utc(history.get("terminatedDate"))
            or values.datetime_utc(history.get("serviceDoneDeclaredDate"))
        ),
        in_training_at=values.datetime_utc(history.get("inTrainingDate")),
        permalink=values.short_text(folder.get("permalink"), 2000),
        report_state_date=values.datetime_utc(history.get(report_key)) if report_key else None,
        amounts=_amounts(folder),
        bill_number=values.short_text(folder.get("billNumber"), 100),
        attendee=attendee,
        program=program,
    )


# The price of the training action, then what Wedof fills when the folder is billed (wedof-api.md §3).
PRICE_KEYS = ("totalExcl", "totalIncl", "vat", "vatExclTax5", "vatInclTax5", "vatExclTax20", "vatInclTax20")
BILLED_KEYS = ("amountHtNet", "amountToInvoice", "amountCGU", "amountTtc", "amountHt",
               "vatHtAmount5", "vatAmount5", "vatHtAmount20", "vatAmount20")


def _amounts(folder: Mapping) -> dict[str, float] | None:
    """The numbers billing needs, each kept only when it is a finite number (a hostile value is left out)."""
    info = _mapping(folder.get("trainingActionInfo"))
    found = {key: values.number(info.get(key)) for key in PRICE_KEYS}
    found.update((key, values.number(folder.get(key))) for key in BILLED_KEYS)
    kept = {key: value for key, value in found.items() if value is not None}
    return kept or None


def _folder_id(value: Any) -> str:
    number = folder_number(value)
    if number is not None:
        return number
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise FolderRejected("no externalId: not a registration folder")
    raise FolderRejected(f"externalId {str(value)[:80]!r} is not a folder number")


def _mapping(value: Any) -> Mapping:
    return value if isinstance(value, Mapping) else {}


def _attendee(raw: Any, folder_id: str) -> AttendeeData:
    if not isinstance(raw, Mapping):
        raise FolderRejected("no attendee object", folder_id)
    attendee_id = raw.get("id")
    if isinstance(attendee_id, float) and attendee_id.is_integer():
        attendee_id = int(attendee_id)
    attendee_id = values.short_text(attendee_id, MAX_ATTENDEE_ID_LENGTH)
    if attendee_id is None:
        raise FolderRejected("the attendee has no usable id", folder_id)
    address = _mapping(raw.get("address"))
    degree = values.number(raw.get("degree"))
    return AttendeeData(
        external_id=attendee_id,
        # Kept exactly as Wedof has them, even where a sample visibly swaps them: Wedof is the truth.
        first_name=values.text(raw.get("firstName"), 200),
        last_name=values.text(raw.get("lastName"), 200),
        email=values.email(raw.get("email")),
        phone=values.short_text(raw.get("phoneNumber"), 50) or values.short_text(raw.get("phoneFixed"), 50),
        birth_date=values.date_only(raw.get("dateOfBirth")),
        address=_street(address),
        city=values.text(address.get("city"), 200),
        postal_code=values.short_text(address.get("zipCode"), 20),
        country=values.text(address.get("country"), 100) or values.text(address.get("countryCode"), 100),
        facts={
            # The French qualification level (1–8); anything else is noise.
            "wedof_degree": int(degree)
            if degree is not None and degree.is_integer() and 0 <= degree <= 9
            else None,
            "wedof_degree_title": values.text(raw.get("degreeTitle"), 300),
            "wedof_gender": values.text(raw.get("gender"), 50),
            "wedof_pole_emploi_id": values.text(raw.get("poleEmploiId"), 50),
        },
    )


def _street(address: Mapping) -> str | None:
    """The street line: Wedof's fullAddress, else "number roadTypeLabel roadName" (a number alone is no address)."""
    full = values.text(address.get("fullAddress"), 500)
    if full:
        return full
    road = values.text(address.get("roadName"), 300)
    if road is None:
        return None
    parts = [values.text(address.get("number"), 20), values.text(address.get("roadTypeLabel"), 100), road]
    return " ".join(part for part in parts if part)[:500]


def _program(raw: Any, folder_id: str) -> ProgramData:
    if not isinstance(raw, Mapping):
        raise FolderRejected("no trainingActionInfo: not a registration folder", folder_id)
    program_id = values.short_text(raw.get("externalId"), MAX_PROGRAM_ID_LENGTH) or values.short_text(
        raw.get("trainingActionId"), MAX_PROGRAM_ID_LENGTH
    )
    if program_id is None:
        raise FolderRejected("the training action has no usable externalId", folder_id)
    title = values.text(raw.get("title"), 500)
    name = title or f"Formation {program_id}"[:500]
    duration = values.number(raw.get("indicativeDuration"))
    return ProgramData(
        external_id=program_id,
        name=name,
        description=(
            values.text(raw.get("content"), MAX_DESCRIPTION_LENGTH)
            or values.text(raw.get("trainingGoal"), MAX_DESCRIPTION_LENGTH)
        ),
        category="bilan_competences" if _BILAN_TITLE.search(values.fold(name)) else "formation",
        duration_hours=duration if duration is not None and duration >= 0 else None,
        start_date=values.date_only(raw.get("sessionStartDate")),
        end_date=values.date_only(raw.get("sessionEndDate")),
    )

