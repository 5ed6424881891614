"""Seeded, deterministic population of registration and certification folders.

The same ``(folders, seed, siret, anchor)`` always yields byte-identical objects. Folders have exactly the
key sets of the real samples (tests/fixtures of the project) and carry the quirks of real data: null birth
dates, missing e-mails, placeholder ``"string"`` addresses, odd phone formats, null completion rates.
Dates are spread over the 540 days before a fixed anchor so that the population does not depend on the
day it is generated.
"""

from __future__ import annotations

import gc
import random
import unicodedata
from dataclasses import dataclass, field

from . import names
from .states import EXTERNAL_MOVES, HISTORY_PATH, STATES, history_key
from .timeutil import iso_ms, parse_datetime

DEFAULT_ANCHOR = "2025-12-01T00:00:00Z"
DEFAULT_SIRET = "12345678900012"
DEFAULT_ORGANISM = "Cap Compétences Sandbox"
DAY_MS = 86_400_000
PUBLIC_BASE = "https://www.wedof.fr"

HISTORY_KEYS = (
    "serviceDoneDeclaredAttendeeDate", "billedDate", "paidDate", "acceptedDate",
    "rejectedWithoutTitulaireSuiteDate", "validatedDate", "inTrainingDate", "terminatedDate",
    "notProcessedDate", "refusedByAttendeeDate", "refusedByOrganismDate", "refusedByFinancerDate",
    "canceledByAttendeeDate", "canceledByOrganismDate", "serviceDoneDeclaredDate", "serviceDoneValidatedDate",
    "canceledByAttendeeNotRealizedDate", "canceledByFinancerDate", "inControlDate", "releasedDate",
    "completionRateLastUpdate",
)
CERT_HISTORY_KEYS = (
    "toTakeDate", "failedDate", "successDate", "toRegisterDate", "registeredDate", "abortedDate",
    "toControlDate", "refusedDate", "toRetakeDate", "inTrainingStartedDate", "inTrainingEndedDate",
)
CERT_PATHS = {
    "toRegister": ("toRegister",),
    "registered": ("toRegister", "registered"),
    "toTake": ("toRegister", "registered", "toTake"),
    "toControl": ("toRegister", "registered", "toTake", "toControl"),
    "success": ("toRegister", "registered", "toTake", "toControl", "success"),
    "failed": ("toRegister", "registered", "toTake", "toControl", "failed"),
    "toRetake": ("toRegister", "registered", "toTake", "toControl", "toRetake"),
    "refused": ("toRegister", "refused"),
    "aborted": ("toRegister", "registered", "aborted"),
}
# Relative frequencies of folder states (every state is also forced at least once when N >= 16).
STATE_WEIGHTS = {
    "notProcessed": 8, "validated": 6, "waitingAcceptation": 2, "accepted": 10, "inTraining": 16,
    "terminated": 8, "serviceDoneDeclared": 10, "serviceDoneValidated": 14, "canceledByAttendee": 5,
    "canceledByAttendeeNotRealized": 2, "canceledByOrganism": 3, "canceledByFinancer": 1,
    "rejectedWithoutTitulaireSuite": 2, "refusedByAttendee": 4, "refusedByOrganism": 3, "refusedByFinancer": 1,
}
TYPE_WEIGHTS = {"cpf": 70, "individual": 8, "company": 6, "opco": 5, "poleEmploi": 6, "kairosAif": 3,
                "opcoCfa": 2}


@dataclass(frozen=True)
class TrainingAction:
    slug: str
    title: str
    hours: int
    price: int  # TTC, euros
    vat: float | None  # None: VAT-exempt organism activity (typical of bilans de compétences)
    is_bdc: bool
    certif_info: str
    certif_code: str
    certif_name: str


