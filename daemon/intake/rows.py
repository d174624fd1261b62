"""The cell model shared by every reader: tables of text cells with spreadsheet row numbers.

Readers never interpret values: every cell arrives as text (identifiers keep their leading zeros,
numbers their exact digits), with the row number a person sees in a spreadsheet (the header is
row 1) and the header exactly as written, so every later error can point at the original cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import InputError

__all__ = [
    "HEADER_SCAN",
    "ROW_PROBLEM",
    "Limits",
    "RowError",
    "SourceRow",
    "Table",
    "input_error",
]

HEADER_SCAN = 30
"""How many non-blank records may stand above the header (report titles) when it is found."""

ROW_PROBLEM = -1
"""Key of :attr:`SourceRow.problems` for a problem of the whole row (e.g. too many fields)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits on one source file; exceeding one is a file-level :class:`InputError`.

    Attributes:
        max_file_bytes: size of the file on disk.
        max_rows: data rows (records after the header) per sheet or file.
        max_columns: fields in any one record.
        max_cell_chars: characters in one cell (Excel's own limit is 32,767).
        max_xlsx_uncompressed_bytes: sum of the uncompressed sizes declared in an XLSX zip.
        max_xlsx_ratio: largest compression ratio accepted for one XLSX zip member.
        max_xlsx_members: entries in an XLSX zip.
        max_xlsx_cells: cells in the used range of a sheet (A1 to its last row and column): the
            sheet is held as a full grid, about 40 bytes a cell, empty ones included.
        max_json_depth: nesting depth of a JSON document.
        max_cells: cells (data rows x header width) in one CSV table: with ``max_file_bytes`` alone,
            a file of tiny cells would hold over a hundred million of them (gigabytes as text).
    """

    max_file_bytes: int = 256 * 1024 * 1024
    max_rows: int = 200_000
    max_columns: int = 1_000
    max_cell_chars: int = 32_767
    max_xlsx_uncompressed_bytes: int = 1024 * 1024 * 1024
    max_xlsx_ratio: int = 250
    max_xlsx_members: int = 10_000
    max_xlsx_cells: int = 16_000_000
    max_json_depth: int = 64
    max_cells: int = 12_000_000


@dataclass(slots=True)
class SourceRow:
    """One record of a table: its spreadsheet row number and its cells as text.

    ``values`` is aligned with :attr:`Table.headers` (readers pad short records with ``""``).
    ``problems`` maps a column index (or :data:`ROW_PROBLEM`) to a reader-level problem: a merged
    cell, a formula without a cached value, extra fields. Such a cell is not trusted and its
    row is in error. ``group`` and ``labels`` are set for native JSON invoices only: the rows of one
    JSON object share a group, and ``labels`` names each cell by its JSON path (``items[1].price``).
    """

    row: int
    values: list[str]
    problems: dict[int, str] | None = None
    group: int | None = None
    labels: dict[int, str] | None = None
    head_only: bool = False
    """Kept for its invoice's own columns only: a ``[filter]`` on an item column skipped its line."""
    problem_values: dict[int, str] | None = None
    """The offending value of a row-level problem (native JSON: the value of an unknown key)."""


@dataclass(slots=True)
class Table:
    """A header plus records, as read from one CSV file, one sheet or one JSON list.

    Attributes:
        file: the file name used in messages.
        headers: the header cells exactly as written (a UTF-8 BOM removed).
        rows: the data records, in file order.
        sheet: the sheet name for XLSX (errors then name it), else None.
        warnings: reader notes for the user (detected encoding and delimiter, skipped sheets...).
    """

    file: str
    headers: list[str]
    rows: list[SourceRow]
    sheet: str | None = None
    warnings: list[str] = field(default_factory=list)
    header_row: int | None = None
    """The spreadsheet row the header was read from (CSV and XLSX), for messages."""


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem located at a cell: file, spreadsheet row, header as written, value, message.

    ``row`` and ``column`` are None for file-level errors; ``column`` is None when the field had
    no column in the file (it came from a default). ``sheet`` names the XLSX sheet when relevant.
    ``to_dict()`` always has file, row, column, value and message; sheet and reference_code only
    when set.
    """

    file: str
    row: int | None
    column: str | None
    value: str | None
    message: str
    sheet: str | None = None
    reference_code: str | None = None
    """The invoice the error belongs to (None for rows outside any invoice and file-level errors)."""

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape used by ``validate --json`` and the daemon's reports."""
        out: dict[str, Any] = {
            "file": self.file,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }
        if self.sheet is not None:
            out["sheet"] = self.sheet
        if self.reference_code is not None:
            out["reference_code"] = self.reference_code
        return out

    def __str__(self) -> str:
        where = self.file
        if self.sheet is not None:
            where += f" [{self.sheet}]"
        if self.row is not None:
            where += f" row {self.row}"
        if self.column is not None:
            where += f" column {self.column!r}"
        if self.value is not None:
            where += f" value {_clip(self.value)!r}"
        return f"{where}: {self.message}"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def input_error(path: Path | str, reason: str) -> InputError:
    """Build the file-level error every reader raises: it names the file and the reason."""
    name = path.name if isinstance(path, Path) else path
    return InputError(f"{name}: {reason}")
