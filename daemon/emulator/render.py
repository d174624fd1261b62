"""JSON shapes of the v1 API: bills (full and list item), numbering ranges, Laravel pagination.

Money is a string with two decimals, except the item ``total`` which v1 sends as a bare number;
timestamps follow the (inconsistent) formats of the contract §0.2.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from daemon import catalog
from daemon.emulator.state import COMPANY, QR_BASE, RANGE_DOCUMENTS, Bill, NumberingRange
from daemon.emulator.tables import Tables
from daemon.money import fmt2

__all__ = [
    "bill_data",
    "bill_list_item",
    "paginate",
    "range_list_item",
    "range_show",
    "timestamp",
]

_WITHHOLDING_NAMES = catalog.WITHHOLDING_CODES
_ALLOWANCE_CONCEPTS = {
    "00": "Descuento no condicionado",
    "01": "Descuento condicionado",
    "02": "Recargo no condicionado",
    "03": "Recargo Condicionado",  # as the official response example writes it
}


def timestamp(moment: datetime | None) -> str | None:
    """Document timestamps: ``DD-MM-YYYY hh:mm:ss AM/PM``."""
    return None if moment is None else moment.strftime("%d-%m-%Y %I:%M:%S %p")


def _number(value: Decimal) -> int | float:
    """A bare JSON number (v1 item ``total``): integral amounts print without decimals."""
    if value == value.to_integral_value():
        return int(value)
    return float(fmt2(value))


def _code_name(table: dict[str, str], code: str) -> dict[str, str]:
    return {"code": code, "name": table.get(code, "")}


def _municipality(tables: Tables, municipality_id: int | None) -> dict[str, Any] | None:
    row = tables.municipalities.get(municipality_id) if municipality_id is not None else None
    if row is None:
        return None
    return {"id": row["id"], "code": row["code"], "name": row["name"]}


def _municipality_with_department(tables: Tables, municipality_id: int | None) -> dict[str, Any] | None:
    row = tables.municipalities.get(municipality_id) if municipality_id is not None else None
    if row is None:
        return None
    return {
        "id": row["id"],
        "code": row["code"],
        "name": row["name"],
        "department": {"id": row["department_id"], "code": row["department_code"], "name": row["department"]},
    }


def _qr_png(cufe: str) -> bytes:
    """A small real PNG (a 29×29 pattern derived from the CUFE) standing in for the QR image."""
    size = 29
    bits = bin(int(cufe, 16))[2:].zfill(len(cufe) * 4) if cufe else "0"
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter type none
        for x in range(size):
            on = bits[(y * size + x) % len(bits)] == "1"
            row.append(0 if on else 255)
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def customer_name(customer: dict[str, Any]) -> str:
    """The name printed for a customer: company for legal entities, else names."""
    return str(customer.get("company") or customer.get("names") or customer.get("trade_name") or "")


def _customer(tables: Tables, customer: dict[str, Any]) -> dict[str, Any]:
    org_id = customer.get("legal_organization_id") or 2
    org_code, org_name = catalog.LEGAL_ORGANIZATIONS.get(org_id, ("", ""))
    tribute_id = customer.get("tribute_id") or 21
    tribute_code, tribute_name = catalog.CUSTOMER_TRIBUTES.get(tribute_id, ("", ""))
    doc_id = customer.get("identification_document_id")
    doc_code, doc_name = catalog.IDENTIFICATION_DOCUMENTS.get(doc_id or 0, ("", ""))
    return {
        "identification": customer.get("identification"),
        "dv": None if customer.get("dv") is None else str(customer["dv"]),
        "graphic_representation_name": customer_name(customer),
        "trade_name": customer.get("trade_name"),
        "company": customer.get("company"),
        "names": customer.get("names"),
        "address": customer.get("address"),
        "email": customer.get("email"),
        "phone": customer.get("phone"),
        "identification_document": {"id": doc_id, "code": doc_code, "name": doc_name},
        "legal_organization": {"id": org_id, "code": org_code, "name": org_name},
        "tribute": {"id": tribute_id, "code": tribute_code, "name": tribute_name},
        "municipality": _municipality(tables, customer.get("municipality_id")),
    }


def _establishment(tables: Tables, establishment: dict[str, Any] | None) -> dict[str, Any]:
    if establishment is None:
        default_municipality = next(
            (mid for mid, row in tables.municipalities.items() if row["name"] == COMPANY["municipality"]),
            None,
        )
        establishment = {
            "name": COMPANY["company"],
            "address": COMPANY["direction"],
            "phone_number": COMPANY["phone"],
            "email": COMPANY["email"],
            "municipality_id": default_municipality,
        }
    return {
        "name": establishment["name"],
        "address": establishment["address"],
        "phone_number": establishment["phone_number"],
        "email": establishment["email"],
        "municipality_id": _municipality_with_department(tables, establishment.get("municipality_id")),
    }


def _items(tables: Tables, bill: Bill) -> list[dict[str, Any]]:
    out = []
    for item, line in zip(bill.payload["items"], bill.totals.lines, strict=True):
        unit = tables.units.get(
            item["unit_measure_id"], {"id": item["unit_measure_id"], "code": "", "name": ""}
        )
        std_code, std_name = catalog.STANDARD_CODES.get(item["standard_code_id"], ("", ""))
        tribute = tables.tributes.get(item["tribute_id"], {"id": item["tribute_id"], "code": "", "name": ""})
        out.append(
            {
                "scheme_id": item.get("scheme_id"),
                "note": item.get("note"),
                "code_reference": item["code_reference"],
                "name": item["name"],
                "quantity": item["quantity"],
                "discount_rate": fmt2(item["discount_rate"]),
                "discount": fmt2(line.discount),
                "gross_value": fmt2(line.gross_value),
                "tax_rate": fmt2(item["tax_rate"]),
                "taxable_amount": fmt2(line.taxable_amount),
                "tax_amount": fmt2(line.tax_amount),
                "price": fmt2(item["price"]),
                "is_excluded": item["is_excluded"],
                "unit_measure": {"id": unit["id"], "code": unit["code"], "name": unit["name"]},
                "standard_code": {"id": item["standard_code_id"], "code": std_code, "name": std_name},
                "tribute": {"id": tribute["id"], "code": tribute["code"], "name": tribute["name"]},
                "total": _number(line.total),
                "withholding_taxes": [
                    {
                        "tribute_code": w.code,
                        "name": _WITHHOLDING_NAMES.get(w.code, ""),
                        "value": fmt2(w.value),
                        "rates": [
                            {"code": w.code, "name": _WITHHOLDING_NAMES.get(w.code, ""), "rate": fmt2(w.rate)}
                        ],
                    }
                    for w in sorted(line.withholdings, key=lambda w: w.code)
                ],
                "mandate": item.get("mandate"),
            }
        )
    return out


def _numbering_range_short(rng: NumberingRange) -> dict[str, Any]:
    return {
        "prefix": rng.prefix,
        "from": rng.from_,
        "to": rng.to,
        "resolution_number": rng.resolution_number,
        "start_date": rng.start_date.strftime("%d-%m-%Y"),
        "end_date": rng.end_date.strftime("%d-%m-%Y"),
        "months": rng.months,
    }


def bill_data(bill: Bill, tables: Tables, ranges: dict[int, NumberingRange]) -> dict[str, Any]:
    """The full ``data`` of a create or show answer (contract §4.1)."""
    payload = bill.payload
    totals = bill.totals
    qr = QR_BASE + bill.cufe
    return {
        "company": dict(COMPANY),
        "establishment": _establishment(tables, payload.get("establishment")),
        "customer": _customer(tables, payload["customer"]),
        "numbering_range": _numbering_range_short(ranges[bill.range_id]),
        "billing_period": payload.get("billing_period") or [],
        "bill": {
            "id": bill.id,
            "document": _code_name(catalog.DOCUMENT_TYPES, payload["document"]),
            "operation_type": _code_name(catalog.OPERATION_TYPES, payload["operation_type"]),
            "order_reference": payload.get("order_reference"),
            "number": bill.number,
            "reference_code": bill.reference_code,
            "status": bill.status,
            "send_email": int(bool(payload.get("send_email"))),
            "qr": qr,
            "cufe": bill.cufe,
            "validated": timestamp(bill.validated_at),
            "gross_value": fmt2(totals.gross_value),
            "taxable_amount": fmt2(totals.taxable_amount),
            "tax_amount": fmt2(totals.tax_amount),
            "discount_amount": fmt2(totals.discount_amount),
            "surcharge_amount": fmt2(totals.surcharge_amount),
            "total": fmt2(totals.total),
            "observation": payload.get("observation"),
            "errors": bill.errors,
            "created_at": timestamp(bill.created_at),
            "payment_due_date": payload.get("payment_due_date"),
            "qr_image": "data:image/png;base64, " + base64.b64encode(_qr_png(bill.cufe)).decode("ascii"),
            "has_claim": int(any(e["event_code"] == "031" for e in bill.events)),
            "is_negotiable_instrument": 0,
            "payment_form": _code_name(catalog.PAYMENT_FORMS, payload["payment_form"]),
            "payment_method": _code_name(catalog.PAYMENT_METHODS, payload["payment_method_code"]),
        },
        "related_documents": payload.get("related_documents") or [],
        "items": _items(tables, bill),
        "allowance_charges": [
            {
                "concept_type": _code_name(_ALLOWANCE_CONCEPTS, charge["concept_type"]),
                "is_surcharge": bool(charge["is_surcharge"]),
                "reason": charge["reason"],
                "base_amount": fmt2(computed.base_amount),
                "percentage": fmt2(computed.percentage),
                "amount": fmt2(computed.amount),
            }
            for charge, computed in zip(payload["allowance_charges"], totals.allowances, strict=True)
        ],
        "withholding_taxes": [
            {"tribute_code": code, "name": _WITHHOLDING_NAMES.get(code, ""), "value": fmt2(value)}
            for code, value in sorted(totals.withholdings.items())
        ],
        "mandate": None,
        "credit_notes": [],
        "debit_notes": [],
    }


def bill_list_item(bill: Bill) -> dict[str, Any]:
    """One row of ``GET /v1/bills`` (contract §4.4)."""
    customer = bill.payload["customer"]
    payload = bill.payload
    return {
        "id": bill.id,
        "document": _code_name(catalog.DOCUMENT_TYPES, payload["document"]),
        "number": bill.number,
        "api_client_name": "Factus Emulator",
        "reference_code": bill.reference_code,
        "identification": customer.get("identification"),
        "graphic_representation_name": customer_name(customer),
        "company": customer.get("company") or "",
        "trade_name": customer.get("trade_name"),
        "names": customer.get("names") or "",
        "email": customer.get("email"),
        "total": fmt2(bill.totals.total),
        "status": bill.status,
        "errors": bill.errors,
        "send_email": int(bool(payload.get("send_email"))),
        "has_claim": int(any(e["event_code"] == "031" for e in bill.events)),
        "is_negotiable_instrument": 0,
        "payment_form": _code_name(catalog.PAYMENT_FORMS, payload["payment_form"]),
        "created_at": timestamp(bill.created_at),
        "credit_notes": [],
        "debit_notes": [],
    }


def range_list_item(rng: NumberingRange) -> dict[str, Any]:
    """One row of ``GET /v1/numbering-ranges``: ``document`` holds the *name* there."""
    return {
        "id": rng.id,
        "document": RANGE_DOCUMENTS.get(rng.document, rng.document),
        "prefix": rng.prefix,
        "from": rng.from_,
        "to": rng.to,
        "current": rng.current,
        "resolution_number": rng.resolution_number,
        "start_date": rng.start_date.isoformat(),
        "end_date": rng.end_date.isoformat(),
        "technical_key": rng.technical_key,
        "is_expired": rng.is_expired,
        "is_active": int(rng.is_active),
        "created_at": rng.created_at,
        "updated_at": rng.created_at,
        "deleted_at": None,
    }


def range_show(rng: NumberingRange) -> dict[str, Any]:
    """``GET /v1/numbering-ranges/:id``: ``document`` is the code, the name is ``document_name``."""
    item = range_list_item(rng)
    item.pop("deleted_at")
    item["document"] = rng.document
    item["document_name"] = RANGE_DOCUMENTS.get(rng.document, rng.document)
    return item


def _window(current: int, last: int, on_each_side: int = 3) -> list[int | str]:
    """Laravel's ``UrlWindow``: page numbers with ``"..."`` gaps."""
    if last < on_each_side * 2 + 8:
        return list(range(1, last + 1))
    window = on_each_side + 4
    start, finish = [1, 2], [last - 1, last]
    if current <= window:
        return [*range(1, window + on_each_side + 1), "...", *finish]
    if current > last - window:
        return [*start, "...", *range(last - (window + on_each_side - 1), last + 1)]
    return [*start, "...", *range(current - on_each_side, current + on_each_side + 1), "...", *finish]


