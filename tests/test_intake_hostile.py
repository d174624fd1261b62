"""Hostile and broken files: every failure is an InputError naming the file, never a crash or a hang."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from daemon.errors import InputError
from daemon.intake import Limits, Lookups, read_invoices
from daemon.intake.json import read_json
from daemon.intake.validate import IntakeResult
from daemon.intake.xlsx import column_letter
from daemon.settings import Settings

HEADER = (
    "reference_code,customer.identification_document_id,customer.identification,customer.company,"
    "item.code_reference,item.name,item.quantity,item.price,item.tax_rate\n"
)
ROW = "H-1,6,900123456,Enigma,SKU,Producto,1,11900,19.00\n"


def read(path: Path, limits: Limits | None = None) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin(), limits=limits)


def good_xlsx(path: Path) -> Path:
    """A small valid workbook."""
    wb = Workbook()
    ws = wb.active
    for line in (HEADER, ROW):
        ws.append(line.strip().split(","))
    wb.save(path)
    return path


def rezip(path: Path, replace: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> None:
    """Rewrite a zip with some members replaced or added."""
    with zipfile.ZipFile(path) as zf:
        items = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    items.update(replace)
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in items.items():
            zf.writestr(name, data)


def expect_input_error(path: Path, fragment: str, limits: Limits | None = None) -> InputError:
    """Reading raises InputError whose message starts with the file name and contains ``fragment``."""
    with pytest.raises(InputError) as info:
        read(path, limits)
    assert str(info.value).startswith(f"{path.name}: "), str(info.value)
    assert fragment in str(info.value), str(info.value)
    return info.value


class TestEmptyAndJunk:
    @pytest.mark.parametrize("name", ["e.csv", "e.xlsx", "e.json", "e.jsonl"])
    def test_empty_file(self, tmp_path: Path, name: str) -> None:
        """An empty file of any kind is refused as empty."""
        (tmp_path / name).write_bytes(b"")
        expect_input_error(tmp_path / name, "empty")

    def test_header_only_csv(self, tmp_path: Path) -> None:
        """A CSV with a header and no rows holds no invoice."""
        (tmp_path / "h.csv").write_text(HEADER)
        expect_input_error(tmp_path / "h.csv", "holds no invoice rows")

    @pytest.mark.parametrize("name", ["junk.csv", "junk.xlsx", "junk.json"])
    def test_binary_junk(self, tmp_path: Path, name: str) -> None:
        """Random binary bytes under any supported extension are an InputError."""
        (tmp_path / name).write_bytes(os.urandom(4096) + b"\x00\x01")
        expect_input_error(tmp_path / name, "")

    def test_truncated_xlsx(self, tmp_path: Path) -> None:
        """A workbook cut in half is refused as not a valid or truncated archive."""
        data = good_xlsx(tmp_path / "full.xlsx").read_bytes()
        (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
        expect_input_error(tmp_path / "cut.xlsx", "XLSX")

    def test_old_xls_renamed(self, tmp_path: Path) -> None:
        """An OLE2 (.xls / encrypted) file named .xlsx gets a specific message."""
        (tmp_path / "old.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
        expect_input_error(tmp_path / "old.xlsx", "old binary .xls")

    def test_zip_that_is_not_a_workbook(self, tmp_path: Path) -> None:
        """A zip archive without xl/workbook.xml is not an XLSX."""
        with zipfile.ZipFile(tmp_path / "z.xlsx", "w") as zf:
            zf.writestr("hello.txt", "hi")
        expect_input_error(tmp_path / "z.xlsx", "not an XLSX workbook")

    def test_unsupported_extension(self, tmp_path: Path) -> None:
        """A .pdf (or anything unknown) is refused with the supported list."""
        (tmp_path / "x.pdf").write_bytes(b"%PDF-1.4")
        expect_input_error(tmp_path / "x.pdf", "unsupported extension '.pdf'")


class TestBombs:
    def test_zip_bomb_by_compression_ratio(self, tmp_path: Path) -> None:
        """A member that expands far beyond its compressed size is refused before parsing."""
        path = good_xlsx(tmp_path / "bomb.xlsx")
        rezip(path, {"xl/media/zeros.bin": b"\x00" * (8 << 20)})
        expect_input_error(path, "zip bomb")

    def test_zip_bomb_by_declared_total(self, tmp_path: Path) -> None:
        """A workbook declaring more uncompressed bytes than the cap is refused from the directory alone."""
        path = good_xlsx(tmp_path / "big.xlsx")
        rezip(path, {"xl/media/blob.bin": os.urandom(2 << 20)}, compression=zipfile.ZIP_STORED)
        expect_input_error(path, "declares", Limits(max_xlsx_uncompressed_bytes=1 << 20))

    def test_xml_entity_expansion_bomb(self, tmp_path: Path) -> None:
        """An XML part declaring entities (billion laughs) is refused, never expanded."""
        lol = (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + b"".join(
                b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;">' % (i, i - 1, i - 1, i - 1, i - 1)
                for i in range(1, 10)
            )
            + b']><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&lol9;</t></si></sst>'
        )
        path = good_xlsx(tmp_path / "lol.xlsx")
        rezip(path, {"xl/sharedStrings.xml": lol})
        expect_input_error(path, "declares a DTD or XML entities")

    def test_external_entity_in_sheet(self, tmp_path: Path) -> None:
        """A DOCTYPE with an external entity inside the sheet part is refused."""
        path = good_xlsx(tmp_path / "xxe.xlsx")
        with zipfile.ZipFile(path) as zf:
            sheet = zf.read("xl/worksheets/sheet1.xml")
        evil = (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            + sheet.split(b"?>", 1)[-1]
        )
        rezip(path, {"xl/worksheets/sheet1.xml": evil})
        expect_input_error(path, "declares a DTD")

    def test_crc_mismatch_is_corruption(self, tmp_path: Path) -> None:
        """A member whose bytes do not match the recorded CRC is refused as corrupt."""
        path = good_xlsx(tmp_path / "crc.xlsx")
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("xl/workbook.xml")
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 5
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        expect_input_error(path, "")


class TestLimits:
    def test_line_with_100000_columns(self, tmp_path: Path) -> None:
        """A record with 100,000 fields is refused with the column limit, in bounded memory."""
        path = tmp_path / "wide.csv"
        path.write_text(HEADER + ",".join(["x"] * 100_000) + "\n")
        tracemalloc.start()
        try:
            expect_input_error(path, "100,000 fields, over the limit of 1,000 columns")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 << 20

    def test_file_over_the_size_limit(self, tmp_path: Path) -> None:
        """A file larger than max_file_bytes is refused before it is read."""
        path = tmp_path / "big.csv"
        path.write_text(HEADER + ROW * 100)
        expect_input_error(path, "over the limit of 1,000 bytes", Limits(max_file_bytes=1000))

    def test_too_many_rows(self, tmp_path: Path) -> None:
        """More data rows than max_rows is a clear error (split the file)."""
        path = tmp_path / "rows.csv"
        path.write_text(HEADER + ROW * 11)
        expect_input_error(path, "more than 10 data rows", Limits(max_rows=10))

    def test_huge_cell(self, tmp_path: Path) -> None:
        """A cell longer than the cell limit is refused (the csv field limit is also caught)."""
        path = tmp_path / "cell.csv"
        path.write_text(HEADER + "H-1,6,900123456," + "A" * 40_000 + ",S,P,1,1,19\n")
        expect_input_error(path, "characters")
        path.write_text(HEADER + 'H-1,6,900123456,"' + "A" * 200_000 + '",S,P,1,1,19\n')
        expect_input_error(path, "")


class TestBytes:
    def test_nul_bytes_in_csv(self, tmp_path: Path) -> None:
        """NUL bytes mean binary data: a clear error, not a crash."""
        path = tmp_path / "nul.csv"
        path.write_bytes(HEADER.encode() + b"H-1,6,900\x00123456,E,S,P,1,1,19\n")
        expect_input_error(path, "NUL byte")

    def test_invalid_utf8_falls_back_to_cp1252(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 but are Windows-1252 are read as cp1252."""
        path = tmp_path / "latin.csv"
        path.write_bytes((HEADER + "H-1,6,900123456,Compañía,SKU,Café,1,11900,19\n").encode("cp1252"))
        result = read(path)
        assert result.invoices[0].payload["customer"]["company"] == "Compañía"

    def test_neither_utf8_nor_cp1252(self, tmp_path: Path) -> None:
        """Bytes undefined in cp1252 and invalid in UTF-8 are refused."""
        path = tmp_path / "bad.csv"
        path.write_bytes(HEADER.encode() + b"H-1,6,900123456,\x81\xff,S,P,1,1,19\n")
        expect_input_error(path, "neither UTF-8 nor Windows-1252")


