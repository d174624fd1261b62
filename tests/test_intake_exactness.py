"""Values are read as the file means them or refused: separators, typed numbers, dates, encodings.

Each case here once produced a wrong amount, date or text with no error (an amount scaled by 10 or
100, a year 2615, mojibake) or an error at the wrong cell.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from daemon.intake import Lookups, MappingProfile, read_invoices
from daemon.intake.validate import IntakeResult
from daemon.settings import Settings

COLUMNS = [
    "reference_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.names",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.discount_rate",
    "item.tax_rate",
]
SPANISH = {"read": {"decimal": ",", "thousands": ".", "date_format": "%d/%m/%Y"}}


def profile(**sections: Any) -> MappingProfile:
    """A profile built from TOML-shaped sections."""
    return MappingProfile.from_dict({"profile": {"name": "t"}, **sections})


def read(path: Path, prof: MappingProfile | None = None) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), profile=prof)


def csv_lines(path: Path, rows: list[list[str]], sep: str = ";", header: list[str] | None = None) -> Path:
    """Write rows under the canonical header."""
    lines = [sep.join(header or COLUMNS)] + [sep.join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(ref: str, price: str = "1000", quantity: str = "1", discount: str = "0") -> list[str]:
    """One line for a natural-person customer (CC 1399991)."""
    return [ref, "3", "1399991", "Ana", "A", "Uno", quantity, price, discount, "19"]


def payload(result: IntakeResult, ref: str) -> dict[str, Any]:
    """The planned payload of one invoice."""
    [inv] = [i for i in result.invoices if i.reference_code == ref]
    loaded: dict[str, Any] = json.loads(inv.payload_json())
    return loaded


class TestSeparators:
    @pytest.mark.parametrize("text", ["1.5", "1234.56", "12.34,5", "1.23.456,00"])
    def test_a_misplaced_separator_is_an_error_not_a_scaled_amount(self, tmp_path: Path, text: str) -> None:
        """With decimal ',' and thousands '.', '1.5' is neither 1.5 nor 15: the cell is refused."""
        result = read(csv_lines(tmp_path / "es.csv", [row("T1", price=text), row("T2")]), profile(**SPANISH))
        [error] = result.errors
        assert (error.row, error.column, error.value) == (2, "item.price", text)
        assert [i.reference_code for i in result.invoices] == ["T2"]

    def test_well_grouped_numbers_read_exactly(self, tmp_path: Path) -> None:
        """'1.234.567,89' is 1234567.89 and '$ 2.500,5' is 2500.5."""
        rows = [row("T1", price="1.234.567,89"), row("T2", price="$ 2.500,5", discount="2,5")]
        result = read(csv_lines(tmp_path / "es.csv", rows), profile(**SPANISH))
        assert result.errors == []
        assert payload(result, "T1")["items"][0]["price"] == 1234567.89
        assert payload(result, "T2")["items"][0]["price"] == 2500.5
        assert payload(result, "T2")["items"][0]["discount_rate"] == 2.5

    def test_a_dot_without_thousands_under_a_decimal_comma_is_refused(self, tmp_path: Path) -> None:
        """decimal ',' with no thousands separator: '1.234' (1234? 1.234?) is ambiguous, so an error."""
        prof = profile(read={"decimal": ","})
        result = read(
            csv_lines(tmp_path / "es.csv", [row("T1", price="1.234"), row("T2", price="10,5")]), prof
        )
        assert [(e.row, e.column) for e in result.errors] == [(2, "item.price")]
        assert payload(result, "T2")["items"][0]["price"] == 10.5

    def test_json_numbers_keep_their_value_under_a_decimal_comma_profile(self, tmp_path: Path) -> None:
        """A JSON number is unambiguous: 100.5 stays 100.5 whatever separators the profile names."""
        path = tmp_path / "rows.json"
        rows = [dict(zip(COLUMNS, row("J1"), strict=True)), dict(zip(COLUMNS, row("J2"), strict=True))]
        rows[0].update({"item.price": 100.5, "item.discount_rate": 2.5, "item.quantity": 3})
        rows[1]["item.price"] = "1.000,25"  # a string in the file's own format
        path.write_text(json.dumps(rows), encoding="utf-8")
        result = read(path, profile(**SPANISH))
        assert result.errors == []
        item = payload(result, "J1")["items"][0]
        assert (item["price"], item["discount_rate"], item["quantity"]) == (100.5, 2.5, 3)
        assert payload(result, "J2")["items"][0]["price"] == 1000.25

    def test_native_json_is_canonical_whatever_the_profile(self, tmp_path: Path) -> None:
        """A native v1 invoice's "price": "1234.56" is the v1 format, never re-read with a decimal comma."""
        bill = {
            "reference_code": "N1",
            "customer": {"identification_document_id": 3, "identification": "1399991", "names": "Ana"},
            "items": [
                {"code_reference": "A", "name": "B", "quantity": 1, "price": "1234.56", "tax_rate": "19.00"}
            ],
        }
        path = tmp_path / "native.json"
        path.write_text(json.dumps(bill), encoding="utf-8")
        result = read(path, profile(**SPANISH))
        assert result.errors == []
        assert payload(result, "N1")["items"][0]["price"] == 1234.56


