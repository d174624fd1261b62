"""XLSX reader: zip and XML screening, exact cell conversion, merged cells and uncached formulas.

Before anything parses the workbook, the zip directory is checked (entry count, declared
uncompressed size, compression ratio) and every member is read once through :mod:`zipfile`, which
stops at the declared size and verifies the CRC, so a lying or truncated archive is refused. Every
XML part is screened with ``defusedxml`` (a DTD or entity declaration is refused, never expanded).

python-calamine holds a sheet as a full grid from A1 to its last used cell and aborts the process
when that grid cannot be allocated (one value at XFD1048576 asks for 17 billion cells), so the used
range of every sheet to be read is bounded (``max_rows``, ``max_columns``, ``max_xlsx_cells``)
before calamine opens it. The same pass over the XML checks that every cell tag is a plain
``<c r="A1"`` inside a safe rectangle; a sheet whose plain tags reach beyond it is bounded by two
more byte scans, and only a sheet with other tags is parsed (streaming, with calamine's own
placement rules). A ``<dimension>`` tag is not trusted: calamine places cells by their references.

Values are then read with python-calamine (Rust; about 10× faster than openpyxl). Cells become
text: an integral number is written without decimals (``900123456``, never ``900123456.0``), other
numbers with at most 15 significant digits (what Excel shows, so ``0.1+0.2`` is ``0.3``) and the
decimal separator asked for (``.`` or ``,``; never a thousands separator), dates as
``YYYY-MM-DD``, times as ``HH:MM:SS``. A number in a percent format is read as shown (0.19 in a
``0%`` cell is ``19``, by exact decimal arithmetic). Merged cells (from the workbook's merge list),
formulas without a cached value (found by a defusedxml scan of the sheet part, only when it has
formulas) and Excel error values such as #N/A (calamine reads them as blank) are reported on their
cells, never guessed. Error cells and percent styles are found by one expat pass over the sheet
part, run only when the screen saw an error-typed cell in it or the workbook has a percent style
that the part uses: a plain workbook pays only for a byte pattern in the screen.
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
import re
import zipfile
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.parsers import expat

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from daemon.errors import InputError
from daemon.intake.rows import HEADER_SCAN, ROW_PROBLEM, Limits, SourceRow, Table, input_error

__all__ = ["Workbook", "column_letter", "read_xlsx"]

_BIG_MEMBER_BYTES = 1 << 20
_CHUNK = 1 << 20
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype", b"<!entity")
_DTD_PATTERN = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_FORMULA_PATTERN = re.compile(rb"<f[ >/]")
_ERROR_HINT = re.compile(rb"""e["']""")  # cheap first pass: rare in sheet XML, found at C speed
_ERROR_TYPE = re.compile(rb"""t\s*=\s*["']e["']""")  # an error-typed cell: ``<c r="B2" t="e">``
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_CELL_REF = re.compile(r"([A-Z]{1,3})(\d+)")
_ANY_REF = re.compile(r"([A-Za-z]+)(\d+)", re.ASCII)
# A hidden row's tag (r= before or after hidden=); only searched in a chunk that says hidden=.
_HIDDEN_ROW = re.compile(rb"""<row\b(?=[^>]*\bhidden=["'](?:1|true)["'])[^>]*?\br=["'](\d+)["']""")
_TAIL = 64  # context a cell pattern below may need on either side; chunks overlap by twice that
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_LATE_R = re.compile(rb"r(?=[\s=])(?<=\sr)(?<!<c r)(?<!<row r)")
_PLAIN_FORM = re.compile(rb'<c(?=[\s/>])(?! r="[A-Z]{1,3}[1-9]\d{0,6}")')
_PLAIN_COLUMN = re.compile(rb'<c r="([A-Z]{1,3})[1-9]')
_PLAIN, _FAR, _ODD = "plain", "far", "odd"
_TWO_SHEETS = ("invoices", "items")
_MAX_FORMULA_REPORTS = 1000
_MAX_ERROR_CHARS = 40  # the longest error value kept from a cell (Excel's are at most 14 characters)
_STYLES = "xl/styles.xml"  # where Excel and python-calamine take the cell styles from
_PERCENT_FORMATS = frozenset({9, 10})  # built-in number formats 0% and 0.00%
_FORMAT_LITERALS = re.compile(r'"[^"]*(?:"|$)|\\.?|[_*].?|\[[^\]]*(?:\]|$)', re.DOTALL)
"""What a number format code shows literally: "text", \\x, _x (a space as wide as x), *x (fill), [..]."""
_CALAMINE_ERRORS = frozenset(
    {"#DIV/0!", "#N/A", "#NAME?", "#NULL!", "#NUM!", "#REF!", "#VALUE!", "#GETTING_DATA"}
)
"""The error values python-calamine reads (as blank); any other stops it reading the sheet."""


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
    has_error: bool = False
    """Some cell may be typed ``t="e"`` (an Excel error such as #N/A), which calamine reads as blank."""
    cells: str = _PLAIN
    """What the cell screen saw: _PLAIN, _FAR (plain tags, some outside the rectangle) or _ODD."""
    hidden_rows: set[int] = field(default_factory=set)
    """Rows (1-based) hidden in Excel, by hand or by a filter (``<row r="3" hidden="1">``)."""


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


def _screen(path: Path, limits: Limits, cells: _CellScreen) -> dict[str, _Member]:
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
        if len(names) != len(infos):
            raise input_error(path, "has two zip entries with the same name; refused (tampered archive?)")
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
            members[info.filename] = _scan_member(path, zf, info, cells)
    return members


