"""XLSX cells that are not plain values: Excel errors, percent formats, hidden sheets, decimal comma."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook

from daemon.errors import InputError
from daemon.intake.xlsx import read_xlsx
from tests.test_intake_xlsx import HEADERS, good_row, patch_sheet, read

ERRORS = ["#N/A", "#DIV/0!", "#REF!", "#VALUE!", "#NAME?", "#NUM!", "#NULL!"]
SHEET1 = "xl/worksheets/sheet1.xml"


def book(
    path: Path,
    rows: list[list[Any]],
    *,
    formats: dict[str, str] | None = None,
    errors: tuple[str, ...] = (),
) -> Path:
    """One sheet ``S`` holding ``rows``; ``formats`` maps cells (``"C2"``) to number formats and
    ``errors`` names cells typed as Excel errors (their value is the error literal)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "S"
    for row in rows:
        ws.append(row)
    for ref, code in (formats or {}).items():
        ws[ref].number_format = code
    for ref in errors:
        ws[ref].data_type = "e"
    wb.save(path)
    return path


def cell_xml(path: Path, ref: str) -> str:
    """The ``<c>`` element of cell ``ref`` in the first sheet part, as written."""
    with zipfile.ZipFile(path) as zf:
        xml = zf.read(SHEET1).decode()
    found = re.search(rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)', xml)
    assert found is not None, f"no cell {ref}"
    return found.group(0)


def cache_error(path: Path, ref: str, literal: str) -> None:
    """Give the formula in cell ``ref`` a cached Excel error, as Excel saves ``=VLOOKUP(...)`` -> #N/A."""

    def edit(xml: str) -> str:
        new, n = re.subn(
            rf'<c r="{ref}"([^>]*)><f>([^<]*)</f>(?:<v\s*/>|<v></v>)?</c>',
            rf'<c r="{ref}"\1 t="e"><f>\2</f><v>{literal}</v></c>',
            xml,
        )
        assert n == 1
        return new

    patch_sheet(path, SHEET1, edit)


def with_columns(extra: dict[str, Any], ref: str = "E-1", **changes: Any) -> tuple[list[str], list[Any]]:
    """HEADERS and a good row with more columns appended (header -> cell value)."""
    return HEADERS + list(extra), good_row(ref, **changes) + list(extra.values())