class TestFuzz:
    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.binary(max_size=600), suffix=st.sampled_from([".csv", ".json", ".jsonl", ".xlsx"]))
    def test_any_bytes_give_input_error_or_a_result(self, tmp_path: Path, data: bytes, suffix: str) -> None:
        """Arbitrary bytes never raise anything but InputError."""
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(InputError):
            read(path)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cells=st.lists(st.text(max_size=20), min_size=9, max_size=9), ref=st.text(max_size=8))
    def test_any_cell_text_gives_errors_not_exceptions(
        self, tmp_path: Path, cells: list[str], ref: str
    ) -> None:
        """Arbitrary cell text in every canonical column yields payloads or RowErrors."""
        buf = io.StringIO()
        import csv

        csv.writer(buf).writerows([HEADER.strip().split(","), [ref, *cells[1:]]])
        path = tmp_path / "cells.csv"
        path.write_text(buf.getvalue(), encoding="utf-8")
        try:
            result = read(path)
        except InputError:
            return
        for error in result.errors:
            assert error.message and error.file == "cells.csv"


SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
HEAD_CELLS = "".join(
    f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{name}</t></is></c>'
    for i, name in enumerate(HEADER.strip().split(","))
)
ROW_CELLS = "".join(
    f'<c r="{chr(65 + i)}2" t="inlineStr"><is><t>{value}</t></is></c>'
    for i, value in enumerate(ROW.strip().split(","))
)


