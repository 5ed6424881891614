"""SandboxState: everything one running sandbox holds in memory (one process, many threads)."""

from __future__ import annotations

import gc
import threading

from . import population
from .faults import FaultConfig, FaultInjector, RequestCounters
from .hold import Hold
from .payments import PaymentLedger
from .store import Change, FolderStore, Mutator
from .timeutil import iso_ms, wall_ms
from .webhooks import Deliverer, DeliveryConfig, WebhookRegistry


class SandboxState:
    def __init__(self, folders: int = 1000, seed: int = 42, api_key: str = "sandbox-key",
                 siret: str = population.DEFAULT_SIRET, organism_name: str = population.DEFAULT_ORGANISM,
                 anchor: str = population.DEFAULT_ANCHOR, faults: dict | None = None,
                 delivery: dict | None = None, delivery_threads: int = 4) -> None:
        self.api_key, self.siret, self.organism_name, self.anchor = api_key, siret, organism_name, anchor
        self.organism_link = {"href": f"/api/organisms/{siret}", "name": organism_name, "siret": siret}
        self.fault_config = FaultConfig()
        self.fault_config.update(faults or {})
        self.delivery_config = DeliveryConfig()
        self.delivery_config.update(delivery or {})
        self.counters = RequestCounters()
        self.webhooks = WebhookRegistry(self.organism_link)
        self.deliverer = Deliverer(self.delivery_config, seed, threads=delivery_threads)
        self.deliverer.start()
        self._reset_lock = threading.Lock()
        self.folders, self.seed, self.simulations = folders, seed, 0
        self.faults = FaultInjector(self.fault_config, seed)
        self.hold = Hold()
        self.store, self.payments = self._build_store(folders, seed)
        self._activities: dict[tuple[str, str], list[dict]] = {}
        self._activity_lock = threading.Lock()

    def add_activity(self, entity: str, external_id: str, body: dict) -> dict:
        with self._activity_lock:
            items = self._activities.setdefault((entity, external_id), [])
            activity = {"id": sum(len(v) for v in self._activities.values()) + 1, "title": body["title"],
                        "type": body["type"], "description": body.get("description"),
                        "eventTime": body.get("eventTime"), "origin": body.get("origin", "manual"),
                        "entityClass": entity, "entityId": external_id,
                        "createdOn": iso_ms(wall_ms())}
            items.append(activity)
            return activity

    def activities_of(self, entity: str, external_id: str) -> list[dict]:
        with self._activity_lock:
            return list(self._activities.get((entity, external_id), []))

    def _build_store(self, folders: int, seed: int) -> tuple[FolderStore, PaymentLedger]:
        pop = population.generate(folders, seed, self.siret, self.organism_name, self.anchor)
        store = FolderStore(pop, on_change=self._publish)
        payments = PaymentLedger(pop.folders)  # before any change: the seeded paid folders
        # The population lives as long as the process: keep the cyclic GC from rescanning it on every
        # collection (a full pass over 50,000 folders stalls requests for a noticeable time).
        if folders >= 5000:
            gc.collect()
            gc.freeze()
        threading.Thread(target=store.warm_up, name="wedof-warm-up", daemon=True).start()
        return store, payments

    def _publish(self, change: Change) -> None:
        hooks = self.webhooks.matching(change.event)
        if hooks:
            self.deliverer.publish(hooks, change)

    def apply(self, external_id: str, mutator: Mutator) -> Change | None:
        """Change one folder (webhooks follow); raises ApiError when the change is refused."""
        return self.store.change(external_id, mutator)

    def bill_owner(self, number: str) -> str | None:
        """The folder already billed with ``number``, if any (a scan: billing is rare next to listings)."""
        with self.store.lock:
            return next((e for e, r in self.store.records.items() if r.folder["billNumber"] == number), None)

    def reset(self, folders: int, seed: int) -> None:
        """Re-seed the population; drop payments, webhooks, pending deliveries, counters, statistics and the hold."""
        with self._reset_lock:
            store, payments = self._build_store(folders, seed)
            self.hold.clear()
            self.webhooks.clear()
            self.deliverer.reset(seed)
            self.counters.reset()
            self.faults = FaultInjector(self.fault_config, seed)
            self.folders, self.seed, self.simulations = folders, seed, 0
            self.store, self.payments = store, payments
            with self._activity_lock:
                self._activities.clear()

    def close(self) -> None:
        self.deliverer.stop()
