"""Drafts -> validated Factus v1 payloads, or errors located at the original cells.

Each draft is checked by the pydantic models (types, code tables, limits, decimal places) and by
the cross-field rules below (credit due date, company/names, NIT check digit, e-mail syntax,
excluded items, known numbering range, municipality and unit). An invoice with any error is not
planned; the other invoices of the file are unaffected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daemon.catalog import IDENTIFICATION_DOCUMENTS, MAX_NIT_DIGITS, NIT_DOCUMENT_ID
from daemon.intake.lookups import Lookups
from daemon.intake.mapper import Draft
from daemon.intake.models import Invoice, dumps_payload, to_payload
from daemon.intake.rows import RowError
from daemon.money import nit_check_digit

__all__ = ["IntakeResult", "PlannedInvoice", "cross_checks", "validate_drafts"]

EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
DIGITS_ONLY_DOCUMENTS = frozenset({1, 2, 3, 5, 6, 11})
"""Identification types whose numbers are digits only (RC, TI, CC, CE, NIT, NUIP)."""
IVA_TRIBUTE_ID = 1


@dataclass(slots=True)
class PlannedInvoice:
    """A valid invoice: its reference, the spreadsheet rows of its lines and the exact v1 body.

    ``payload`` holds ``Decimal`` for ``price``, ``discount_rate`` and ``withholding_tax_rate``;
    serialise it with :meth:`payload_json` (or :func:`daemon.intake.models.dumps_payload`).
    """

    reference_code: str
    rows: list[int]
    payload: dict[str, Any]

    def payload_json(self, *, indent: int | None = None) -> str:
        """The request body as JSON text, Decimals written as exact numbers."""
        return dumps_payload(self.payload, indent=indent)

    def to_dict(self) -> dict[str, Any]:
        """``{"reference_code", "rows", "payload"}`` (payload still holding Decimals)."""
        return {"reference_code": self.reference_code, "rows": self.rows, "payload": self.payload}


@dataclass(slots=True)
class IntakeResult:
    """Everything read from one file: planned invoices, located errors and warnings."""

    path: Path
    profile: str | None
    invoices: list[PlannedInvoice] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    invalid_rows: dict[str, list[int]] = field(default_factory=dict)
    """Every row of each invoice that is not issued, by reference code."""

    @property
    def ok(self) -> bool:
        """True when the file produced no error at all."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The ``validate --json`` shape of one file (payload Decimals kept; use dumps_payload)."""
        return {
            "path": str(self.path),
            "profile": self.profile,
            "invoices": [inv.to_dict() for inv in self.invoices],
            "errors": [e.to_dict() for e in self.errors],
            "warnings": list(self.warnings),
        }


_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "decimal_max_places": "must have at most {decimal_places} decimal places",
    "decimal_parsing": "is not a number",
    "decimal_type": "is not a number",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters long",
    "string_type": "must be text",
    "date_parsing": "is not a date (YYYY-MM-DD)",
    "date_type": "is not a date (YYYY-MM-DD)",
    "date_from_datetime_inexact": "is not a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "is not a date (YYYY-MM-DD)",
    "time_parsing": "is not a time (HH:MM:SS)",
    "time_type": "is not a time (HH:MM:SS)",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "too_short": "needs at least one entry",
    "extra_forbidden": "is not a field of a Factus v1 invoice",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "finite_number": "must be a finite number",
}


_CODE_TABLES = {
    ("customer", "identification_document_id"): "identification document id",
    ("mandate", "identification_document_id"): "identification document id",
    ("customer", "legal_organization_id"): "legal organization id",
    ("customer", "tribute_id"): "customer tribute id",
    ("items", "tribute_id"): "product tribute id",
    ("items", "standard_code_id"): "standard code id",
    ("payment_method_code",): "payment method code",
}


def _code_table(loc: tuple[Any, ...]) -> str | None:
    """The code table a location's literal belongs to (``("items", 0, "tribute_id")`` -> product tribute)."""
    if not loc:
        return None
    if loc[-1] == "payment_method_code":
        return _CODE_TABLES[("payment_method_code",)]
    if len(loc) < 2:
        return None
    last = str(loc[-1])
    return _CODE_TABLES.get((str(loc[0]), last)) or _CODE_TABLES.get((str(loc[-2]), last))


