"""v1 invoice arithmetic (tax-inclusive prices), with Decimal only.

Rules (contract §3.4), per item with ``L = price × quantity × (1 − discount_rate/100)`` kept
unrounded (exact: the request bounds keep every product far inside the working precision):

* ``total`` = round2(L); ``taxable_amount`` = round2(L / (1 + tax_rate/100)) computed from the
  *unrounded* L, as the contract writes it; ``tax_amount`` = total − taxable (L − taxable rounded
  like the total, so the line always adds up and a 0 % line never shows −0.01); ``gross_value`` = taxable;
  ``discount`` = round2(price × qty × discount_rate/100 / (1 + tax_rate/100)).
* excluded items: tax 0, taxable 0.00, ``gross_value`` = round2(L).
* withholdings: ReteIVA (05) applies to the item's (rounded) tax, ReteRenta (06) and ReteICA (07) to
  its base (``gross_value``: the taxable amount, or L for an excluded line); they are reported but
  do not reduce the total.

Document: ``taxable_amount`` = Σ item taxable, ``tax_amount`` = Σ item tax, surcharges and
discounts from ``allowance_charges`` (item discounts are not included), ``total`` = Σ item totals +
surcharges − discounts.

Document ``gross_value`` = Σ item ``gross_value``. The contract (§3.4) writes it as Σ item taxable,
which is the same sum whenever no item is excluded (all its worked examples); with excluded items the
official v1 support-document example (items excluded, ``gross_value`` "90000.00", ``taxable_amount``
"0.00") and DIAN's own ``LineExtensionAmount`` (used by the UBL XML and the CUFE) both count the
excluded lines, so the emulator does too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from daemon.catalog import PRODUCT_TRIBUTES
from daemon.money import round2, to_decimal

__all__ = ["AllowanceTotals", "BillTotals", "LineTotals", "Withholding", "compute_bill", "compute_line"]

_HUNDRED = Decimal(100)
_ZERO = Decimal("0.00")
# Working precision: the validated bounds (quantity < 10^9, amounts < 10^12) need at most ~30
# significant digits per line; 80 leaves room for sums over many lines without any rounding.
_PRECISION = 80


@dataclass(frozen=True, slots=True)
class Withholding:
    """One self-withholding of a line: code (05/06/07), rate in percent and computed value."""

    code: str
    rate: Decimal
    value: Decimal


@dataclass(frozen=True, slots=True)
class LineTotals:
    """Computed amounts of one item."""

    total: Decimal
    taxable_amount: Decimal
    tax_amount: Decimal
    gross_value: Decimal
    discount: Decimal
    tax_rate: Decimal
    tax_code: str
    is_excluded: bool
    withholdings: tuple[Withholding, ...] = ()


@dataclass(frozen=True, slots=True)
class AllowanceTotals:
    """One document-level surcharge or discount with its computed percentage."""

    is_surcharge: bool
    base_amount: Decimal
    amount: Decimal
    percentage: Decimal


@dataclass(frozen=True, slots=True)
class BillTotals:
    """Document totals plus the per-line and per-allowance details they were summed from."""

    lines: tuple[LineTotals, ...]
    allowances: tuple[AllowanceTotals, ...]
    gross_value: Decimal
    taxable_amount: Decimal
    tax_amount: Decimal
    discount_amount: Decimal
    surcharge_amount: Decimal
    total: Decimal
    withholdings: dict[str, Decimal] = field(default_factory=dict)
    # (tax code, rate) -> (taxable base, tax): the UBL TaxTotal groups and the CUFE inputs
    taxes: dict[tuple[str, Decimal], tuple[Decimal, Decimal]] = field(default_factory=dict)


def compute_line(
    *,
    price: Decimal,
    quantity: Decimal,
    discount_rate: Decimal,
    tax_rate: Decimal,
    is_excluded: bool,
    tribute_id: int = 1,
    withholdings: Sequence[tuple[str, Decimal]] = (),
) -> LineTotals:
    """Compute one v1 line (price includes its taxes)."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        gross = price * quantity
        exact_line = gross * (1 - discount_rate / _HUNDRED)  # L, unrounded (contract §3.4)
        line = round2(exact_line)
        tax_code = PRODUCT_TRIBUTES.get(tribute_id, ("01", "", ""))[0]
        if is_excluded:
            taxable, tax, gross_value = _ZERO, _ZERO, line
            discount = round2(gross * discount_rate / _HUNDRED)
        else:
            divisor = 1 + tax_rate / _HUNDRED
            taxable = round2(exact_line / divisor)
            # L − taxable, rounded like the line total: round2(L − taxable) would round a 0 % line
            # whose L ends in half a cent (0.505 → taxable 0.51) to a negative tax of −0.01
            tax = line - taxable
            gross_value = taxable
            discount = round2(gross * discount_rate / _HUNDRED / divisor)
        held = []
        for code, rate in withholdings:
            # ReteIVA on the IVA; ReteRenta/ReteICA on the line's base, which for an excluded
            # line is its gross value (official support-document example: 3.5 % of 40000 = 1400)
            base = tax if code == "05" else gross_value
            held.append(Withholding(code=code, rate=rate, value=round2(base * rate / _HUNDRED)))
    return LineTotals(
        total=line,
        taxable_amount=taxable,
        tax_amount=tax,
        gross_value=gross_value,
        discount=discount,
        tax_rate=tax_rate,
        tax_code=tax_code,
        is_excluded=is_excluded,
        withholdings=tuple(held),
    )


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def compute_bill(
    items: Sequence[Mapping[str, Any]], allowance_charges: Sequence[Mapping[str, Any]] = ()
) -> BillTotals:
    """Compute every line and the document totals of a (validated) v1 bill payload."""
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _compute_bill(items, allowance_charges)