class TestDates:
    def test_the_profile_date_format_wins_over_excel_serials(self, tmp_path: Path) -> None:
        """'261231' with date_format %y%m%d is 2026-12-31, not the Excel serial 261231 (year 2615)."""
        header = [*COLUMNS, "payment_form", "payment_due_date"]
        rows = [[*row("D1"), "2", "261231"]]
        result = read(
            csv_lines(tmp_path / "d.csv", rows, header=header), profile(read={"date_format": "%y%m%d"})
        )
        assert result.errors == []
        assert payload(result, "D1")["payment_due_date"] == "2026-12-31"

    @pytest.mark.parametrize("text", ["261231", "31/12/26", "0026-12-31"])
    def test_implausible_years_are_refused(self, tmp_path: Path, text: str) -> None:
        """A serial in year 2615 or a two-digit year read as year 26 is an error at the cell."""
        header = [*COLUMNS, "payment_form", "payment_due_date"]
        result = read(csv_lines(tmp_path / "d.csv", [[*row("D1"), "2", text]], header=header))
        [error] = result.errors
        assert (error.column, error.value) == ("payment_due_date", text)


class TestTextAndEncoding:
    def test_a_byte_order_mark_wins_over_the_profile_encoding(self, tmp_path: Path) -> None:
        """Excel's 'CSV UTF-8' dropped where a cp1252 profile applies is still read as UTF-8."""
        path = tmp_path / "bom.csv"
        text = ";".join(COLUMNS) + "\n" + ";".join(row("B1")).replace("Ana", "José Muñoz") + "\n"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        result = read(path, profile(read={"encoding": "cp1252"}))
        assert result.errors == []
        assert payload(result, "B1")["customer"]["names"] == "José Muñoz"

    def test_the_delimiter_comes_from_the_header_not_from_a_title(self, tmp_path: Path) -> None:
        """A title line with commas above a ';' header: the header's delimiter is used."""
        path = tmp_path / "titled.csv"
        body = ";".join(COLUMNS) + "\n" + ";".join(row("S1", price="1000,5")) + "\n"
        path.write_text("Ventas, enero, 2026\n\n" + body, encoding="utf-8")
        assert read(path, profile(read={"decimal": ","})).errors == []
        path.write_text("Ventas, enero, 2026\nEmpresa, NIT\n" + body, encoding="utf-8")
        assert (
            payload(read(path, profile(read={"decimal": ",", "header_row": 3})), "S1")["items"][0]["price"]
            == 1000.5
        )

    def test_a_spreadsheet_formula_escape_is_removed(self, tmp_path: Path) -> None:
        """Odoo writes '+57 300 1234567 so a spreadsheet does not take it for a formula: the ' goes."""
        header = [*COLUMNS, "customer.phone"]
        result = read(csv_lines(tmp_path / "o.csv", [[*row("E1"), "'+57 300 1234567"]], header=header))
        assert payload(result, "E1")["customer"]["phone"] == "+57 300 1234567"


