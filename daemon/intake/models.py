"""Pydantic v2 models of the Factus v1 ``POST /v1/bills/validate`` request body, and its JSON encoding.

The models check types, code tables, limits and decimal places; the rules that span fields (DV,
company/names, due date...) live in :mod:`daemon.intake.validate` so each error can name its cell.

Payload value types (what :func:`to_payload` emits and Factus v1 expects):
ids, ``quantity`` and ``is_excluded`` are JSON integers; codes (``payment_form``, ``document``,
``payment_method_code``...) and ``dv`` are strings; ``tax_rate`` is a string with two decimals
(``"19.00"``); ``price``, ``discount_rate`` and ``withholding_tax_rate`` are :class:`~decimal.Decimal`
exactly as written in the source (``11900``, ``11900.50``, ``7.00``) and are written as exact JSON
numbers by :func:`dumps_payload`: never through a float.
"""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from daemon.catalog import (
    CUSTOMER_TRIBUTES,
    IDENTIFICATION_DOCUMENTS,
    LEGAL_ORGANIZATIONS,
    MAX_AMOUNT,
    MAX_QUANTITY,
    PAYMENT_METHODS,
    PRODUCT_TRIBUTES,
    STANDARD_CODES,
)
from daemon.money import dumps_json, fmt2

__all__ = [
    "AllowanceCharge",
    "BillingPeriod",
    "Customer",
    "Establishment",
    "Invoice",
    "Item",
    "Mandate",
    "OrderReference",
    "RelatedDocument",
    "Withholding",
    "dumps_payload",
    "to_payload",
]


Money = Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False)]
Percent = Annotated[Decimal, Field(ge=0, le=100, decimal_places=2, allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1, max_length=500)]
if TYPE_CHECKING:
    PaymentMethod = str
    IdDocument = int
    LegalOrganization = int
    CustomerTribute = int
    StandardCode = int
    ProductTribute = int
