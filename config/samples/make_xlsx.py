"""Regenerate the XLSX samples: ``python config/samples/make_xlsx.py`` (needs openpyxl).

``invoices.xlsx`` is one sheet in the canonical layout with typed cells (a NIT typed as a number,
real date cells, numeric prices); ``invoices_two_sheets.xlsx`` splits the same layout into an
``invoices`` sheet (one row per invoice) and an ``items`` sheet joined by ``reference_code``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent

SINGLE_HEADERS = [
    "reference_code",
    "payment_form",
    "payment_due_date",
    "payment_method_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.company",
    "customer.names",
    "customer.email",
    "customer.phone",
    "customer.municipality_code",
    "customer.tribute_id",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.discount_rate",
    "item.tax_rate",
    "item.is_excluded",
    "item.unit_measure_code",
    "item.withholding.06",
]

SINGLE_ROWS = [
    # a NIT typed as a number (DV computed), a credit sale with a real date cell, a withholding
    ["XLS-0001", 2, dt.date(2026, 12, 15), "47", 6, 900825759, "Comercializadora del Sur S.A.S.", None,
     "pagos@sur.example.com", "0317778899", "76001", 18, "CAF-250", "Café molido 250 g", 24, 15990.5, 0,
     "19.00", 0, "94", 2.5],
    ["XLS-0001", 2, dt.date(2026, 12, 15), "47", 6, 900825759, "Comercializadora del Sur S.A.S.", None,
     "pagos@sur.example.com", "0317778899", "76001", 18, "AZU-1K", "Azúcar 1 kg", 10, 4490, 10,
     "5.00", 0, "KGM", None],
    # a consumer-final cash sale with an excluded item
    ["XLS-0002", 1, None, "10", 3, "222222222222", None, "Consumidor final", None, None, "08001", 21,
     "FRU-MAN", "Mango tommy", 3, 2800, 0, "0.00", 1, "94", None],
]  # fmt: skip

INVOICE_HEADERS = [
    "reference_code",
    "payment_form",
    "payment_due_date",
    "customer.identification_document_id",
    "customer.identification",
    "customer.dv",
    "customer.company",
    "customer.names",
    "customer.email",
    "customer.municipality_code",
    "customer.tribute_id",
    "observation",
]
INVOICE_ROWS = [
    ["XL2-0001", 1, None, 6, "860002964", 4, "Papelería Central Ltda.", None, "compras@central.example.com",
     "11001", 18, "Entrega en portería"],
    ["XL2-0002", 2, dt.date(2027, 1, 31), 3, "52123456", None, None, "Luisa Fernanda Ríos",
     "luisa.rios@example.com", "17001", 21, None],
]  # fmt: skip
ITEM_HEADERS = [
    "reference_code",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.discount_rate",
    "item.tax_rate",
    "item.unit_measure_code",
]
ITEM_ROWS = [
    ["XL2-0001", "BOL-NEG", "Bolígrafo negro caja x 12", 5, 18000, 0, "19.00", "BX"],
    ["XL2-0001", "CUA-100", "Cuaderno argollado 100 hojas", 20, 7500, 5, "19.00", "94"],
    ["XL2-0002", "CLS-ING", "Clase de inglés (hora)", 8, 45000, 0, "0.00", "HUR"],
    ["XL2-0001", "MAR-PER", "Marcador permanente", 12, 3200, 0, "19.00", "94"],
]


def _sheet(ws: object, headers: list[str], rows: list[list[object]]) -> None:
    ws.append(headers)  # type: ignore[attr-defined]
    for row in rows:
        ws.append(row)  # type: ignore[attr-defined]


def main() -> None:
    """Write both workbooks next to this script."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Facturas"
    _sheet(ws, SINGLE_HEADERS, SINGLE_ROWS)
    for row in ws.iter_rows(min_row=2, min_col=3, max_col=3):
        for cell in row:
            cell.number_format = "dd/mm/yyyy"
    wb.save(HERE / "invoices.xlsx")

    wb = Workbook()
    ws = wb.active
    ws.title = "invoices"
    _sheet(ws, INVOICE_HEADERS, INVOICE_ROWS)
    _sheet(wb.create_sheet("items"), ITEM_HEADERS, ITEM_ROWS)
    wb.save(HERE / "invoices_two_sheets.xlsx")


if __name__ == "__main__":
    main()