TRAINING_ACTIONS = (
    TrainingAction("bilan-competences-24h", "Bilan de compétences - Formule complète 24h", 24, 1800, None, True,
                   "83899", "CPF202", "Bilan de compétences"),
    TrainingAction("bilan-competences-express-12h", "Bilan de compétences express (12h)", 12, 990, None, True,
                   "83899", "CPF202", "Bilan de compétences"),
    TrainingAction("bilan-competences-distanciel-20h", "Bilan de compétences à distance - 20 heures", 20, 1490,
                   None, True, "83899", "CPF202", "Bilan de compétences"),
    TrainingAction("bilan-reconversion-cadres", "Bilan de compétences cadres : réussir sa reconversion", 24,
                   2400, None, True, "83899", "CPF202", "Bilan de compétences"),
    TrainingAction("scrum-online-v2", "Gérer des projets avec la méthode Agile", 14, 1290, 20.0, False,
                   "112713", "RS5695", "Gérer des projets avec la méthode Agile"),
    TrainingAction("anglais-toeic-30h", "Anglais professionnel - préparation au TOEIC", 30, 1500, 20.0, False,
                   "236593", "RS5380", "Test of English for International Communication (TOEIC)"),
    TrainingAction("excel-tosa-21h", "Excel perfectionnement - certification TOSA", 21, 1100, 20.0, False,
                   "237359", "RS5252", "Certification TOSA Excel"),
    TrainingAction("creation-entreprise-35h", "Créer ou reprendre une entreprise", 35, 1750, 20.0, False,
                   "244015", "RS5869", "Créer et développer une entreprise"),
)


@dataclass
class Population:
    folders: list[dict] = field(default_factory=list)
    certification_folders: list[dict] = field(default_factory=list)
    training_actions: list[dict] = field(default_factory=list)


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c)).lower()


def _email(rng: random.Random, first: str, last: str) -> str | None:
    roll = rng.random()
    if roll < 0.08:
        return None  # real folders sometimes come without an e-mail
    local = f"{_ascii(first)}.{_ascii(last)}".replace(" ", "").replace("'", "")
    if roll < 0.12:
        local = local.upper()
    elif roll < 0.16:
        local += f"+cpf{rng.randint(1, 99)}"
    return f"{local}@{rng.choice(names.EMAIL_DOMAINS)}"


def _phone(rng: random.Random) -> str | None:
    digits = f"0{rng.choice('67')}{rng.randint(0, 99_999_999):08d}"
    pairs = " ".join(digits[i:i + 2] for i in range(0, 10, 2))
    return rng.choices(
        [digits, pairs, f"+33{digits[1:]}", f"+33 {pairs[1:]}", digits.replace("0", "0", 1)[:2] + "." +
         ".".join(digits[i:i + 2] for i in range(2, 10, 2)), "(323) 853-2456", None, ""],
        weights=[40, 20, 12, 6, 6, 2, 10, 4])[0]


def _address(rng: random.Random, corporate_name: str) -> dict:
    placeholder = rng.random() < 0.05
    city, zip_code = rng.choice(names.CITIES)
    road_type, road_label, road_name = rng.choice(names.ROADS)
    repetition = rng.random() < 0.07
    if placeholder:
        city = zip_code = road_name = road_label = road_type = "string"
    return {
        "id": None, "city": city, "line4": None, "number": str(rng.randint(1, 180)), "country": None,
        "postBox": None, "zipCode": zip_code, "roadName": road_name, "roadType": road_type, "idAddress": None,
        "residence": rng.choice([None, None, None, "Résidence Les Érables"]), "countryCode": None,
        "fullAddress": None, "trainingSite": None, "corporateName": corporate_name, "roadTypeLabel": road_label,
        "informationSite": None, "repetitionIndex": "B" if repetition else None, "subscriptionSite": None,
        "additionalAddress": rng.choice([None, None, None, "Bâtiment C, 3e étage"]),
        "repetitionIndexLabel": "bis" if repetition else None, "reducedMobilityAccessCompliant": None,
        "reducedMobilityAccessModalities": None,
    }


