"""Mutators for the store: organism transitions, PUT updates, EDOF-side moves and forced patches.

Each returns the webhook event name for the change (or None when nothing changed) and raises ApiError
(400 with violations) when the state machine or the body refuses it.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ApiError, invalid
from .payments import PaymentLedger
from .states import (
    COMPLETION_STATES,
    EXTERNAL_MOVES,
    ORGANISM_TRANSITIONS,
    REASON_TYPE_OF_VERB,
    REASONS,
    SERVICE_DONE_STATES,
    STATES,
    history_key,
)
from .timeutil import iso_ms, parse_datetime

MAX_TEXT = 10_000
DAY_MS = 86_400_000


def _body_object(body) -> dict:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _date_param(body: dict, name: str, now: int) -> int:
    raw = body.get(name)
    if raw is None:
        return now
    try:
        return parse_datetime(raw)
    except (ValueError, TypeError):
        raise invalid(name, "This value is not a valid date (YYYY-MM-DD).") from None


def _number_param(body: dict, name: str, maximum: float | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or \
            (maximum is not None and value > maximum):
        raise invalid(name, "This value should be a positive number" + (f" <= {maximum}." if maximum else "."))


def _reason_param(body: dict, verb: str) -> None:
    code = body.get("code")
    if code is None:
        if verb in ("terminate", "serviceDone"):
            raise invalid("code", "This value should not be blank: choose an exit reason from "
                                  "/api/registrationFoldersReasons?type=terminated.")
        return
    codes = {r["code"] for r in REASONS[REASON_TYPE_OF_VERB[verb]]}
    if str(code) not in codes:
        raise invalid("code", f"Unknown reason code {str(code)[:20]!r}; see /api/registrationFoldersReasons.")


def _text_param(body: dict, name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise invalid(name, f"This value should be a string of at most {MAX_TEXT} characters.")
    return value


def _check_dates(folder: dict, verb: str, at: int, now: int) -> None:
    """What Wedof's state machine checks of a declaration's date (lifecycle-billing.md §2)."""
    if verb not in ("inTraining", "terminate", "serviceDone"):
        return
    if at // DAY_MS > now // DAY_MS:
        raise invalid("date", "The date cannot be in the future.")
    info = folder["trainingActionInfo"]
    if verb == "inTraining" and info.get("sessionStartDate"):
        start = parse_datetime(info["sessionStartDate"])
        if at // DAY_MS < start // DAY_MS:
            raise invalid("date", f"The entry cannot be before the session start ({info['sessionStartDate'][:10]}).")
    if verb != "inTraining" and info.get("sessionEndDate"):
        end = parse_datetime(info["sessionEndDate"])
        if at // DAY_MS > end // DAY_MS:
            raise invalid("date", f"The end cannot be after the session end ({info['sessionEndDate'][:10]}).")


def _enter(folder: dict, state: str, at_ms: int) -> str:
    folder["state"] = state
    folder["history"][history_key(state)] = iso_ms(at_ms)
    return f"registrationFolder.{state}"


def transition(verb: str, body, bill_owner: Callable[[str], str | None] | None = None) -> Callable[[dict, int], str]:
    """The organism's POST /registrationFolders/{id}/<verb>.

    ``bill_owner(number)`` names the folder already carrying a bill number (billing refuses a reused one).
    """
    body = _body_object(body)

    def apply(folder: dict, now: int) -> str:
        state = folder["state"]
        if verb == "billing":
            return _billing(folder, body, now, bill_owner)
        target = ORGANISM_TRANSITIONS[verb].get(state)
        if target is None:
            allowed = ", ".join(ORGANISM_TRANSITIONS[verb])
            raise invalid("state", f"Transition '{verb}' is not allowed from state '{state}' "
                                   f"(allowed from: {allowed}).",
                          detail=f"Cannot {verb} registration folder {folder['externalId']} in state {state}.")
        if verb in REASON_TYPE_OF_VERB:
            _reason_param(body, verb)
        for name in ("absenceDuration", "trainingDuration", "indicativeDuration"):
            _number_param(body, name)
        _number_param(body, "weeklyDuration", 99)
        # Only "date" is read: a client sending startDate/endDate gets today's date, as from Wedof.
        at = _date_param(body, "date", now)
        _check_dates(folder, verb, at, now)
        if verb == "serviceDone":
            for name in ("absenceDuration", "trainingDuration"):
                if body.get(name) is None:
                    raise invalid(name, "This value should not be blank.")
            if "forceMajeureAbsence" in body and not isinstance(body["forceMajeureAbsence"], bool):
                raise invalid("forceMajeureAbsence", "This value should be a boolean.")
        if verb == "validate":
            info = folder["trainingActionInfo"]
            if folder["withPoleEmploi"]:
                if body.get("indicativeDuration") is None:
                    raise invalid("indicativeDuration", "indicativeDuration is required for France Travail folders.")
                target = "waitingAcceptation"
            for name in ("indicativeDuration", "weeklyDuration"):
                if body.get(name) is not None:
                    info[name] = body[name]
            folder["history"]["validatedDate"] = iso_ms(at)
            folder["state"] = target
            return f"registrationFolder.{target}"
        if verb in ("refuse", "cancel"):
            description = _text_param(body, "description")
            if description is not None:
                folder["description"] = description
        if verb == "serviceDone" and state == "inTraining":  # passes through terminated on its own
            _enter(folder, "terminated", at)
        # billingState is left alone: a folder becomes toBill when the financer validates the service.
        return _enter(folder, target, at)

    return apply


MAX_BILL_NUMBER = 100


def _bill_number(body: dict) -> str:
    value = body.get("billNumber")
    if value is not None and not isinstance(value, str):
        raise invalid("billNumber", "This value should be of type string.")
    number = (value or "").strip()
    if not number:
        raise invalid("billNumber", "This value should not be blank.")
    if len(number) > MAX_BILL_NUMBER:
        raise invalid("billNumber", f"This value is too long. It should have {MAX_BILL_NUMBER} characters or less.")
    return number


def _billing(folder: dict, body: dict, now: int, bill_owner: Callable[[str], str | None] | None) -> str:
    if folder["state"] not in SERVICE_DONE_STATES:
        raise invalid("state", f"Billing needs a service-done folder, this one is '{folder['state']}'.")
    if folder["billingState"] != "toBill":
        raise invalid("billingState", f"Billing needs billingState 'toBill', this one is '{folder['billingState']}'.")
    bill_number = _bill_number(body)
    owner = bill_owner(bill_number) if bill_owner is not None else None
    if owner not in (None, folder["externalId"]):  # an invoice number identifies one invoice (assumed of Wedof: see the README)
        raise invalid("billNumber", f"This bill number is already used by registration folder {owner}.")
    _number_param(body, "vatRate", 100)
    info = folder["trainingActionInfo"]
    incl, excl = info["totalIncl"], info["totalExcl"]
    folder.update(billingState="billed", billNumber=bill_number, billId=now % 1_000_000, amountTtc=incl,
                  amountHt=excl, amountHtNet=excl, amountToInvoice=incl, amountCGU=0.0)
    if info["vat"]:
        folder.update(vatHtAmount20=excl, vatAmount20=round(incl - excl, 2))
    folder["history"]["billedDate"] = iso_ms(now)
    return "registrationFolderBilling.billed"


def update(body) -> Callable[[dict, int], str | None]:
    """PUT /registrationFolders/{id}: completionRate, notes, description, tags, trainingActionInfo."""
    body = _body_object(body)

    def apply(folder: dict, now: int) -> str | None:
        before = (folder["completionRate"], folder["notes"], folder["description"], list(folder["tags"]),
                  dict(folder["trainingActionInfo"]))
        if "completionRate" in body:
            rate = body["completionRate"]
            if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate <= 100:
                raise invalid("completionRate", "This value should be an integer between 0 and 100.")
            if folder["state"] not in COMPLETION_STATES:
                raise invalid("completionRate", "The completion rate can only be updated in states inTraining "
                                                f"or terminated, this folder is '{folder['state']}'.")
            if rate != folder["completionRate"]:
                folder["completionRate"] = rate
                folder["history"]["completionRateLastUpdate"] = iso_ms(now)
        for name in ("notes", "description"):
            if name in body:
                value = _text_param(body, name)
                folder[name] = "" if value is None else value
        if "tags" in body:
            tags = body["tags"]
            if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 100 for t in tags):
                raise invalid("tags", "This value should be a list of non-empty strings (100 characters max).")
            folder["tags"] = list(dict.fromkeys(tags))  # the set replaces the previous one
        if "trainingActionInfo" in body:
            _update_training_info(folder, body["trainingActionInfo"])
        after = (folder["completionRate"], folder["notes"], folder["description"], folder["tags"],
                 folder["trainingActionInfo"])
        return "registrationFolder.updated" if after != before else None

    return apply


def _update_training_info(folder: dict, patch) -> None:
    if not isinstance(patch, dict):
        raise invalid("trainingActionInfo", "This value should be an object.")
    info = folder["trainingActionInfo"]
    for name in ("sessionStartDate", "sessionEndDate"):
        if patch.get(name) is not None:
            info[name] = iso_ms(_date_param(patch, name, 0))
    _number_param(patch, "indicativeDuration")
    _number_param(patch, "weeklyDuration", 99)
    for name in ("indicativeDuration", "weeklyDuration"):
        if patch.get(name) is not None:
            info[name] = patch[name]


def external_move(target: str, payments: PaymentLedger | None = None) -> Callable[[dict, int], str]:
    """A move made on EDOF's side (attendee or financer), used by the simulation.

    ``paid`` records the payment in ``payments``. The financer's validation of the service
    (``serviceDoneValidated``) is what makes a folder billable; it sends the state's event only, as the
    store publishes one webhook per change (our receiver applies registrationFolderBilling.* the same way).
    """

    def apply(folder: dict, now: int) -> str:
        if target == "paid":
            if folder["billingState"] != "billed":  # a concurrent change got there first
                raise invalid("billingState", f"Only a billed folder is paid, this one is '{folder['billingState']}'.")
            folder["billingState"] = "paid"
            folder["history"]["paidDate"] = iso_ms(now)
            if payments is not None:
                payments.record(folder, now)  # under the store lock: listed as soon as the folder says paid
            return "registrationFolderBilling.paid"
        allowed = EXTERNAL_MOVES.get(folder["state"], ())
        if target not in allowed:  # the folder moved since the move was chosen, or a control call asked
            raise invalid("state", f"No external move to {target[:40]!r} from '{folder['state']}' (allowed: "
                                   f"{', '.join(dict.fromkeys(allowed)) or 'none'}; 'paid' from billingState billed).")
        if target == "serviceDoneValidated" and folder["billingState"] not in ("billed", "paid"):
            folder["billingState"] = "toBill"
        return _enter(folder, target, now)

    return apply


def force_patch(patch, event: str | None = None) -> Callable[[dict, int], str]:
    """PUT /_sandbox/folders/{id}: deep-merge a patch, keeping the exact key set of a real folder."""
    if not isinstance(patch, dict) or not patch:
        raise ApiError(400, "The patch must be a non-empty JSON object.")
    for frozen in ("externalId", "lastUpdate", "updatedOn"):
        if frozen in patch:
            raise invalid(frozen, f"{frozen} is managed by the sandbox and cannot be patched.")
    if "state" in patch and patch["state"] not in STATES:
        raise invalid("state", f"Unknown state {str(patch['state'])[:40]!r}.")

    def apply(folder: dict, now: int) -> str:
        before_state = folder["state"]
        _merge(folder, patch, "")
        if folder["state"] != before_state and folder["history"].get(history_key(folder["state"]), 0) is None:
            folder["history"][history_key(folder["state"])] = iso_ms(now)
        if event:
            return event
        return f"registrationFolder.{folder['state']}" if folder["state"] != before_state \
            else "registrationFolder.updated"

    return apply


def _merge(target: dict, patch: dict, path: str) -> None:
    for key, value in patch.items():
        where = f"{path}{key}"
        if key not in target:
            raise invalid(where, "Unknown key: a patch cannot add keys a real folder does not have.")
        if isinstance(value, dict) and isinstance(target[key], dict):
            _merge(target[key], value, f"{where}.")
        else:
            target[key] = value
