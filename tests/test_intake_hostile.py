"""Hostile and broken files: every failure is an InputError naming the file, never a crash or a hang."""

from __future__ import annotations

import contextlib
import io
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
from daemon.intake.validate import IntakeResult
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
