"""Billing in the chaos run: the tenant bills in auto mode while the run's faults happen, and the verdict
counts invoices missing, duplicated and double-billed, with the sandbox's own count of accepted
``/billing`` calls per folder as the truth.

Folders reach ``toBill`` as at Wedof: the seeded ones the financer already validated (found by the
first sync, billed a batch per beat run), and those the simulation moves to ``serviceDoneValidated``
during the window (most of them: 5,000 changes walk some 800 folders to the financer's validation). The
simulation does not bill for the organism (``organism_billing: false``): every ``/billing`` call the
sandbox counts is ours. The simulation still pays billed folders, so the paid path runs too.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import BillingMode, BillingSettings, Invoice, InvoiceStatus
from billing.evaluate import due

SERVICE_DONE = ("serviceDoneDeclared", "serviceDoneValidated")


def enable(tenant_id: int) -> None:
    with session_scope() as session:
        session.add(BillingSettings(tenant_id=tenant_id, mode=BillingMode.AUTO, number_format="CH-{year}-{seq:06d}"))


def already_billed(truth: list[dict]) -> set[str]:
    """Folders billed before the run (the seed's own numbers): not ours to bill, not counted."""
    return {f["externalId"] for f in truth if f["billingState"] in ("billed", "paid")}


def settled(tenant_id: int) -> bool:
    """No invoice reserved or being sent, and no folder with a price still due: the run may judge."""
    with session_scope() as session:
        in_flight = session.scalars(select(Invoice.id).where(
            Invoice.tenant_id == tenant_id, Invoice.status.in_((InvoiceStatus.RESERVED, InvoiceStatus.SENT)))).first()
        return in_flight is None and not [d for d in due(session, tenant_id, limit=100) if d.amounts is not None]


def verdict(tenant_id: int, truth: list[dict], transitions: dict[str, dict[str, int]], before: set[str]) -> dict:
    by_id = {f["externalId"]: f for f in truth}
    with session_scope() as session:
        rows = session.execute(select(Invoice.folder_number, Invoice.number, Invoice.status, Invoice.scope,
                                      Invoice.sequence_value).where(Invoice.tenant_id == tenant_id)).all()
    calls = {f: verbs.get("billing", 0) for f, verbs in transitions.items() if verbs.get("billing")}
    double_billed = [(f, n) for f, n in calls.items() if n > 1]
    numbers = Counter(r.number for r in rows)
    live = Counter(r.folder_number for r in rows if r.status != InvoiceStatus.CANCELLED)
    duplicated = [n for n, c in numbers.items() if c > 1] + [f for f, c in live.items() if c > 1]
    by_scope: dict[str, list[int]] = {}
    for r in rows:
        by_scope.setdefault(r.scope, []).append(r.sequence_value)
    gaps = [scope for scope, values in by_scope.items() if sorted(values) != list(range(1, len(values) + 1))]
    ours = {r.folder_number: r.number for r in rows if r.status != InvoiceStatus.CANCELLED}
    # Missing: Wedof, at the end, still waits for an invoice of a folder it validated; or billed a folder
    # with a number that is not our invoice's (nobody but us bills in this run).
    missing = [f for f, folder in by_id.items()
               if folder["billingState"] == "toBill" and folder["state"] in SERVICE_DONE]
    mismatched = [(f, by_id[f]["billNumber"], ours.get(f)) for f in calls if by_id[f]["billNumber"] != ours.get(f)]
    billed_in_run = [f for f, folder in by_id.items()
                     if folder["billingState"] in ("billed", "paid") and f not in before]
    statuses = Counter(r.status.value for r in rows)
    return {"invoices": len(rows), "by_status": dict(statuses), "billing_calls": sum(calls.values()),
            "billed_in_run": len(billed_in_run), "missing": len(missing) + len(mismatched),
            "duplicated": len(duplicated) + len(gaps), "double_billed": len(double_billed),
            "examples": {"missing": missing[:10], "mismatched": mismatched[:10], "duplicated": duplicated[:10],
                         "gaps": gaps, "double_billed": double_billed[:10]}}
