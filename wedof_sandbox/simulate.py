"""Random but valid activity: what organisms, attendees and financers do to folders over time.

Used by ``POST /_sandbox/simulate``. Every change goes through the same mutators as the API, so it
follows the state machine and triggers the same webhooks. Seeded per call, so a freshly seeded sandbox
replays the same activity.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from . import transitions
from .errors import ApiError
from .payments import PaymentLedger
from .states import COMPLETION_STATES, EXTERNAL_MOVES, ORGANISM_TRANSITIONS, REASONS, SERVICE_DONE_STATES
from .store import FolderStore
from .timeutil import iso_ms, parse_datetime, wall_ms

NOTES = ("Relancé par téléphone", "Entretien préliminaire fait", "Documents reçus — merci !", "")
TAGS = (["bdc"], ["prioritaire"], [], ["relance", "bdc"], ["à rappeler"])


def _organism_body(folder: dict, verb: str, rng: random.Random, now_ms: int) -> dict | None:
    """A body a careful organism would send (None: the move is not possible today)."""
    info = folder["trainingActionInfo"]
    if verb == "validate":
        return {"indicativeDuration": info["indicativeDuration"]} if folder["withPoleEmploi"] else {}
    if verb == "inTraining":
        return {} if parse_datetime(info["sessionStartDate"]) <= now_ms else None
    if verb in ("terminate", "serviceDone"):
        ended = min(now_ms, parse_datetime(info["sessionEndDate"]))
        body = {"date": iso_ms(ended)[:10], "code": rng.choice(REASONS["terminated"])["code"], "absenceDuration": 0}
        if verb == "serviceDone":
            body.update(forceMajeureAbsence=False, trainingDuration=info["indicativeDuration"])
        return body
    return {}


@dataclass(frozen=True)
class Options:
    completion_updates: bool = True
    # True: the organism bills with another tool (SIM-<externalId>); False: the client under test bills.
    organism_billing: bool = True
    payments: PaymentLedger | None = None  # where the financer's payments are recorded


def _moves(folder: dict, rng: random.Random, options: Options, now_ms: int) -> list[tuple[int, object]]:
    state = folder["state"]
    moves: list[tuple[int, object]] = []
    for verb, table in ORGANISM_TRANSITIONS.items():
        if state in table and (body := _organism_body(folder, verb, rng, now_ms)) is not None:
            moves.append((1 if verb in ("refuse", "cancel") else 6, transitions.transition(verb, body)))
    if options.organism_billing and state in SERVICE_DONE_STATES and folder["billingState"] == "toBill":
        moves.append((3, transitions.transition("billing", {"billNumber": f"SIM-{folder['externalId']}"})))
    if folder["billingState"] == "billed":
        moves.append((2, transitions.external_move("paid", options.payments)))
    for target in EXTERNAL_MOVES.get(state, ()):
        moves.append((3, transitions.external_move(target)))
    if options.completion_updates and state in COMPLETION_STATES:
        current = folder["completionRate"] or 0
        if current < 100:
            moves.append((8, transitions.update({"completionRate": min(100, current + rng.choice([5, 10, 20, 25]))})))
    return moves


def simulate(store: FolderStore, apply, changes: int, seed: str, options: Options | None = None) -> dict:
    """Perform ``changes`` valid changes through ``apply(externalId, mutator)``; return a summary."""
    options = options or Options()
    rng = random.Random(seed)
    events: Counter = Counter()
    applied, errors, first, last = 0, 0, None, None
    ids = list(store.order)
    if not ids:
        return {"requested": changes, "applied": 0, "errors": 0, "by_event": {}}
    for _ in range(changes):
        moves: list = []
        for _attempt in range(30):  # prefer folders that can still move
            external_id = rng.choice(ids)
            folder = store.records[external_id].folder  # replaced, never mutated in place: safe to read
            moves = _moves(folder, rng, options, max(wall_ms(), store.clock.last))
            if moves:
                break
        if not moves or rng.random() < 0.05:
            edit = {"notes": rng.choice(NOTES)} if rng.random() < 0.5 else {"tags": rng.choice(TAGS)}
            moves = [(1, transitions.update(edit))]
        mutator = rng.choices([m for _, m in moves], weights=[w for w, _ in moves])[0]
        try:
            change = apply(external_id, mutator)
        except ApiError:
            errors += 1  # a concurrent API call moved the folder first
            continue
        if change is None:
            continue
        applied += 1
        events[change.event] += 1
        first = first or change.last_update
        last = change.last_update
    return {"requested": changes, "applied": applied, "errors": errors, "by_event": dict(events),
            "first_lastUpdate": first, "last_lastUpdate": last}
