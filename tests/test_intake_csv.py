"""CSV reader: encodings, delimiters, quoting, spreadsheet row numbers and separators round-trip."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import InputError
from daemon.intake.csv import detect_encoding, read_csv, sniff_delimiter
from daemon.intake.lookups import Lookups
from daemon.intake.parse import BadValue, TextParser


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


class TestEncodings:
    @pytest.mark.parametrize(
        ("encoding", "detected"),
        [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("utf-16", "utf-16")],
    )
    def test_encoding_is_detected(self, tmp_path: Path, encoding: str, detected: str) -> None:
        """UTF-8, UTF-8 with BOM, Windows-1252 and UTF-16 with BOM are detected and decoded."""
        path = _write(tmp_path / "a.csv", "Razón social;Ciudad\r\nPapelería Ñandú;Bogotá\r\n", encoding)
        assert detect_encoding(path) == detected
        table = read_csv(path)
        assert table.headers == ["Razón social", "Ciudad"]
        assert table.rows[0].values == ["Papelería Ñandú", "Bogotá"]

    def test_cp1252_fallback_is_reported(self, tmp_path: Path) -> None:
        """A file that is not UTF-8 is read as cp1252 and a warning says so."""
        table = read_csv(_write(tmp_path / "a.csv", "a,b\nñ,é\n", "cp1252"))
        assert any("Windows-1252" in w for w in table.warnings)

    def test_bom_is_removed_from_the_first_header(self, tmp_path: Path) -> None:
        """The UTF-8 BOM never ends up inside the first header."""
        table = read_csv(_write(tmp_path / "a.csv", "reference_code,x\nA,1\n", "utf-8-sig"))
        assert table.headers[0] == "reference_code"

    def test_profile_encoding_is_strict(self, tmp_path: Path) -> None:
        """A file that does not decode with the profile's encoding is refused, not mangled."""
        path = _write(tmp_path / "a.csv", "a,b\n\u00f1,\u00e9\n", "cp1252")
        with pytest.raises(InputError, match=r"a\.csv: is not valid utf-8"):
            read_csv(path, encoding="utf-8")

    def test_utf8_text_under_a_cp1252_profile_is_not_mangled(self, tmp_path: Path) -> None:
        """Valid UTF-8 with accents under a cp1252 profile is read as UTF-8, with a warning."""
        path = _write(tmp_path / "a.csv", "names;item\nJosé Peña Muñoz;Café molido\n", "utf-8")
        table = read_csv(path, encoding="cp1252")
        assert table.rows[0].values == ["José Peña Muñoz", "Café molido"]
        assert any("read as utf-8, not the profile's cp1252" in w for w in table.warnings)
        plain = read_csv(_write(tmp_path / "b.csv", "names;item\nJosé;Café\n", "cp1252"), encoding="cp1252")
        assert plain.rows[0].values == ["José", "Café"] and not plain.warnings


class TestDialect:
    @pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
    def test_delimiter_is_sniffed_from_the_header(self, tmp_path: Path, delimiter: str) -> None:
        """The delimiter among , ; tab | is taken from the header line."""
        text = delimiter.join(["Factura", "Valor, con IVA" if delimiter != "," else "Valor", "Cliente"])
        path = _write(tmp_path / "a.csv", text + "\n" + delimiter.join(["1", "2", "3"]) + "\n")
        assert read_csv(path).rows[0].values == ["1", "2", "3"]

    def test_sniffing_ignores_delimiters_inside_quotes(self) -> None:
        """A comma inside a quoted header does not outvote the semicolons."""
        assert sniff_delimiter('"Nombre, apellido";Ciudad;Valor') == ";"

    def test_row_numbers_count_records_like_a_spreadsheet(self, tmp_path: Path) -> None:
        """A quoted field spanning lines is one row; blank lines still count as rows."""
        text = 'a,b\n1,"two\nlines"\n\n3,x\n'
        rows = read_csv(_write(tmp_path / "a.csv", text)).rows
        assert [(r.row, r.values) for r in rows] == [(2, ["1", "two\nlines"]), (4, ["3", "x"])]

    def test_short_rows_are_padded_and_extra_fields_flagged(self, tmp_path: Path) -> None:
        """Missing trailing fields read as blank; extra non-empty fields make a row problem."""
        rows = read_csv(_write(tmp_path / "a.csv", "a,b,c\n1\n1,2,3,4\n1,2,3,,\n")).rows
        assert rows[0].values == ["1", "", ""] and rows[0].problems is None
        assert rows[1].problems and "4 fields but the header has 3" in rows[1].problems[-1]
        assert rows[2].problems is None

    def test_excel_sep_hint_line(self, tmp_path: Path) -> None:
        """Excel's "sep=;" first line sets the delimiter and is not a row (the header stays row 1)."""
        rows = read_csv(_write(tmp_path / "a.csv", "sep=;\r\na;b\r\n1,5;2\r\n")).rows
        assert [(r.row, r.values) for r in rows] == [(2, ["1,5", "2"])]

    def test_header_row_option_skips_title_rows(self, tmp_path: Path) -> None:
        """With header_row 3 the first two records are titles and row numbers stay physical."""
        rows = read_csv(_write(tmp_path / "a.csv", "Informe\n\na,b\n1,2\n"), header_row=3).rows
        assert [(r.row, r.values) for r in rows] == [(4, ["1", "2"])]


CELL = st.text(st.characters(codec="cp1252", exclude_characters="\r\x00"), max_size=12)


class TestRoundTrip:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        rows=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=8),
        delimiter=st.sampled_from([",", ";", "\t", "|"]),
        encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
        quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    )
    def test_any_table_survives_any_dialect(
        self, tmp_path: Path, rows: list[list[str]], delimiter: str, encoding: str, quoting: int
    ) -> None:
        """Cells with delimiters, quotes, newlines and accents come back identical with their row numbers."""
        rows = [r for r in rows if any(c.strip() for c in r)] or [["x", "y", "z"]]
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, lineterminator="\r\n")
        writer.writerow(["Código", "Descripción", "Valor"])
        writer.writerows(rows)
        path = tmp_path / "rt.csv"
        path.write_bytes(buf.getvalue().encode(encoding))
        table = read_csv(path, encoding=None if encoding != "cp1252" else "cp1252", delimiter=delimiter)
        assert table.headers == ["Código", "Descripción", "Valor"]
        assert [r.values for r in table.rows] == rows
        assert [r.row for r in table.rows] == list(range(2, len(rows) + 2))

    @settings(max_examples=200, deadline=None)
    @given(
        value=st.decimals(
            min_value=-(10**12), max_value=10**12, places=2, allow_nan=False, allow_infinity=False
        ),
        style=st.sampled_from([(",", "."), (",", ""), (".", ","), (".", ""), (",", " ")]),
    )
    def test_decimal_separators_round_trip(self, value: Decimal, style: tuple[str, str]) -> None:
        """A number written with any decimal/thousands pair parses back to the same Decimal."""
        decimal, thousands = style
        text = f"{value:,.2f}".replace(",", "\x00").replace(".", decimal).replace("\x00", thousands)
        parser = TextParser(decimal=decimal, thousands=thousands, lookups=Lookups.builtin())
        assert parser.decimal_value(text) == value

    def test_wrong_separator_is_a_clear_error(self) -> None:
        """A thousands separator that the profile does not declare is not silently dropped."""
        parser = TextParser(lookups=Lookups.builtin())
        with pytest.raises(BadValue, match="decimal point and no thousands separator"):
            parser.decimal_value("1,234.50")
