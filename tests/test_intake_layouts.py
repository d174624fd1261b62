"""Report-shaped exports: title rows above the header, and profile [filter] rules for non-invoice rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from daemon.errors import ConfigError, InputError
from daemon.intake import Lookups, MappingProfile, read_invoices
from daemon.intake.validate import IntakeResult
from daemon.settings import Settings

HEADER = "reference_code;customer.identification_document_id;customer.identification;customer.company;item.code_reference;item.name;item.quantity;item.price;item.tax_rate"  # noqa: E501


ODOO_COLUMNS = {
    "name": "reference_code",
    "partner_id": "customer.names",
    "partner_id/vat": "customer.identification",
    "code": "item.code_reference",
    "line": "item.name",
    "qty": "item.quantity",
    "price": "item.price",
}
"""The Odoo-style test exports' columns (invoice columns blank on continuation rows)."""
ODOO_DEFAULTS = {"customer.identification_document_id": 3, "item.tax_rate": "19.00"}


def line(ref: str, price: str = "1000") -> str:
    """One valid canonical line (';' separated, NIT customer)."""
    return f"{ref};6;900123456;Enigma;P-1;Café;1;{price};19"


def read(path: Path, profile: MappingProfile | None = None) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), profile=profile)


def two_sheets(path: Path, first: tuple[str, list[list[Any]]], second: tuple[str, list[list[Any]]]) -> Path:
    """Save a workbook of two sheets, each (title, rows), in that order."""
    wb = Workbook()
    for n, (title, rows) in enumerate((first, second)):
        ws = wb.active if n == 0 else wb.create_sheet()
        ws.title = title
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def profile(**sections: Any) -> MappingProfile:
    """A profile built from TOML-shaped sections."""
    return MappingProfile.from_dict({"profile": {"name": "t"}, **sections})


