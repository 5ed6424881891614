"""Payments: what the financer paid, listed by ``GET /api/payments`` (lifecycle-billing.md §1).

A payment is recorded when the financer pays a billed folder (the simulation's ``paid`` move) and
for every folder the population seeds as ``paid``. It lives beside the folder store, so a folder keeps
the exact key set of a real one. Wedof's payment object is only partly known: the fields below are the
ones integrations read (``externalId`` — the folder number, as the Odoo integration reads it —,
``amount``, ``transactionDate``) plus the filters of the listing (``type``, ``state``, ``lastUpdate``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .listing import _choice_set, _one_of, _positive_int
from .timeutil import iso_ms, parse_iso_to_ms

PAYMENT_TYPES = ("deposit", "bill")
PAYMENT_STATES = ("issued", "rejected")  # the sandbox only issues; "rejected" is accepted as a filter
DEFAULT_LIMIT, MAX_LIMIT = 100, 100


def payment_of(folder: dict, payment_id: int, at_ms: int) -> dict:
    """The bill payment of a billed folder, paid at ``at_ms``."""
    external_id = folder["externalId"]
    amount = folder["amountToInvoice"]
    if amount is None:
        amount = folder["trainingActionInfo"]["totalIncl"]
    stamp = iso_ms(at_ms)
    return {"id": payment_id, "externalId": external_id, "registrationFolderExternalId": external_id,
            "type": "bill", "state": "issued", "amount": amount, "transactionDate": stamp, "lastUpdate": stamp,
            "billNumber": folder["billNumber"],
            "_links": {"registrationFolder": {"href": f"/api/registrationFolders/{external_id}"}}}


class PaymentLedger:
    """Every payment of one population; thread-safe (the simulation and the API share it)."""

    def __init__(self, folders: Iterable[dict] = ()) -> None:
        self._lock = threading.Lock()
        # A folder seeded as paid was paid on its paidDate: same seed, same payments.
        self._items = [payment_of(f, n, parse_iso_to_ms(f["history"]["paidDate"]))
                       for n, f in enumerate((f for f in folders if f["billingState"] == "paid"), start=1)]
        self._next_id = len(self._items) + 1

    def record(self, folder: dict, at_ms: int) -> dict:
        with self._lock:
            payment = payment_of(folder, self._next_id, at_ms)
            self._next_id += 1
            self._items.append(payment)
            return dict(payment)

    def of(self, external_id: str, last_update: str) -> dict:
        """The payment recorded for this folder at ``last_update``."""
        with self._lock:
            return dict(next(p for p in self._items
                             if p["registrationFolderExternalId"] == external_id and p["lastUpdate"] == last_update))

    def all(self) -> list[dict]:
        with self._lock:
            return [dict(p) for p in self._items]

    def query(self, args) -> tuple[int, list[dict], int, int]:
        """``GET /api/payments``: (total matching, the page, page, limit); 400 on a bad parameter."""
        page = _positive_int(args, "page", 1)
        limit = _positive_int(args, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        _one_of(args, "sort", ("lastUpdate",), "lastUpdate")
        order = _one_of(args, "order", ("desc", "asc"), "desc")
        types = _choice_set(args, "type", PAYMENT_TYPES)
        states = _choice_set(args, "state", PAYMENT_STATES)
        folder_id = (args.get("registrationFolderId") or "").strip() or None
        with self._lock:
            matched = [p for p in self._items
                       if (folder_id is None or p["registrationFolderExternalId"] == folder_id)
                       and (types is None or p["type"] in types) and (states is None or p["state"] in states)]
        matched.sort(key=lambda p: (parse_iso_to_ms(p["lastUpdate"]), p["id"]), reverse=order == "desc")
        start = (page - 1) * limit
        return len(matched), [dict(p) for p in matched[start:start + limit]], page, limit
