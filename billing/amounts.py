"""An invoice's amounts, from the folder's own numbers: never guessed.

Before billing, Wedof gives the training action's price (``trainingActionInfo.totalExcl`` /
``totalIncl`` and the VAT split ``vatExclTax5/20``, ``vatInclTax5/20``); once billed, the folder's
``amount*`` fields hold what Wedof transmitted (``amountHtNet``, ``amountTtc``, ``vatAmount5/20``).
The billed amounts win when present. A folder without a usable price gets no invoice: it is shown
with the reason, and an admin fixes the price at Wedof.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("1000000")  # a bilan costs a few thousand euros; more is a data error


class NoPrice(ValueError):
    """The folder's numbers do not make an invoice; the message says which is missing or wrong."""


@dataclass(frozen=True)
class Amounts:
    excl: Decimal
    vat_rate: Decimal  # percent; 0 when the training carries no VAT
    vat: Decimal
    incl: Decimal

    @property
    def exempt(self) -> bool:
        return self.vat == 0

    def as_json(self) -> dict:
        return {"amount_excl": str(self.excl), "vat_rate": str(self.vat_rate), "vat_amount": str(self.vat),
                "amount_incl": str(self.incl)}


def _money(value) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def invoice_amounts(numbers: dict | None) -> Amounts:
    """The amounts to invoice from a folder's numbers (``Enrollment.wedof_amounts``)."""
    numbers = numbers if isinstance(numbers, dict) else {}
    excl = _money(numbers.get("amountHtNet")) or _money(numbers.get("amountHt"))
    incl = _money(numbers.get("amountTtc")) or _money(numbers.get("amountToInvoice"))
    if excl is None or incl is None:
        excl, incl = _money(numbers.get("totalExcl")), _money(numbers.get("totalIncl"))
    if excl is None or incl is None:
        raise NoPrice("Wedof gives no price for this folder (trainingActionInfo.totalExcl / totalIncl)")
    if excl <= 0 or incl > MAX_AMOUNT:
        raise NoPrice(f"the folder's price is not usable ({excl} excl. tax, {incl} incl. tax)")
    if incl < excl:
        raise NoPrice(f"the price including tax ({incl}) is below the price excluding tax ({excl})")
    vat = incl - excl
    return Amounts(excl=excl, vat_rate=_rate(numbers, excl, vat), vat=vat, incl=incl)


def _rate(numbers: dict, excl: Decimal, vat: Decimal) -> Decimal:
    """The VAT rate Wedof's split names (5.5 % or 20 %), else the one the amounts imply."""
    if vat == 0:
        return Decimal("0.00")
    for rate, key in ((Decimal("20.00"), "vatExclTax20"), (Decimal("5.50"), "vatExclTax5"),
                      (Decimal("20.00"), "vatHtAmount20"), (Decimal("5.50"), "vatHtAmount5")):
        if _money(numbers.get(key)):
            return rate
    return (vat * 100 / excl).quantize(CENT, ROUND_HALF_UP)
