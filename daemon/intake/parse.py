"""Text -> value parsers for each canonical kind, with the profile's separators and date format.

Each parser takes trimmed, non-empty text and returns the value the v1 model expects, or raises
:class:`BadValue` with a plain message. Money never passes through a float.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from daemon.intake.fields import Kind
from daemon.intake.lookups import Lookups

__all__ = ["BadValue", "TextParser", "as_text"]

_CENT = Decimal("0.01")
# Not allowed in XML 1.0 at all; tab, line feed and carriage return are (a multi-line address cell).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_MAX_MAGNITUDE = 40  # decimal digits either side of the point a typed number may have
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_FLOATY_INT = re.compile(r"(\d+)\.0+", re.ASCII)
_SCIENTIFIC = re.compile(r"[+-]?\d+(?:[.,]\d+)?[eE][+-]?\d+", re.ASCII)
_EXCEL_SCIENTIFIC = re.compile(r"[+-]?\d(?:[.,]\d+)?[eE][+-]\d{2,}", re.ASCII)
"""How Excel shows a long number it turned into a float (``9.00123E+08``); ``12E4`` stays a code."""
_TRUE = frozenset({"true", "1", "si", "sí", "s", "yes", "y", "x", "-1", "verdadero", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "falso", "f"})
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?", re.ASCII)
_FALLBACK_DATE_FORMATS = ("%d/%m/%Y", "%d-%m-%Y", "%Y/%m/%d")
_SERIAL = re.compile(r"(\d{1,7})(?:\.\d+)?", re.ASCII)
_EXCEL_EPOCH = date(1899, 12, 30)
_MIN_YEAR, _MAX_YEAR = 1900, 2199
_MAX_SERIAL = (date(_MAX_YEAR, 12, 31) - _EXCEL_EPOCH).days
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?", re.ASCII)


class BadValue(ValueError):
    """Raised by a parser: the text cannot be read as the column's kind (message is user-facing)."""


def _cents(value: Decimal) -> Decimal:
    """``value`` with zeros past the second decimal dropped (11.900 -> 11.90); else unchanged."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -2:
        return value
    try:
        cents = value.quantize(_CENT)
    except InvalidOperation:  # more digits than the context holds: left for the range checks
        return value
    return cents if cents == value else value


def as_text(value: Any, decimal: str = ".") -> str:
    """Text form of a TOML/JSON scalar (a profile default, a value-map target, a JSON value).

    A fractional number is written with ``decimal`` as its separator (never with thousands), so
    that it reads back exactly under a profile whose numbers use a decimal comma.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        if value.is_finite() and value and not -_MAX_MAGNITUDE <= value.adjusted() <= _MAX_MAGNITUDE:
            # 1e999999999 would be written out as a billion digits: no amount, id or rate is that big
            raise BadValue(f"is a number of magnitude 1e{value.adjusted()}, far outside any amount or id")
        value = _cents(value)  # a typed 11.900 is unambiguous: 11.90
        text = format(value, "f")
        return text.replace(".", decimal) if decimal != "." else text
    if isinstance(value, float):
        return repr(value).replace(".", decimal) if decimal != "." else repr(value)
    if isinstance(value, str | int):
        return str(value)
    raise BadValue(f"expected a single value, got a {type(value).__name__}")


def _plausible(day: date) -> date:
    if not _MIN_YEAR <= day.year <= _MAX_YEAR:
        raise ValueError(f"year {day.year} is out of range")
    return day