class TestExcelErrors:
    def test_typed_error_discount_is_a_cell_error_not_zero(self, tmp_path: Path) -> None:
        """A #N/A discount is an error at that cell showing #N/A; the invoice is not planned as 0 %."""
        headers, row = with_columns({"item.discount_rate": "#N/A"})
        path = book(tmp_path / "e.xlsx", [headers, row, good_row("OK")], errors=("L2",))
        assert 't="e"' in cell_xml(path, "L2")
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["OK"]
        err = result.errors[0]  # the mapper may add its own complaint about the value #N/A
        assert {(e.row, e.column, e.value) for e in result.errors} == {(2, "item.discount_rate", "#N/A")}
        assert err.message == "cell holds the Excel error #N/A: fix the formula or type the value"

    def test_cached_formula_error_municipality_is_reported(self, tmp_path: Path) -> None:
        """=VLOOKUP(...) saved with the cached result #N/A does not make the municipality vanish."""
        headers, row = with_columns(
            {"customer.municipality_code": "=VLOOKUP(A2,Ciudades!A:B,2,FALSE)"}, customer__company="Enigma"
        )
        path = book(tmp_path / "f.xlsx", [headers, row])
        cache_error(path, "L2", "#N/A")
        result = read(path)
        assert result.invoices == []
        message = "cell holds the Excel error #N/A: fix the formula or type the value"
        assert (2, "customer.municipality_code", "#N/A", message) in {
            (e.row, e.column, e.value, e.message) for e in result.errors
        }
        assert {e.column for e in result.errors} == {"customer.municipality_code"}

    @pytest.mark.parametrize("literal", ERRORS)
    def test_every_error_literal_is_text_and_problem(self, tmp_path: Path, literal: str) -> None:
        """Each of Excel's seven classic errors, typed or cached by a formula, is kept and flagged."""
        path = book(tmp_path / "e.xlsx", [["a", "b", "c"], [literal, "=1/0", 5]], errors=("A2",))
        cache_error(path, "B2", literal)
        row = read_xlsx(path).head.rows[0]
        assert row.values == [literal, literal, "5"]
        assert row.problems == {
            0: f"cell holds the Excel error {literal}: fix the formula or type the value",
            1: f"cell holds the Excel error {literal}: fix the formula or type the value",
        }

    def test_error_type_written_with_spaces_and_single_quotes(self, tmp_path: Path) -> None:
        """t = 'e' is the same attribute to every XML reader: the screen must see it too."""
        path = book(tmp_path / "e.xlsx", [["a", "b"], [1, "#VALUE!"]], errors=("B2",))
        patch_sheet(path, SHEET1, lambda xml: xml.replace('<c r="B2" t="e">', "<c r=\"B2\" t = 'e'>"))
        row = read_xlsx(path).head.rows[0]
        assert row.values == ["1", "#VALUE!"] and row.problems is not None and set(row.problems) == {1}

    def test_a_row_of_errors_only_is_not_skipped_as_blank(self, tmp_path: Path) -> None:
        """A row whose only cells are errors (a formula dragged past the data) is read, in error."""
        path = book(tmp_path / "e.xlsx", [["a", "b"], [1, 2], ["#REF!", None]], errors=("A3",))
        rows = read_xlsx(path).head.rows
        assert [(r.row, r.values, r.problems is not None) for r in rows] == [
            (2, ["1", "2"], False),
            (3, ["#REF!", ""], True),
        ]

    def test_error_cells_placed_without_references(self, tmp_path: Path) -> None:
        """Cells without an r attribute are placed by counting, as python-calamine places them."""
        path = book(tmp_path / "e.xlsx", [["a", "b", "c"], [1, "#NUM!", 3]], errors=("B2",))
        patch_sheet(path, SHEET1, lambda xml: re.sub(r'<c r="[A-Z]+\d+"', "<c", xml))
        row = read_xlsx(path).head.rows[0]
        assert row.values == ["1", "#NUM!", "3"] and row.problems is not None and set(row.problems) == {1}

    def test_errors_beyond_the_header_width_and_above_it_are_ignored(self, tmp_path: Path) -> None:
        """An error in an unread cell (title rows, right of the header) does not touch the rows."""
        path = book(
            tmp_path / "e.xlsx",
            [["#N/A"], ["a", "b"], [1, 2, "#DIV/0!"]],
            errors=("A1", "C3"),
        )
        table = read_xlsx(path, header_row=2).head
        assert [(r.values, r.problems) for r in table.rows] == [(["1", "2"], None)]

    def test_an_error_calamine_cannot_read_names_its_cell(self, tmp_path: Path) -> None:
        """A newer error (#SPILL!) stops python-calamine: the refusal names the sheet and cell."""
        path = book(tmp_path / "e.xlsx", [["a", "b"], [1, "=SEQUENCE(3)"]])
        cache_error(path, "B2", "#SPILL!")
        with pytest.raises(InputError, match=r"e.xlsx: sheet 'S' cell B2 holds the Excel error #SPILL!"):
            read_xlsx(path)

    def test_an_error_text_in_a_string_cell_is_plain_text(self, tmp_path: Path) -> None:
        """The text '#N/A' typed as a string is text (no problem): the mapper judges it."""
        path = book(tmp_path / "e.xlsx", [["a"], ["#N/A"]])
        patch_sheet(
            path,
            SHEET1,
            lambda xml: xml.replace('<c r="A2" t="e"><v>#N/A</v></c>', '<c r="A2" t="str"><v>#N/A</v></c>'),
        )
        row = read_xlsx(path).head.rows[0]
        assert (row.values, row.problems) == (["#N/A"], None)