def _explain(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        what = _code_table(tuple(err["loc"]))
        if what is not None:
            return f"is not a known {what} (allowed: {ctx.get('expected', '')})"
        return f"must be one of {ctx.get('expected', '')}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        loc = err["loc"]
        if loc and loc[-1] == "dv":
            return "must be a single digit (the NIT check digit)"
        return "has an invalid format"
    template = _MESSAGES.get(kind)
    if template is None:
        return str(err["msg"]).lower()
    try:
        return template.format(**ctx)
    except (KeyError, IndexError):  # pragma: no cover - pydantic ctx keys are stable
        return template


def _is_digit_text(value: Any) -> bool:
    return isinstance(value, str) and value.isascii() and value.isdigit()


def cross_checks(data: dict[str, Any], lookups: Lookups) -> list[tuple[tuple[Any, ...], str]]:
    """Rules spanning fields or needing the lookups; tolerant of wrongly typed input.

    Returns (payload location, message) pairs; the message starts with the predicate (the caller
    prefixes the field name).
    """
    out: list[tuple[tuple[Any, ...], str]] = []
    add = out.append
    if data.get("payment_form") == "2" and not data.get("payment_due_date"):
        add((("payment_due_date",), "is required when payment_form is 2 (credit sale)"))
    if data.get("document") == "03" and not data.get("related_documents"):
        add((("related_documents",), "is required when document is 03 (it needs native JSON input)"))
    range_id = data.get("numbering_range_id")
    if type(range_id) is int and not lookups.knows_numbering_range(range_id):
        known = ", ".join(str(i) for i in sorted(lookups.numbering_ranges)) or "none"
        add((("numbering_range_id",), f"is not a known bill numbering range of the account (known: {known})"))
    period = data.get("billing_period")
    if isinstance(period, dict):
        start, end = period.get("start_date"), period.get("end_date")
        if isinstance(start, date) and isinstance(end, date):
            if end < start:
                add((("billing_period", "end_date"), "is before billing_period.start_date"))
            elif end == start:
                t0, t1 = period.get("start_time"), period.get("end_time")
                if isinstance(t0, time) and isinstance(t1, time) and t1 < t0:
                    add((("billing_period", "end_time"), "is before billing_period.start_time"))
    establishment = data.get("establishment")
    if isinstance(establishment, dict):
        email = establishment.get("email")
        if isinstance(email, str) and email and not EMAIL.fullmatch(email):
            add((("establishment", "email"), "is not a valid e-mail address"))
        muni = establishment.get("municipality_id")
        if type(muni) is int and not lookups.knows_municipality_id(muni):
            add((("establishment", "municipality_id"), "is not a known Factus municipality id"))
    customer = data.get("customer")
    if isinstance(customer, dict):
        out.extend(_customer_checks(customer, lookups))
    items = data.get("items")
    if isinstance(items, list):
        out.extend(_item_checks(items, data.get("operation_type"), lookups))
    return out


_ZERO = Decimal(0)


def _item_checks(items: list[Any], operation: Any, lookups: Lookups) -> list[tuple[tuple[Any, ...], str]]:
    out: list[tuple[tuple[Any, ...], str]] = []
    add = out.append
    knows_unit = lookups.knows_unit_id
    zero = _ZERO
    mandates = operation == "11"
    for i, item in enumerate(items):
        if type(item) is not dict:
            continue
        get = item.get
        scheme = get("scheme_id")
        if scheme is None:
            if mandates:
                add((("items", i, "scheme_id"), "is required when operation_type is 11 (mandates)"))
        elif scheme == "1" and not get("mandate"):
            add((("items", i, "mandate"), "is required when scheme_id is 1 (third-party income)"))
        mandate = get("mandate")
        if type(mandate) is dict:
            doc, ident = mandate.get("identification_document_id"), mandate.get("identification")
            if isinstance(ident, str) and ident and doc in DIGITS_ONLY_DOCUMENTS:
                if not (ident.isascii() and ident.isdigit()):
                    name = IDENTIFICATION_DOCUMENTS[doc][1]
                    add((("items", i, "mandate", "identification"), f"must contain digits only for a {name}"))
                elif doc == NIT_DOCUMENT_ID and len(ident) > MAX_NIT_DIGITS:
                    add(
                        (
                            ("items", i, "mandate", "identification"),
                            f"a NIT has at most {MAX_NIT_DIGITS} digits",
                        )
                    )
        rate = get("tax_rate")
        if type(rate) is Decimal:
            if get("is_excluded") == 1:
                if rate != zero:
                    add((("items", i, "tax_rate"), "must be 0 for an item excluded from IVA (is_excluded 1)"))
            elif zero < rate < 1 and get("tribute_id") == IVA_TRIBUTE_ID:
                message = f"looks like a fraction ({rate}): write the IVA percentage, e.g. 19.00 for 19 %"
                add((("items", i, "tax_rate"), message))
        unit = get("unit_measure_id")
        if type(unit) is int and not knows_unit(unit):
            add((("items", i, "unit_measure_id"), "is not a known Factus unit of measure id"))
        taxes = get("withholding_taxes")
        if type(taxes) is list and len(taxes) > 1:
            seen: set[Any] = set()
            for j, tax in enumerate(taxes):
                code = tax.get("code") if isinstance(tax, dict) else None
                if code in seen:
                    add((("items", i, "withholding_taxes", j, "code"), f"repeats withholding code {code}"))
                seen.add(code)
    return out


def _customer_checks(customer: dict[str, Any], lookups: Lookups) -> list[tuple[tuple[Any, ...], str]]:
    out: list[tuple[tuple[Any, ...], str]] = []
    legal = customer.get("legal_organization_id")
    if legal == 1 and not customer.get("company"):
        out.append((("customer", "company"), "is required for a legal entity (legal_organization_id 1)"))
    if legal == 2 and not customer.get("names"):
        out.append((("customer", "names"), "is required for a natural person (legal_organization_id 2)"))
    doc = customer.get("identification_document_id")
    ident = customer.get("identification")
    if isinstance(ident, str) and ident and type(doc) is int:
        if doc in DIGITS_ONLY_DOCUMENTS and not (ident.isascii() and ident.isdigit()):
            name = IDENTIFICATION_DOCUMENTS[doc][1]
            out.append((("customer", "identification"), f"must contain digits only for a {name}"))
        elif doc == NIT_DOCUMENT_ID:
            if len(ident) > MAX_NIT_DIGITS:
                out.append((("customer", "identification"), f"a NIT has at most {MAX_NIT_DIGITS} digits"))
            else:
                expected = nit_check_digit(ident)
                dv = customer.get("dv")
                if dv is not None and _is_digit_text(str(dv)) and str(dv) != str(expected):
                    out.append(
                        (
                            ("customer", "dv"),
                            f"{dv} does not match NIT {ident}: the expected check digit is {expected}",
                        )
                    )
    email = customer.get("email")
    if isinstance(email, str) and email and not EMAIL.fullmatch(email):
        out.append((("customer", "email"), "is not a valid e-mail address"))
    muni = customer.get("municipality_id")
    if type(muni) is int and not lookups.knows_municipality_id(muni):
        out.append((("customer", "municipality_id"), "is not a known Factus municipality id"))
    return out


def _covered(loc: tuple[Any, ...], reported: set[tuple[Any, ...]]) -> bool:
    return any(loc[:n] in reported for n in range(1, len(loc) + 1))


def validate_drafts(
    drafts: list[Draft], *, lookups: Lookups
) -> tuple[list[PlannedInvoice], list[RowError], dict[str, list[int]]]:
    """Validate every draft; return the planned invoices, all errors in file order, and the rows
    of each invoice that is not issued (by reference code: every line, not only the broken ones)."""
    planned: list[PlannedInvoice] = []
    errors: list[RowError] = []
    held_rows: dict[str, list[int]] = {}
    seen: dict[str, int | None] = {}
    validate = Invoice.model_validate
    for draft in drafts:
        problems = list(draft.errors)
        reported = set(draft.errored)
        model: Invoice | None = None
        try:
            model = validate(draft.data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = tuple(err["loc"])
                if _covered(loc, reported):
                    continue
                reported.add(loc)
                problems.append(_row_error(draft, loc, _explain(err)))
        for loc, message in cross_checks(draft.data, lookups):
            if _covered(loc, reported):
                continue
            reported.add(loc)
            problems.append(_row_error(draft, loc, message))
        ref = draft.reference_code
        if ref:
            if ref in seen:
                first = seen[ref]
                where = f"row {first}" if first is not None else "another object"
                problems.append(
                    _row_error(
                        draft,
                        ("reference_code",),
                        f"{ref!r} is already used by the invoice at {where} of this file",
                    )
                )
            else:
                seen[ref] = draft.mapper.head_table.rows[draft.head_rows[0]].row if draft.head_rows else None
        if problems or model is None:
            errors.extend(replace(e, reference_code=ref or None) for e in problems)
            if ref:
                held_rows[ref] = sorted({*held_rows.get(ref, ()), *draft.rows})
            continue
        customer = model.customer
        if customer.identification_document_id == NIT_DOCUMENT_ID:
            if customer.dv is None:
                customer.dv = str(nit_check_digit(customer.identification))
        else:
            customer.dv = None
        planned.append(PlannedInvoice(ref, draft.rows, to_payload(model)))
    return planned, errors, held_rows


def _row_error(draft: Draft, loc: tuple[Any, ...], text: str) -> RowError:
    row, column, value, name, sheet = draft.locate(loc)
    return RowError(draft.mapper.file, row, column, value, f"{name} {text}", sheet)
