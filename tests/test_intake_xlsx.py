"""XLSX reader: exact numbers and dates, sheets, two-sheet join, merged cells and uncached formulas."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from openpyxl import Workbook

from daemon.errors import InputError
from daemon.intake import Lookups, MappingProfile, read_invoices
from daemon.intake.validate import IntakeResult
from daemon.intake.xlsx import column_letter, read_xlsx
from daemon.settings import Settings

HEADERS = [
    "reference_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.company",
    "payment_form",
    "payment_due_date",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.tax_rate",
]


def good_row(ref: str = "X-1", **changes: Any) -> list[Any]:
    """A valid row of typed cells (NIT as a number, a real date cell, a float price)."""
    row: dict[str, Any] = {
        "reference_code": ref,
        "customer.identification_document_id": 6,
        "customer.identification": 900123456,
        "customer.company": "Enigma",
        "payment_form": 2,
        "payment_due_date": dt.date(2026, 12, 31),
        "item.code_reference": "007",
        "item.name": "Café",
        "item.quantity": 3,
        "item.price": 15990.5,
        "item.tax_rate": 19,
    }
    row.update({k.replace("__", "."): v for k, v in changes.items()})
    return [row[h] for h in HEADERS]


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """Save a workbook with the given sheets (first listed is first)."""
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def read(path: Path, **kw: Any) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), **kw)


def patch_sheet(path: Path, member: str, edit: Any) -> None:
    """Rewrite one XML member of a workbook through ``edit(text) -> text``."""
    with zipfile.ZipFile(path) as zf:
        items = [(i, zf.read(i.filename)) for i in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in items:
            if info.filename == member:
                data = edit(data.decode()).encode()
            zf.writestr(info, data)


class TestCells:
    def test_typed_cells_become_exact_text(self, tmp_path: Path) -> None:
        """Numbers keep no spurious .0, floats keep 15 digits, dates are ISO, text keeps zeros."""
        path = workbook(
            tmp_path / "c.xlsx",
            {
                "S": [
                    ["id", "money", "tiny", "date", "stamp", "time", "flag", "code"],
                    [
                        900123456,
                        15990.5,
                        0.1 + 0.2,
                        dt.date(2026, 1, 2),
                        dt.datetime(2026, 1, 2, 3, 4, 5),
                        dt.time(10, 30),
                        True,
                        "007",
                    ],
                ]
            },
        )
        values = read_xlsx(path).head.rows[0].values
        assert values == [
            "900123456",
            "15990.5",
            "0.3",
            "2026-01-02",
            "2026-01-02 03:04:05",
            "10:30:00",
            "true",
            "007",
        ]

    def test_numeric_nit_and_float_price_map_exactly(self, tmp_path: Path) -> None:
        """A NIT typed as a number stays 900123456 and a float price becomes Decimal 15990.5."""
        result = read(workbook(tmp_path / "a.xlsx", {"Hoja1": [HEADERS, good_row()]}))
        assert result.errors == []
        payload = result.invoices[0].payload
        assert payload["customer"]["identification"] == "900123456"
        assert str(payload["items"][0]["price"]) == "15990.5"
        assert payload["payment_due_date"] == "2026-12-31"
        assert payload["items"][0]["code_reference"] == "007"

    def test_excel_date_serial_in_a_number_cell(self, tmp_path: Path) -> None:
        """A due date stored as the serial 45657 (general format) is 2024-12-31."""
        result = read(workbook(tmp_path / "a.xlsx", {"S": [HEADERS, good_row(payment_due_date=45657)]}))
        assert result.invoices[0].payload["payment_due_date"] == "2024-12-31"

    def test_row_numbers_are_the_sheet_rows(self, tmp_path: Path) -> None:
        """Errors point at the sheet row even with blank rows in between."""
        path = workbook(
            tmp_path / "a.xlsx", {"S": [HEADERS, good_row(), [None] * 3, good_row("X-2", item__price=1.555)]}
        )
        err = read(path).errors[0]
        assert (err.row, err.column, err.value) == (4, "item.price", "1.555")

    def test_column_letters(self) -> None:
        """Column indexes convert to spreadsheet letters."""
        assert [column_letter(i) for i in (0, 25, 26, 701, 702)] == ["A", "Z", "AA", "ZZ", "AAA"]


class TestSheets:
    def test_first_sheet_is_read_and_others_are_noted(self, tmp_path: Path) -> None:
        """Without a profile the first sheet is read; other sheets are listed in a warning."""
        path = workbook(tmp_path / "a.xlsx", {"Ventas": [HEADERS, good_row()], "Notas": [["x"]]})
        result = read(path)
        assert len(result.invoices) == 1 and any("'Notas'" in w for w in result.warnings)

    def test_named_sheet_from_the_profile(self, tmp_path: Path) -> None:
        """The profile's sheet is read (case-insensitive); a missing sheet lists the sheets."""
        path = workbook(tmp_path / "a.xlsx", {"Resumen": [["x"]], "Facturas": [HEADERS, good_row()]})
        profile = MappingProfile.from_dict({"profile": {"name": "p"}, "read": {"sheet": "facturas"}})
        assert len(read(path, profile=profile).invoices) == 1
        missing = MappingProfile.from_dict({"profile": {"name": "p"}, "read": {"sheet": "Datos"}})
        with pytest.raises(
            InputError, match=r"a.xlsx: has no sheet 'Datos'; its sheets are \['Resumen', 'Facturas'\]"
        ):
            read(path, profile=missing)

    def test_header_row_skips_titles(self, tmp_path: Path) -> None:
        """header_row lets a report with title rows be read; rows keep their sheet numbers."""
        path = workbook(tmp_path / "a.xlsx", {"S": [["Siigo - EMPRESA"], [], HEADERS, good_row()]})
        profile = MappingProfile.from_dict({"profile": {"name": "p"}, "read": {"header_row": 3}})
        assert read(path, profile=profile).invoices[0].rows == [4]