class TestPercent:
    def test_percent_cells_are_read_as_shown(self, tmp_path: Path) -> None:
        """0.1 shown as 10% is "10"; built-in 0% / 0.00% and custom codes with a bare % all count."""
        path = book(
            tmp_path / "p.xlsx",
            [["a", "b", "c", "d", "e", "f", "g"], [0.1, 0.125, 0.19, 1, 0, 0.0015, -0.05]],
            formats={
                "A2": "0%",
                "B2": "0.00%",
                "C2": "0.0%",
                "D2": "#,##0 %",
                "E2": "[Red]0.00%;[Blue]-0.00%",
                "F2": "0.00%",
                "G2": '0%;"minus "0%',
            },
        )
        assert 's="' in cell_xml(path, "A2")
        assert read_xlsx(path).head.rows[0].values == ["10", "12.5", "19", "100", "0", "0.15", "-5"]

    def test_quoted_or_escaped_percent_signs_do_not_scale(self, tmp_path: Path) -> None:
        """A % in quotes, after a backslash, in brackets or after _ / * is a literal: no x100."""
        path = book(
            tmp_path / "p.xlsx",
            [["a", "b", "c", "d", "e", "f"], [19, 19, 19, 0.5, 19, 19]],
            formats={
                "A2": '0"%"',
                "B2": "0\\%",
                "C2": "0_%",
                "D2": "General",
                "E2": "[$%-409]0",
                "F2": "0*%",
            },
        )
        assert read_xlsx(path).head.rows[0].values == ["19", "19", "19", "0.5", "19", "19"]

    def test_percent_tax_and_discount_map_to_percent_points(self, tmp_path: Path) -> None:
        """A tax rate cell showing 19% and a discount showing 10% map as typed 19 and 10 do."""
        headers, shown = with_columns({"item.discount_rate": 0.1}, "P-1", item__tax_rate=0.19)
        typed = with_columns({"item.discount_rate": 10}, "P-2", item__tax_rate=19)[1]
        path = book(tmp_path / "p.xlsx", [headers, shown, typed], formats={"K2": "0%", "L2": "0.0%"})
        result = read(path)
        assert result.errors == []
        first, second = (i.payload["items"][0] for i in result.invoices)
        assert first == second
        assert (first["tax_rate"], str(first["discount_rate"])) == ("19.00", "10")

    def test_percent_style_on_text_and_dates_is_left_alone(self, tmp_path: Path) -> None:
        """Only numbers are scaled: a text cell formatted 0% keeps its text."""
        path = book(
            tmp_path / "p.xlsx",
            [["a", "b"], ["19", True]],
            formats={"A2": "0%", "B2": "0%"},
        )
        assert read_xlsx(path).head.rows[0].values == ["19", "true"]

    def test_percent_default_style(self, tmp_path: Path) -> None:
        """A cell without a style attribute takes style 0: when that is a percent style, it scales."""
        path = book(tmp_path / "p.xlsx", [["a", "b"], [0.5, 2]])

        def percent_default(xml: str) -> str:
            new, n = re.subn(r'(<cellXfs count="\d+"><xf )numFmtId="0"', r'\1numFmtId="9"', xml)
            assert n == 1
            return new

        patch_sheet(path, "xl/styles.xml", percent_default)
        assert read_xlsx(path).head.rows[0].values == ["50", "200"]

    def test_percent_is_exact_where_float_times_100_is_not(self, tmp_path: Path) -> None:
        """0.07 x 100 is 7.000000000000001 in binary floating point; the reader says 7."""
        values = [0.07, 0.29, 0.57, 1.15, 0.035, 0.0001, 123.456, 0.1 + 0.2, 2.675, 1e-9]
        assert 0.07 * 100 != 7
        path = book(
            tmp_path / "p.xlsx",
            [["rate"], *([v] for v in values)],
            formats={f"A{i}": "0.00%" for i in range(2, len(values) + 2)},
        )
        got = [row.values[0] for row in read_xlsx(path).head.rows]
        assert got == ["7", "29", "57", "115", "3.5", "0.01", "12345.6", "30", "267.5", "0.0000001"]

    def test_percent_style_used_on_another_sheet_only(self, tmp_path: Path) -> None:
        """A percent style elsewhere in the workbook does not touch the sheet read."""
        wb = Workbook()
        ws = wb.active
        ws.title = "Datos"
        ws.append(["a", "b"])
        ws.append([0.5, 19])
        other = wb.create_sheet("Resumen")
        other.append(["x"])
        other.append([0.25])
        other["A2"].number_format = "0%"
        wb.save(tmp_path / "p.xlsx")
        assert read_xlsx(tmp_path / "p.xlsx").head.rows[0].values == ["0.5", "19"]
        assert read_xlsx(tmp_path / "p.xlsx", sheet="Resumen").head.rows[0].values == ["25"]

    def test_percent_cells_in_oddly_written_parts(self, tmp_path: Path) -> None:
        """Cells without references, and a style index with a leading zero, are still placed and styled."""
        path = book(
            tmp_path / "p.xlsx",
            [["a", "b", "c"], [0.5, 0.25, 3], [0.1, 7, 0.2]],
            formats={"B2": "0%", "C3": "0%"},
        )
        style = re.search(r's="(\d+)"', cell_xml(path, "B2"))
        assert style is not None

        def odd(xml: str) -> str:
            xml = re.sub(r'<c r="[A-Z]+\d+"', "<c", xml)
            return xml.replace(f's="{style.group(1)}"', f's="0{style.group(1)}"')

        patch_sheet(path, SHEET1, odd)
        rows = read_xlsx(path).head.rows
        assert [r.values for r in rows] == [["0.5", "25", "3"], ["0.1", "7", "20"]]

    def test_percent_with_decimal_comma(self, tmp_path: Path) -> None:
        """Percent cells follow decimal=',' too."""
        path = book(tmp_path / "p.xlsx", [["a", "b"], [0.125, 0.19]], formats={"A2": "0.0%", "B2": "0%"})
        assert read_xlsx(path, decimal=",").head.rows[0].values == ["12,5", "19"]


