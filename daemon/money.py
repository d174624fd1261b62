"""Money and identity arithmetic shared by the validator and the emulator: Decimal only."""

from __future__ import annotations

import json
import secrets
from datetime import date, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

__all__ = ["CENT", "decimal_places", "dumps_json", "fmt2", "nit_check_digit", "round2", "to_decimal"]

CENT = Decimal("0.01")
_NIT_WEIGHTS = (3, 7, 13, 17, 19, 23, 29, 37, 41, 43, 47, 53, 59, 67, 71)


def nit_check_digit(nit: str) -> int:
    """Return the DIAN (mod 11) check digit of a NIT given without its DV.

    >>> nit_check_digit("900825759"), nit_check_digit("901724254"), nit_check_digit("123456789")
    (7, 1, 6)
    """
    digits = nit.strip()
    if not digits.isdigit() or len(digits) > len(_NIT_WEIGHTS):
        raise ValueError(f"a NIT is 1 to {len(_NIT_WEIGHTS)} digits, got {nit!r}")
    total = sum(int(d) * w for d, w in zip(reversed(digits), _NIT_WEIGHTS, strict=False))
    r = total % 11
    return r if r < 2 else 11 - r


def round2(value: Decimal) -> Decimal:
    """Round half up to cents, the way invoices are printed."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt2(value: Decimal) -> str:
    """Format as the API does: a string with exactly two decimals (``"90000.00"``)."""
    return f"{round2(value):.2f}"


def to_decimal(value: object) -> Decimal:
    """Convert an int, str or Decimal (never a float) to Decimal.

    Raises:
        ValueError: the value is not a finite number.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        # Floats only reach here from JSON; repr() keeps the shortest exact decimal form.
        value = repr(value)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"not a number: {value!r}")
    return d


def decimal_places(value: Decimal) -> int:
    """Significant digits after the decimal point (``1.50`` -> 1, ``1.555`` -> 3, ``100`` -> 0)."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int), "finite decimals only"
    return max(0, -exponent)


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """Serialise JSON-like data with every Decimal written as an exact JSON number.

    ``json.dumps`` cannot write a Decimal as a number, and going through ``float`` would put money
    at risk; dates and times become ISO strings. Non-finite Decimals raise ``ValueError``.

    >>> dumps_json({"price": Decimal("11900.50"), "items": [1, "a"], "ok": True})
    '{"price": 11900.50, "items": [1, "a"], "ok": true}'
    """
    marker = f"\u0000{secrets.token_hex(8)}\u0000"  # unguessable: user text can never forge it

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            if not obj.is_finite():
                raise ValueError(f"non-finite number {obj!r}")
            return f"{marker}{obj:f}{marker}"
        if isinstance(obj, date | time):
            return obj.isoformat()
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    text = json.dumps(value, default=default, ensure_ascii=False, allow_nan=False, indent=indent)
    quoted = json.dumps(marker)[1:-1]
    return text.replace(f'"{quoted}', "").replace(f'{quoted}"', "")