def sheet_xlsx(path: Path, extra: str, *, dimension: str = "", after: str = "") -> Path:
    """A valid two-row workbook whose sheet XML gets ``extra`` appended inside <sheetData>."""
    good_xlsx(path)
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    xml = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{SHEET_NS}">{dim}<sheetData>'
        f'<row r="1">{HEAD_CELLS}</row><row r="2">{ROW_CELLS}</row>{extra}</sheetData>{after}</worksheet>'
    )
    rezip(path, {"xl/worksheets/sheet1.xml": xml.encode()})
    return path


PREFIXED_CELL = (
    f'<row r="3"><x:c xmlns:x="{SHEET_NS}" r="XFD3" t="inlineStr"><x:is><x:t>x</x:t></x:is></x:c></row>'
)


@pytest.fixture(name="no_calamine_grid")
def _no_calamine_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail (instead of letting calamine abort the test process) if a refused sheet reaches calamine."""
    from daemon.intake import xlsx

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sheet reached python-calamine")

    monkeypatch.setattr(xlsx, "_read_sheet", refuse)


class TestFarCells:
    @pytest.mark.parametrize(
        ("cell", "span"),
        [
            ("XFD1048576", "A1:XFD1048576 (1,048,576 rows x 16,384 columns)"),
            ("XFD2", "A1:XFD2 (2 rows x 16,384 columns)"),
            ("A1048576", "A1:I1048576 (1,048,576 rows x 9 columns)"),
        ],
    )
    def test_far_cell_written_by_openpyxl(
        self, tmp_path: Path, no_calamine_grid: None, cell: str, span: str
    ) -> None:
        """A value far away (last cell, last column, last row) is refused before calamine builds its grid."""
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        for line in (HEADER, ROW):
            ws.append(line.strip().split(","))
        ws[cell] = "far away"
        wb.save(tmp_path / "far.xlsx")
        error = expect_input_error(tmp_path / "far.xlsx", f"sheet 'Sheet' spans {span}")
        assert "over the limit of 200,000 rows / 1,000 columns" in str(error)
        assert f"the value at {cell}" in str(error)

    @pytest.mark.parametrize(
        "extra",
        [
            '<row r="9"><c r="XFD9" t="inlineStr"><is><t>x</t></is></c></row>',  # dimension says A1:I2
            '<row r="1048576"><c t="inlineStr"><is><t>x</t></is></c></row>',  # row number only
            '<row r="3">' + "<c/>" * 1005 + '<c t="inlineStr"><is><t>x</t></is></c></row>',  # counted cells
            '<row r="3"><c t="inlineStr" r="XFD3"><is><t>x</t></is></c></row>',  # r not first
            '<row r="3"><c r="xfd3" t="inlineStr"><is><t>x</t></is></c></row>',  # lower case
            '<row r="3"><c r="A0001048576" t="inlineStr"><is><t>x</t></is></c></row>',  # leading zeros
            '<row r="3"><c\tr="XFD3" t="inlineStr"><is><t>x</t></is></c></row>',  # a tab
            PREFIXED_CELL,
            '<row r="3"><c r="A3" r="XFD3" t="n"><v>1</v></c></row>',  # calamine takes the last r
            '<row r="3"><c r="AAAAAAAAAAAAAAAAA99999999999999999999" t="n"><v>1</v></c></row>',
        ],
        ids=[
            "lying-dimension",
            "row-only",
            "counted",
            "late-r",
            "lower",
            "zeros",
            "tab",
            "prefix",
            "two-r",
            "absurd",
        ],
    )
    def test_far_cell_in_any_spelling(self, tmp_path: Path, no_calamine_grid: None, extra: str) -> None:
        """Every way calamine accepts to place a cell far away is found, whatever the dimension tag says."""
        path = sheet_xlsx(tmp_path / "odd.xlsx", extra, dimension="A1:I2")
        error = expect_input_error(path, "sheet 'Sheet'")
        assert "over the limit" in str(error) or "duplicate attribute" in str(error), str(error)

    def test_used_range_over_the_cell_limit(self, tmp_path: Path, no_calamine_grid: None) -> None:
        """Two cells within the row and column limits, spanning a 200-million-cell grid, are refused."""
        extra = (
            '<row r="3"><c r="ALL3" t="inlineStr"><is><t>x</t></is></c></row>'
            '<row r="200001"><c r="A200001" t="inlineStr"><is><t>x</t></is></c></row>'
        )
        path = sheet_xlsx(tmp_path / "area.xlsx", extra)
        expect_input_error(
            path, "(200,001 rows x 1,000 columns = 200,001,000 cells), over the limit of 16,000,000"
        )

    def test_row_limit_is_checked_before_calamine(self, tmp_path: Path, no_calamine_grid: None) -> None:
        """A custom row limit refuses a sheet from its cell references alone."""
        path = sheet_xlsx(tmp_path / "rows.xlsx", '<row r="13"><c r="A13" t="n"><v>1</v></c></row>')
        expect_input_error(
            path, "spans A1:I13 (13 rows x 9 columns), over the limit of 10 rows", Limits(max_rows=10)
        )

    def test_cell_refs_in_text_comments_and_empty_cells_are_not_values(self, tmp_path: Path) -> None:
        """Tags inside text or comments, and a formatted empty cell far away, do not block a normal sheet."""
        extra = '<!-- <c r="XFD1048576"><v>1</v></c> --><row r="1048576"><c r="XFD1048576" s="0"/></row>'
        path = sheet_xlsx(tmp_path / "fine.xlsx", extra)
        result = read(path)
        assert [inv.reference_code for inv in result.invoices] == ["H-1"]

    def test_wide_sheet_within_the_limits_is_read(self, tmp_path: Path) -> None:
        """A sheet wider than the quick check's rectangle (120 columns) is measured exactly and read."""
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.append([*HEADER.strip().split(","), *(f"extra{i}" for i in range(111))])
        ws.append([*ROW.strip().split(","), *("x" for _ in range(111))])
        wb.save(tmp_path / "wide.xlsx")
        result = read(tmp_path / "wide.xlsx")
        assert [inv.reference_code for inv in result.invoices] == ["H-1"]

    def test_far_merged_ranges_cost_only_the_rows_read(self, tmp_path: Path) -> None:
        """Hundreds of merged ranges reaching row 1,048,576 are marked on the rows read, not looped over."""
        merges = "".join(
            f'<mergeCell ref="{column_letter(i)}1:{column_letter(i)}1048576"/>' for i in range(300)
        )
        path = sheet_xlsx(
            tmp_path / "merged.xlsx", "", after=f'<mergeCells count="300">{merges}</mergeCells>'
        )
        result = read(path)
        assert len(result.errors) == 9 and all(e.row == 2 for e in result.errors), result.errors

    def test_duplicate_zip_entries_are_refused(self, tmp_path: Path) -> None:
        """Two zip entries with one name (readers may pick different ones) are refused."""
        path = good_xlsx(tmp_path / "twice.xlsx")
        with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("xl/worksheets/sheet1.xml", b"<x/>")
        expect_input_error(path, "two zip entries with the same name")