class TextParser:
    """Parsers bound to one profile's ``decimal``/``thousands``/``date_format`` and the lookups."""

    def __init__(
        self,
        *,
        decimal: str = ".",
        thousands: str = "",
        date_format: str | None = None,
        lookups: Lookups,
    ) -> None:
        self.decimal = decimal
        self.thousands = thousands
        self.date_format = date_format
        self.lookups = lookups
        self.repaired: dict[tuple[str, str], str] = {}
        """Float-looking identifiers that were repaired: (canonical column, ``900123456.0``) ->
        ``900123456``."""

    def parse(self, kind: Kind, text: str, canonical: str) -> Any:
        """Parse trimmed non-empty ``text`` as ``kind``.

        Raises:
            BadValue: with a message naming what was expected.
        """
        if kind in ("text", "ident") and (bad := _CONTROL.search(text)) is not None:
            raise BadValue(
                f"contains the control character U+{ord(bad.group()):04X}, which an electronic invoice "
                "cannot carry (its XML would be unreadable): remove it from the cell"
            )
        if kind == "text":
            return text
        if kind == "ident":
            return self.ident(text, canonical)
        if kind == "int":
            return self.integer(text)
        if kind == "code":
            return self.code(text, canonical)
        if kind == "decimal":
            return self.decimal_value(text)
        if kind == "rate":  # at most 100: "19.000" can only mean 19
            return self.decimal_value(text[:-1].rstrip() if text.endswith("%") else text, amount=False)
        if kind == "date":
            return self.date_value(text)
        if kind == "time":
            return self.time_value(text)
        if kind == "bool":
            return self.boolean(text)
        if kind == "flag":
            return 1 if self.boolean(text) else 0
        if kind in ("municipality", "unit") and "." in text:
            m = _FLOATY_INT.fullmatch(text)  # 5001.0 from a spreadsheet: the code 5001
            if m:
                self.repaired[canonical, text] = m.group(1)
                text = m.group(1)
        if kind == "municipality":
            found = self.lookups.municipality_id(text)
            if found is None:
                raise BadValue(
                    f"is not a known DIVIPOLA municipality code{self._table_note()}"
                    if text.isdigit()
                    else "is not a DIVIPOLA municipality code (5 digits, e.g. 11001 for Bogotá)"
                )
            return found
        if kind == "unit":
            unit = self.lookups.unit_id(text)
            if unit is None:
                raise BadValue(f"is not a known unit of measure code (e.g. 94, KGM){self._table_note()}")
            return unit
        raise AssertionError(f"unknown kind {kind}")  # pragma: no cover

    def _table_note(self) -> str:
        if self.lookups.complete:
            return ""
        return " in the built-in table (refresh the lookups cache from Factus for the full list)"

    def ident(self, text: str, canonical: str = "reference_code") -> str:
        """An identifier: kept as written; ``123.0`` (a number exported as float) is repaired."""
        if "." in text or "e" in text or "E" in text:
            m = _FLOATY_INT.fullmatch(text)
            if m:
                self.repaired[canonical, text] = m.group(1)
                return m.group(1)
            if _EXCEL_SCIENTIFIC.fullmatch(text):
                raise BadValue("is in scientific notation, so digits are lost: export the column as text")
        return text

    def _number_text(self, text: str) -> str:
        """The number in plain ``[-]digits[.digits]`` form, separators checked, else BadValue."""
        s = text
        if s.startswith("$"):
            s = s[1:]
        if " " in s or "\u00a0" in s:
            s = s.replace(" ", "").replace("\u00a0", "")
        sign = ""
        if s[:1] in ("+", "-"):
            sign, s = s[0], s[1:]
        dec, th = self.decimal, self.thousands
        whole, point, frac = s.partition(dec)
        if th and th in whole:
            groups = whole.split(th)
            if not (1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])):
                raise BadValue(
                    f"has a thousands separator '{th}' that does not split groups of three digits "
                    f"(this file's numbers use '{dec}' for decimals and '{th}' for thousands)"
                )
            whole = "".join(groups)
        if dec == "," and ("." in whole or "." in frac):
            # a dot is not this file's decimal separator: 1.234 could mean 1234 or 1.234
            raise BadValue(
                "has a '.' but this file's numbers use ',' for decimals"
                + (f" and '{th}' for thousands" if th else " and no thousands separator")
            )
        return f"{sign}{whole}.{frac}" if point else sign + whole

    def decimal_value(self, text: str, *, amount: bool = True) -> Decimal:
        """A number with the profile's separators, as an exact Decimal.

        A thousands separator must split groups of three digits, and with a decimal comma a dot is
        refused: a misplaced separator would otherwise scale the amount by 10, 100 or 1000. For the
        same reason, with no thousands separator in the profile, an ``amount`` written like one
        thousands group (``11.900``, ``$ 1.000``, ``2,500`` under a decimal comma) is refused: it
        means 11900 to a Colombian reader and 11.9 to a parser. Zeros past the second decimal are
        dropped (``11900.0000`` from an ERP is 11900.00).
        """
        s = self._number_text(text)
        if not _NUMBER.fullmatch(s):
            if _SCIENTIFIC.fullmatch(text):
                raise BadValue("is in scientific notation: write the number in plain digits")
            sep = "a decimal comma" if self.decimal == "," else "a decimal point"
            extra = (
                f" and '{self.thousands}' for thousands" if self.thousands else " and no thousands separator"
            )
            raise BadValue(f"is not a number (expected digits with {sep}{extra})")
        whole, _, frac = s.lstrip("+-").partition(".")
        if amount and not self.thousands and len(frac) == 3 and 1 <= len(whole) <= 3 and whole[0] != "0":
            other = "," if self.decimal == "." else "."
            raise BadValue(
                f"has 3 decimals but must have at most 2 decimal places; if it means {whole}{frac} "
                f"('{self.decimal}' for thousands), set [read] decimal = \"{other}\" and "
                f'thousands = "{self.decimal}" in the profile'
            )
        try:
            value = Decimal(s)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
            raise BadValue("is not a number") from None
        return _cents(value) if len(frac) > 2 else value

    def integer(self, text: str) -> int:
        """A whole number (``3``, ``3.00``, ``3,00`` with a decimal comma)."""
        if text.isascii() and text.isdigit():
            return int(text)
        try:
            value = self.decimal_value(text)
        except BadValue:
            raise BadValue("is not a whole number") from None
        if value != value.to_integral_value():
            raise BadValue("must be a whole number")
        return int(value)

    @staticmethod
    def code(text: str, canonical: str) -> str:
        """A code of a code table, normalised the way Factus spells it."""
        m = _FLOATY_INT.fullmatch(text)
        if m:
            text = m.group(1)
        if canonical == "document" and text.isdigit() and len(text) == 1:
            return text.zfill(2)
        if canonical in ("payment_form", "operation_type") and text.isdigit():
            return text.lstrip("0") or "0"
        if canonical == "payment_method_code":
            return text.upper()
        return text

    def date_value(self, text: str) -> date:
        """ISO dates always; the profile's ``date_format``; Excel serial numbers; else dd/mm/yyyy,
        dd-mm-yyyy, yyyy/mm/dd (Colombian day-first order, parsed strictly). Years outside
        1900-2199 are refused (a two-digit year read by ``%Y`` would be year 26)."""
        m = _ISO_DATE.fullmatch(text)
        if m:
            try:
                return _plausible(date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
            except ValueError:
                raise BadValue("is not a valid calendar date") from None
        if self.date_format:
            try:
                return _plausible(datetime.strptime(text, self.date_format).date())
            except ValueError:
                pass
        m = _SERIAL.fullmatch(text)
        if m:
            serial = int(m.group(1))
            if 61 <= serial <= _MAX_SERIAL:
                return _EXCEL_EPOCH + timedelta(days=serial)
            if 1 <= serial <= 60:  # Excel's fictitious 1900-02-29 shifts the first 60 days by one
                return _EXCEL_EPOCH + timedelta(days=serial + 1)
        if not self.date_format:
            for fmt in _FALLBACK_DATE_FORMATS:
                try:
                    return _plausible(datetime.strptime(text, fmt).date())
                except ValueError:
                    continue
        expected = self.date_format or "YYYY-MM-DD or DD/MM/YYYY"
        raise BadValue(f"is not a date in the format {expected} (years {_MIN_YEAR}-{_MAX_YEAR})")

    @staticmethod
    def time_value(text: str) -> time:
        """``HH:MM`` or ``HH:MM:SS``."""
        m = _TIME.fullmatch(text)
        if m:
            try:
                return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
            except ValueError:
                pass
        raise BadValue("is not a time (HH:MM:SS)")

    @staticmethod
    def boolean(text: str) -> bool:
        """Yes/no as ERPs spell it (``true``, ``1``, ``Sí``, ``x``, ``-1``; ``false``, ``0``, ``No``)."""
        low = text.casefold()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise BadValue("is not a yes/no value (use true/false, 1/0 or si/no)")