else:  # Literal types built from daemon.catalog, the one source of the code tables
    PaymentMethod = Literal[tuple(PAYMENT_METHODS)]
    IdDocument = Literal[tuple(IDENTIFICATION_DOCUMENTS)]
    LegalOrganization = Literal[tuple(LEGAL_ORGANIZATIONS)]
    CustomerTribute = Literal[tuple(CUSTOMER_TRIBUTES)]
    StandardCode = Literal[tuple(STANDARD_CODES)]
    ProductTribute = Literal[tuple(PRODUCT_TRIBUTES)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderReference(_Model):
    """``order_reference``: the customer's purchase order."""

    reference_code: Text
    issue_date: date | None = None


class BillingPeriod(_Model):
    """``billing_period``: the period a recurring bill covers (utilities, rent, tuition)."""

    start_date: date
    start_time: time | None = None
    end_date: date
    end_time: time | None = None


class Establishment(_Model):
    """``establishment``: the issuing branch; every field is required when the object is sent."""

    name: Text
    address: Text
    phone_number: Text
    email: Text
    municipality_id: int = Field(ge=1)


class RelatedDocument(_Model):
    """``related_documents[]``: the paper/contingency document a type 03 bill replaces."""

    code: Text
    issue_date: date
    number: Text


class Customer(_Model):
    """``customer``: the buyer."""

    identification_document_id: IdDocument
    identification: Annotated[str, Field(min_length=1, max_length=20)]
    dv: Annotated[str, Field(pattern=r"^[0-9]$")] | None = None
    company: Text | None = None
    trade_name: Text | None = None
    names: Text | None = None
    address: Text | None = None
    email: Text | None = None
    phone: Annotated[str, Field(min_length=1, max_length=50)] | None = None
    legal_organization_id: LegalOrganization
    tribute_id: CustomerTribute
    municipality_id: Annotated[int, Field(ge=1)] | None = None


class Withholding(_Model):
    """``items[].withholding_taxes[]``: a self-withholding rate."""

    code: Literal["05", "06", "07"]
    withholding_tax_rate: Percent


class Mandate(_Model):
    """``items[].mandate``: the principal of a mandate line (operation type 11, scheme 1)."""

    identification_document_id: IdDocument
    identification: Annotated[str, Field(min_length=1, max_length=20)]


class Item(_Model):
    """``items[]``: one invoice line; ``price`` includes taxes (v1)."""

    code_reference: Text
    name: Text
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    discount_rate: Percent
    price: Money
    tax_rate: Percent
    unit_measure_id: int = Field(ge=1)
    standard_code_id: StandardCode
    is_excluded: Literal[0, 1]
    tribute_id: ProductTribute
    withholding_taxes: list[Withholding] = Field(default_factory=list)
    scheme_id: Literal["0", "1"] | None = None
    mandate: Mandate | None = None
    note: Annotated[str, Field(max_length=5000)] | None = None


class AllowanceCharge(_Model):
    """``allowance_charges[]``: a document-level surcharge (e.g. a tip)."""

    concept_type: Literal["03"]
    is_surcharge: bool
    reason: Text
    base_amount: Money
    amount: Money


class Invoice(_Model):
    """The v1 request body of ``POST /v1/bills/validate``."""

    numbering_range_id: int = Field(ge=1)
    reference_code: Annotated[str, Field(min_length=1, max_length=255)]
    document: Literal["01", "03"] = "01"
    operation_type: Literal["10", "11", "12"] = "10"
    observation: Annotated[str, Field(max_length=250)] | None = None
    payment_form: Literal["1", "2"] = "1"
    payment_due_date: date | None = None
    payment_method_code: PaymentMethod = "10"
    send_email: bool = False
    order_reference: OrderReference | None = None
    related_documents: list[RelatedDocument] | None = None
    billing_period: BillingPeriod | None = None
    establishment: Establishment | None = None
    customer: Customer
    items: list[Item] = Field(min_length=1)
    allowance_charges: list[AllowanceCharge] | None = None


_RATE_TEXT: dict[Decimal, str] = {}


def _rate_text(rate: Decimal) -> str:
    """``fmt2`` of a tax rate, memoised (a file has a handful of distinct rates)."""
    text = _RATE_TEXT.get(rate)
    if text is None:
        text = fmt2(rate)
        if len(_RATE_TEXT) < 1000:
            _RATE_TEXT[rate] = text
    return text


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def to_payload(inv: Invoice) -> dict[str, Any]:
    """Build the exact v1 JSON body (as Python values) from a validated invoice."""
    c = inv.customer
    customer = _drop_none(
        {
            "identification_document_id": c.identification_document_id,
            "identification": c.identification,
            "dv": c.dv,
            "company": c.company,
            "trade_name": c.trade_name,
            "names": c.names,
            "address": c.address,
            "email": c.email,
            "phone": c.phone,
            "legal_organization_id": c.legal_organization_id,
            "tribute_id": c.tribute_id,
            "municipality_id": c.municipality_id,
        }
    )
    items = []
    for it in inv.items:
        item: dict[str, Any] = {
            "code_reference": it.code_reference,
            "name": it.name,
            "quantity": it.quantity,
            "discount_rate": it.discount_rate,
            "price": it.price,
            "tax_rate": _rate_text(it.tax_rate),
            "unit_measure_id": it.unit_measure_id,
            "standard_code_id": it.standard_code_id,
            "is_excluded": it.is_excluded,
            "tribute_id": it.tribute_id,
        }
        if it.withholding_taxes:
            item["withholding_taxes"] = [
                {"code": w.code, "withholding_tax_rate": w.withholding_tax_rate} for w in it.withholding_taxes
            ]
        if it.scheme_id is not None:
            item["scheme_id"] = it.scheme_id
        if it.mandate is not None:
            item["mandate"] = {
                "identification_document_id": it.mandate.identification_document_id,
                "identification": it.mandate.identification,
            }
        if it.note:
            item["note"] = it.note
        items.append(item)
    out: dict[str, Any] = {
        "numbering_range_id": inv.numbering_range_id,
        "reference_code": inv.reference_code,
        "document": inv.document,
        "operation_type": inv.operation_type,
        "payment_form": inv.payment_form,
    }
    if inv.payment_due_date is not None:
        out["payment_due_date"] = inv.payment_due_date.isoformat()
    out["payment_method_code"] = inv.payment_method_code
    out["send_email"] = inv.send_email
    if inv.observation:
        out["observation"] = inv.observation
    if inv.order_reference is not None:
        o = inv.order_reference
        out["order_reference"] = _drop_none(
            {"reference_code": o.reference_code, "issue_date": o.issue_date and o.issue_date.isoformat()}
        )
    if inv.related_documents:
        out["related_documents"] = [
            {"code": r.code, "issue_date": r.issue_date.isoformat(), "number": r.number}
            for r in inv.related_documents
        ]
    if inv.billing_period is not None:
        b = inv.billing_period
        out["billing_period"] = _drop_none(
            {
                "start_date": b.start_date.isoformat(),
                "start_time": b.start_time and b.start_time.isoformat(),
                "end_date": b.end_date.isoformat(),
                "end_time": b.end_time and b.end_time.isoformat(),
            }
        )
    if inv.establishment is not None:
        e = inv.establishment
        out["establishment"] = {
            "name": e.name,
            "address": e.address,
            "phone_number": e.phone_number,
            "email": e.email,
            "municipality_id": e.municipality_id,
        }
    out["customer"] = customer
    out["items"] = items
    if inv.allowance_charges:
        out["allowance_charges"] = [
            {
                "concept_type": a.concept_type,
                "is_surcharge": a.is_surcharge,
                "reason": a.reason,
                "base_amount": fmt2(a.base_amount),
                "amount": fmt2(a.amount),
            }
            for a in inv.allowance_charges
        ]
    return out


def dumps_payload(obj: Any, *, indent: int | None = None) -> str:
    """Serialise a payload with Decimals as exact JSON numbers (see :func:`daemon.money.dumps_json`).

    >>> dumps_payload({"price": Decimal("11900"), "tax_rate": "19.00"})
    '{"price": 11900, "tax_rate": "19.00"}'
    """
    return dumps_json(obj, indent=indent)