def _scan_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, cells: _CellScreen) -> _Member:
    """Read one member fully (size and CRC checked by zipfile); screen XML parts for DTDs and odd cells.

    Every member that looks like XML is screened for cells, whatever its name: a sheet is read from
    whichever member the workbook's relationships name.
    """
    member = _Member(info.filename)
    is_xml = info.filename.endswith((".xml", ".rels", ".vml"))
    try:
        with zf.open(info) as fh:
            chunk = fh.read(64 * 1024)
            if is_xml:
                _screen_prolog(path, info.filename, chunk)
            may_hold_cells = info.filename.endswith(".xml") or _looks_like_xml(chunk)
            if not is_xml and not may_hold_cells:
                while fh.read(_CHUNK):
                    pass
                return member
            if may_hold_cells and b"\x00" in chunk[:256]:
                member.cells = _ODD  # not ASCII-compatible (UTF-16): the byte patterns cannot see its tags
                member.has_error = True  # nor an error type: the exact scan decides
            tail = b""
            while chunk:
                window = tail + chunk
                if is_xml and _DTD_PATTERN.search(window):
                    raise input_error(
                        path, f"member {info.filename} declares a DTD or XML entities; refused (XML bomb?)"
                    )
                if is_xml and not member.has_formula and _FORMULA_PATTERN.search(window):
                    member.has_formula = True
                if (
                    may_hold_cells
                    and not member.has_error
                    and _ERROR_HINT.search(window)
                    and _ERROR_TYPE.search(window)
                ):
                    member.has_error = True
                if may_hold_cells and b"hidden=" in window:
                    member.hidden_rows.update(
                        int(m.group(1)) for m in _HIDDEN_ROW.finditer(window) if m.group(1) is not None
                    )
                following = fh.read(_CHUNK)
                if may_hold_cells and member.cells != _ODD:
                    member.cells = cells.screen(window, member.cells, first=not tail, last=not following)
                tail = window[-2 * _TAIL :]
                chunk = following
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise input_error(path, f"is corrupt or truncated (member {info.filename}: {exc})") from None
    return member