class TestHugeJson:
    def test_array_of_millions_of_items(self, tmp_path: Path) -> None:
        """A list of two million items is refused after decoding at most max_rows + 1 of them."""
        path = tmp_path / "many.json"
        path.write_bytes(b"[" + b"0," * 1_999_999 + b"0]")
        tracemalloc.start()
        try:
            expect_input_error(path, "has more than 1,000 objects", Limits(max_rows=1000))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 24 << 20, peak

    def test_json_lines_of_millions_of_lines(self, tmp_path: Path) -> None:
        """A JSON Lines file of a million {} lines is refused from its line count, before decoding."""
        path = tmp_path / "many.jsonl"
        path.write_bytes(b"{}\n" * 1_000_000)
        tracemalloc.start()
        try:
            expect_input_error(path, "has more than 200,000 objects (non-blank lines)")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, peak

    def test_invoice_with_millions_of_items(self, tmp_path: Path) -> None:
        """A native invoice whose items list is over the row limit is refused before it is flattened."""
        path = tmp_path / "items.json"
        path.write_bytes(b'{"customer": {}, "items": [' + b"{}," * 2000 + b"{}]}")
        expect_input_error(path, "has more than 1,000 rows", Limits(max_rows=1000))

    def test_limit_is_exact(self, tmp_path: Path) -> None:
        """A list of exactly max_rows objects is read; one more is refused."""
        row = {"reference_code": "H-1", "item.name": "P"}
        path = tmp_path / "three.json"
        path.write_text(" [\n " + ",\n ".join([json.dumps(row)] * 3) + " ]\n")
        content = read_json(path, limits=Limits(max_rows=3))
        assert content.flat is not None and [r.row for r in content.flat.rows] == [1, 2, 3]
        path.write_text("[" + ",".join([json.dumps(row)] * 4) + "]")
        expect_input_error(path, "has more than 3 objects", Limits(max_rows=3))

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            ("[{}, ]", "is not valid JSON: Expecting value: line 1 column 6"),
            ("[{} {}]", "is not valid JSON: Expecting ',' delimiter: line 1 column 5"),
            ("[{}", "is not valid JSON: Expecting ',' delimiter: line 1 column 4"),
            ("[" * 3 + "1" + "]" * 3, "row 1: expected a JSON object"),
            ('[{"a": ' + "[" * 70 + "]" * 70 + "}]", "nests deeper than 64 levels"),
        ],
    )
    def test_list_errors_stay_precise(self, tmp_path: Path, content: str, reason: str) -> None:
        """Decoding a list item by item keeps json's own messages and positions."""
        path = tmp_path / "bad.json"
        path.write_text(content)
        expect_input_error(path, reason)

    def test_json_lines_in_a_json_file_and_unicode_line_separators(self, tmp_path: Path) -> None:
        """Objects one per line in a .json file are JSON Lines; a U+2028 inside a string is not a line end."""
        rows = [
            {"reference_code": "H-1", "customer.company": "Enigma\u2028S.A.S.", "item.name": "P"},
            {"reference_code": "H-2", "customer.company": "Otra", "item.name": "Q"},
        ]
        path = tmp_path / "lines.json"
        path.write_text(
            "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n\n", encoding="utf-8"
        )
        content = read_json(path)
        assert content.flat is not None
        assert [r.row for r in content.flat.rows] == [1, 2]
        assert content.flat.rows[0].values[1] == "Enigma\u2028S.A.S."


def test_a_csv_of_too_many_cells_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    """Rows x columns is bounded too: tiny cells would otherwise fit over a hundred million cells in
    the file-size limit."""
    from daemon.intake.csv import read_csv

    path = tmp_path / "wide.csv"
    width = 500
    with path.open("w", encoding="utf-8") as fh:
        fh.write(",".join(f"c{i}" for i in range(width)) + "\n")
        row = ",".join("1" for _ in range(width)) + "\n"
        for _ in range(300):
            fh.write(row)
    with pytest.raises(InputError, match=r"has more than 100,000 cells \(200 rows of 500 columns so far\)"):
        read_csv(path, limits=Limits(max_cells=100_000))
    assert len(read_csv(path).rows) == 300
