"""CSV reader: encoding detection, delimiter sniffing and spreadsheet-faithful row numbers.

Every cell stays text. The encoding is the profile's, else a UTF-8/UTF-16 byte-order mark, else
strict UTF-8, else Windows-1252 (what Excel's plain "CSV" writes on Latin-American Windows); a file
that is neither is refused rather than decoded with replacement characters. Row numbers count
records the way a spreadsheet shows them (header = row 1; a quoted field spanning lines is still
one row). The file is streamed, so memory is bounded by :class:`~daemon.intake.rows.Limits`.
"""

from __future__ import annotations

import codecs
import csv as _csv
import io
import re
from collections.abc import Callable
from pathlib import Path

from daemon.intake.rows import HEADER_SCAN, Limits, SourceRow, Table, input_error

__all__ = ["DELIMITERS", "detect_encoding", "read_csv", "sniff_delimiter"]

DELIMITERS = (",", ";", "\t", "|")
_CHUNK = 1 << 20
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_SEP_LINE = re.compile(r"\ufeff?sep=([,;\t|])", re.IGNORECASE)


def _bom_encoding(path: Path) -> str | None:
    """The codec a UTF-8 or UTF-16 byte-order mark at the start of ``path`` names, else None."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return None


def _scan(path: Path) -> tuple[bool, bool, bool]:
    """Stream ``path`` once: (valid UTF-8, has non-ASCII bytes, valid Windows-1252).

    Raises:
        InputError: the file holds NUL bytes (binary data, or UTF-16 without a byte-order mark).
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    utf8 = cp1252 = True
    non_ascii = False
    offset = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            nul = chunk.find(b"\x00")
            if nul >= 0:
                raise input_error(
                    path,
                    f"contains a NUL byte at offset {offset + nul}: this is binary data (or UTF-16 "
                    "without a byte-order mark), not a CSV text file",
                )
            non_ascii = non_ascii or not chunk.isascii()
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            if not utf8 and cp1252 and not _CP1252_UNDEFINED.isdisjoint(chunk):
                cp1252 = False
            offset += len(chunk)
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return utf8, non_ascii, cp1252


def detect_encoding(path: Path) -> str:
    """Return the codec to read ``path`` with: BOM, then strict UTF-8, then Windows-1252.

    Raises:
        InputError: the file holds NUL bytes (binary data) or is neither UTF-8 nor Windows-1252.
    """
    marked = _bom_encoding(path)
    if marked is not None:
        return marked
    utf8, _non_ascii, cp1252 = _scan(path)
    if utf8:
        return "utf-8"
    if cp1252:
        return "cp1252"
    raise input_error(
        path, "is neither UTF-8 nor Windows-1252 text; save it as 'CSV UTF-8' or set [read] encoding"
    )


def _profile_encoding(path: Path, encoding: str, warnings: list[str]) -> str:
    """The codec for a profile's ``[read] encoding``, unless the bytes plainly say otherwise.

    A UTF-8 byte-order mark wins (Excel's "CSV UTF-8" beside a profile written for its plain CSV).
    So does valid UTF-8 holding non-ASCII text under a single-byte profile encoding (cp1252,
    latin-1...): decoding it byte by byte would turn "José" into "JosÃ©" silently, while Windows-1252
    text with accents is practically never valid UTF-8.
    """
    try:
        declared = codecs.lookup(encoding).name
    except LookupError:
        raise input_error(path, f"unknown encoding {encoding!r} in the profile") from None
    marked = _bom_encoding(path)
    if marked is not None:
        if codecs.lookup(marked).name != declared:
            warnings.append(f"read as {marked}: the file starts with its byte-order mark")
            return marked
        return encoding
    if declared not in ("utf-8", "utf-16", "utf-32") and not declared.startswith(("utf-16", "utf-32")):
        utf8, non_ascii, _cp1252 = _scan(path)
        if utf8 and non_ascii:
            warnings.append(
                f"read as utf-8, not the profile's {encoding}: the file is valid UTF-8 with accented "
                'text (set [read] encoding = "utf-8" in the profile to silence this)'
            )
            return "utf-8"
    return encoding


