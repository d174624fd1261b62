"""Field validation of v1 requests, answering like Laravel does (Spanish messages, per-field lists).

:func:`validate_bill` checks a ``POST /v1/bills/validate`` body and returns the error map (field
path -> messages) plus a normalised copy of the payload (ints for ids, Decimals for amounts, strings
for codes) that the rest of the emulator reads. Numeric strings are accepted wherever a number is,
as Laravel does.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from daemon import catalog
from daemon.catalog import MAX_AMOUNT, MAX_NIT_DIGITS, MAX_QUANTITY
from daemon.emulator.calc import compute_bill
from daemon.money import decimal_places, to_decimal

__all__ = [
    "BillContext",
    "Errors",
    "summary_message",
    "validate_bill",
    "validate_email_body",
    "validate_event",
]

_ATTRIBUTES = {
    "reference_code": "código de referencia",
    "numbering_range_id": "rango de numeración",
    "document": "documento",
    "observation": "observación",
    "payment_form": "forma de pago",
    "payment_due_date": "fecha de vencimiento del pago",
    "payment_method_code": "método de pago",
    "operation_type": "tipo de operación",
    "send_email": "enviar correo",
    "order_reference": "referencia de la orden",
    "related_documents": "documentos relacionados",
    "billing_period": "periodo de facturación",
    "establishment": "establecimiento",
    "customer": "cliente",
    "items": "ítems",
    "allowance_charges": "cargos y descuentos",
    "identification_document_id": "tipo de documento de identificación",
    "identification_document_code": "tipo de documento de identificación",
    "identification": "identificación",
    "dv": "dígito de verificación",
    "company": "razón social",
    "trade_name": "nombre comercial",
    "names": "nombres",
    "address": "dirección",
    "email": "correo electrónico",
    "phone": "teléfono",
    "phone_number": "teléfono",
    "legal_organization_id": "tipo de organización",
    "tribute_id": "tributo",
    "municipality_id": "municipio",
    "code_reference": "código de referencia",
    "name": "nombre",
    "quantity": "cantidad",
    "discount_rate": "porcentaje de descuento",
    "price": "precio",
    "tax_rate": "tarifa del impuesto",
    "unit_measure_id": "unidad de medida",
    "standard_code_id": "código estándar",
    "is_excluded": "excluido de IVA",
    "withholding_taxes": "retenciones",
    "withholding_tax_rate": "tarifa de retención",
    "code": "código",
    "scheme_id": "esquema",
    "mandate": "mandato",
    "note": "nota",
    "issue_date": "fecha de emisión",
    "number": "número",
    "start_date": "fecha de inicio",
    "start_time": "hora de inicio",
    "end_date": "fecha de fin",
    "end_time": "hora de fin",
    "concept_type": "tipo de concepto",
    "is_surcharge": "es recargo",
    "reason": "razón",
    "base_amount": "base",
    "amount": "valor",
    "first_name": "nombres",
    "last_name": "apellidos",
    "job_title": "cargo",
    "organization_department": "área",
    "claim_concept_code": "concepto de reclamo",
}
_INT = re.compile(r"^[+-]?\d+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DIGITS = re.compile(r"^\d+$")
# §3.1: the customer identification is digits only. Documents issued abroad (7 Pasaporte, 8 Documento
# de identificación extranjero, 10 NIT otro país) are the exception: their numbers may hold letters.
_ALPHANUMERIC_DOCUMENTS = frozenset({7, 8, 10})
_CUSTOMER_TEXTS = ("company", "trade_name", "names", "address", "phone")
_MISSING = object()


def _attr(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    return _ATTRIBUTES.get(path, _ATTRIBUTES.get(last, last.replace("_", " ")))


class Errors:
    """An ordered map of field path -> Laravel-style Spanish messages."""

    def __init__(self) -> None:
        self.map: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        """Record one message for ``path``."""
        self.map.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.map)

    # --- rule helpers: each returns the normalised value, or None when absent or invalid ----------

    def present(self, data: Mapping[str, Any], key: str) -> Any:
        """The value under ``key`` with blank strings, None and empty lists treated as absent."""
        value = data.get(key, _MISSING)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, list | dict) and not value:
            return None
        return value

    def required(self, data: Mapping[str, Any], key: str, path: str) -> Any:
        """Fail with ``required`` when the value is absent; return it otherwise."""
        value = self.present(data, key)
        if value is None:
            self.add(path, f"El campo {_attr(path)} es obligatorio.")
        return value

    def string(self, value: Any, path: str, *, max_len: int | None = None) -> str | None:
        """Accept a string (numbers are accepted and converted, as Laravel's TrimStrings sees them)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            self.add(path, f"El campo {_attr(path)} debe ser una cadena de caracteres.")
            return None
        text = str(value).strip()
        if max_len is not None and len(text) > max_len:
            self.add(path, f"El campo {_attr(path)} no debe ser mayor que {max_len} caracteres.")
            return None
        return text

    def integer(
        self, value: Any, path: str, *, min_value: int | None = None, max_value: int | None = None
    ) -> int | None:
        """Accept an int or a numeric string holding an integer."""
        if value is None:
            return None
        result: int | None = None
        if isinstance(value, bool):
            result = None
        elif isinstance(value, int):
            result = value
        elif isinstance(value, str) and _INT.match(value.strip()):
            result = int(value.strip())
        elif isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            result = int(value)
        if result is None:
            self.add(path, f"El campo {_attr(path)} debe ser un número entero.")
            return None
        if min_value is not None and result < min_value:
            self.add(path, f"El campo {_attr(path)} debe ser al menos {min_value}.")
            return None
        if max_value is not None and result > max_value:
            self.add(path, f"El campo {_attr(path)} no debe ser mayor que {max_value}.")
            return None
        return result

    def number(
        self,
        value: Any,
        path: str,
        *,
        max_decimals: int | None = 2,
        min_value: Decimal | None = None,
        max_value: Decimal | None = None,
    ) -> Decimal | None:
        """Accept a number or numeric string with at most ``max_decimals`` decimals."""
        if value is None:
            return None
        try:
            if isinstance(value, list | dict):
                raise ValueError
            number = to_decimal(value)
        except ValueError:
            self.add(path, f"El campo {_attr(path)} debe ser numérico.")
            return None
        if max_decimals is not None and decimal_places(number) > max_decimals:
            self.add(path, f"El campo {_attr(path)} debe tener entre 0 y {max_decimals} cifras decimales.")
            return None
        if min_value is not None and number < min_value:
            self.add(path, f"El campo {_attr(path)} debe ser al menos {min_value}.")
            return None
        if max_value is not None and number > max_value:
            self.add(path, f"El campo {_attr(path)} no debe ser mayor que {max_value}.")
            return None
        return number

    def one_of(self, value: Any, path: str, allowed: Collection[str]) -> str | None:
        """Accept a value whose string form is in ``allowed`` (``in`` rule)."""
        if value is None:
            return None
        text = (
            str(value).strip()
            if isinstance(value, str | int | Decimal) and not isinstance(value, bool)
            else None
        )
        if text is None or text not in allowed:
            self.add(path, f"El {_attr(path)} seleccionado no es válido.")
            return None
        return text

    def exists(self, value: Any, path: str, known: Collection[int]) -> int | None:
        """Accept an integer id present in ``known`` (``exists`` rule)."""
        number = self.integer(value, path)
        if number is None:
            return None
        if number not in known:
            self.add(path, f"El {_attr(path)} seleccionado no es válido.")
            return None
        return number

    def boolean(self, value: Any, path: str) -> bool | None:
        """Accept true/false/0/1/"0"/"1" (``boolean`` rule)."""
        if value is None:
            return None
        if value in (True, 1, "1", "true") and not isinstance(value, Decimal):
            return True
        if value in (False, 0, "0", "false") and not isinstance(value, Decimal):
            return False
        self.add(path, f"El campo {_attr(path)} debe tener un valor verdadero o falso.")
        return None

    def date(self, value: Any, path: str, fmt: str = "%Y-%m-%d", shown: str = "Y-m-d") -> str | None:
        """Accept a date (or time) string in ``fmt``."""
        if value is None:
            return None
        text = value.strip() if isinstance(value, str) else None
        try:
            if text is None:
                raise ValueError
            datetime.strptime(text, fmt)
        except ValueError:
            self.add(path, f"El campo {_attr(path)} no corresponde al formato {shown}.")
            return None
        return text

    def obj(self, value: Any, path: str) -> Mapping[str, Any] | None:
        """Accept a JSON object (Laravel ``array`` rule on an associative array)."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(path, f"El campo {_attr(path)} debe ser un conjunto.")
            return None
        return value

    def array(self, value: Any, path: str, *, min_items: int = 0) -> list[Any] | None:
        """Accept a JSON list with at least ``min_items`` entries."""
        if value is None:
            if min_items:
                return None
            return []
        if not isinstance(value, list):
            self.add(path, f"El campo {_attr(path)} debe ser un conjunto.")
            return None
        if len(value) < min_items:
            self.add(path, f"El campo {_attr(path)} debe tener al menos {min_items} elementos.")
            return None
        return value

    def email(self, value: Any, path: str) -> str | None:
        """Accept an e-mail address."""
        text = self.string(value, path, max_len=255)
        if text is None:
            return None
        if not _EMAIL.match(text):
            self.add(path, f"El campo {_attr(path)} no es un correo válido.")
            return None
        return text


def summary_message(errors: Mapping[str, list[str]]) -> str:
    """Laravel's exception message: the first error plus ``(y N errores más)``."""
    messages = [m for msgs in errors.values() for m in msgs]
    if not messages:
        return "Error de validación"
    rest = len(messages) - 1
    if rest == 0:
        return messages[0]
    return f"{messages[0]} (y {rest} {'error' if rest == 1 else 'errores'} más)"


@dataclass(frozen=True, slots=True)
class BillContext:
    """What validation checks ids against."""

    municipality_ids: Collection[int]
    unit_ids: Collection[int]
    tribute_ids: Collection[int]
    active_bill_ranges: Collection[int]
    known_ranges: Collection[int]
    range_aliases: Mapping[int, int] = field(default_factory=dict)


def _customer(v: Errors, raw: Any, ctx: BillContext) -> dict[str, Any]:
    customer = v.obj(raw, "customer")
    if customer is None:
        return {}
    out: dict[str, Any] = {}
    p = "customer."
    out["identification_document_id"] = v.exists(
        v.required(customer, "identification_document_id", p + "identification_document_id"),
        p + "identification_document_id",
        catalog.IDENTIFICATION_DOCUMENTS,
    )
    identification = v.string(
        v.required(customer, "identification", p + "identification"), p + "identification", max_len=20
    )
    doc_id = out["identification_document_id"]
    is_nit = doc_id == catalog.NIT_DOCUMENT_ID
    digits_only = doc_id is not None and doc_id not in _ALPHANUMERIC_DOCUMENTS
    if identification is not None and digits_only and not _DIGITS.match(identification):
        v.add(p + "identification", f"El formato del campo {_attr('identification')} es inválido.")
        identification = None
    elif identification is not None and is_nit and len(identification) > MAX_NIT_DIGITS:
        # The DIAN check digit is defined for at most 15 digits (its weight table): a longer NIT
        # is a field error, refused before anything is stored or numbered.
        v.add(
            p + "identification",
            f"El campo {_attr('identification')} debe tener entre 1 y {MAX_NIT_DIGITS} dígitos.",
        )
        identification = None
    out["identification"] = identification
    dv_raw = v.present(customer, "dv")
    dv = v.integer(dv_raw, p + "dv", min_value=0)
    if dv is not None and dv > 9:
        v.add(p + "dv", f"El campo {_attr('dv')} no debe ser mayor que 9.")
        dv = None
    # The check digit belongs to a NIT only: Factus answers "dv": null for any other document even
    # when one was sent (D1 example: CC customer sent with dv "3").
    out["dv"] = dv if is_nit else None
    # An empty optional text is echoed as sent ("" stays "", D1 example); absent/null stays null.
    for key in _CUSTOMER_TEXTS:
        out[key] = "" if _blank(customer, key) else v.string(v.present(customer, key), p + key, max_len=255)
    out["email"] = "" if _blank(customer, "email") else v.email(v.present(customer, "email"), p + "email")
    out["legal_organization_id"] = v.exists(
        v.required(customer, "legal_organization_id", p + "legal_organization_id"),
        p + "legal_organization_id",
        catalog.LEGAL_ORGANIZATIONS,
    )
    # §3.1: company is required for legal entities (1), names for natural persons (2).
    if out["legal_organization_id"] == 1 and not out["company"] and (p + "company") not in v.map:
        v.add(p + "company", "El campo razón social es obligatorio cuando tipo de organización es 1.")
    if out["legal_organization_id"] == 2 and not out["names"] and (p + "names") not in v.map:
        v.add(p + "names", "El campo nombres es obligatorio cuando tipo de organización es 2.")
    out["tribute_id"] = v.exists(
        v.required(customer, "tribute_id", p + "tribute_id"), p + "tribute_id", catalog.CUSTOMER_TRIBUTES
    )
    out["municipality_id"] = v.exists(
        v.present(customer, "municipality_id"), p + "municipality_id", ctx.municipality_ids
    )
    return out


def _blank(data: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` holds a blank string (``""`` once trimmed, as Laravel's TrimStrings does)."""
    value = data.get(key)
    return isinstance(value, str) and not value.strip()


def _withholdings(v: Errors, raw: Any, path: str) -> list[dict[str, Any]]:
    entries = v.array(v.present({"w": raw}, "w"), path) or []
    out = []
    for j, entry in enumerate(entries):
        wp = f"{path}.{j}"
        w = v.obj(entry, wp)
        if w is None:
            continue
        code = v.one_of(v.required(w, "code", wp + ".code"), wp + ".code", catalog.WITHHOLDING_CODES)
        rate = v.number(
            v.required(w, "withholding_tax_rate", wp + ".withholding_tax_rate"),
            wp + ".withholding_tax_rate",
            min_value=Decimal(0),
            max_value=Decimal(100),
        )
        if code is not None and rate is not None:
            out.append({"code": code, "withholding_tax_rate": rate})
    return out


def _item(v: Errors, raw: Any, i: int, ctx: BillContext, operation_type: str | None) -> dict[str, Any]:
    p = f"items.{i}"
    item = v.obj({} if raw is None else raw, p)  # a null element: each of its fields is missing
    if item is None:
        return {}
    out: dict[str, Any] = {}
    out["code_reference"] = v.string(
        v.required(item, "code_reference", p + ".code_reference"), p + ".code_reference", max_len=255
    )
    out["name"] = v.string(v.required(item, "name", p + ".name"), p + ".name", max_len=255)
    out["quantity"] = v.integer(
        v.required(item, "quantity", p + ".quantity"), p + ".quantity", min_value=1, max_value=MAX_QUANTITY
    )
    out["discount_rate"] = v.number(
        _required_flag(v, item, "discount_rate", p),
        p + ".discount_rate",
        min_value=Decimal(0),
        max_value=Decimal(100),
    )
    out["price"] = v.number(
        v.required(item, "price", p + ".price"), p + ".price", min_value=Decimal(0), max_value=MAX_AMOUNT
    )
    out["tax_rate"] = v.number(
        _required_flag(v, item, "tax_rate", p), p + ".tax_rate", min_value=Decimal(0), max_value=Decimal(100)
    )
    out["unit_measure_id"] = v.exists(
        v.required(item, "unit_measure_id", p + ".unit_measure_id"), p + ".unit_measure_id", ctx.unit_ids
    )
    out["standard_code_id"] = v.exists(
        v.required(item, "standard_code_id", p + ".standard_code_id"),
        p + ".standard_code_id",
        catalog.STANDARD_CODES,
    )
    excluded = v.boolean(_required_flag(v, item, "is_excluded", p), p + ".is_excluded")
    out["is_excluded"] = None if excluded is None else int(excluded)
    out["tribute_id"] = v.exists(
        v.required(item, "tribute_id", p + ".tribute_id"), p + ".tribute_id", ctx.tribute_ids
    )
    out["withholding_taxes"] = _withholdings(v, item.get("withholding_taxes"), p + ".withholding_taxes")
    out["note"] = v.string(v.present(item, "note"), p + ".note", max_len=5000)
    scheme_raw = v.present(item, "scheme_id")
    if operation_type == "11" and scheme_raw is None:
        v.add(p + ".scheme_id", "El campo esquema es obligatorio cuando tipo de operación es 11.")
    out["scheme_id"] = v.one_of(scheme_raw, p + ".scheme_id", ("0", "1"))
    mandate = v.obj(v.present(item, "mandate"), p + ".mandate")
    if out["scheme_id"] == "1" and mandate is None and (p + ".mandate") not in v.map:
        v.add(p + ".mandate", "El campo mandato es obligatorio cuando esquema es 1.")
    if mandate is not None:
        out["mandate"] = {
            "identification_document_id": v.exists(
                v.required(mandate, "identification_document_id", p + ".mandate.identification_document_id"),
                p + ".mandate.identification_document_id",
                catalog.IDENTIFICATION_DOCUMENTS,
            ),
            "identification": v.string(
                v.required(mandate, "identification", p + ".mandate.identification"),
                p + ".mandate.identification",
                max_len=20,
            ),
        }
    else:
        out["mandate"] = None
    return out


def _required_flag(v: Errors, data: Mapping[str, Any], key: str, prefix: str) -> Any:
    """A required field where ``0``/``false`` are meaningful values (``required`` treats none as blank)."""
    raw = data.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        v.add(f"{prefix}.{key}", f"El campo {_attr(key)} es obligatorio.")
        return None
    return raw


def _allowance(v: Errors, raw: Any, i: int) -> dict[str, Any]:
    p = f"allowance_charges.{i}"
    charge = v.obj({} if raw is None else raw, p)  # a null element: each of its fields is missing
    if charge is None:
        return {}
    return {
        "concept_type": v.one_of(
            v.required(charge, "concept_type", p + ".concept_type"), p + ".concept_type", ("03",)
        ),
        "is_surcharge": v.boolean(_required_flag(v, charge, "is_surcharge", p), p + ".is_surcharge"),
        "reason": v.string(v.required(charge, "reason", p + ".reason"), p + ".reason", max_len=255),
        "base_amount": _positive(
            v,
            v.number(
                v.required(charge, "base_amount", p + ".base_amount"),
                p + ".base_amount",
                max_value=MAX_AMOUNT,
            ),
            p + ".base_amount",
        ),
        "amount": v.number(
            v.required(charge, "amount", p + ".amount"),
            p + ".amount",
            min_value=Decimal(0),
            max_value=MAX_AMOUNT,
        ),
    }


def _positive(v: Errors, value: Decimal | None, path: str) -> Decimal | None:
    """``gt:0``: §3.4 divides by the allowance base (percentage = amount / base_amount × 100)."""
    if value is not None and value <= 0:
        v.add(path, f"El campo {_attr(path)} debe ser mayor que 0.")
        return None
    return value


def _numbering_range(v: Errors, payload: Mapping[str, Any], ctx: BillContext) -> int | None:
    raw = v.present(payload, "numbering_range_id")
    if raw is None:
        if len(ctx.active_bill_ranges) == 1:
            return next(iter(ctx.active_bill_ranges))
        v.add(
            "numbering_range_id",
            "El campo rango de numeración es obligatorio cuando hay más de un rango de numeración activo.",
        )
        return None
    number = v.integer(raw, "numbering_range_id")
    if number is None:
        return None
    number = ctx.range_aliases.get(number, number)
    if number not in ctx.active_bill_ranges:
        v.add("numbering_range_id", "El rango de numeración seleccionado no es válido.")
        return None
    return number


def validate_bill(payload: Any, ctx: BillContext) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Validate a v1 bill body; return ``(errors, normalised payload)``.

    The normalised payload is complete only when ``errors`` is empty.
    """
    v = Errors()
    if not isinstance(payload, Mapping):
        payload = {}
    out: dict[str, Any] = {}
    out["reference_code"] = v.string(
        v.required(payload, "reference_code", "reference_code"), "reference_code", max_len=255
    )
    out["numbering_range_id"] = _numbering_range(v, payload, ctx)
    out["document"] = v.one_of(v.present(payload, "document"), "document", catalog.DOCUMENT_TYPES) or "01"
    out["observation"] = v.string(v.present(payload, "observation"), "observation", max_len=250)
    out["payment_form"] = (
        v.one_of(v.present(payload, "payment_form"), "payment_form", catalog.PAYMENT_FORMS) or "1"
    )
    due = v.present(payload, "payment_due_date")
    if out["payment_form"] == "2" and due is None:
        v.add(
            "payment_due_date",
            "El campo fecha de vencimiento del pago es obligatorio cuando forma de pago es 2.",
        )
    out["payment_due_date"] = v.date(due, "payment_due_date")
    out["payment_method_code"] = (
        v.one_of(v.present(payload, "payment_method_code"), "payment_method_code", catalog.PAYMENT_METHODS)
        or "10"
    )
    out["operation_type"] = (
        v.one_of(v.present(payload, "operation_type"), "operation_type", catalog.OPERATION_TYPES) or "10"
    )
    send_email = v.boolean(v.present({"x": payload.get("send_email")}, "x"), "send_email")
    out["send_email"] = True if send_email is None else send_email

    order = v.obj(v.present(payload, "order_reference"), "order_reference")
    if order is not None:
        out["order_reference"] = {
            "reference_code": v.string(
                v.required(order, "reference_code", "order_reference.reference_code"),
                "order_reference.reference_code",
                max_len=255,
            ),
            "issue_date": v.date(v.present(order, "issue_date"), "order_reference.issue_date"),
        }
    else:
        out["order_reference"] = None

    related = v.present(payload, "related_documents")
    if out["document"] == "03" and related is None:
        v.add("related_documents", "El campo documentos relacionados es obligatorio cuando documento es 03.")
    out["related_documents"] = []
    for i, entry in enumerate(v.array(related, "related_documents") or []):
        rp = f"related_documents.{i}"
        doc = v.obj(entry, rp)
        if doc is None:
            continue
        out["related_documents"].append(
            {
                "code": v.string(v.required(doc, "code", rp + ".code"), rp + ".code", max_len=255),
                "issue_date": v.date(v.required(doc, "issue_date", rp + ".issue_date"), rp + ".issue_date"),
                "number": v.string(v.required(doc, "number", rp + ".number"), rp + ".number", max_len=255),
            }
        )

    period = v.obj(v.present(payload, "billing_period"), "billing_period")
    if period is not None:
        bp = "billing_period."
        out["billing_period"] = {
            "start_date": v.date(v.required(period, "start_date", bp + "start_date"), bp + "start_date"),
            "start_time": v.date(v.present(period, "start_time"), bp + "start_time", "%H:%M:%S", "H:i:s"),
            "end_date": v.date(v.required(period, "end_date", bp + "end_date"), bp + "end_date"),
            "end_time": v.date(v.present(period, "end_time"), bp + "end_time", "%H:%M:%S", "H:i:s"),
        }
    else:
        out["billing_period"] = None

    establishment = v.obj(v.present(payload, "establishment"), "establishment")
    if establishment is not None:
        ep = "establishment."
        out["establishment"] = {
            "name": v.string(v.required(establishment, "name", ep + "name"), ep + "name", max_len=255),
            "address": v.string(
                v.required(establishment, "address", ep + "address"), ep + "address", max_len=255
            ),
            "phone_number": v.string(
                v.required(establishment, "phone_number", ep + "phone_number"),
                ep + "phone_number",
                max_len=255,
            ),
            "email": v.email(v.required(establishment, "email", ep + "email"), ep + "email"),
            "municipality_id": v.exists(
                v.required(establishment, "municipality_id", ep + "municipality_id"),
                ep + "municipality_id",
                ctx.municipality_ids,
            ),
        }
    else:
        out["establishment"] = None

    out["customer"] = _customer(v, v.required(payload, "customer", "customer"), ctx)
    items = v.array(v.required(payload, "items", "items"), "items", min_items=1)
    out["items"] = [_item(v, raw, i, ctx, out["operation_type"]) for i, raw in enumerate(items or [])]
    charges = v.array(v.present(payload, "allowance_charges"), "allowance_charges") or []
    out["allowance_charges"] = [_allowance(v, raw, i) for i, raw in enumerate(charges)]
    # DIAN never validates a negative payable amount: discounts may not exceed the invoice
    if (
        not v.map
        and out["allowance_charges"]
        and compute_bill(out["items"], out["allowance_charges"]).total < 0
    ):
        v.add(
            "allowance_charges",
            "El valor de los descuentos no puede ser mayor que el total de la factura.",
        )
    return v.map, out


def validate_email_body(payload: Any) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Validate a ``send-email`` body: ``email`` required, ``pdf_base_64_encoded`` optional."""
    v = Errors()
    if not isinstance(payload, Mapping):
        payload = {}
    out = {
        "email": v.email(v.required(payload, "email", "email"), "email"),
        "pdf_base_64_encoded": v.string(v.present(payload, "pdf_base_64_encoded"), "pdf_base_64_encoded"),
    }
    return v.map, out


def validate_event(payload: Any, event_type: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """Validate a RADIAN event body (the person who emits the event)."""
    v = Errors()
    if not isinstance(payload, Mapping):
        payload = {}
    codes = {code for code, _ in catalog.IDENTIFICATION_DOCUMENTS.values()}
    out: dict[str, Any] = {
        "identification_document_code": v.one_of(
            v.required(payload, "identification_document_code", "identification_document_code"),
            "identification_document_code",
            codes,
        ),
        "identification": v.string(
            v.required(payload, "identification", "identification"), "identification", max_len=20
        ),
        "dv": v.integer(v.present(payload, "dv"), "dv", min_value=0),
        "first_name": v.string(v.required(payload, "first_name", "first_name"), "first_name", max_len=255),
        "last_name": v.string(v.required(payload, "last_name", "last_name"), "last_name", max_len=255),
        "job_title": v.string(v.present(payload, "job_title"), "job_title", max_len=255),
        "organization_department": v.string(
            v.present(payload, "organization_department"), "organization_department", max_len=255
        ),
    }
    claim = v.present(payload, "claim_concept_code")
    if event_type == "031" and claim is None:
        v.add("claim_concept_code", "El campo concepto de reclamo es obligatorio cuando el evento es 031.")
    out["claim_concept_code"] = v.one_of(claim, "claim_concept_code", ("01", "02", "03", "04"))
    return v.map, out