def _attendee(rng: random.Random, attendee_id: int, folder_type: str) -> dict:
    female = rng.random() < 0.55
    first = rng.choice(names.FIRST_NAMES_F if female else names.FIRST_NAMES_M)
    last = rng.choice(names.LAST_NAMES)
    degree = rng.choice([3, 4, 5, 5, 6, 6, 7, 7, 8, None])
    born = None
    if rng.random() > 0.15:
        born = f"{rng.randint(1958, 2004)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00.000Z"
    birth_city = rng.choice([None, None, ("Besançon", "25056"), ("Nîmes", "30189"), ("Orléans", "45234")])
    pole_emploi = folder_type == "poleEmploi"
    return {
        "id": attendee_id, "lastName": last, "firstName": first, "email": _email(rng, first, last),
        "phoneNumber": _phone(rng), "phoneFixed": rng.choice([None, None, None, "0466123456", "04 78 12 34 56"]),
        "degree": degree, "degreeTitle": names.DEGREES.get(degree),
        "address": _address(rng, f"{'MME' if female else 'M'} {first.upper()} {last.upper()}"),
        "dateOfBirth": born, "nameCityOfBirth": birth_city[0] if birth_city else None,
        "gender": rng.choice([None, None, "female" if female else "male"]),
        "birthName": rng.choice([None] * 8 + ["Lefèvre", "Duval"]) if female else None,
        "codeCountryOfBirth": "100" if birth_city else None,
        "poleEmploiId": f"{rng.randint(1_000_000, 9_999_999)}{rng.choice('ABCXYZ')}" if pole_emploi else None,
        "poleEmploiDpt": rng.choice(["075", "069", "013", "025"]) if pole_emploi else None,
        "codeCityOfBirth": birth_city[1] if birth_city else None,
        "firstName2": rng.choice([None] * 6 + ["Marie", "Jean", "Éloïse"]), "firstName3": None,
        "nameCountryOfBirth": "FRANCE" if birth_city else None,
        "poleEmploiRegionCode": rng.choice(["11", "84", "93"]) if pole_emploi else None,
        "readOnly": False, "cdcCompliant": rng.random() < 0.3,
    }


def _midnight(ms: int) -> int:
    return ms - ms % DAY_MS