class TestTwoSheets:
    INV: ClassVar[list[str]] = [
        "reference_code",
        "customer.identification_document_id",
        "customer.identification",
        "customer.company",
    ]
    ITEM: ClassVar[list[str]] = [
        "reference_code",
        "item.code_reference",
        "item.name",
        "item.quantity",
        "item.price",
        "item.tax_rate",
    ]

    def book(self, tmp_path: Path, invoices: list[list[Any]], items: list[list[Any]]) -> Path:
        """A workbook with invoices and items sheets."""
        return workbook(
            tmp_path / "two.xlsx", {"Invoices": [self.INV, *invoices], "Items": [self.ITEM, *items]}
        )

    def test_sheets_are_joined_by_reference_code(self, tmp_path: Path) -> None:
        """Item rows join their invoice row; rows are the item sheet rows."""
        path = self.book(
            tmp_path,
            [["T-1", 6, 900123456, "Enigma"], ["T-2", 3, 1399991, None]],
            [["T-1", "A", "Uno", 1, 100, 19], ["T-2", "B", "Dos", 2, 200, 0], ["T-1", "C", "Tres", 1, 50, 5]],
        )
        result = read(path)
        assert [(i.reference_code, i.rows, len(i.payload["items"])) for i in result.invoices] == [
            ("T-1", [2, 4], 2)
        ]
        err = result.errors[0]
        assert (err.sheet, err.row, err.column) == ("Invoices", 3, None)
        assert "customer.names is required" in err.message

    def test_errors_name_the_sheet_and_its_row(self, tmp_path: Path) -> None:
        """An item error names the items sheet and that sheet's row number."""
        path = self.book(tmp_path, [["T-1", 6, 900123456, "Enigma"]], [["T-1", "A", "Uno", 1.5, 100, 19]])
        err = read(path).errors[0]
        assert (err.sheet, err.row, err.column, err.value) == ("Items", 2, "item.quantity", "1.5")

    def test_orphans_on_either_side_are_errors(self, tmp_path: Path) -> None:
        """Items without an invoice row and invoices without items are both reported."""
        path = self.book(tmp_path, [["T-1", 6, 900123456, "Enigma"]], [["T-9", "A", "Uno", 1, 100, 19]])
        got = {(e.sheet, e.row, e.message) for e in read(path).errors}
        assert ("Items", 2, "reference_code 'T-9' has no row in sheet 'Invoices'") in got
        assert ("Invoices", 2, "invoice 'T-1' has no lines in sheet 'Items'") in got


class TestReportedNotGuessed:
    def test_merged_cells_are_reported(self, tmp_path: Path) -> None:
        """A merged range over data rows is an error on every covered cell; its invoice is not planned."""
        path = workbook(
            tmp_path / "m.xlsx", {"S": [HEADERS, good_row("M-1"), good_row("M-1"), good_row("OK")]}
        )
        from openpyxl import load_workbook

        wb = load_workbook(path)
        wb["S"].merge_cells("D2:D3")
        wb.save(path)
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["OK"]
        err = result.errors[0]
        assert (err.row, err.column) == (3, "customer.company")
        assert "merged range D2:D3" in err.message

    def test_formula_without_cached_value_is_reported(self, tmp_path: Path) -> None:
        """A formula with no cached value is an error showing the formula; a cached one is used."""
        path = workbook(
            tmp_path / "f.xlsx",
            {
                "S": [
                    HEADERS,
                    good_row("F-1", item__price="=100*1.19"),
                    good_row("F-2", item__price="=SUM(1,2)"),
                ]
            },
        )

        def cache_second(xml: str) -> str:
            return re.sub(
                r"(<c r=\"J3\"[^>]*>)<f>SUM\(1,2\)</f>(<v\s*/>|<v></v>)?", r"\1<f>SUM(1,2)</f><v>3</v>", xml
            )

        patch_sheet(path, "xl/worksheets/sheet1.xml", cache_second)
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["F-2"]
        assert result.invoices[0].payload["items"][0]["price"] == 3
        err = result.errors[0]
        assert (err.row, err.column, err.value) == (2, "item.price", "=100*1.19")
        assert "no cached value" in err.message