def _looks_like_xml(head: bytes) -> bool:
    """Whether a member starts like XML text (after a byte order mark and whitespace)."""
    for bom in (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff"):
        head = head.removeprefix(bom)
    return head[:512].lstrip(b" \t\r\n\x00")[:1] == b"<"


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


def _sheet_parts(path: Path) -> dict[str, tuple[str, ...]]:
    """Sheet name -> the zip member(s) its XML may be read from (from xl/workbook.xml and its rels).

    The first is the target resolved as a path relative to ``xl/``; the others are the readings
    other tools take of an odd target (``xl/...`` or ``/...`` taken as from the archive root).
    """
    out: dict[str, tuple[str, ...]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            book = DET.fromstring(zf.read("xl/workbook.xml"), forbid_dtd=True)
            rels_name = "xl/_rels/workbook.xml.rels"
            rels = DET.fromstring(zf.read(rels_name), forbid_dtd=True) if rels_name in zf.namelist() else None
    except (KeyError, zipfile.BadZipFile, DET.ParseError, DefusedXmlException, OSError):
        return out
    targets: dict[str, tuple[str, ...]] = {}
    if rels is not None:
        for rel in rels.iter(f"{_NS_PKG_REL}Relationship"):
            target = rel.get("Target", "")
            if target.startswith("/"):
                readings = [target.lstrip("/")]
            else:
                readings = [posixpath.normpath(posixpath.join("xl", target)), target]
            readings += [f"xl/{target.lstrip('/')}"]
            targets[rel.get("Id", "")] = tuple(dict.fromkeys(readings))
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


def _shows_percent(code: str) -> bool:
    """Whether a number format code shows a number as a percent (x 100): a ``%`` outside literals."""
    return "%" in _FORMAT_LITERALS.sub("", code)


def _percent_styles(path: Path, members: dict[str, _Member]) -> frozenset[int]:
    """Indexes of the cell styles (``cellXfs`` of xl/styles.xml) whose number format is a percent.

    A style's ``numFmtId`` names a custom format of ``numFmts`` when one has that id, else a
    built-in one (9 ``0%`` and 10 ``0.00%`` are the percent ones). One streaming expat pass
    (DTDs refused); elements are matched by local name, as python-calamine does.
    """
    if _STYLES not in members:
        return frozenset()
    styles = _Styles()
    parser = _xml_parser()
    parser.StartElementHandler = styles.start
    parser.EndElementHandler = styles.end
    _feed(path, _STYLES, parser, f"member {_STYLES}")
    custom = styles.custom
    return frozenset(
        index
        for index, fmt in enumerate(styles.formats)
        if (_shows_percent(custom[fmt]) if fmt in custom else fmt in _PERCENT_FORMATS)
    )


class _Styles:
    """Expat handlers collecting ``numFmts`` (id -> format code) and each ``cellXfs`` style's format."""

    def __init__(self) -> None:
        self.custom: dict[int, str] = {}
        self.formats: list[int] = []
        self.section: str | None = None

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        local = tag.rpartition(":")[2]
        if local in ("numFmts", "cellXfs"):
            self.section = local
        elif local == "numFmt" and self.section == "numFmts":
            self.custom[_number(attrs.get("numFmtId"))] = attrs.get("formatCode", "")
        elif local == "xf" and self.section == "cellXfs":
            self.formats.append(_number(attrs.get("numFmtId")))

    def end(self, tag: str) -> None:
        if tag.rpartition(":")[2] == self.section:
            self.section = None


def _place(ref: str) -> tuple[int, int]:
    """(0-based row, column) of a cell reference as python-calamine reads it; (-1, -1) if it cannot.

    A reference calamine cannot place makes it refuse the sheet, and :func:`_check_extent` names
    it first for any part whose tags are not all plain.
    """
    found = _ANY_REF.fullmatch(ref)
    if found is None:
        return -1, -1
    letters = found.group(1)
    column = _column_index(letters.upper()) if len(letters) <= 12 else 26**12
    return _row_index(found.group(2)), column


def _row_index(digits: str) -> int:
    """0-based row of a row number as written (leading zeros allowed; -1 if it is not a number)."""
    if not (digits.isascii() and digits.isdigit()):
        return -1
    digits = digits.lstrip("0")
    if not digits:
        return -1
    return (int(digits) if len(digits) <= 18 else 10**18) - 1


def _number(text: str | None) -> int:
    """A style or format index as python-calamine reads one: ASCII digits, anything else is 0."""
    return int(text) if text is not None and text.isascii() and text.isdigit() else 0


@dataclass(slots=True)
class _Marks:
    """What a scan of a sheet part found (0-based row, column): see :func:`_scan_marks`."""

    errors: dict[tuple[int, int], str] = field(default_factory=dict)
    percents: list[tuple[int, int]] = field(default_factory=list)
    unreadable: tuple[str, str] | None = None
    """(reference, value) of the first error value python-calamine cannot read, wherever it is."""


class _MarkCells:
    """Expat handlers that place cells as python-calamine does (see :class:`_Extent`) and mark them.

    Marked, in rows from ``first_row`` and columns before ``width``: every error cell (``t="e"``
    with a value; calamine reads it as blank) and every cell whose style (``s``, else style 0, as
    Excel shows it) is in ``percent``. Whether a percent cell holds a number is for the caller.

    A callback per element is most of the cost, so a part whose cell tags the screen found all
    plain (each ``<c r="A1"``, no later ``r``: see :class:`_CellScreen`) is read with a start
    handler only (cells placed by their own reference); end and text handlers are set only while
    the ``<v>`` of an error cell is read. Other parts follow rows and cells as :class:`_Extent` does.
    """

    def __init__(self, parser: Any, percent: frozenset[int], first_row: int, width: int) -> None:
        self.parser = parser
        self.marks = _Marks()
        self.percent = percent
        self.percent_keys = frozenset(str(i) for i in percent)
        self.default_percent = 0 in percent
        self.first_row = first_row
        self.width = width
        self.row = 0
        self.column = 0
        self.in_data = 0
        self.in_cell = False
        self.depth = 0
        self.error: tuple[int, int, str | None] | None = None  # the error cell being read
        self.text: list[str] = []  # the start of the text of its <v>
        self.size = 0

    def start_plain(self, tag: str, attrs: dict[str, str]) -> None:
        """Start handler for a part with plain cell tags only (no end handler needed)."""
        if tag == "c":
            if not self.in_data:
                return
            ref = attrs.get("r")
            if attrs.get("t") == "e":
                self.error = (*_place(ref or ""), ref)
                return
            self.error = None
            if self.percent and self._percent_style(attrs.get("s")):
                self._percent_at(*_place(ref or ""))
        elif self.error is not None:
            if tag.rpartition(":")[2] == "v":
                self._read_value(self.end_value_plain)
        elif not self.in_data and tag.rpartition(":")[2] == "sheetData":
            self.in_data = 1

    def end_value_plain(self, tag: str) -> None:
        """End handler set only while the ``<v>`` of an error cell is read (plain parts)."""
        self.parser.EndElementHandler = None
        self._value_read()

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        """Start handler for any part: cells without a reference are placed by counting."""
        if self.in_cell:
            self.depth += 1
            if self.depth == 1 and self.error is not None and tag.rpartition(":")[2] == "v":
                self._read_value(self.end)
            return
        local = tag.rpartition(":")[2]
        if local == "c":
            if not self.in_data:
                return
            self.in_cell = True
            self.depth = 0
            ref = attrs.get("r")
            if ref is None:
                row, column = self.row, self.column
            else:
                row, column = _place(ref)
                self.column = column
            self._cell(row, column, ref, attrs)
        elif local == "sheetData":
            self.in_data += 1
        elif local == "row" and self.in_data:
            ref = attrs.get("r")
            if ref is not None:
                self.row = _row_index(ref)

    def end(self, tag: str) -> None:
        """End handler for any part (see :meth:`start`)."""
        if self.in_cell:
            if self.depth:
                self.depth -= 1
                if self.depth == 0 and self.parser.CharacterDataHandler is not None:
                    self._value_read()
                return
            self.in_cell = False
            self.error = None
            self.column += 1
            return
        local = tag.rpartition(":")[2]
        if local == "sheetData":
            self.in_data = max(0, self.in_data - 1)
        elif self.in_data and local == "row":
            self.row += 1
            self.column = 0

    def _cell(self, row: int, column: int, ref: str | None, attrs: dict[str, str]) -> None:
        if attrs.get("t") == "e":
            self.error = (row, column, ref)
            return
        self.error = None
        if self.percent and self._percent_style(attrs.get("s")):
            self._percent_at(row, column)

    def _percent_style(self, key: str | None) -> bool:
        """Whether a cell's ``s`` attribute names a percent style (none: style 0)."""
        if key is None:
            return self.default_percent
        if key in self.percent_keys:
            return True
        # another style, unless written oddly (leading zeros; not digits, which is style 0)
        odd = not (key.isascii() and key.isdigit()) or key[:1] == "0"
        return odd and _number(key) in self.percent

    def _percent_at(self, row: int, column: int) -> None:
        if row >= self.first_row and 0 <= column < self.width:
            self.marks.percents.append((row, column))

    def _read_value(self, end: Callable[[str], None]) -> None:
        """Collect the text of the error cell's ``<v>`` until ``end`` sees the element close."""
        self.text = []
        self.size = 0
        self.parser.CharacterDataHandler = self._data
        self.parser.EndElementHandler = end

    def _data(self, text: str) -> None:
        if self.size <= _MAX_ERROR_CHARS:  # an error value is a short word: keep no more
            self.text.append(text)
            self.size += len(text)

    def _value_read(self) -> None:
        self.parser.CharacterDataHandler = None
        if self.error is None:  # pragma: no cover - _read_value is only called for an error cell
            return
        row, column, ref = self.error
        self.error = None
        value = "".join(self.text)[:_MAX_ERROR_CHARS]
        if not value:
            return  # an empty cached value: blank to calamine (a formula without one is reported apart)
        if value not in _CALAMINE_ERRORS and self.marks.unreadable is None:
            self.marks.unreadable = ((ref or f"{_letters(column)}{row + 1}")[:40], value)
        if row >= self.first_row and 0 <= column < self.width:
            self.marks.errors[row, column] = value


def _uses_styles(path: Path, part: str, styles: frozenset[int]) -> bool:
    """Whether a cell of sheet part ``part`` may have one of ``styles`` (a byte scan, no parse).

    True when style 0 is one of them (a cell without ``s`` has it) or an ``s`` attribute names
    one (leading zeros allowed); the exact scan then decides.
    """
    if 0 in styles or len(styles) > 1000:
        return True
    numbers = "|".join(str(i) for i in sorted(styles))
    pattern = re.compile(rf"""\ss\s*=\s*["']0*(?:{numbers})["']""".encode())
    try:
        with zipfile.ZipFile(path) as zf:
            return any(pattern.search(window) for window, _, _ in _windows(zf, part))
    except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError):
        return True  # the exact scan reports what is wrong


def _scan_marks(
    path: Path, target: _Sheet, part: str, percent: frozenset[int], first_row: int, width: int
) -> _Marks:
    """One streaming expat pass over sheet part ``part``: its error cells and percent-styled cells.

    Only run when the screen saw an error-typed cell in the part or the workbook has a percent
    style. DTDs and entity declarations are refused, as everywhere in this module.
    """
    parser = _xml_parser()
    cells = _MarkCells(parser, percent, first_row, width)
    if target.member is not None and target.member.cells != _ODD:
        parser.StartElementHandler = cells.start_plain
    else:
        parser.StartElementHandler = cells.start
        parser.EndElementHandler = cells.end
    _feed(path, part, parser, f"sheet {target.name!r} (part {part})")
    return cells.marks


# -- used range ----------------------------------------------------------------------------------


class _CellScreen:
    """The cheap pass: is every cell tag of an XML part a plain ``<c r="A1"`` near A1?

    python-calamine places a cell by its ``r`` attribute (the last one when repeated, any prefix,
    any attribute order, lower-case letters and leading zeros accepted), else by counting rows and
    cells. A part is plain when every cell tag is unprefixed and starts with ``<c r="`` and a plain
    reference (up to three capitals, a row number without leading zeros) inside a rectangle of
    ``rows`` x ``columns`` (both within the limits, their product within ``max_xlsx_cells``), and no
    tag has a later ``r`` attribute: then no cell can lie outside the rectangle whatever the rows
    say. A part with plain tags only, some outside the rectangle, is far; any other is odd.
    :func:`_check_extent` bounds a far part with two more byte scans and parses an odd one. Text
    that merely looks like such a tag only costs that work.
    """

    def __init__(self, limits: Limits, header_row: int) -> None:
        self.rows = min(header_row + limits.max_rows, limits.max_xlsx_cells)
        self.columns = max(1, min(limits.max_columns, limits.max_xlsx_cells // max(self.rows, 1)))
        self.near = _plain_cell_pattern(self.rows, self.columns)

    def screen(self, window: bytes, seen: str, *, first: bool, last: bool) -> str:
        """What ``window`` makes of a part that was ``seen`` (_PLAIN or _FAR) so far."""
        if _finds(_PREFIXED_CELL, window, first=first, last=last) or _finds(
            _LATE_R, window, first=first, last=last
        ):
            return _ODD
        if seen == _PLAIN and not _finds(self.near, window, first=first, last=last):
            return _PLAIN
        return _ODD if _finds(_PLAIN_FORM, window, first=first, last=last) else _FAR


def _finds(pattern: re.Pattern[bytes], window: bytes, *, first: bool, last: bool) -> bool:
    """Whether ``pattern`` matches from a position of ``window`` that is not in its overlaps.

    Consecutive windows overlap by ``2 * _TAIL`` bytes; a match is judged in the one window where
    it starts at least ``_TAIL`` bytes from either end (unless at the very start or end of the part),
    so it always has enough context, however the part was cut into chunks.
    """
    found = pattern.search(window, 0 if first else _TAIL)
    return found is not None and (last or found.start() < len(window) - _TAIL)


@functools.lru_cache(maxsize=8)
def _plain_cell_pattern(rows: int, columns: int) -> re.Pattern[bytes]:
    """A ``<c`` tag whose first attribute is not ``r="<letters><digits>"`` within the rectangle."""
    letters = _at_most(column_letter(columns - 1), "A", "A", "Z", "[A-Z]")
    digits = _at_most(str(rows), "1", "0", "9", "\\d")
    return re.compile(f'<c(?=[\\s/>])(?! r="(?:{letters})(?:{digits})")'.encode())


def _at_most(top: str, first: str, low: str, high: str, any_char: str) -> str:
    """Regex alternatives for the strings from ``first`` up to ``top``, a shorter string being smaller.

    That order holds for column letters (bijective base 26) and for row numbers written without
    leading zeros (``first`` is the smallest leading character, ``low`` the smallest later one).
    """
    size = len(top)
    alternatives = [f"[{first}-{high}]{any_char}{{0,{size - 2}}}"] if size > 1 else []
    for i, ch in enumerate(top):
        floor = first if i == 0 else low
        if ch > floor:
            rest = f"{any_char}{{{size - i - 1}}}" if i < size - 1 else ""
            alternatives.append(f"{re.escape(top[:i])}[{floor}-{chr(ord(ch) - 1)}]{rest}")
    alternatives.append(re.escape(top))
    return "|".join(alternatives)


class _Refuse(Exception):
    """The scan met a cell beyond a limit, or a reference calamine cannot place: ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Extent:
    """Expat handlers that follow python-calamine's placement of cells in a sheet part.

    Inside ``<sheetData>``: ``<row r>`` sets the row, the end of a row moves to the next row and
    column A, ``<c r>`` sets the cell (and the column), a ``<c>`` without ``r`` takes the running
    row and column, and every cell end moves one column right. A cell with a child element other
    than ``<f>`` counts as used (calamine keeps only cells with a value; an empty ``<v>`` counting
    too is a safe overestimate). The first used cell that takes the used range over a limit raises
    :class:`_Refuse`.
    """

    def __init__(self, name: str, limits: Limits, header_row: int) -> None:
        self.name = name
        self.limits = limits
        self.header_row = header_row
        self.max_row = 0
        self.max_column = 0
        self.row = 0
        self.column = 0
        self.in_data = 0
        self.cell: tuple[int, int] | None = None
        self.ref: str | None = None
        self.depth = 0
        self.used = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        local = tag.rpartition(":")[2]
        if self.cell is not None:
            self.depth += 1
            if self.depth == 1 and local != "f":  # a formula alone leaves the cell empty
                self.used = True
            return
        if local == "sheetData":
            self.in_data += 1
        elif not self.in_data:
            return
        elif local == "row":
            ref = attrs.get("r")
            if ref is not None:
                self.row = self._row_number(ref) - 1
        elif local == "c":
            self.ref = attrs.get("r")
            if self.ref is None:
                self.cell = (self.row, self.column)
            else:
                self.cell = self._cell(self.ref)
                self.column = self.cell[1]
            self.depth = 0
            self.used = False

    def end(self, tag: str) -> None:
        if self.cell is not None:
            if self.depth:
                self.depth -= 1
                return
            if self.used:
                self._use(*self.cell, self.ref)
            self.cell = None
            self.column += 1
            return
        local = tag.rpartition(":")[2]
        if local == "sheetData":
            self.in_data = max(0, self.in_data - 1)
        elif self.in_data and local == "row":
            self.row += 1
            self.column = 0

    def _row_number(self, ref: str) -> int:
        digits = ref.lstrip("0")
        if not ref.isascii() or not ref.isdigit() or not digits:
            raise _Refuse(f"sheet {self.name!r} has a row numbered {ref[:40]!r}, not a number from 1")
        return int(digits) if len(digits) <= 18 else 10**18

    def _cell(self, ref: str) -> tuple[int, int]:
        found = _ANY_REF.fullmatch(ref)
        if found is None:
            raise _Refuse(f"sheet {self.name!r} has a cell reference {ref[:40]!r} that is not of the form A1")
        letters, digits = found.groups()
        column = _column_index(letters.upper()) if len(letters) <= 12 else 26**12
        return self._row_number(digits) - 1, column

    def _use(self, row: int, column: int, ref: str | None) -> None:
        self.max_row = max(self.max_row, row + 1)
        self.max_column = max(self.max_column, column + 1)
        limits = self.limits
        rows, columns = self.max_row, self.max_column
        size = f"{_count(rows, 'row')} x {_count(columns, 'column')}"
        if rows - self.header_row > limits.max_rows or columns > limits.max_columns:
            over = f"{limits.max_rows:,} rows / {limits.max_columns:,} columns"
        elif rows * columns > limits.max_xlsx_cells:
            over = f"{limits.max_xlsx_cells:,} cells"
            size += f" = {rows * columns:,} cells"
        else:
            return
        where = ref[:40] if ref is not None else f"{_letters(column)}{row + 1}"
        raise _Refuse(
            f"sheet {self.name!r} spans A1:{_letters(columns - 1)}{rows} ({size}), over the limit of "
            f"{over} (the value at {where} is beyond it): delete stray cells outside the data, "
            "or split the file"
        )


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" if n == 1 else f"{n:,} {what}s"


def _letters(index: int) -> str:
    """Column letters, shortened for absurd indexes (a reference can be any length)."""
    return column_letter(index) if index < 26**6 else f"column {index + 1:,}"


def _forbid_dtd(*_args: object) -> None:
    raise _Refuse("declares a DTD or XML entities; refused (XML bomb?)")


def _xml_parser() -> Any:
    """A streaming expat parser that refuses DTDs and entity declarations (never expands one)."""
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _forbid_dtd
    parser.EntityDeclHandler = _forbid_dtd
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    return parser


def _feed(path: Path, member: str, parser: Any, where: str, *, name_refusals: bool = True) -> None:
    """Stream zip ``member`` through ``parser`` (from :func:`_xml_parser`, handlers set).

    Malformed XML and unreadable members become an InputError naming ``where``; so does a
    refusal by a handler (:class:`_Refuse`), prefixed by ``where`` unless ``name_refusals`` is
    False, in which case the refusal propagates for the caller to word.
    """
    try:
        with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
            while chunk := fh.read(_CHUNK):
                parser.Parse(chunk, False)
            parser.Parse(b"", True)
    except _Refuse as exc:
        if not name_refusals:
            raise
        raise input_error(path, f"{where} {exc.message}") from None
    except expat.ExpatError as exc:
        raise input_error(path, f"{where} is not well-formed XML: {exc}") from None
    except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise input_error(path, f"{where} cannot be read: {exc}") from None


def _check_extent(
    path: Path, name: str, parts: Iterable[str], members: dict[str, _Member], header_row: int, limits: Limits
) -> None:
    """Refuse sheet ``name`` when a far or odd part of it has a cell beyond a limit (before calamine).

    ``parts`` are the members the sheet may be read from; when none of them is in the archive,
    every far or odd member is checked, since which part calamine will read is then unknown.
    """
    keys = {_member_key(p) for p in parts}
    found = [m for m in members if _member_key(m) in keys]
    for member in found or list(members):
        seen = members[member].cells
        try:
            if seen == _PLAIN or (seen == _FAR and _far_within(path, member, header_row, limits)):
                continue
            extent = _Extent(name, limits, header_row)
            parser = _xml_parser()
            parser.StartElementHandler = extent.start
            parser.EndElementHandler = extent.end
            # the extent's refusals already name the sheet and cell
            _feed(path, member, parser, f"sheet {name!r} (part {member})", name_refusals=False)
        except _Refuse as exc:
            raise input_error(path, exc.message) from None
        except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # _far_within's reads
            raise input_error(path, f"sheet {name!r} (part {member}) cannot be read: {exc}") from None


def _far_within(path: Path, member: str, header_row: int, limits: Limits) -> bool:
    """Whether a far part (plain cell tags only) surely stays within the limits.

    One scan collects the column letters of every cell; a second looks for a row past what the
    widest column leaves of ``max_xlsx_cells``. Empty cells count too, so False only means the
    exact parse must decide.
    """
    letters: set[bytes] = set()
    with zipfile.ZipFile(path) as zf:
        for window, _, _ in _windows(zf, member):
            letters.update(_PLAIN_COLUMN.findall(window))
        columns = max((_column_index(x.decode()) + 1 for x in letters), default=1)
        if columns > limits.max_columns:
            return False
        rows = min(header_row + limits.max_rows, limits.max_xlsx_cells // columns)
        if rows < 1:
            return False
        beyond = _plain_cell_pattern(rows, _column_index("ZZZ") + 1)
        return not any(
            _finds(beyond, window, first=first, last=last) for window, first, last in _windows(zf, member)
        )


def _windows(zf: zipfile.ZipFile, member: str) -> Iterator[tuple[bytes, bool, bool]]:
    """(window, first, last) over a member, windows overlapping by ``2 * _TAIL`` bytes (see _finds)."""
    with zf.open(member) as fh:
        tail = b""
        chunk = fh.read(_CHUNK)
        while chunk:
            following = fh.read(_CHUNK)
            window = tail + chunk
            yield window, not tail, not following
            tail = window[-2 * _TAIL :]
            chunk = following


def _member_key(name: str) -> str:
    return name.replace("\\", "/").lstrip("/").casefold()


# -- values -------------------------------------------------------------------------------------------


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = format(value, ".15g")
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text


class _FloatTexts(dict[float, str]):
    """float -> text, computed once per distinct value (quantities and ids repeat).

    With ``decimal`` "," a fraction is written with a decimal comma (``1234,56``); whole numbers
    have no separator either way, and no thousands separator is ever written.
    """

    def __init__(self, decimal: str = ".") -> None:
        super().__init__()
        self.comma = decimal == ","

    def __missing__(self, value: float) -> str:
        text = _float_text(value)
        if self.comma:
            text = text.replace(".", ",")
        if len(self) < 100_000:
            self[value] = text
        return text


def _percent_text(value: float | int, decimal: str) -> str:
    """A number shown as a percent, as shown: the value x 100, exact (0.125 -> ``12.5``)."""
    text = _float_text(value) if type(value) is float else str(value)
    shown = format(Decimal(text).scaleb(2), "f")
    return shown.replace(".", ",") if decimal == "," else shown


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
    except BaseException as exc:  # CalamineError, ZipError, XmlError, PasswordError, a Rust panic
        _reraise_interrupts(exc)
        raise input_error(path, f"is not a readable XLSX workbook: {exc}") from None


def _reraise_interrupts(exc: BaseException) -> None:
    """Let Ctrl-C and exits through; anything else from calamine is a broken file.

    A Rust panic inside python-calamine surfaces as pyo3's ``PanicException``, which derives from
    ``BaseException``: catching only ``Exception`` would let one hostile workbook stop the daemon.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        raise exc


def read_xlsx(
    path: Path,
    *,
    sheet: str | None = None,
    items_sheet: str | None = None,
    header_row: int | None = 1,
    is_header: Callable[[list[str]], int] | None = None,
    limits: Limits | None = None,
    decimal: str = ".",
    percent_ok: Callable[[str], bool] | None = None,
    date_ok: Callable[[str], bool] | None = None,
) -> Workbook:
    """Read a workbook: one sheet (named, else the first visible one) or an invoices + items pair.

    The pair is used when ``items_sheet`` is given, or when no ``sheet`` is given and the workbook
    has sheets named ``invoices`` and ``items`` (any case). Without either, the first sheet that is
    neither hidden nor a chart is read (the first sheet when every one is). Other sheets are listed
    in a warning. ``header_row`` None finds the header of each sheet: the first non-blank row
    ``is_header`` accepts among the first :data:`~daemon.intake.rows.HEADER_SCAN` non-blank ones
    (report titles above it), else the first non-blank row.

    Cells are text as described in the module docstring. A number shown as a percent (``0%``,
    ``0.00%`` or a custom format with a ``%``) is read as shown: 0.1 is ``10``. With ``decimal``
    "," a number that is not whole is written with a decimal comma (``1234,56``), never with a
    thousands separator, for a profile that parses ``decimal=","``. An Excel error value (#N/A,
    #DIV/0!...), typed or the cached result of a formula, is kept as its text and reported on its
    cell in ``SourceRow.problems``. So is a date cell under a header ``date_ok`` refuses (an
    identifier Excel turned into a date: a product code ``3-4`` typed into a General cell).

    Raises:
        InputError: not an XLSX, corrupt, a zip/XML bomb, a missing sheet, empty, or over a limit.
        ValueError: ``decimal`` is neither "." nor ",".
    """
    if decimal not in (".", ","):
        raise ValueError(f"decimal must be '.' or ',', got {decimal!r}")
    limits = limits or Limits()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise input_error(path, f"cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise input_error(path, "is empty")
    if size > limits.max_file_bytes:
        raise input_error(path, f"is {size:,} bytes, over the limit of {limits.max_file_bytes:,} bytes")
    members = _screen(path, limits, _CellScreen(limits, header_row or 1))
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
        skip = _skipped_sheets(book)
        if items_sheet is not None:
            chosen = [find(sheet or _TWO_SHEETS[0]), find(items_sheet)]
        elif sheet is not None:
            chosen = [find(sheet)]
        elif all(n in folded for n in _TWO_SHEETS):
            chosen = [folded[n] for n in _TWO_SHEETS]
        else:
            chosen = [next((n for n in names if n not in skip), names[0])]
        parts = _sheet_parts(path)
        percent = _percent_styles(path, members)

        def read_one(name: str) -> Table:
            readings = parts.get(name, ())
            _check_extent(path, name, readings, members, header_row or 1, limits)  # before calamine
            part = next((r for r in readings if r in members), None)
            return _read_sheet(
                path,
                book,
                _Sheet(name, part, members.get(part or ""), percent),
                header_row,
                is_header,
                limits,
                decimal,
                percent_ok,
                date_ok,
                two=len(chosen) == 2,
            )

        auto = sheet is None and items_sheet is None and len(chosen) == 1 and is_header is not None
        first_error: InputError | None = None
        tables: list[Table] = []
        try:
            tables = [read_one(name) for name in chosen]
        except InputError as exc:
            if not auto or "has no header in row" not in str(exc):
                raise
            first_error = exc  # a cover sheet without the profile's header row: look further
        if auto and is_header is not None and (not tables or is_header(tables[0].headers) < _CLEAR_HEADER):
            # a cover, legend or notes sheet first: the data is on the visible sheet whose header
            # names the most known columns (the first one on a tie)
            first, best = chosen[0], is_header(tables[0].headers) if tables else 0
            for name in (n for n in names if n not in skip and n != first):
                try:
                    other = read_one(name)
                except InputError:
                    if first_error is None:
                        raise
                    continue
                score = is_header(other.headers)
                if score > best:
                    chosen, tables, best = [name], [other], score
            if not tables and first_error is not None:
                raise first_error
            if chosen[0] != first:
                warnings.append(f"sheet {first!r} has no invoice header; read sheet {chosen[0]!r}")
        ignored = [n for n in names if n not in chosen]
        if ignored:
            listed = (repr(n) + (f" ({skip[n]})" if n in skip else "") for n in ignored)
            warnings.append(f"sheet(s) not read: {', '.join(listed)}")
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


_CLEAR_HEADER = 5
"""A first sheet whose header names this many known columns is the data, without looking further."""


@dataclass(frozen=True, slots=True)
class _Sheet:
    """A sheet to read: its name, the zip member it is read from (None when the workbook's
    relationships do not say), what the screen saw in that member, and the workbook's percent styles."""

    name: str
    part: str | None
    member: _Member | None
    percent: frozenset[int]


def _skipped_sheets(book: Any) -> dict[str, str]:
    """Sheets not to take as "the first sheet", with why: hidden (or very hidden), or a chart.

    From python-calamine's sheet metadata; an older python-calamine without it skips none.
    """
    try:
        metadata = list(getattr(book, "sheets_metadata", None) or ())
        out: dict[str, str] = {}
        for meta in metadata:
            visible = str(meta.visible).rpartition(".")[2]  # SheetVisibleEnum.Hidden
            kind = str(meta.typ).rpartition(".")[2]  # SheetTypeEnum.WorkSheet
            why = []
            if visible in ("Hidden", "VeryHidden"):
                why.append("hidden")
            if kind != "WorkSheet":
                why.append("chart" if kind == "ChartSheet" else "not a worksheet")
            if why:
                out[str(meta.name)] = ", ".join(why)
        return out
    except BaseException as exc:
        _reraise_interrupts(exc)
        return {}


def _read_sheet(
    path: Path,
    book: Any,
    target: _Sheet,
    header_row: int | None,
    is_header: Callable[[list[str]], int] | None,
    limits: Limits,
    decimal: str,
    percent_ok: Callable[[str], bool] | None = None,
    date_ok: Callable[[str], bool] | None = None,
    *,
    two: bool,
) -> Table:
    name, part, member = target.name, target.part, target.member
    try:
        sheet = book.get_sheet_by_name(name)
        total_width = int(sheet.total_width)
        total_height = int(sheet.total_height)
    except BaseException as exc:
        _reraise_interrupts(exc)
        raise _unreadable(path, target, exc) from None
    if total_width > limits.max_columns:
        raise input_error(
            path, f"sheet {name!r} has {total_width:,} columns, over the limit of {limits.max_columns:,}"
        )
    if total_height - (header_row or 1) > limits.max_rows:
        raise input_error(
            path, f"sheet {name!r} has more than {limits.max_rows:,} data rows; split it into smaller files"
        )
    try:
        grid = sheet.to_python(skip_empty_area=False)
    except BaseException as exc:
        _reraise_interrupts(exc)
        raise _unreadable(path, target, exc) from None
    label = name if two else None
    if header_row is None:
        header_row = _find_header(grid, is_header)
    if len(grid) < header_row or not any(_cell_text(v).strip() for v in grid[header_row - 1]):
        raise input_error(path, f"sheet {name!r} has no header in row {header_row}")
    header_cells = [_cell_text(v) for v in grid[header_row - 1]]
    while header_cells and not header_cells[-1].strip():
        header_cells.pop()
    width = len(header_cells)
    errors: dict[tuple[int, int], str] = {}
    percent = target.percent
    odd = member is None or member.cells == _ODD  # the byte scan may not see an odd part's styles
    if percent and part is not None and not odd and not _uses_styles(path, part, percent):
        percent = frozenset()  # the percent styles are used on other sheets only
    if part is not None and member is not None and (member.has_error or percent):
        marks = _scan_marks(path, target, part, percent, header_row, width)
        not_rates = frozenset(
            c for c, h in enumerate(header_cells) if percent_ok is not None and not percent_ok(h)
        )
        errors = _apply_marks(marks, grid, decimal, not_rates)
    warnings: list[str] = []
    rows: list[SourceRow] = []
    beyond = False
    max_cell = limits.max_cell_chars
    floats = _FloatTexts(decimal)
    no_dates = [c for c, h in enumerate(header_cells) if date_ok is not None and not date_ok(h)]
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
        row = SourceRow(r + 1, values)
        for c in no_dates:
            if c < len(raw) and isinstance(raw[c], date):
                row.problems = row.problems or {}
                row.problems[c] = (
                    f"is a date cell ({values[c]}) in a column of codes: Excel turned what was typed "
                    "into a date; format the column as Text and type the value again"
                )
        rows.append(row)
    del grid
    if beyond:
        warnings.append(f"sheet {name!r}: cells right of the last header column are ignored")
    if member is not None and member.hidden_rows:
        for row in rows:
            if row.row in member.hidden_rows:
                # Hidden rows are often rows someone meant to leave out (a filter, a draft): never
                # issued unseen, and never dropped from an invoice they belong to either.
                row.problems = row.problems or {}
                row.problems[ROW_PROBLEM] = (
                    "row is hidden in Excel (by hand or by a filter): unhide it to have it invoiced, "
                    "or delete it"
                )
    _mark_errors(errors, rows)
    _mark_merged(sheet, rows, header_row, width, warnings, name)
    if member is not None and member.has_formula and part is not None:
        _mark_formulas(_uncached_formulas(path, part), rows, width)
    return Table(
        file=path.name, headers=header_cells, rows=rows, sheet=label, warnings=warnings, header_row=header_row
    )


def _unreadable(path: Path, target: _Sheet, exc: BaseException) -> InputError:
    """The error for a sheet python-calamine cannot read, naming the cell when an error value is why.

    python-calamine stops at an Excel error value it does not know (#SPILL!, #CALC!, #FIELD! from
    newer Excel) with a message that names no cell; the part is then scanned to name it.
    """
    name, part, member = target.name, target.part, target.member
    if part is not None and member is not None and member.has_error:
        with contextlib.suppress(InputError):
            found = _scan_marks(path, target, part, frozenset(), 0, 0).unreadable
            if found is not None:
                ref, value = found
                return input_error(
                    path,
                    f"sheet {name!r} cell {ref} holds the Excel error {value}, which cannot be read: "
                    "fix the formula or type the value",
                )
    return input_error(path, f"sheet {name!r} cannot be read: {exc}")


def _apply_marks(
    marks: _Marks, grid: list[list[Any]], decimal: str, not_rates: frozenset[int] = frozenset()
) -> dict[tuple[int, int], str]:
    """Put the scan's findings into the grid: a percent number becomes its text x 100, an error
    cell (blank to calamine) its error value. Returns the cells to report once rows exist: error
    cells, and percent cells in ``not_rates`` columns (a price shown as 50 % is not 50 nor 0.5)."""
    texts: dict[float, str] = {}  # rates repeat
    errors = {}
    for r, c in marks.percents:
        if r < len(grid) and c < len(grid[r]):
            value = grid[r][c]
            if type(value) is float or type(value) is int:
                text = texts.get(value)
                if text is None:
                    text = texts[value] = _percent_text(value, decimal)
                if c in not_rates:
                    errors[r, c] = f"{text}%"
                    continue
                grid[r][c] = text
    for (r, c), value in marks.errors.items():
        if r < len(grid) and c < len(grid[r]) and grid[r][c] == "":
            grid[r][c] = value
            errors[r, c] = value
    return errors


def _mark_errors(errors: dict[tuple[int, int], str], rows: list[SourceRow]) -> None:
    if not errors:
        return
    by_index = {row.row - 1: row for row in rows}
    for (r, c), value in errors.items():
        row = by_index.get(r)
        if row is None:  # pragma: no cover - the error value makes its row non-blank
            continue
        row.problems = row.problems or {}
        row.problems[c] = (
            f"cell is formatted as a percentage (Excel shows {value}) but its column is not a rate: "
            "format it as a number"
            if value.endswith("%")
            else f"cell holds the Excel error {value}: fix the formula or type the value"
        )


def _find_header(grid: list[list[Any]], is_header: Callable[[list[str]], int] | None) -> int:
    """The 1-based row of the header: see :func:`read_xlsx` (1 for a sheet with no text at all)."""
    first: int | None = None
    best: tuple[int, int] | None = None  # (score, row)
    seen = 0
    for r, raw in enumerate(grid):
        cells = [_cell_text(v) for v in raw]
        if not any(c.strip() for c in cells):
            continue
        if first is None:
            first = r + 1
        if is_header is None:
            return r + 1
        score = is_header(cells)
        if score >= 2 and (best is None or score > best[0]):
            best = (score, r + 1)
        seen += 1
        if seen >= HEADER_SCAN:
            break
    return best[1] if best is not None else first or 1


def _mark_merged(
    sheet: Any, rows: list[SourceRow], header_row: int, width: int, warnings: list[str], name: str
) -> None:
    try:
        ranges = list(sheet.merged_cell_ranges or ())
    except Exception:  # pragma: no cover - older python-calamine without merge support
        return
    if not ranges:
        return
    numbers = [row.row for row in rows]  # ascending: rows are read top to bottom
    for (r0, c0), (r1, c1) in ranges:
        first = f"{column_letter(c0)}{r0 + 1}"
        last = f"{column_letter(c1)}{r1 + 1}"
        if r1 + 1 < header_row:
            continue  # a merged title above the header
        if r0 + 1 <= header_row <= r1 + 1:
            warnings.append(f"sheet {name!r}: merged header cells {first}:{last}")
        # only the rows read, not every row a far-reaching range names (A1:XFD1048576)
        for row in rows[bisect_left(numbers, max(r0, header_row) + 1) : bisect_right(numbers, r1 + 1)]:
            r = row.row - 1
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