class _Generator:
    def __init__(self, count: int, seed: int, siret: str, organism_name: str, anchor_ms: int) -> None:
        self.rng = random.Random(f"wedof-sandbox:{seed}")
        self.count, self.siret, self.organism_name, self.anchor = count, siret, organism_name, anchor_ms
        self.organism_link = {"href": f"/api/organisms/{siret}", "name": organism_name, "siret": siret}
        self.next_attendee_id = 10_000 + self.rng.randint(0, 5000)
        self.next_file_id = 500 + self.rng.randint(0, 100)
        self.single_folder_attendees: list[dict] = []
        self.used_ids: set[str] = set()
        self.used_last_updates: set[int] = set()

    def external_id(self) -> str:
        while True:
            candidate = str(self.rng.randrange(1_000_000_000, 10_000_000_000))
            if candidate not in self.used_ids:
                self.used_ids.add(candidate)
                return candidate

    def attendee(self, folder_type: str) -> dict:
        if self.single_folder_attendees and self.rng.random() < 0.07:
            # the same person may hold a second folder (another bilan, or a training after the bilan)
            return self.single_folder_attendees.pop(self.rng.randrange(len(self.single_folder_attendees)))
        self.next_attendee_id += self.rng.randint(1, 40)
        person = _attendee(self.rng, self.next_attendee_id, folder_type)
        self.single_folder_attendees.append(person)
        return person

    def unique_ms(self, ms: int) -> int:
        while ms in self.used_last_updates:
            ms += 1
        self.used_last_updates.add(ms)
        return ms

    def states(self) -> list[str]:
        chosen = self.rng.choices(list(STATE_WEIGHTS), weights=list(STATE_WEIGHTS.values()), k=self.count)
        if self.count >= len(STATES):
            forced = self.rng.sample(range(self.count), len(STATES))
            for position, state in zip(forced, STATES, strict=True):
                chosen[position] = state
        return chosen

    def folder(self, state: str) -> dict:
        rng = self.rng
        action = rng.choice(TRAINING_ACTIONS[:4] * 2 + TRAINING_ACTIONS[4:])  # about 2/3 are bilans
        folder_type = "poleEmploi" if state == "waitingAcceptation" else \
            rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()))[0]
        if folder_type == "poleEmploi" and state == "validated":
            folder_type = "cpf"  # a validated France Travail folder would be waitingAcceptation
        external_id = self.external_id()
        created = self.anchor - rng.randint(2 * DAY_MS, 540 * DAY_MS)
        created -= created % 1000  # Wedof's creation dates carry .000 milliseconds
        last_update = self.unique_ms(rng.randint(created + 3_600_000, self.anchor - 1))
        path = HISTORY_PATH[state]
        points = sorted(rng.randint(created, last_update) for _ in path[1:])
        step_dates = dict(zip(path, [created, *points], strict=True))
        history = dict.fromkeys(HISTORY_KEYS)
        for step, ms in step_dates.items():
            history[history_key(step)] = iso_ms(ms - ms % 1000)

        completion = None
        if state == "inTraining":
            completion = rng.choice([None, 0, 10, 25, 40, 50, 65, 80, 90])
        elif state == "terminated":
            completion = rng.choice([None, 60, 85, 100, 100])
        elif state in ("serviceDoneDeclared", "serviceDoneValidated"):
            completion = rng.choice([None, 100, 100, 95])
        if completion is not None:
            since = step_dates.get("inTraining", created)
            history["completionRateLastUpdate"] = iso_ms(rng.randint(since, last_update))

        billing_state, bill = "notBillable", None
        if state == "serviceDoneDeclared":
            # Not billable until the financer validates the service. The draw is kept so that a seed
            # keeps the rest of its population (tests and benchmarks pick folders from it).
            rng.random()
        elif state == "serviceDoneValidated":
            billing_state = rng.choice(["toBill", "billed", "billed", "paid"])
        elif folder_type == "company" and state in ("accepted", "inTraining"):
            billing_state = rng.choice(["depositWait", "depositPaid", "notBillable"])
        if billing_state in ("billed", "paid"):
            bill = f"FAC-{iso_ms(last_update)[:4]}-{rng.randint(1, 99_999):05d}"
            history["billedDate"] = iso_ms(points[-1] if points else last_update)
            if billing_state == "paid":
                history["paidDate"] = iso_ms(last_update - last_update % 1000)
        control_state = rng.choices(["notInControl", "inControl", "released"], weights=[94, 3, 3])[0]
        if control_state != "notInControl":
            history["inControlDate"] = iso_ms(created + DAY_MS)
            if control_state == "released":
                history["releasedDate"] = iso_ms(created + 5 * DAY_MS)

        session_start = _midnight(created + rng.randint(14, 60) * DAY_MS)
        session_end = session_start + rng.randint(14, 90) * DAY_MS
        tai = self.training_action_info(action, session_start, session_end, rng.choice([2, 3, 4, 7, 14]))
        amounts = self.billed_amounts(action) if bill else dict.fromkeys(_AMOUNT_KEYS)
        return {
            "withPoleEmploi": folder_type == "poleEmploi",
            "attendeeLink": f"{PUBLIC_BASE}/apprenant-{external_id}",
            "dataProviderId": None,
            "permalink": f"{PUBLIC_BASE}/dossier-formation-{external_id}",
            "isAllowActions": True,
            "type": folder_type,
            "lastUpdate": iso_ms(last_update),
            "attendee": self.attendee(folder_type),
            "state": state,
            "attendeeState": "serviceDoneNotDeclared",
            "billingState": billing_state,
            "externalId": external_id,
            "billId": rng.randint(1000, 99_999) if bill else None,
            "billNumber": bill,
            **amounts,
            "history": history,
            "files": self.files(external_id, state, created),
            "notes": rng.choice(["", "", "", "", "Rappeler après 18h", "Dossier complet — RAS", "  "]),
            "description": rng.choice(["", "", "", "Bilan en présentiel à Lyon", "Horaires aménagés"]),
            "completionRate": completion,
            "controlState": control_state,
            "createdOn": iso_ms(created),
            "updatedOn": iso_ms(last_update),
            "_links": self.links(external_id, action, tai["sessionId"]),
            "tags": rng.choice([[], [], [], ["bdc"], ["prioritaire"], ["relance", "bdc"], ["à rappeler"]]),
            "trainingActionInfo": tai,
            "externalLink": "",
        }

    def training_action_info(self, action: TrainingAction, start: int, end: int, weekly: int) -> dict:
        excl = round(action.price / 1.2) if action.vat else action.price
        return {
            "vat": action.vat, "title": action.title, "address": {"id": None},
            "content": f"Programme détaillé : {action.title.lower()}.",
            "sessionId": f"{action.slug}-{iso_ms(start)[:10]}",
            "totalExcl": excl, "totalIncl": action.price, "quitReason": None,
            "vatExclTax5": None, "vatInclTax5": None, "externalLink": "",
            "trainingGoal": "Faire le point sur ses compétences et construire un projet professionnel."
            if action.is_bdc else f"Obtenir la certification {action.certif_code}.",
            "vatExclTax20": excl if action.vat else None, "vatInclTax20": action.price if action.vat else None,
            "trainingPaces": self.rng.choice([["3", "1", "5"], ["1"], ["2", "3"], []]),
            "additionalFees": 0, "expectedResult": "string" if self.rng.random() < 0.2 else "Synthèse remise.",
            "sessionEndDate": iso_ms(end), "weeklyDuration": weekly, "sessionStartDate": iso_ms(start),
            "indicativeDuration": action.hours, "teachingModalities": self.rng.choice(["0", "1", "2"]),
            "trainingCompletionRate": None,
            "externalId": f"{self.siret}_{action.slug}-action",
            "trainingActionId": f"{self.siret}_{action.slug}/{action.slug}-action",
        }

    def billed_amounts(self, action: TrainingAction) -> dict:
        excl = round(action.price / 1.2) if action.vat else action.price
        vat20 = action.price - excl if action.vat else None
        return {"amountHtNet": excl, "amountToInvoice": action.price, "amountCGU": round(action.price * 0.0, 2),
                "amountTtc": action.price, "amountHt": excl, "vatHtAmount5": None, "vatAmount5": None,
                "vatHtAmount20": excl if action.vat else None, "vatAmount20": vat20}

    def files(self, external_id: str, state: str, created: int) -> list[dict]:
        if state in ("notProcessed", "validated", "waitingAcceptation") or self.rng.random() < 0.6:
            return []
        result = []
        for type_id, file_name in self.rng.sample([(1, "Convention signée"), (2, "Attestation d'assiduité"),
                                                   (3, "Synthèse du bilan")], self.rng.randint(1, 2)):
            self.next_file_id += 1
            stamp = iso_ms(created + self.rng.randint(1, 20) * DAY_MS)
            result.append({
                "permalink": f"{PUBLIC_BASE}/dossier-formation-{external_id}-document-{self.next_file_id}",
                "id": self.next_file_id, "typeId": type_id, "fileName": file_name, "link": None,
                "fileType": "application/pdf", "state": self.rng.choice(["valid", "toReview"]), "comment": None,
                "generationState": "notGenerated", "createdOn": stamp, "updatedOn": stamp,
                "_links": {"registrationFolder": {"href": f"/api/registrationFolders/{external_id}"}},
            })
        return result

    def links(self, external_id: str, action: TrainingAction, session_id: str) -> dict:
        base = f"/api/registrationFolders/{external_id}"
        links = {"self": {"href": base}}
        for verb in ("validate", "inTraining", "terminate", "serviceDone", "refuse", "cancel", "billing"):
            links[verb] = {"href": f"{base}/{verb}"}
        action_id = f"{self.siret}_{action.slug}-action"
        links.update({
            "session": {"href": f"/api/sessions/{session_id}"},
            "organism": self.organism_link,
            "payments": {"href": f"/api/payments?registrationFolderId={external_id}"},
            "trainingAction": {"href": f"/api/trainingActions/{action_id}"},
            "certification": {"href": f"/api/certifications/{action.certif_info}", "name": action.certif_name,
                              "certifInfo": action.certif_info, "externalId": action.certif_code,
                              "id": TRAINING_ACTIONS.index(action) + 1, "enabled": True},
            "activities": {"href": f"/api/activities/RegistrationFolder/{external_id}"},
        })
        return links

    def certification_folder(self, cert_id: int, folder: dict) -> dict:
        rng = self.rng
        state = rng.choice(list(CERT_PATHS))
        created = self.anchor - rng.randint(DAY_MS, 300 * DAY_MS)
        created -= created % 1000
        updated = self.unique_ms(rng.randint(created + 60_000, self.anchor - 1))
        path = CERT_PATHS[state]
        points = sorted(rng.randint(created, updated) for _ in path[1:])
        history = dict.fromkeys(CERT_HISTORY_KEYS)
        for step, ms in zip(path, [created, *points], strict=True):
            history[f"{step}Date"] = iso_ms(ms - ms % 1000)
        person = folder["attendee"]
        attendee = {k: person.get(k) for k in _CERT_ATTENDEE_KEYS}
        attendee.update(employmentStatus=None, externalId=None, lastLogin=None)
        external_id = f"{cert_id}-{folder['externalId']}"
        base = f"/api/certificationFolders/{external_id}"
        success = state == "success"
        links = {"self": {"href": base}}
        for verb in ("register", "refuse", "take", "control", "retake", "fail", "success", "abort"):
            links[verb] = {"href": f"{base}/{verb}"}
        links.update({
            "certification": folder["_links"]["certification"],
            "registrationFolder": {"href": f"/api/registrationFolders/{folder['externalId']}",
                                   "externalId": folder["externalId"], "type": folder["type"],
                                   "state": folder["state"]},
            "partner": self.organism_link, "certifier": {"href": "/api/organisms/13002526500013",
                                                         "name": "Certificateur Sandbox", "siret": "13002526500013"},
            "activities": {"href": f"/api/activities/CertificationFolder/{cert_id}"},
        })
        return {
            "attendeeLink": f"{PUBLIC_BASE}/candidat-{cert_id}-{folder['externalId']}",
            "permalink": f"{PUBLIC_BASE}/dossier-certification-{cert_id}",
            "addToPassportLink": f"{PUBLIC_BASE}/candidat-{cert_id}-{folder['externalId']}-passeport",
            "id": cert_id,
            "examinationDate": history["toTakeDate"], "examinationEndDate": None,
            "examinationPlace": rng.choice([None, "Lyon", "En ligne"]),
            "issueDate": history["successDate"], "expirationDate": None,
            "detailedResult": "Réussite" if success else None, "digitalProofLink": None,
            "state": state, "files": [], "comment": "", "history": history,
            "stateLastUpdate": iso_ms(updated), "attendee": attendee, "certifiedData": rng.random() < 0.7,
            "examinationType": rng.choice(["A_DISTANCE", "EN_PRESENTIEL", "MIXTE"]),
            "type": rng.choice(["OF", "CERTIFIE", "POLE_EMPLOI"]),
            "gradePass": rng.choice([None, "SANS_MENTION", "MENTION_BIEN"]) if success else None,
            "examinationCenterZipCode": None, "europeanLanguageLevel": None, "accessModality": None,
            "verbatim": None, "optionName": None, "accessModalityVae": None, "cdcState": "notExported",
            "cdcToExport": True, "cdcCompliant": False, "enrollmentDate": None, "amountHt": None,
            "cdcTechnicalId": None, "inTraining": False, "cdcExcluded": False, "externalId": external_id,
            "certificateId": None, "createdOn": iso_ms(created), "updatedOn": iso_ms(updated),
            "_links": links, "tags": [],
        }