def _compute_bill(
    items: Sequence[Mapping[str, Any]], allowance_charges: Sequence[Mapping[str, Any]]
) -> BillTotals:
    lines: list[LineTotals] = []
    for item in items:
        raw_withholdings = item.get("withholding_taxes") or []
        lines.append(
            compute_line(
                price=to_decimal(item["price"]),
                quantity=to_decimal(item["quantity"]),
                discount_rate=to_decimal(item.get("discount_rate") or 0),
                tax_rate=to_decimal(item.get("tax_rate") or 0),
                is_excluded=_flag(item.get("is_excluded")),
                tribute_id=int(str(item.get("tribute_id") or 1)),
                withholdings=[
                    (str(w["code"]), to_decimal(w["withholding_tax_rate"]))
                    for w in raw_withholdings
                    if isinstance(w, Mapping)
                ],
            )
        )
    allowances: list[AllowanceTotals] = []
    for charge in allowance_charges:
        base = to_decimal(charge["base_amount"])
        amount = to_decimal(charge["amount"])
        percentage = round2(amount / base * _HUNDRED) if base else _ZERO
        allowances.append(
            AllowanceTotals(
                is_surcharge=_flag(charge.get("is_surcharge")),
                base_amount=round2(base),
                amount=round2(amount),
                percentage=percentage,
            )
        )
    surcharge = sum((a.amount for a in allowances if a.is_surcharge), _ZERO)
    discount = sum((a.amount for a in allowances if not a.is_surcharge), _ZERO)
    withholdings: dict[str, Decimal] = {}
    taxes: dict[tuple[str, Decimal], tuple[Decimal, Decimal]] = {}
    for line in lines:
        for w in line.withholdings:
            withholdings[w.code] = withholdings.get(w.code, _ZERO) + w.value
        if not line.is_excluded:
            key = (line.tax_code, round2(line.tax_rate))
            base, tax = taxes.get(key, (_ZERO, _ZERO))
            taxes[key] = (base + line.taxable_amount, tax + line.tax_amount)
    return BillTotals(
        lines=tuple(lines),
        allowances=tuple(allowances),
        gross_value=sum((line.gross_value for line in lines), _ZERO),
        taxable_amount=sum((line.taxable_amount for line in lines), _ZERO),
        tax_amount=sum((line.tax_amount for line in lines), _ZERO),
        discount_amount=discount,
        surcharge_amount=surcharge,
        total=sum((line.total for line in lines), _ZERO) + surcharge - discount,
        withholdings=withholdings,
        taxes=taxes,
    )
