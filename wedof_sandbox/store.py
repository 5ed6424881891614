"""In-memory folder store: the folders, an index sorted by ``lastUpdate``, and the logical clock.

Every change goes through :meth:`FolderStore.change`, which, under one lock, stamps a fresh strictly
increasing ``lastUpdate``, re-serializes the folder once, moves it to the end of the index and hands the
exact bytes to the change listener (the webhook publisher), so deliveries leave in change order.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .api_changes import ApiChanges
from .errors import not_found
from .population import Population
from .timeutil import LogicalClock, iso_ms, parse_iso_to_ms


def dump(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class FolderRecord:
    """One folder, its serialized bytes (made once per version) and the fields listings filter on."""

    __slots__ = ("external_id", "folder", "last_update_ms", "_body", "state", "type", "billing_state",
                 "control_state", "changes")

    def __init__(self, folder: dict, changes: ApiChanges | None = None) -> None:
        self.changes = changes  # the store's API changes: what is served may differ from the folder kept
        self.external_id: str = folder["externalId"]
        self.last_update_ms: int = parse_iso_to_ms(folder["lastUpdate"])
        self.set(folder)

    def set(self, folder: dict) -> None:
        self.folder = folder
        self._body: bytes | None = None
        self.state, self.type = folder["state"], folder["type"]
        self.billing_state, self.control_state = folder["billingState"], folder["controlState"]

    @property
    def body(self) -> bytes:
        # serialized lazily, once per version: listings join these bytes instead of re-encoding
        if self._body is None:
            changed = self.changes is not None and self.changes.reshapes
            self._body = dump(self.changes.apply(self.folder) if changed else self.folder)
        return self._body


@dataclass
class Change:
    external_id: str
    event: str
    body: bytes
    last_update: str
    state: str


# A mutator edits the (private copy of the) folder at time ``now`` and returns the event name, or None
# when nothing changed. It raises ApiError to refuse the change.
Mutator = Callable[[dict, int], "str | None"]


class FolderStore:
    def __init__(self, population: Population, on_change: Callable[[Change], None] | None = None) -> None:
        self.lock = threading.RLock()
        self.on_change = on_change
        self.api_changes = ApiChanges()
        self.records: dict[str, FolderRecord] = {}
        self.order: list[str] = []  # generation order: stable iteration for truth and simulation
        for folder in population.folders:
            record = FolderRecord(folder, self.api_changes)
            self.records[record.external_id] = record
            self.order.append(record.external_id)
        self.index: list[tuple[int, str]] = sorted((r.last_update_ms, r.external_id) for r in self.records.values())
        self.certification = {c["externalId"]: c for c in population.certification_folders}
        self.certification_bodies = {k: dump(v) for k, v in self.certification.items()}
        self.training_actions = population.training_actions
        self.clock = LogicalClock(self.index[-1][0] if self.index else 0)
        self.changes = 0

    def record(self, external_id: str) -> FolderRecord:
        record = self.records.get(external_id)
        if record is None:
            raise not_found(f"Registration folder {external_id} not found")
        return record

    def body(self, external_id: str) -> bytes:
        with self.lock:
            return self.record(external_id).body

    def snapshot(self, external_id: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.record(external_id).folder)

    def change(self, external_id: str, mutator: Mutator) -> Change | None:
        """Apply ``mutator`` to a copy of the folder; commit it only if it returns an event."""
        with self.lock:
            record = self.record(external_id)
            now = self.clock.tick()
            # deep copy: nested parts (attendee, training action) may be shared with other folders
            draft = copy.deepcopy(record.folder)
            event = mutator(draft, now)
            if event is None:
                return None
            draft["lastUpdate"] = draft["updatedOn"] = iso_ms(now)
            position = bisect.bisect_left(self.index, (record.last_update_ms, external_id))
            del self.index[position]
            self.index.append((now, external_id))  # now is the clock's maximum: the index stays sorted
            record.set(draft)
            record.last_update_ms = now
            self.changes += 1
            change = Change(external_id, event, record.body, draft["lastUpdate"], draft["state"])
            if self.on_change is not None:
                self.on_change(change)
            return change

    def change_api(self, body: dict | None) -> dict:
        """Set (or, with None, clear) the API changes; every folder is served anew from now on."""
        with self.lock:
            if body is None:
                self.api_changes.clear()
            else:
                self.api_changes.configure(body)
            for record in self.records.values():
                record._body = None
            return self.api_changes.snapshot()

    def warm_up(self, chunk: int = 500) -> None:
        """Serialize every folder ahead of the first big listing, a chunk at a time between requests."""
        for start in range(0, len(self.order), chunk):
            with self.lock:
                for external_id in self.order[start:start + chunk]:
                    self.records[external_id].body  # noqa: B018 (property fills the cache)

    def all_bodies(self) -> list[bytes]:
        with self.lock:
            return [self.records[e].body for e in self.order]

    def compact(self) -> list[dict]:
        with self.lock:
            return [{"externalId": f["externalId"], "state": f["state"], "lastUpdate": f["lastUpdate"],
                     "completionRate": f["completionRate"], "attendeeId": f["attendee"]["id"],
                     "trainingActionExternalId": f["trainingActionInfo"]["externalId"],
                     "billingState": f["billingState"]}
                    for f in (self.records[e].folder for e in self.order)]