def sniff_delimiter(header_line: str) -> str:
    """Pick the delimiter among ``, ; tab |`` that splits the header line most often.

    >>> sniff_delimiter("Factura;Cliente;Valor, con IVA")
    ';'
    """
    counts = {d: _count_outside_quotes(header_line, d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _choose_delimiter(
    lines: list[str], header_row: int | None, is_header: Callable[[list[str]], int] | None
) -> str:
    """Sniff the delimiter from the header line, not from a title above it.

    With ``is_header`` (a header score: known column names in a record), the line and delimiter
    that score best find the header and its delimiter together, whatever punctuation the titles
    hold. Otherwise the configured header line, or else the first line holding any candidate
    delimiter, decides.
    """
    if header_row is not None and header_row <= len(lines):
        return sniff_delimiter(lines[header_row - 1])
    if is_header is not None:
        best: tuple[int, str] | None = None
        for line in lines:
            for candidate in DELIMITERS:
                if candidate in line:
                    score = is_header(next(_csv.reader([line], delimiter=candidate), []))
                    if score >= 2 and (best is None or score > best[0]):
                        best = (score, candidate)
        if best is not None:
            return best[1]
    return next((sniff_delimiter(ln) for ln in lines if _has_delimiter(ln)), ",")


def _has_delimiter(line: str) -> bool:
    return any(_count_outside_quotes(line, d) for d in DELIMITERS)


def _count_outside_quotes(line: str, delimiter: str) -> int:
    count = 0
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            count += 1
    return count


def _head_lines(path: Path, encoding: str, count: int = 30) -> list[str]:
    """The first ``count`` physical lines of the file (within its first 64 KiB), without line ends."""
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        text = fh.read(64 * 1024)
    return re.split(r"\r\n|\r|\n", text)[:count]


def read_csv(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    header_row: int | None = 1,
    is_header: Callable[[list[str]], int] | None = None,
    limits: Limits | None = None,
) -> Table:
    """Read a CSV file into a :class:`Table` of text cells.

    Args:
        path: the file.
        encoding: a codec name from the profile; None detects it.
        delimiter: one character from the profile; None sniffs it from the header line.
        header_row: the record holding the header (records above it are skipped, e.g. titles);
            None finds it: among the first :data:`HEADER_SCAN` non-blank records, the one that
            ``is_header`` scores highest (two known columns at least, the earliest on a tie),
            else the first non-blank record.
        is_header: scores a record as a header: how many known column names it holds.
        limits: size, row, column and cell limits.

    Raises:
        InputError: empty, binary, undecodable, malformed or over a limit.
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
    warnings: list[str] = []
    try:
        if encoding is None:
            encoding = detect_encoding(path)
            if encoding == "cp1252":
                warnings.append("read as Windows-1252 (cp1252): the file is not valid UTF-8")
        else:
            encoding = _profile_encoding(path, encoding, warnings)
        lines = _head_lines(path, encoding)
        sep_line = _SEP_LINE.fullmatch(lines[0])
        if sep_line:  # Excel's "sep=;" hint: not a row for the user, and it names the delimiter
            delimiter = delimiter or sep_line.group(1)
            lines = lines[1:]
        if delimiter is None:
            delimiter = _choose_delimiter(lines, header_row, is_header)
        with path.open("rb") as raw:
            text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
            if sep_line:
                text.readline()
            headers, rows, header_at = _read_records(path, text, delimiter, header_row, is_header, limits)
    except UnicodeDecodeError as exc:
        raise input_error(
            path, f"is not valid {encoding} text ({exc.reason}); set [read] encoding in the profile"
        ) from None
    except OSError as exc:
        raise input_error(path, f"cannot be read: {exc.strerror or exc}") from None
    return Table(file=path.name, headers=headers, rows=rows, warnings=warnings, header_row=header_at)


def _read_records(
    path: Path,
    text: io.TextIOWrapper,
    delimiter: str,
    header_row: int | None,
    is_header: Callable[[list[str]], int] | None,
    limits: Limits,
) -> tuple[list[str], list[SourceRow], int]:
    headers: list[str] | None = None
    header_at = 0
    width = 0
    rows: list[SourceRow] = []
    max_cell = limits.max_cell_chars
    max_columns = limits.max_columns
    max_rows = limits.max_rows
    max_cells = limits.max_cells
    number = 0
    waiting: list[tuple[int, list[str], int, bool]] = []  # auto mode: records before the header

    def add(number: int, record: list[str], spans: bool) -> None:
        if not record or (len(record) == 1 and not record[0].strip()):
            return  # a blank line: counted, never data
        if len(rows) >= max_rows:
            raise input_error(path, f"has more than {max_rows:,} data rows; split it into smaller files")
        if len(rows) * width >= max_cells:
            raise input_error(
                path,
                f"has more than {max_cells:,} cells ({len(rows):,} rows of {width:,} columns so far); "
                "split it into smaller files or export only the columns the profile reads",
            )
        _check_cells(path, number, record, max_cell)
        if spans:  # a quoted field runs over several lines
            _check_quotes(path, number, record, delimiter, headers or [])
        problems: dict[int, str] | None = None
        if len(record) < width:
            record.extend([""] * (width - len(record)))
        elif len(record) > width:
            extra = record[width:]
            if any(cell.strip() for cell in extra):
                problems = {
                    -1: f"the row has {len(record)} fields but the header has {width}: "
                    "check the delimiter and the quoting of this row"
                }
            del record[width:]
        rows.append(SourceRow(number, record, problems))

    def take_header(number: int, record: list[str]) -> list[str]:
        nonlocal header_at
        _check_cells(path, number, record, max_cell)
        header_at = number
        return record

    def choose() -> None:
        # the best-scoring record is the header (none scores 2: the first, so errors list its cells)
        nonlocal headers, width
        best = max(range(len(waiting)), key=lambda k: (waiting[k][2], -k))
        if waiting[best][2] < 2:
            best = 0
        number, record, _, _ = waiting[best]
        headers = take_header(number, record)
        width = len(headers)
        for number, record, _, spans in waiting[best + 1 :]:
            add(number, record, spans)
        waiting.clear()

    reader = _csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    line = 0
    try:
        for record in reader:
            spans = reader.line_num - line > 1
            line = reader.line_num
            number += 1
            if len(record) > max_columns:
                raise input_error(
                    path,
                    f"row {number} has {len(record):,} fields, over the limit of {max_columns:,} columns",
                )
            if number == 1 and record and record[0].startswith("\ufeff"):
                record[0] = record[0][1:]
            if headers is not None:
                add(number, record, spans)
                continue
            blank = not any(cell.strip() for cell in record)
            if header_row is not None:
                if number < header_row:
                    continue
                if blank:
                    raise input_error(path, f"has no header: row {number} is blank")
                headers = take_header(number, record)
                width = len(headers)
                continue
            if blank:
                continue
            if is_header is None:
                headers = take_header(number, record)
                width = len(headers)
                continue
            waiting.append((number, record, is_header(record), spans))
            if len(waiting) >= HEADER_SCAN:
                choose()
    except _csv.Error as exc:
        raise input_error(path, f"malformed CSV near line {reader.line_num}: {exc}") from None
    if headers is None and waiting:
        choose()
    if headers is None:
        raise input_error(path, "is empty (no header row)")
    return headers, rows, header_at


def _check_quotes(path: Path, number: int, record: list[str], delimiter: str, headers: list[str]) -> None:
    """Refuse a quote left open: the rows it swallows would vanish into one cell without a word.

    A quoted field may hold line breaks (an address, a note with commas); one whose inner lines
    carry as many delimiters as a whole row is, in practice, a quote that was never closed.
    """
    threshold = max(2, len(headers) - 1)  # a swallowed row has as many delimiters as any row
    for index, cell in enumerate(record):
        if "\n" not in cell and "\r" not in cell:
            continue
        rowlike = sum(1 for line in cell.splitlines()[1:] if line.count(delimiter) >= threshold)
        if rowlike:
            column = headers[index] if index < len(headers) else f"field {index + 1}"
            raise input_error(
                path,
                f"row {number} column {column!r}: a quote opens here and runs over {rowlike} line(s) "
                "that look like rows (a missing closing quote?); those rows would be lost in one cell, "
                "so the file is not read: fix the quoting",
            )


def _check_cells(path: Path, number: int, record: list[str], max_cell: int) -> None:
    if not record or max(map(len, record)) <= max_cell:
        return
    for cell in record:
        if len(cell) > max_cell:
            raise input_error(
                path, f"row {number} has a cell of {len(cell):,} characters, over the limit of {max_cell:,}"
            )
