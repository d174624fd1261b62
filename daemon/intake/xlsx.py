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
numbers with at most 15 significant digits (what Excel shows, so ``0.1+0.2`` is ``0.3``), dates as
``YYYY-MM-DD``, times as ``HH:MM:SS``. Merged cells (from the workbook's merge list) and formulas
without a cached value (found by a defusedxml scan of the sheet part, only when it has formulas)
are reported on their cells, never guessed.
"""

from __future__ import annotations

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

from daemon.intake.rows import HEADER_SCAN, Limits, SourceRow, Table, input_error

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
_ANY_REF = re.compile(r"([A-Za-z]+)(\d+)", re.ASCII)
_TAIL = 64  # context a cell pattern below may need on either side; chunks overlap by twice that
_PREFIXED_CELL = re.compile(rb":c[\s/>]")
_LATE_R = re.compile(rb"r(?=[\s=])(?<=\sr)(?<!<c r)(?<!<row r)")
_PLAIN_FORM = re.compile(rb'<c(?=[\s/>])(?! r="[A-Z]{1,3}[1-9]\d{0,6}")')
_PLAIN_COLUMN = re.compile(rb'<c r="([A-Z]{1,3})[1-9]')
_PLAIN, _FAR, _ODD = "plain", "far", "odd"
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
    cells: str = _PLAIN
    """What the cell screen saw: _PLAIN, _FAR (plain tags, some outside the rectangle) or _ODD."""


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
            tail = b""
            while chunk:
                window = tail + chunk
                if is_xml and _DTD_PATTERN.search(window):
                    raise input_error(
                        path, f"member {info.filename} declares a DTD or XML entities; refused (XML bomb?)"
                    )
                if is_xml and not member.has_formula and _FORMULA_PATTERN.search(window):
                    member.has_formula = True
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
            parser = expat.ParserCreate()
            parser.StartElementHandler = extent.start
            parser.EndElementHandler = extent.end
            parser.StartDoctypeDeclHandler = _forbid_dtd
            parser.EntityDeclHandler = _forbid_dtd
            parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
            with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
                while chunk := fh.read(_CHUNK):
                    parser.Parse(chunk, False)
                parser.Parse(b"", True)
        except _Refuse as exc:
            raise input_error(path, exc.message) from None
        except expat.ExpatError as exc:
            raise input_error(path, f"sheet {name!r} (part {member}) is not well-formed XML: {exc}") from None
        except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
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
    is_header: Callable[[list[str]], bool] | None = None,
    limits: Limits | None = None,
) -> Workbook:
    """Read a workbook: one sheet (named, else the first) or an invoices + items sheet pair.

    The pair is used when ``items_sheet`` is given, or when no ``sheet`` is given and the workbook
    has sheets named ``invoices`` and ``items`` (any case). ``header_row`` None finds the header of
    each sheet: the first non-blank row ``is_header`` accepts among the first
    :data:`~daemon.intake.rows.HEADER_SCAN` non-blank ones (report titles above it), else the first
    non-blank row.

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
        tables = []
        for name in chosen:
            readings = parts.get(name, ())
            _check_extent(path, name, readings, members, header_row or 1, limits)  # before calamine
            part = next((r for r in readings if r in members), None)
            tables.append(
                _read_sheet(
                    path, book, name, part, members, header_row, is_header, limits, two=len(chosen) == 2
                )
            )
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
    header_row: int | None,
    is_header: Callable[[list[str]], bool] | None,
    limits: Limits,
    *,
    two: bool,
) -> Table:
    try:
        sheet = book.get_sheet_by_name(name)
        total_width = int(sheet.total_width)
        total_height = int(sheet.total_height)
    except BaseException as exc:
        _reraise_interrupts(exc)
        raise input_error(path, f"sheet {name!r} cannot be read: {exc}") from None
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
        raise input_error(path, f"sheet {name!r} cannot be read: {exc}") from None
    label = name if two else None
    if header_row is None:
        header_row = _find_header(grid, is_header)
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


def _find_header(grid: list[list[Any]], is_header: Callable[[list[str]], bool] | None) -> int:
    """The 1-based row of the header: see :func:`read_xlsx` (1 for a sheet with no text at all)."""
    first: int | None = None
    seen = 0
    for r, raw in enumerate(grid):
        cells = [_cell_text(v) for v in raw]
        if not any(c.strip() for c in cells):
            continue
        if first is None:
            first = r + 1
        if is_header is None or is_header(cells):
            return r + 1
        seen += 1
        if seen >= HEADER_SCAN:
            break
    return first or 1


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