class TestCost:
    def test_plain_workbooks_and_unused_percent_styles_are_not_scanned(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The cell scan runs only for a sheet with an error-typed cell or a percent style in use."""
        import daemon.intake.xlsx as xlsx

        def no_scan(*_args: object) -> None:
            raise AssertionError("sheet part scanned")

        wb = Workbook()
        ws = wb.active
        ws.title = "Datos"
        ws.append(["a", "b"])
        ws.append([0.5, "e"])
        wb.create_sheet("Resumen").append([0.25])
        wb["Resumen"]["A1"].number_format = "0%"
        wb.save(tmp_path / "p.xlsx")
        monkeypatch.setattr(xlsx, "_scan_marks", no_scan)
        assert read_xlsx(tmp_path / "p.xlsx").head.rows[0].values == ["0.5", "e"]


class TestHiddenSheets:
    def sheets(self, path: Path, states: dict[str, str]) -> Path:
        """Sheets named as given (in order) with a visibility state each; each holds its own name."""
        wb = Workbook()
        wb.remove(wb.active)
        for name, state in states.items():
            ws = wb.create_sheet(name)
            ws.append(["sheet"])
            ws.append([name])
            ws.sheet_state = state
        wb.save(path)
        return path

    def test_first_visible_sheet_is_read(self, tmp_path: Path) -> None:
        """Hidden and very hidden sheets in front are skipped and named in the warning."""
        path = self.sheets(
            tmp_path / "h.xlsx",
            {"Lookup": "hidden", "Secret": "veryHidden", "Ventas": "visible", "Notas": "visible"},
        )
        book_ = read_xlsx(path)
        assert book_.head.rows[0].values == ["Ventas"]
        assert book_.warnings == ["sheet(s) not read: 'Lookup' (hidden), 'Secret' (hidden), 'Notas'"]

    def test_named_hidden_sheet_is_still_read(self, tmp_path: Path) -> None:
        """A profile that names a hidden sheet gets it."""
        path = self.sheets(tmp_path / "h.xlsx", {"Lookup": "hidden", "Ventas": "visible"})
        assert read_xlsx(path, sheet="lookup").head.rows[0].values == ["Lookup"]

    def test_invoice_data_through_read_invoices(self, tmp_path: Path) -> None:
        """A hidden lookup sheet in front of the invoices does not hide them."""
        wb = Workbook()
        hidden = wb.active
        hidden.title = "Tablas"
        hidden.append(["codigo", "ciudad"])
        hidden.sheet_state = "hidden"
        ws = wb.create_sheet("Facturas")
        ws.append(HEADERS)
        ws.append(good_row())
        wb.save(tmp_path / "h.xlsx")
        result = read(tmp_path / "h.xlsx")
        assert len(result.invoices) == 1 and result.errors == []
        assert any("'Tablas' (hidden)" in w for w in result.warnings)

    def test_chart_sheet_in_front_is_skipped(self, tmp_path: Path) -> None:
        """A chart sheet holds no cells: the first worksheet is read instead."""
        wb = Workbook()
        ws = wb.active
        ws.title = "Datos"
        ws.append(["sheet"])
        ws.append(["Datos"])
        wb.create_chartsheet("Grafico", 0)
        wb.save(tmp_path / "c.xlsx")
        book_ = read_xlsx(tmp_path / "c.xlsx")
        assert book_.head.rows[0].values == ["Datos"]
        assert book_.warnings == ["sheet(s) not read: 'Grafico' (chart)"]

    def test_all_hidden_reads_the_first(self, tmp_path: Path) -> None:
        """A workbook with no visible sheet (Excel never saves one) still reads its first sheet."""
        path = self.sheets(tmp_path / "h.xlsx", {"A": "visible", "B": "hidden"})
        patch_sheet(path, "xl/workbook.xml", lambda xml: xml.replace('state="visible"', 'state="hidden"'))
        book_ = read_xlsx(path)
        assert book_.head.rows[0].values == ["A"]
        assert book_.warnings == ["sheet(s) not read: 'B' (hidden)"]


class TestDecimalComma:
    def test_fractions_use_the_decimal_comma_and_whole_numbers_stay(self, tmp_path: Path) -> None:
        """decimal=',' writes 1234.56 as 1234,56 (no thousands separator); ids stay whole; text as typed."""
        path = book(
            tmp_path / "d.xlsx",
            [
                ["money", "id", "tiny", "sum", "big", "text", "neg"],
                [1234.56, 900123456, 1e-7, 0.1 + 0.2, 1234567.5, "1.5", -0.5],
            ],
        )
        assert read_xlsx(path, decimal=",").head.rows[0].values == [
            "1234,56",
            "900123456",
            "0,0000001",
            "0,3",
            "1234567,5",
            "1.5",
            "-0,5",
        ]
        assert read_xlsx(path).head.rows[0].values[0] == "1234.56"

    def test_bad_decimal_is_refused(self, tmp_path: Path) -> None:
        """Only '.' and ',' are decimal separators."""
        path = book(tmp_path / "d.xlsx", [["a"], [1]])
        with pytest.raises(ValueError, match=r"decimal must be '\.' or ',', got ';'"):
            read_xlsx(path, decimal=";")


def test_flagged_cells_in_unread_columns_do_not_block_and_read_ones_are_reported_once(tmp_path: Path) -> None:
    """An Excel error in a column no profile reads ('Notas') harms nothing; one in the NIT column is
    one error (the reader's), not also 'digits only'."""
    from daemon.intake import Lookups, read_invoices
    from daemon.settings import Settings

    header = ["reference_code", "customer.identification_document_id", "customer.identification",
              "customer.names", "item.code_reference", "item.name", "item.quantity", "item.price",
              "item.tax_rate", "Notas"]  # fmt: skip
    rows = [
        header,
        ["F1", 3, 1399991, "Ana", "A", "B", 1, 100, 19, "#REF!"],
        ["F2", 3, "#N/A", "Ana", "A", "B", 1, 100, 19, "x"],
    ]
    path = book(tmp_path / "f.xlsx", rows, errors=("J2", "C3"))
    result = read_invoices(path, settings=Settings(), lookups=Lookups.builtin())
    assert [i.reference_code for i in result.invoices] == ["F1"]
    [error] = result.errors
    assert (error.row, error.column, error.value) == (3, "customer.identification", "#N/A")


def test_a_percent_format_on_a_money_column_is_an_error_not_a_scaled_price(tmp_path: Path) -> None:
    """A price 0.5 formatted '0%' shows 50 %: it is neither 50 nor 0.5 for sure, so the cell is an
    error at its place; a rate column with the same format is read as the percentage it shows."""
    price_col = "ABCDEFGHIJK"[HEADERS.index("item.price")]
    tax_col = "ABCDEFGHIJK"[HEADERS.index("item.tax_rate")]
    path = book(
        tmp_path / "pct.xlsx",
        [
            HEADERS,
            good_row("P-1", item__price=0.5, item__tax_rate=0.19),
            good_row("P-2", item__tax_rate=0.19),
        ],
        formats={f"{price_col}2": "0%", f"{tax_col}2": "0%", f"{tax_col}3": "0%"},
    )
    result = read(path)
    [error] = result.errors
    assert (error.row, error.column, error.value) == (2, "item.price", "0.5")
    assert "Excel shows 50%" in error.message
    [planned] = result.invoices
    assert planned.reference_code == "P-2" and '"tax_rate":"19.00"' in planned.payload_json().replace(" ", "")


class TestExcelDamage:
    def test_a_date_cell_in_an_identifier_column_is_an_error(self, tmp_path: Path) -> None:
        """A code 3-4 (or a reference 5/11) that Excel turned into a date is refused at its cell,
        never read as a new identifier 2026-04-03; a date cell in a date column is fine."""
        damaged = good_row("D-1", **{"item.code_reference": dt.date(2026, 4, 3)})
        path = book(tmp_path / "d.xlsx", [HEADERS, damaged, good_row("OK")], formats={"G2": "d-mmm"})
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["OK"]
        (err,) = result.errors
        assert (err.row, err.column, err.value) == (2, "item.code_reference", "2026-04-03")
        assert "date cell" in err.message

    def test_hidden_rows_are_never_issued_unseen(self, tmp_path: Path) -> None:
        """A row hidden by hand or by a filter is an error at its row: its invoice is held, the
        visible invoices go on."""
        path = book(tmp_path / "h.xlsx", [HEADERS, good_row("V-1"), good_row("H-1"), good_row("V-2")])
        wb = load_workbook(path)
        wb.active.row_dimensions[3].hidden = True
        wb.save(path)
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["V-1", "V-2"]
        (err,) = result.errors
        assert err.row == 3 and "hidden" in err.message and err.reference_code == "H-1"
