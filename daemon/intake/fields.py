"""The canonical layout: every column the intake understands, its level, kind and built-in default.

A canonical column is a Factus v1 field path (``customer.email``, ``item.price``) plus two ERP-friendly
aliases resolved through the lookups (``customer.municipality_code``, ``item.unit_measure_code``) and
one withholding column per code (``item.withholding.06`` holding a rate).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from daemon.catalog import WITHHOLDING_CODES

__all__ = [
    "BUILTIN_DEFAULTS",
    "CANONICAL_HEADERS",
    "FIELDS",
    "REQUIRED",
    "FieldSpec",
    "Kind",
    "Level",
    "canonical_of",
    "field_spec",
    "is_canonical",
    "normalise_header",
]

Level = Literal["invoice", "customer", "item"]
Kind = Literal[
    "text",  # free text, kept as written (trimmed)
    "ident",  # identifier: kept as written, leading zeros kept, float-looking "123.0" repaired
    "int",  # whole number (ids, quantity)
    "code",  # short code from a code table, kept as text
    "decimal",  # money: Decimal with the profile's separators
    "rate",  # percentage: Decimal, a trailing "%" allowed
    "date",  # YYYY-MM-DD in the payload
    "time",  # HH:MM:SS in the payload
    "bool",  # true/false
    "flag",  # 0/1
    "municipality",  # DIVIPOLA code -> municipality_id
    "unit",  # UN/ECE unit code -> unit_measure_id
]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One canonical column: where it goes in the payload and how its text is read."""

    name: str
    level: Level
    kind: Kind
    target: str
    """Key inside its object: ``email`` for ``customer.email``; the id field for aliases."""
    group: str | None = None
    """Nested object at invoice level (``order_reference``...), else None."""


def _f(name: str, level: Level, kind: Kind, target: str | None = None) -> FieldSpec:
    parts = name.split(".")
    group: str | None = None
    if level == "invoice" and len(parts) == 2:
        group = parts[0]
    return FieldSpec(name, level, kind, target or parts[-1], group)


_SPECS: tuple[FieldSpec, ...] = (
    _f("reference_code", "invoice", "ident"),
    _f("numbering_range_id", "invoice", "int"),
    _f("document", "invoice", "code"),
    _f("operation_type", "invoice", "code"),
    _f("payment_form", "invoice", "code"),
    _f("payment_due_date", "invoice", "date"),
    _f("payment_method_code", "invoice", "code"),
    _f("observation", "invoice", "text"),
    _f("send_email", "invoice", "bool"),
    _f("order_reference.reference_code", "invoice", "ident"),
    _f("order_reference.issue_date", "invoice", "date"),
    _f("billing_period.start_date", "invoice", "date"),
    _f("billing_period.start_time", "invoice", "time"),
    _f("billing_period.end_date", "invoice", "date"),
    _f("billing_period.end_time", "invoice", "time"),
    _f("establishment.name", "invoice", "text"),
    _f("establishment.address", "invoice", "text"),
    _f("establishment.phone_number", "invoice", "ident"),
    _f("establishment.email", "invoice", "text"),
    _f("establishment.municipality_id", "invoice", "int"),
    _f("establishment.municipality_code", "invoice", "municipality", "municipality_id"),
    _f("customer.identification_document_id", "customer", "int"),
    _f("customer.identification", "customer", "ident"),
    _f("customer.dv", "customer", "ident"),
    _f("customer.company", "customer", "text"),
    _f("customer.trade_name", "customer", "text"),
    _f("customer.names", "customer", "text"),
    _f("customer.address", "customer", "text"),
    _f("customer.email", "customer", "text"),
    _f("customer.phone", "customer", "ident"),
    _f("customer.legal_organization_id", "customer", "int"),
    _f("customer.tribute_id", "customer", "int"),
    _f("customer.municipality_id", "customer", "int"),
    _f("customer.municipality_code", "customer", "municipality", "municipality_id"),
    _f("item.code_reference", "item", "ident"),
    _f("item.name", "item", "text"),
    _f("item.quantity", "item", "int"),
    _f("item.discount_rate", "item", "rate"),
    _f("item.price", "item", "decimal"),
    _f("item.tax_rate", "item", "rate"),
    _f("item.unit_measure_id", "item", "int"),
    _f("item.unit_measure_code", "item", "unit", "unit_measure_id"),
    _f("item.standard_code_id", "item", "int"),
    _f("item.is_excluded", "item", "flag"),
    _f("item.tribute_id", "item", "int"),
    _f("item.note", "item", "text"),
    _f("item.scheme_id", "item", "code"),
    _f("item.mandate.identification_document_id", "item", "int"),
    _f("item.mandate.identification", "item", "ident"),
    *(
        FieldSpec(f"item.withholding.{code}", "item", "rate", "withholding_tax_rate")
        for code in sorted(WITHHOLDING_CODES)
    ),
)

FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _SPECS}
"""Every canonical column by name."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "reference_code": ("reference_code",),
    "customer.identification_document_id": ("customer.identification_document_id",),
    "customer.identification": ("customer.identification",),
    "item.code_reference": ("item.code_reference",),
    "item.name": ("item.name",),
    "item.quantity": ("item.quantity",),
    "item.price": ("item.price",),
    "item.tax_rate": ("item.tax_rate",),
}
"""Columns a file must have (or a default must cover): required name -> columns that satisfy it."""

BUILTIN_DEFAULTS: dict[str, Any] = {
    "numbering_range_id": 8,
    "document": "01",
    "operation_type": "10",
    "payment_form": "1",
    "payment_method_code": "10",
    "send_email": False,
    "customer.tribute_id": 21,
    "item.discount_rate": 0,
    "item.unit_measure_id": 70,
    "item.standard_code_id": 1,
    "item.is_excluded": 0,
    "item.tribute_id": 1,
}
"""Lowest-priority defaults (settings ``[defaults]`` and then the profile's ``[defaults]`` win).

Deliberately absent: ``item.tax_rate`` (a tax is never guessed; excluded items default to 0.00),
``customer.identification_document_id`` and ``customer.legal_organization_id`` (derived: 1 for a
NIT customer, 2 otherwise).
"""

_WS = re.compile(r"\s+")


def normalise_header(text: str) -> str:
    """Fold a header for tolerant matching: no BOM, accents, case or surrounding/double spaces.

    >>> normalise_header("  Fecha de Elaboración  ")
    'fecha de elaboracion'
    """
    text = text.replace("\ufeff", "").strip()
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return _WS.sub(" ", text).casefold()


CANONICAL_HEADERS: frozenset[str] = frozenset(normalise_header(name) for name in FIELDS)
"""Every canonical column name as :func:`normalise_header` folds it."""


def canonical_of(header: str, columns: Mapping[str, str]) -> str | None:
    """The canonical column a file header stands for: through a profile's ``columns`` (normalised
    header -> canonical), else the header itself when it is a canonical name; None when neither."""
    key = normalise_header(header)
    return columns.get(key) or (key if key in FIELDS else None)


def field_spec(name: str) -> FieldSpec | None:
    """Return the spec of a canonical column name (already normalised), or None."""
    return FIELDS.get(name)


def is_canonical(name: str) -> bool:
    """True when ``name`` is a canonical column."""
    return name in FIELDS