class TestHeaderDetection:
    def test_title_rows_above_the_header_are_skipped_rows_keep_numbers(self, tmp_path: Path) -> None:
        """A report with a title, company line and blank line before the header needs no setting."""
        path = tmp_path / "report.csv"
        path.write_text(
            "\n".join(
                [
                    "Informe de ventas detallado",
                    "Enigma S.A.S.;NIT 900123456-8",
                    "",
                    HEADER,
                    line("R-1"),
                    line("R-2", price="12,5x"),
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["R-1"]
        [error] = result.errors
        assert (error.row, error.column, error.value) == (6, "item.price", "12,5x")

    def test_an_explicit_header_row_is_still_honoured(self, tmp_path: Path) -> None:
        """header_row = N reads row N as the header even when an earlier row would also look like one."""
        path = tmp_path / "two.csv"
        path.write_text(f"{HEADER}\n{HEADER}\n{line('R-1')}\n", encoding="utf-8")
        result = read(path, profile(read={"header_row": 2}))
        assert [i.reference_code for i in result.invoices] == ["R-1"]
        assert read(path, profile(read={"header_row": "auto"})).errors  # row 2 is then data

    def test_no_header_like_row_reports_the_first_row_as_found(self, tmp_path: Path) -> None:
        """When no row names known columns, the missing-columns error lists the first row's cells."""
        path = tmp_path / "junk.csv"
        path.write_text("Factura,Cliente\nA-1,Pedro\n", encoding="utf-8")
        with pytest.raises(
            InputError,
            match=r"missing required column.*found: 'Factura', 'Cliente' \(read as the header: row 1;",
        ):
            read(path)

    def test_profile_headers_are_found_below_merged_titles_in_xlsx(self, tmp_path: Path) -> None:
        """A Siigo-style report: merged title rows, padded headers on row 7, numbers as cells."""
        wb = Workbook()
        ws = wb.active
        ws.append(["Siigo - ENIGMA SAS"])
        ws.append(["VENTAS DETALLADAS"])
        ws.append(["De :  ENE   /2026   A :  MAR   /2026"])
        ws.append([])
        ws.append(["Procesado en: 2026/03/28  11:03:50:39"])
        ws.append([])
        ws.append(["FACTURA   ", "NIT      ", "NOMBRE      ", "CODIGO", "DESCRIPCION", "CANTIDAD", "VALOR"])
        ws.append(["F-003-00000017518", 900123456, "ENIGMA SAS", 7001, "Café", 2, 1190])
        ws.append(["F-003-00000017519", 900123456, "ENIGMA SAS", "0702", "Té", 1, 595.5])
        for rng in ("A1:G1", "A2:G2", "A3:G3", "A5:G5"):
            ws.merge_cells(rng)
        path = tmp_path / "siigo.xlsx"
        wb.save(path)
        prof = profile(
            columns={
                "FACTURA": "reference_code",
                "NIT": "customer.identification",
                "NOMBRE": "customer.company",
                "CODIGO": "item.code_reference",
                "DESCRIPCION": "item.name",
                "CANTIDAD": "item.quantity",
                "VALOR": "item.price",
            },
            defaults={"customer.identification_document_id": 6, "item.tax_rate": "19.00"},
        )
        result = read(path, prof)
        assert result.errors == [], [str(e) for e in result.errors]
        payloads = [json.loads(i.payload_json()) for i in result.invoices]
        assert [p["reference_code"] for p in payloads] == ["F-003-00000017518", "F-003-00000017519"]
        assert payloads[0]["customer"]["identification"] == "900123456"
        assert payloads[1]["items"][0]["price"] == 595.5
        assert [p["items"][0]["code_reference"] for p in payloads] == ["7001", "0702"]
        assert [i.rows for i in result.invoices] == [[8], [9]]


class TestFilters:
    def _wo_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "wo.csv"
        rows = [
            "Tipo;" + HEADER,
            "FV;" + line("FV-1"),
            "PED;" + line("PED-7"),
            "fv;" + line("FV-2"),
            "RC;" + line("RC-3"),
            ";" + line("Total general"),
        ]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return path

    def test_keep_only_listed_values(self, tmp_path: Path) -> None:
        """A list keeps rows whose cell is one of its values (case-insensitive); the rest are noted."""
        result = read(self._wo_file(tmp_path), profile(filter={"Tipo": ["FV"]}))
        assert [i.reference_code for i in result.invoices] == ["FV-1", "FV-2"]
        assert result.errors == []
        assert any("skipped 3 row(s)" in w and "rows 3, 5, 6" in w for w in result.warnings), result.warnings

    def test_not_in_non_empty_and_regex_rules_combine(self, tmp_path: Path) -> None:
        """Every rule must pass: drop PED, drop blank Tipo, drop 'Total' rows by regex on a canonical name."""
        prof = profile(
            filter={
                "Tipo": {"not_in": ["PED"]},
                "tipo": "non-empty",
                "reference_code": {"not_matches": "^total"},
            }
        )
        result = read(self._wo_file(tmp_path), prof)
        assert [i.reference_code for i in result.invoices] == ["FV-1", "FV-2", "RC-3"]
        keep = read(self._wo_file(tmp_path), profile(filter={"reference_code": {"matches": r"^FV-\d+$"}}))
        assert [i.reference_code for i in keep.invoices] == ["FV-1", "FV-2"]

    def test_a_filter_on_a_missing_column_is_a_file_error(self, tmp_path: Path) -> None:
        """Silently keeping every row would issue the orders the filter was meant to skip."""
        with pytest.raises(InputError, match=r"\[filter\] column 'Encab: Tipo Documento' is not in the file"):
            read(self._wo_file(tmp_path), profile(filter={"Encab: Tipo Documento": ["FV"]}))

    def test_filters_apply_to_the_items_sheet_of_a_pair(self, tmp_path: Path) -> None:
        """In an invoices + items workbook a filter applies to the sheet that has its column."""
        wb = Workbook()
        head = wb.active
        head.title = "invoices"
        head.append(["reference_code", "customer.identification_document_id", "customer.identification"])
        head.append(["P-1", 6, 900123456])
        items = wb.create_sheet("items")
        items.append(["reference_code", "item.code_reference", "item.name", "item.price", "item.quantity"])
        items.append(["P-1", "A", "Café", 1000, 1])
        items.append(["P-1", "", "Forma de pago", 1000, 1])
        path = tmp_path / "pair.xlsx"
        wb.save(path)
        prof = profile(
            filter={"item.code_reference": "non-empty"},
            defaults={"customer.company": "Enigma", "item.tax_rate": "19.00"},
        )
        result = read(path, prof)
        assert result.errors == [], [str(e) for e in result.errors]
        [invoice] = result.invoices
        assert [it["name"] for it in json.loads(invoice.payload_json())["items"]] == ["Café"]

    @pytest.mark.parametrize(
        "rule",
        [[], {"in": []}, {"matches": "("}, {"maybe": ["x"]}, 3.5, [1.5], {"in": ["a"], "not_in": ["b"]}],
    )
    def test_bad_rules_are_configuration_errors(self, rule: Any) -> None:
        """A rule that cannot be understood is refused when the profile loads, naming the column."""
        with pytest.raises(ConfigError, match=r"\[filter\] 'Tipo'"):
            profile(filter={"Tipo": rule})


class TestFiltersWithGrouping:
    def test_continuation_rows_share_the_fate_of_their_invoice(self, tmp_path: Path) -> None:
        """Odoo-style fill_down: a refund (RINV) and its blank-parent line are both skipped; the
        invoice keeps its three lines (the filter used to drop its continuation rows)."""
        path = tmp_path / "odoo.csv"
        head = "name;move_type;partner_id;partner_id/vat;code;line;qty;price\n"
        path.write_text(
            head
            + "INV/1;out_invoice;Ana;1399991;A;Uno;1;100\n"
            + ";;;;B;Dos;1;200\n"
            + ";;;;C;Tres;1;300\n"
            + "RINV/1;out_refund;Ana;1399991;D;Cuatro;1;400\n"
            + ";;;;E;Cinco;1;500\n",
            encoding="utf-8",
        )
        for rule in ({"move_type": ["out_invoice"]}, {"name": {"not_matches": "^RINV"}}):
            prof = profile(
                read={"fill_down": True}, columns=ODOO_COLUMNS, defaults=ODOO_DEFAULTS, filter=rule
            )
            result = read(path, prof)
            assert result.errors == [], [str(e) for e in result.errors]
            [invoice] = result.invoices
            assert invoice.reference_code == "INV/1" and invoice.rows == [2, 3, 4], rule
            assert any("rows 5, 6" in w for w in result.warnings), result.warnings

    def test_items_of_an_invoice_skipped_in_the_first_sheet_are_skipped(self, tmp_path: Path) -> None:
        """invoices + items: an order (PED) skipped in 'invoices' takes its lines in 'items' with it."""
        wb = Workbook()
        head = wb.active
        head.title = "invoices"
        head.append(
            ["reference_code", "tipo", "customer.identification_document_id", "customer.identification"]
        )
        head.append(["T1", "FV", 3, 1399991])
        head.append(["T2", "PED", 3, 1399991])
        items = wb.create_sheet("items")
        items.append(["reference_code", "item.code_reference", "item.name", "item.price", "item.quantity"])
        items.append(["T1", "A", "Café", 1000, 1])
        items.append(["T2", "B", "Té", 500, 1])
        path = tmp_path / "pair.xlsx"
        wb.save(path)
        prof = profile(filter={"tipo": ["FV"]}, defaults={"customer.names": "Ana", "item.tax_rate": "19.00"})
        result = read(path, prof)
        assert result.errors == [], [str(e) for e in result.errors]
        assert [i.reference_code for i in result.invoices] == ["T1"]
        assert any("sheet 'items'" in w and "rows 3" in w for w in result.warnings), result.warnings


def test_the_row_naming_most_known_columns_is_the_header(tmp_path: Path) -> None:
    """A title line that happens to name two columns ('Filtro: reference_code, item.name') loses to
    the real header below it, which names many more."""
    path = tmp_path / "trap.csv"
    path.write_text(
        "Filtro;reference_code;item.name\n\n" + HEADER + "\n" + line("R-1") + "\n", encoding="utf-8"
    )
    result = read(path)
    assert result.errors == [] and [i.reference_code for i in result.invoices] == ["R-1"]
    assert result.invoices[0].rows == [4]


def test_a_cover_sheet_first_does_not_hide_the_data_sheet(tmp_path: Path) -> None:
    """With no sheet named, a first (visible) sheet without a known header is passed over for the
    first sheet that has one, with a note naming both."""
    path = two_sheets(
        tmp_path / "cover.xlsx",
        ("Portada", [["Informe de ventas"], ["nada"]]),
        ("Datos", [HEADER.split(";"), line("C-1").split(";")]),
    )
    result = read(path)
    assert result.errors == [] and [i.reference_code for i in result.invoices] == ["C-1"]
    assert any("read sheet 'Datos'" in w for w in result.warnings), result.warnings


def test_a_cover_sheet_is_passed_over_with_a_fixed_header_row(tmp_path: Path) -> None:
    """[read] header_row = 3: a cover sheet without a header in row 3 is passed over, as in auto mode."""
    path = two_sheets(
        tmp_path / "cover3.xlsx",
        ("Portada", [["Informe de ventas"]]),
        ("Ventas", [["Ventas noviembre"], [], HEADER.split(";"), line("C-3").split(";")]),
    )
    result = read(path, profile(read={"header_row": 3}))
    assert result.errors == [] and [i.reference_code for i in result.invoices] == ["C-3"]
    assert any("read sheet 'Ventas'" in w for w in result.warnings), result.warnings


def test_odoo_section_and_note_lines_are_skipped_without_losing_the_invoice(tmp_path: Path) -> None:
    """fill_down + a filter on the product column: a section line that opens an invoice (it carries
    the invoice's own columns) loses only its line; a note line in the middle is skipped; the
    products' lines stay, whatever the first row's verdict."""
    path = tmp_path / "sec.csv"
    path.write_text(
        "name;partner_id;partner_id/vat;code;line;qty;price\n"
        "INV/1;Ana;1399991;;Sección: Oficina;0;0\n"
        ";;;B;Dos;1;200\n"
        ";;;C;Tres;1;300\n"
        "INV/2;Ana;1399991;D;Cuatro;1;400\n"
        ";;;;Nota: entregar el lunes;0;0\n"
        ";;;E;Cinco;1;500\n",
        encoding="utf-8",
    )
    prof = profile(
        read={"fill_down": True}, columns=ODOO_COLUMNS, defaults=ODOO_DEFAULTS, filter={"code": "non-empty"}
    )
    result = read(path, prof)
    assert result.errors == [], [str(e) for e in result.errors]
    assert [(i.reference_code, i.rows) for i in result.invoices] == [("INV/1", [3, 4]), ("INV/2", [5, 7])]
    assert any("rows 2, 6" in w for w in result.warnings), result.warnings


def test_multi_line_notes_with_delimiters_are_not_an_unclosed_quote(tmp_path: Path) -> None:
    """A narrow file's address or note may span lines and hold a few delimiters: it is one cell."""
    path = tmp_path / "narrow.csv"
    path.write_text(
        "reference_code,customer.identification_document_id,customer.identification,customer.names,"
        "item.code_reference,item.name,item.quantity,item.price,item.tax_rate,observation\n"
        'N1,3,1399991,Ana,A,Uno,1,100,19,"Nota:\nTornillos, tuercas, arandelas, pernos, chazos\nfin"\n'
        "N2,3,1399991,Ana,A,Uno,1,100,19,\n",
        encoding="utf-8",
    )
    result = read(path)
    assert result.errors == [] and [i.reference_code for i in result.invoices] == ["N1", "N2"]


def test_a_legend_sheet_naming_a_few_columns_loses_to_the_data_sheet(tmp_path: Path) -> None:
    """A first sheet that lists three column names as a legend is not the data: the sheet whose header
    names the most known columns is."""
    path = two_sheets(
        tmp_path / "legend.xlsx",
        ("Leeme", [["reference_code", "customer.names", "item.name"], ["código", "nombre", "producto"]]),
        ("Datos", [HEADER.split(";"), line("L-1").split(";")]),
    )
    result = read(path)
    assert result.errors == [] and [i.reference_code for i in result.invoices] == ["L-1"]