class TestLocations:
    def test_a_wrong_dv_glued_to_the_nit_is_reported_at_the_identification(self, tmp_path: Path) -> None:
        """'900123456-7' (the check digit is 8) points at customer.identification, value as written."""
        header = ["reference_code", "customer.identification_document_id", "customer.identification",
                  "customer.company", "item.code_reference", "item.name", "item.quantity", "item.price",
                  "item.tax_rate"]  # fmt: skip
        rows = [["N1", "6", "900123456-7", "ACME", "A", "B", "1", "10", "19"]]
        [error] = read(csv_lines(tmp_path / "n.csv", rows, header=header)).errors
        assert (error.column, error.value) == ("customer.identification", "900123456-7")
        assert "check digit of NIT 900123456 is 8" in error.message

    def test_codes_exported_as_floats_are_repaired(self, tmp_path: Path) -> None:
        """pandas writes 5001.0 and 94.0: they are the codes 05001 (Medellín) and 94, with a warning."""
        header = [*COLUMNS, "customer.municipality_code", "item.unit_measure_code"]
        result = read(csv_lines(tmp_path / "p.csv", [[*row("P1"), "5001.0", "94.0"]], header=header))
        assert result.errors == [], [str(e) for e in result.errors]
        assert payload(result, "P1")["customer"]["municipality_id"] == 80
        assert any("'5001.0'" in w for w in result.warnings)

    def test_a_native_withholding_without_rate_is_an_error_and_code_6_is_06(self, tmp_path: Path) -> None:
        """{"code": "06"} with no rate is not silently dropped; {"code": 6} is the code 06."""

        def bill(ref: str, tax: dict[str, Any]) -> dict[str, Any]:
            return {
                "reference_code": ref,
                "customer": {"identification_document_id": 3, "identification": "1399991", "names": "Ana"},
                "items": [{"code_reference": "A", "name": "B", "quantity": 1, "price": "100.00",
                           "tax_rate": "19.00", "withholding_taxes": [tax]}],
            }  # fmt: skip

        path = tmp_path / "w.json"
        path.write_text(
            json.dumps([bill("W1", {"code": "06"}), bill("W2", {"code": 6, "withholding_tax_rate": "2.50"})])
        )
        result = read(path)
        [error] = result.errors
        assert (error.reference_code, error.column) == (
            "W1",
            "items[0].withholding_taxes[0].withholding_tax_rate",
        )
        assert payload(result, "W2")["items"][0]["withholding_taxes"] == [
            {"code": "06", "withholding_tax_rate": 2.5}
        ]


def test_a_siigo_branch_suffix_is_not_a_dv(tmp_path: Path) -> None:
    """Siigo Pyme writes NIT 79421317 as '0000079421317-000': the branch goes, the DV is computed."""
    header = ["reference_code", "customer.identification_document_id", "customer.identification",
              "customer.company", "item.code_reference", "item.name", "item.quantity", "item.price",
              "item.tax_rate"]  # fmt: skip
    rows = [["S1", "6", "0000079421317-000", "ACME", "A", "B", "1", "10", "19"]]
    result = read(csv_lines(tmp_path / "s.csv", rows, header=header))
    assert result.errors == []
    customer = payload(result, "S1")["customer"]
    assert (customer["identification"], customer["dv"]) == ("79421317", "3")
    assert any("Siigo branch" in w for w in result.warnings)


