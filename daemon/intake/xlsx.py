"""XLSX reader: zip and XML screening, exact cell conversion, merged cells and uncached formulas.

Before anything parses the workbook, the zip directory is checked (entry count, declared
uncompressed size, compression ratio) and every member is read once through :mod:`zipfile`, which
stops at the declared size and verifies the CRC, so a lying or truncated archive is refused. Every
XML part is screened with ``defusedxml`` (a DTD or entity declaration is refused, never expanded).

Values are then read with python-calamine (Rust; about 10× faster than openpyxl). Cells become
text: an integral number is written without decimals (``900123456``, never ``900123456.0``), other
numbers with at most 15 significant digits (what Excel shows, so ``0.1+0.2`` is ``0.3``), dates as
``YYYY-MM-DD``, times as ``HH:MM:SS``. Merged cells (from the workbook's merge list) and formulas
without a cached value (found by a defusedxml scan of the sheet part, only when it has formulas)
are reported on their cells, never guessed.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from daemon.intake.rows import Limits, SourceRow, Table, input_error

__all__ = ["Workbook", "column_letter", "read_xlsx"]

_BIG_MEMBER_BYTES = 1 << 20
_CHUNK = 1 << 20
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")
_DTD_PATTERN = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_FORMULA_PATTERN = re.compile(rb"<f[ >/]")
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]{1,3})(\d+)")
_TWO_SHEETS = ("invoices", "items")
_MAX_FORMULA_REPORTS = 1000


@dataclass(slots=True)
class Workbook:
    """The table(s) read from a workbook: ``items`` is set for an invoices + items sheet pair."""

    head: Table
    items: Table | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Member:
    name: str
    has_formula: bool = False


def column_letter(index: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> A, 27 -> AB)."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _column_index(letters: str) -> int:
    value = 0
    for ch in letters:
        value = value * 26 + ord(ch) - 64
    return value - 1


# -- zip / XML screening ---------------------------------------------------------------------------


def _screen(path: Path, limits: Limits) -> dict[str, _Member]:
    with path.open("rb") as fh:
        magic = fh.read(8)
    if magic == _OLE2_MAGIC:
        raise input_error(path, "is an old binary .xls or an encrypted workbook; save it as .xlsx")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise input_error(
            path, f"is not a valid XLSX file (not a zip archive, or truncated): {exc}"
        ) from None
    members: dict[str, _Member] = {}
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_xlsx_members:
            raise input_error(
                path, f"has {len(infos):,} zip entries, over the limit of {limits.max_xlsx_members:,}"
            )
        total = sum(i.file_size for i in infos)
        if total > limits.max_xlsx_uncompressed_bytes:
            raise input_error(
                path,
                f"declares {total:,} bytes uncompressed, over the limit of "
                f"{limits.max_xlsx_uncompressed_bytes:,} (zip bomb?)",
            )
        names = {i.filename for i in infos}
        if "xl/workbook.xml" not in names:
            raise input_error(path, "is a zip archive but not an XLSX workbook (no xl/workbook.xml)")
        for info in infos:
            if info.flag_bits & 0x1:
                raise input_error(path, "is encrypted; save it without a password")
            if info.file_size > _BIG_MEMBER_BYTES and info.file_size > limits.max_xlsx_ratio * max(
                info.compress_size, 1
            ):
                raise input_error(
                    path,
                    f"member {info.filename} expands {info.file_size:,} bytes from {info.compress_size:,} "
                    f"(ratio over {limits.max_xlsx_ratio}; zip bomb?)",
                )
            members[info.filename] = _scan_member(path, zf, info)
    return members


def _scan_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    """Read one member fully (size and CRC checked by zipfile); screen XML parts for DTDs."""
    member = _Member(info.filename)
    is_xml = info.filename.endswith((".xml", ".rels", ".vml"))
    try:
        with zf.open(info) as fh:
            if not is_xml:
                while fh.read(_CHUNK):
                    pass
                return member
            chunk = fh.read(64 * 1024)
            _screen_prolog(path, info.filename, chunk)
            tail = b""
            while chunk:
                window = tail + chunk
                if _DTD_PATTERN.search(window):
                    raise input_error(
                        path, f"member {info.filename} declares a DTD or XML entities; refused (XML bomb?)"
                    )
                if not member.has_formula and _FORMULA_PATTERN.search(window):
                    member.has_formula = True
                tail = chunk[-16:]
                chunk = fh.read(_CHUNK)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise input_error(path, f"is corrupt or truncated (member {info.filename}: {exc})") from None
    return member


def _screen_prolog(path: Path, name: str, head: bytes) -> None:
    """Parse the XML prolog with defusedxml (DTDs forbidden) and check the start for markers."""
    if any(marker in head for marker in _DTD_MARKERS):
        raise input_error(path, f"member {name} declares a DTD or XML entities; refused (XML bomb?)")
    if not head.strip():
        return
    parser = DET.DefusedXMLParser(
        target=_StopAtRoot(), forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(head)
    except _RootSeen:
        return
    except DefusedXmlException:
        raise input_error(
            path, f"member {name} declares a DTD or XML entities; refused (XML bomb?)"
        ) from None
    except DET.ParseError as exc:
        if len(head) < 64 * 1024:
            raise input_error(path, f"member {name} is not well-formed XML: {exc}") from None
    # the root element starts beyond the first 64 KiB: the byte scan of the whole member still applies


class _RootSeen(Exception):
    """The root element started: the prolog (the only place a DTD may appear) is over."""


class _StopAtRoot:
    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootSeen

    def end(self, tag: str) -> None:  # pragma: no cover - never reached
        return None

    def data(self, data: str) -> None:
        return None

    def close(self) -> None:
        return None


def _sheet_parts(path: Path) -> dict[str, str]:
    """Sheet name -> zip member of its XML (from xl/workbook.xml and its relationships)."""
    out: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            book = DET.fromstring(zf.read("xl/workbook.xml"), forbid_dtd=True)
            rels_name = "xl/_rels/workbook.xml.rels"
            rels = DET.fromstring(zf.read(rels_name), forbid_dtd=True) if rels_name in zf.namelist() else None
    except (KeyError, zipfile.BadZipFile, DET.ParseError, DefusedXmlException, OSError):
        return out
    targets: dict[str, str] = {}
    if rels is not None:
        for rel in rels.iter(f"{_NS_PKG_REL}Relationship"):
            target = rel.get("Target", "")
            target = (
                target.lstrip("/")
                if target.startswith("/")
                else posixpath.normpath(posixpath.join("xl", target))
            )
            targets[rel.get("Id", "")] = target
    for sheet in book.iter(f"{_NS_MAIN}sheet"):
        rid = sheet.get(f"{_NS_REL}id", "")
        name = sheet.get("name")
        if name is not None and rid in targets:
            out[name] = targets[rid]
    return out


def _uncached_formulas(path: Path, part: str) -> dict[tuple[int, int], str]:
    """(0-based row, column) -> formula text of every formula cell without a cached value."""
    found: dict[tuple[int, int], str] = {}
    try:
        with zipfile.ZipFile(path) as zf, zf.open(part) as fh:
            for _event, elem in DET.iterparse(fh, events=("end",), forbid_dtd=True):
                if elem.tag != f"{_NS_MAIN}c":
                    if elem.tag == f"{_NS_MAIN}row":
                        elem.clear()
                    continue
                f = elem.find(f"{_NS_MAIN}f")
                if f is not None:
                    v = elem.find(f"{_NS_MAIN}v")
                    is_ = elem.find(f"{_NS_MAIN}is")
                    if (v is None or not (v.text or "").strip()) and is_ is None:
                        m = _CELL_REF.fullmatch(elem.get("r", ""))
                        if m:
                            key = (int(m.group(2)) - 1, _column_index(m.group(1)))
                            found[key] = "=" + (f.text or "").strip() if f.text else "=(shared formula)"
                            if len(found) >= _MAX_FORMULA_REPORTS:
                                break
                elem.clear()
    except (KeyError, zipfile.BadZipFile, DET.ParseError, DefusedXmlException, OSError) as exc:
        raise input_error(path, f"sheet part {part} cannot be parsed: {exc}") from None
    return found


# -- values -------------------------------------------------------------------------------------------


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = format(value, ".15g")
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


class _FloatTexts(dict[float, str]):
    """float -> text, computed once per distinct value (quantities and ids repeat)."""

    def __missing__(self, value: float) -> str:
        text = _float_text(value)
        if len(self) < 100_000:
            self[value] = text
        return text


def _cell_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return str(value)
    if kind is float:
        return _float_text(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is datetime:
        if value.time() == time(0):
            return str(value.date().isoformat())
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    if kind is date:
        return str(value.isoformat())
    if kind is time:
        return str(value.strftime("%H:%M:%S"))
    if kind is timedelta:
        seconds = int(value.total_seconds())
        if 0 <= seconds < 86_400:
            return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        return str(value)
    if value is None:
        return ""
    return str(value)


def _open_calamine(path: Path) -> Any:
    import python_calamine

    try:
        return python_calamine.CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # CalamineError, ZipError, XmlError, PasswordError...
        raise input_error(path, f"is not a readable XLSX workbook: {exc}") from None


def read_xlsx(
    path: Path,
    *,
    sheet: str | None = None,
    items_sheet: str | None = None,
    header_row: int = 1,
    limits: Limits | None = None,
) -> Workbook:
    """Read a workbook: one sheet (named, else the first) or an invoices + items sheet pair.

    The pair is used when ``items_sheet`` is given, or when no ``sheet`` is given and the workbook
    has sheets named ``invoices`` and ``items`` (any case).

    Raises:
        InputError: not an XLSX, corrupt, a zip/XML bomb, a missing sheet, empty, or over a limit.
    """
    limits = limits or Limits()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise input_error(path, f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise input_error(path, "is empty")
    if size > limits.max_file_bytes:
        raise input_error(path, f"is {size:,} bytes, over the limit of {limits.max_file_bytes:,} bytes")
    members = _screen(path, limits)
    book = _open_calamine(path)
    try:
        names: list[str] = list(book.sheet_names)
        folded = {n.casefold(): n for n in names}
        warnings: list[str] = []

        def find(name: str) -> str:
            found = folded.get(name.casefold())
            if found is None:
                raise input_error(path, f"has no sheet {name!r}; its sheets are {names}")
            return found

        if not names:
            raise input_error(path, "has no sheets")
        if items_sheet is not None:
            chosen = [find(sheet or _TWO_SHEETS[0]), find(items_sheet)]
        elif sheet is not None:
            chosen = [find(sheet)]
        elif all(n in folded for n in _TWO_SHEETS):
            chosen = [folded[n] for n in _TWO_SHEETS]
        else:
            chosen = [names[0]]
        ignored = [n for n in names if n not in chosen]
        if ignored:
            warnings.append(f"sheet(s) not read: {', '.join(repr(n) for n in ignored)}")
        parts = _sheet_parts(path)
        tables = [
            _read_sheet(path, book, name, parts.get(name), members, header_row, limits, two=len(chosen) == 2)
            for name in chosen
        ]
    finally:
        close = getattr(book, "close", None)
        if close is not None:
            close()
    for table in tables:
        warnings.extend(table.warnings)
        table.warnings = []
    if len(tables) == 2:
        return Workbook(head=tables[0], items=tables[1], warnings=warnings)
    return Workbook(head=tables[0], warnings=warnings)


def _read_sheet(
    path: Path,
    book: Any,
    name: str,
    part: str | None,
    members: dict[str, _Member],
    header_row: int,
    limits: Limits,
    *,
    two: bool,
) -> Table:
    try:
        sheet = book.get_sheet_by_name(name)
        total_width = int(sheet.total_width)
        total_height = int(sheet.total_height)
    except Exception as exc:
        raise input_error(path, f"sheet {name!r} cannot be read: {exc}") from None
    if total_width > limits.max_columns:
        raise input_error(
            path, f"sheet {name!r} has {total_width:,} columns, over the limit of {limits.max_columns:,}"
        )
    if total_height - header_row > limits.max_rows:
        raise input_error(
            path, f"sheet {name!r} has more than {limits.max_rows:,} data rows; split it into smaller files"
        )
    try:
        grid = sheet.to_python(skip_empty_area=False)
    except Exception as exc:
        raise input_error(path, f"sheet {name!r} cannot be read: {exc}") from None
    label = name if two else None
    if len(grid) < header_row or not any(_cell_text(v).strip() for v in grid[header_row - 1]):
        raise input_error(path, f"sheet {name!r} has no header in row {header_row}")
    header_cells = [_cell_text(v) for v in grid[header_row - 1]]
    while header_cells and not header_cells[-1].strip():
        header_cells.pop()
    width = len(header_cells)
    warnings: list[str] = []
    rows: list[SourceRow] = []
    beyond = False
    max_cell = limits.max_cell_chars
    floats = _FloatTexts()
    for r in range(header_row, len(grid)):
        raw = grid[r]
        values = [
            v if type(v) is str else floats[v] if type(v) is float else _cell_text(v) for v in raw[:width]
        ]
        if len(values) < width:
            values.extend([""] * (width - len(values)))
        if not any(values):
            continue
        if max(map(len, values)) > max_cell:
            raise input_error(path, f"sheet {name!r} row {r + 1} has a cell over {max_cell:,} characters")
        if not beyond and len(raw) > width and any(_cell_text(v).strip() for v in raw[width:]):
            beyond = True
        rows.append(SourceRow(r + 1, values))
    del grid
    if beyond:
        warnings.append(f"sheet {name!r}: cells right of the last header column are ignored")
    _mark_merged(sheet, rows, header_row, width, warnings, name)
    member = members.get(part or "")
    if member is not None and member.has_formula and part is not None:
        _mark_formulas(_uncached_formulas(path, part), rows, width)
    return Table(file=path.name, headers=header_cells, rows=rows, sheet=label, warnings=warnings)


def _mark_merged(
    sheet: Any, rows: list[SourceRow], header_row: int, width: int, warnings: list[str], name: str
) -> None:
    try:
        ranges = list(sheet.merged_cell_ranges or ())
    except Exception:  # pragma: no cover - older python-calamine without merge support
        return
    if not ranges:
        return
    by_number = {row.row: row for row in rows}
    for (r0, c0), (r1, c1) in ranges:
        first = f"{column_letter(c0)}{r0 + 1}"
        last = f"{column_letter(c1)}{r1 + 1}"
        if r1 + 1 < header_row:
            continue  # a merged title above the header
        if r0 + 1 <= header_row <= r1 + 1:
            warnings.append(f"sheet {name!r}: merged header cells {first}:{last}")
        for r in range(max(r0, header_row), r1 + 1):
            row = by_number.get(r + 1)
            if row is None:
                continue
            for c in range(c0, min(c1, width - 1) + 1):
                if (r, c) == (r0, c0):
                    continue
                row.problems = row.problems or {}
                row.problems[c] = (
                    f"cell is part of the merged range {first}:{last}: only {first} holds a value; "
                    "unmerge the cells and fill every row"
                )


def _mark_formulas(found: dict[tuple[int, int], str], rows: list[SourceRow], width: int) -> None:
    if not found:
        return
    by_index = {row.row - 1: row for row in rows}
    for (r, c), formula in found.items():
        row = by_index.get(r)
        if row is None or c >= width:
            continue
        row.problems = row.problems or {}
        row.problems[c] = (
            f"formula {formula} has no cached value (the file was saved by a program that does not "
            "calculate): open and save it in Excel or LibreOffice, or export values"
        )
        row.values[c] = formula
