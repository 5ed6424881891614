"""Wedof API drift: which keys of a registration folder the mapping does not know, and which it needs but misses.

The catalog below is every key the mapping reads or that public material documents (wedof-api.md §4,
the Activepieces samples in tests/fixtures/wedof), per object of the folder: the folder itself,
``attendee``, its ``address``, ``trainingActionInfo`` (and its ``address``), ``history`` and
``_links``. Lists (``files``, ``tags``, ``trainingPaces``) and deeper objects are not walked: only the
keys of these few objects are compared, with set operations, so reading a page costs a small
fraction of decoding it (``bench/api_drift.py``).

:func:`observe` is pure and never raises: a folder that is not an object, or an object where a dict
is expected, only yields the paths it can. What a drift *means* is recorded by :mod:`bdc.api_drift`;
the mapping itself ignores unknown keys and reads missing ones as absent, so drift never breaks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

_ADDRESS = frozenset({
    "id", "city", "line4", "number", "country", "postBox", "zipCode", "roadName", "roadType", "idAddress",
    "residence", "countryCode", "fullAddress", "trainingSite", "corporateName", "roadTypeLabel",
    "informationSite", "repetitionIndex", "subscriptionSite", "additionalAddress", "repetitionIndexLabel",
    "reducedMobilityAccessCompliant", "reducedMobilityAccessModalities",
})

# Dotted path of an object of the folder ("" = the folder) -> the keys known there.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({
        "withPoleEmploi", "attendeeLink", "dataProviderId", "permalink", "isAllowActions", "type", "lastUpdate",
        "attendee", "state", "attendeeState", "billingState", "externalId", "billId", "billNumber",
        "amountHtNet", "amountToInvoice", "amountCGU", "amountTtc", "amountHt", "vatHtAmount5", "vatAmount5",
        "vatHtAmount20", "vatAmount20", "history", "files", "notes", "description", "completionRate",
        "controlState", "createdOn", "updatedOn", "_links", "tags", "trainingActionInfo", "externalLink",
    }),
    "attendee": frozenset({
        "id", "lastName", "firstName", "email", "phoneNumber", "phoneFixed", "degree", "degreeTitle", "address",
        "dateOfBirth", "nameCityOfBirth", "gender", "birthName", "codeCountryOfBirth", "poleEmploiId",
        "poleEmploiDpt", "codeCityOfBirth", "firstName2", "firstName3", "nameCountryOfBirth",
        "poleEmploiRegionCode", "readOnly", "cdcCompliant",
        # seen on the attendee of certification folders (wedof-api.md §4): documented, so not drift
        "employmentStatus", "externalId", "lastLogin",
    }),
    "attendee.address": _ADDRESS,
    "trainingActionInfo": frozenset({
        "vat", "title", "address", "content", "sessionId", "totalExcl", "totalIncl", "quitReason", "vatExclTax5",
        "vatInclTax5", "externalLink", "trainingGoal", "vatExclTax20", "vatInclTax20", "trainingPaces",
        "additionalFees", "expectedResult", "sessionEndDate", "weeklyDuration", "sessionStartDate",
        "indicativeDuration", "teachingModalities", "trainingCompletionRate", "externalId", "trainingActionId",
        "hoursInCenter",  # read by one real client (wedof-api.md §4)
    }),
    "trainingActionInfo.address": _ADDRESS,
    "history": frozenset({
        "serviceDoneDeclaredAttendeeDate", "billedDate", "paidDate", "acceptedDate",
        "rejectedWithoutTitulaireSuiteDate", "validatedDate", "inTrainingDate", "terminatedDate",
        "notProcessedDate", "refusedByAttendeeDate", "refusedByOrganismDate", "refusedByFinancerDate",
        "canceledByAttendeeDate", "canceledByOrganismDate", "serviceDoneDeclaredDate", "serviceDoneValidatedDate",
        "canceledByAttendeeNotRealizedDate", "canceledByFinancerDate", "inControlDate", "releasedDate",
        "completionRateLastUpdate",
    }),
    "_links": frozenset({
        "self", "validate", "inTraining", "terminate", "serviceDone", "refuse", "cancel", "billing", "session",
        "organism", "payments", "trainingAction", "certification", "activities",
    }),
}

# What the mapping needs of a folder (wedof/mapping/folder.py reads them): always sent by Wedof, null or not.
EXPECTED_KEYS: dict[str, frozenset[str]] = {
    "": frozenset({"externalId", "state", "lastUpdate", "billingState", "completionRate", "createdOn", "attendee",
                   "trainingActionInfo", "history", "permalink", "billNumber"}),
    "attendee": frozenset({"id", "firstName", "lastName", "email", "phoneNumber", "dateOfBirth", "address"}),
    "trainingActionInfo": frozenset({"externalId", "title", "sessionStartDate", "sessionEndDate",
                                     "indicativeDuration", "totalExcl", "totalIncl"}),
    "history": frozenset({"acceptedDate", "inTrainingDate", "terminatedDate", "serviceDoneDeclaredDate",
                          "serviceDoneValidatedDate"}),
}

_NO_KEYS: frozenset[str] = frozenset()
MAX_PATHS = 200  # per direction: a hostile folder with thousands of keys still gives a small record
MAX_KEY_LENGTH = 100
# The nested objects compared, parents before children: (path, parent path, key in the parent, known keys,
# expected keys, prefix of their dotted paths).
_LEVELS: tuple[tuple[str, str, str, frozenset[str], frozenset[str], str], ...] = tuple(
    (path, path.rpartition(".")[0], path.rpartition(".")[2], KNOWN_KEYS[path], EXPECTED_KEYS.get(path, _NO_KEYS),
     f"{path}.") for path in KNOWN_KEYS if path)
_TOP_KNOWN, _TOP_EXPECTED = KNOWN_KEYS[""], EXPECTED_KEYS[""]


@dataclass(frozen=True)
class Observation:
    """The drift seen over some folders: the union of their unknown and missing dotted paths."""

    unknown: frozenset[str] = field(default_factory=frozenset)
    missing: frozenset[str] = field(default_factory=frozenset)
    samples: int = 0  # folders read

    @property
    def drifted(self) -> bool:
        return bool(self.unknown or self.missing)

    @staticmethod
    def still_applies(direction: str, path: str) -> bool:
        """Whether a path recorded earlier is still drift for this catalog (False once the code learnt it)."""
        return still_applies(direction, path)


def folder_drift(folder: Any) -> tuple[set[str], set[str]]:
    """(unknown dotted paths, missing dotted paths) of one folder; never raises.

    Subset tests first (no set is built for an object that has the usual keys): about 0.2x the cost of
    decoding the folder (``bench/api_drift.py``).
    """
    unknown: set[str] = set()
    missing: set[str] = set()
    if not isinstance(folder, dict):  # decoded JSON: objects are dicts
        return unknown, missing
    _compare(folder.keys(), _TOP_KNOWN, _TOP_EXPECTED, "", unknown, missing)
    objects: dict[str, dict] = {"": folder}
    for path, parent_path, key, known, expected, prefix in _LEVELS:
        parent = objects.get(parent_path)
        if parent is None:
            continue
        child = parent.get(key)
        if isinstance(child, dict):
            objects[path] = child
            _compare(child.keys(), known, expected, prefix, unknown, missing)
    return unknown, missing


def _compare(keys, known: frozenset[str], expected: frozenset[str], prefix: str, unknown: set[str],
             missing: set[str]) -> None:
    if not keys <= known:
        unknown.update(prefix + str(key)[:MAX_KEY_LENGTH] for key in keys - known)
    if expected and not expected <= keys:
        missing.update(prefix + key for key in expected - keys)


def observe(folders: Iterable[Any]) -> Observation:
    """The drift over a page of folders (or one): the union of every folder's paths."""
    unknown: set[str] = set()
    missing: set[str] = set()
    samples = 0
    for folder in folders:
        extra, absent = folder_drift(folder)
        unknown |= extra
        missing |= absent
        samples += 1
    return Observation(_bounded(unknown), _bounded(missing), samples)


def _bounded(paths: set[str]) -> frozenset[str]:
    return frozenset(paths if len(paths) <= MAX_PATHS else sorted(paths)[:MAX_PATHS])


def observe_one(folder: Any) -> Observation:
    return observe((folder,))


def still_applies(direction: str, path: str) -> bool:
    """``unknown``: the catalog does not know the path; ``missing``: the mapping still expects it."""
    parent, _, key = path.rpartition(".")
    if direction == "unknown":
        known = KNOWN_KEYS.get(parent)
        return known is None or key not in known
    if direction == "missing":
        return key in EXPECTED_KEYS.get(parent, _NO_KEYS)
    return False