def test_xlsx_numeric_cells_keep_their_value_under_a_decimal_comma_profile(tmp_path: Path) -> None:
    """A numeric cell 1234.56 is 1234.56 (was 123456 under decimal ',' thousands '.'); a text cell
    '1.234,5' is read in the profile's format; an #N/A cell is one error, at its cell."""
    from tests.test_intake_xlsx_cells import book

    rows = [
        COLUMNS,
        ["X1", 3, 1399991, "Ana", "A", "Uno", 1, 1234.56, 0.5, 19],
        ["X2", 3, 1399991, "Ana", "A", "Uno", 1, "1.234,5", 0, 19],
        ["X3", 3, 1399991, "Ana", "A", "Uno", 1, 10, "#N/A", 19],
    ]
    path = book(tmp_path / "es.xlsx", rows, errors=("I4",))  # an Excel error cell in the discount
    result = read(path, profile(**SPANISH))
    [error] = result.errors
    assert (error.row, error.column, error.value) == (4, "item.discount_rate", "#N/A")
    assert payload(result, "X1")["items"][0]["price"] == 1234.56
    assert payload(result, "X1")["items"][0]["discount_rate"] == 0.5
    assert payload(result, "X2")["items"][0]["price"] == 1234.5


def test_an_unclosed_quote_refuses_the_file_instead_of_swallowing_rows(tmp_path: Path) -> None:
    """A quote opened in row 4 and never closed would turn rows 5.. into one cell and drop those
    invoices silently: the file is refused naming the row and column. Real multi-line fields pass."""
    from daemon.errors import InputError

    path = tmp_path / "q.csv"
    lines = [",".join(COLUMNS)] + [",".join(row(f"Q{n}")) for n in range(1, 7)]
    lines[3] = lines[3].replace("Uno", '"Tubo 3/4 pulgada')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"row 4 column 'item.name': a quote opens here and runs over 3 line"
    ):
        read(path)
    lines[3] = lines[3].replace('"Tubo 3/4 pulgada', '"Tubo\n3/4 pulgada"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert [i.reference_code for i in read(path).invoices] == [f"Q{n}" for n in range(1, 7)]


def test_branch_suffix_for_any_document_and_unicode_digits_refused(tmp_path: Path) -> None:
    """'0000079421317-000' for a CC customer is 79421317; '900123456-000' for a NIT is 900123456;
    Arabic-Indic digits are not digits of a Colombian amount or identification."""
    header = [*COLUMNS, "customer.company"]
    rows = [
        ["B1", "3", "0000079421317-000", "Ana", "A", "Uno", "1", "100", "0", "19", ""],
        ["B2", "6", "900123456-000", "", "A", "Uno", "1", "100", "0", "19", "ACME"],
        ["B3", "3", "1399991", "Ana", "A", "Uno", "1", "١٢٣", "0", "19", ""],
    ]
    result = read(csv_lines(tmp_path / "b.csv", rows, header=header))
    assert payload(result, "B1")["customer"]["identification"] == "79421317"
    customer = payload(result, "B2")["customer"]
    assert (customer["identification"], customer["dv"]) == ("900123456", "8")
    [error] = result.errors
    assert (error.reference_code, error.column, error.value) == ("B3", "item.price", "١٢٣")


def test_a_split_separator_equal_to_the_decimal_separator_is_refused() -> None:
    """[split] ',' with decimal ',' would read '5,5' as two values."""
    from daemon.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[split\] 'item.tax_rate' separator ','"):
        profile(read={"decimal": ","}, split={"item.tax_rate": ","})


def test_a_value_missing_from_a_value_map_says_so(tmp_path: Path) -> None:
    """'IVA 16%' is neither a number nor in the map: the message names the map."""
    prof = profile(values={"item.tax_rate": {"IVA 19%": "19.00"}})
    rows = [row("V1")]
    rows[0][-1] = "IVA 16%"
    [error] = read(csv_lines(tmp_path / "v.csv", rows), prof).errors
    assert 'not one of the 1 value(s) of the profile\'s [values."item.tax_rate"] map' in error.message