_AMOUNT_KEYS = ("amountHtNet", "amountToInvoice", "amountCGU", "amountTtc", "amountHt", "vatHtAmount5",
                "vatAmount5", "vatHtAmount20", "vatAmount20")
_CERT_ATTENDEE_KEYS = (
    "id", "lastName", "firstName", "email", "phoneNumber", "phoneFixed", "degree", "degreeTitle", "address",
    "dateOfBirth", "nameCityOfBirth", "gender", "birthName", "codeCountryOfBirth", "employmentStatus",
    "codeCityOfBirth", "firstName2", "firstName3", "nameCountryOfBirth", "readOnly", "externalId", "lastLogin",
    "cdcCompliant",
)


def training_action_catalogue(siret: str) -> list[dict]:
    return [{"externalId": f"{siret}_{a.slug}-action", "title": a.title, "isBilanDeCompetences": a.is_bdc,
             "indicativeDuration": a.hours, "totalIncl": a.price, "certifInfo": a.certif_info}
            for a in TRAINING_ACTIONS]


def generate(count: int, seed: int, siret: str = DEFAULT_SIRET, organism_name: str = DEFAULT_ORGANISM,
             anchor: str = DEFAULT_ANCHOR) -> Population:
    """Build ``count`` registration folders (and a few certification folders) from ``seed``."""
    if count < 0:
        raise ValueError("folder count must be >= 0")
    gen = _Generator(count, seed, siret, organism_name, parse_datetime(anchor))
    collecting = gc.isenabled()
    gc.disable()  # only long-lived dicts are created here: repeated full collections made this quadratic
    try:
        folders = [gen.folder(state) for state in gen.states()]
        certifying = [f for f in folders if not f["trainingActionInfo"]["title"].startswith("Bilan")] or folders
        cert_count = min(max(3, count // 10), 2000) if folders else 0
        certs = [gen.certification_folder(2000 + i, gen.rng.choice(certifying)) for i in range(cert_count)]
    finally:
        if collecting:
            gc.enable()
    return Population(folders, certs, training_action_catalogue(siret))


# Exported for the simulation: the moves made on EDOF's side.
__all__ = ["EXTERNAL_MOVES", "Population", "generate", "training_action_catalogue"]