def paginate(
    rows: Sequence[Any],
    *,
    page: int,
    per_page: int,
    url_for: Callable[[int], str],
    render: Callable[[Any], Any],
) -> dict[str, Any]:
    """``{"data": [...], "pagination": {...}}`` the way Factus wraps Laravel's paginator."""
    total = len(rows)
    last_page = max(1, -(-total // per_page))
    start = (page - 1) * per_page
    chunk = rows[start : start + per_page]
    links: list[dict[str, Any]] = [
        {"url": url_for(page - 1) if page > 1 else None, "label": "&laquo; Anterior", "active": False}
    ]
    for entry in _window(page, last_page):
        if entry == "...":
            links.append({"url": None, "label": "...", "active": False})
        else:
            assert isinstance(entry, int)
            links.append({"url": url_for(entry), "label": entry, "active": entry == page, "page": entry})
    links.append(
        {
            "url": url_for(page + 1) if page < last_page else None,
            "label": "Siguiente &raquo;",
            "active": False,
        }
    )
    return {
        "data": [render(r) for r in chunk],
        "pagination": {
            "total": total,
            "per_page": per_page,
            "current_page": page,
            "last_page": last_page,
            "from": start + 1 if chunk else None,
            "to": start + len(chunk) if chunk else None,
            "links": links,
        },
    }
