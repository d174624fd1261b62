"""Row filters of a mapping profile: which records of an export are invoice lines at all.

ERP files mix invoice lines with rows that are not: World Office interfaces carry orders and
receipts beside invoices (``Encab: Tipo Documento`` = ``PED``, ``RC``), Siigo templates add
payment-only rows with no product, report exports end groups with ``Total ...`` rows. A profile
names them in its ``[filter]`` table, keyed by the header as written in the file (or by a canonical
column the profile maps)::

    [filter]
    "Encab: Tipo Documento" = ["FV"]              # keep rows whose value is one of these
    "Código producto" = "non-empty"                # keep rows where this cell is filled
    "Consecutivo" = { not_matches = "^Total" }     # drop subtotal and total rows
    "Tipo" = { not_in = ["RC", "PED"] }            # drop rows whose value is one of these
    "Cuenta" = { matches = "^4135" }               # keep rows whose value matches a regex

Values compare after trimming, case folding and accent removal; regular expressions are matched
(``re.search``) against the trimmed cell, case-insensitively. A row is kept when it passes every
filter. Skipped rows are not errors: the reader reports how many were skipped and which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from daemon.intake.fields import FIELDS, canonical_of, normalise_header
from daemon.intake.rows import Table, input_error

__all__ = ["RowFilter", "apply_filters", "parse_filter"]

Mode = Literal["in", "not_in", "non_empty", "matches", "not_matches"]
_MAX_LISTED = 10


@dataclass(frozen=True, slots=True)
class RowFilter:
    """One ``[filter]`` rule: a column (as written in the profile) and the rows it keeps."""

    column: str
    mode: Mode
    values: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None

    def keeps(self, cell: str) -> bool:
        """True when a row whose cell in this column is ``cell`` passes the rule."""
        if self.mode == "non_empty":
            return bool(cell.strip())
        if self.mode == "in":
            return normalise_header(cell) in self.values
        if self.mode == "not_in":
            return normalise_header(cell) not in self.values
        assert self.pattern is not None
        found = self.pattern.search(cell.strip()) is not None
        return found if self.mode == "matches" else not found

    def describe(self) -> str:
        """The rule in words, for the skipped-rows note."""
        if self.mode == "non_empty":
            return f"{self.column!r} is blank"
        if self.mode in ("in", "not_in"):
            listed = ", ".join(sorted(self.values))
            return f"{self.column!r} {'is not' if self.mode == 'in' else 'is'} one of [{listed}]"
        assert self.pattern is not None
        verb = "does not match" if self.mode == "matches" else "matches"
        return f"{self.column!r} {verb} {self.pattern.pattern!r}"


def parse_filter(column: str, rule: Any, bad: Callable[[str], Exception]) -> RowFilter:
    """Parse one ``[filter]`` entry; ``bad`` builds the configuration error to raise."""
    where = f"[filter] {column!r}"
    if not column.strip():
        raise bad(f"{where}: the column name is blank")
    if isinstance(rule, str):
        if normalise_header(rule) in ("non-empty", "non_empty", "not-empty", "not_empty"):
            return RowFilter(column, "non_empty")
        return RowFilter(column, "in", _values([rule], where, bad))
    if isinstance(rule, list):
        return RowFilter(column, "in", _values(rule, where, bad))
    if isinstance(rule, dict) and len(rule) == 1:
        ((key, value),) = rule.items()
        if key in ("in", "not_in"):
            listed = value if isinstance(value, list) else [value]
            return RowFilter(column, key, _values(listed, where, bad))
        if key in ("matches", "not_matches"):
            if not isinstance(value, str) or not value:
                raise bad(f"{where}: {key} must be a non-empty regular expression")
            try:
                pattern = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise bad(f"{where}: {value!r} is not a valid regular expression ({exc})") from None
            return RowFilter(column, key, pattern=pattern)
    raise bad(
        f'{where}: expected a list of values, "non-empty", or one of {{ in = [...] }}, '
        '{ not_in = [...] }, { matches = "regex" }, { not_matches = "regex" }'
    )


def _values(items: Sequence[Any], where: str, bad: Callable[[str], Exception]) -> frozenset[str]:
    out: set[str] = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise bad(f"{where}: values must be strings or integers, got {item!r}")
        out.add(normalise_header(str(item)))
    if not out:
        raise bad(f"{where}: the list of values is empty")
    return frozenset(out)


def apply_filters(
    file: str,
    tables: Sequence[Table],
    filters: Sequence[RowFilter],
    columns: dict[str, str],
    *,
    fill_down: bool = False,
) -> list[str]:
    """Drop, in place, the rows of ``tables`` that a filter rejects; return notes for the user.

    A filter's column is found by its header (normalised); failing that, by the canonical column it
    names, through the profile's ``columns`` (normalised header -> canonical) or the canonical
    headers. A filter whose column is in none of the tables is a file-level error: silently keeping
    every row would issue the orders and receipts it was written to skip.

    With ``fill_down`` a row whose reference cell is blank continues the invoice above (Odoo): where
    its own cell is blank too, it shares that invoice's verdict; and a rule on an item column that
    rejects an invoice's first row skips only its line (the row still gives the invoice its own
    columns: ``head_only``). In an invoices + items pair, the items of an invoice skipped in the
    first sheet are skipped too.

    Raises:
        InputError: a filter names a column the file does not have.
    """
    located: list[tuple[RowFilter, list[tuple[Table, int]]]] = []
    for rule in filters:
        hits = [(t, i) for t in tables if (i := _column_index(t, rule.column, columns)) is not None]
        if not hits:
            found = ", ".join(repr(h) for h in tables[0].headers[:40] if h.strip())
            raise input_error(
                file, f"[filter] column {rule.column!r} is not in the file; found: {found or 'no headers'}"
            )
        located.append((rule, hits))
    notes: list[str] = []
    dropped_refs: set[str] = set()
    kept_refs: set[str] = set()
    for position, table in enumerate(tables):
        rules = [
            (rule, i, _is_item_column(table.headers[i], columns))
            for rule, hits in located
            for t, i in hits
            if t is table
        ]
        ref_index = _column_index(table, "reference_code", columns)
        skipped: dict[str, list[int]] = {}
        kept = []
        parent: dict[int, bool] | None = None  # invoice-level verdicts of the invoice's first row
        for row in table.rows:
            ref = row.values[ref_index].strip() if ref_index is not None else ""
            continuation = fill_down and not ref and parent is not None
            if ref:
                parent = {}
            reason = ""
            line_only = True
            for k, (rule, i, item_level) in enumerate(rules):
                cell = row.values[i]
                if continuation and parent is not None and not item_level and not cell.strip():
                    ok = parent.get(k, True)  # a blank invoice-level cell: the invoice's verdict
                else:
                    ok = rule.keeps(cell)
                if ref and parent is not None and not item_level:
                    parent[k] = ok
                if not ok:
                    reason = reason or rule.describe()
                    line_only = line_only and item_level
            if not reason and position > 0 and ref and ref in dropped_refs and ref not in kept_refs:
                reason, line_only = "its invoice was skipped in the first sheet", False
            if reason and fill_down and ref and line_only and position == 0:
                row.head_only = True  # its line goes; its invoice's own columns stay
                kept.append(row)
                skipped.setdefault(reason, []).append(row.row)
                if position == 0:
                    kept_refs.add(ref)
            elif reason:
                skipped.setdefault(reason, []).append(row.row)
                if ref and position == 0:
                    dropped_refs.add(ref)
            else:
                kept.append(row)
                if ref and position == 0:
                    kept_refs.add(ref)
        if skipped:
            table.rows = kept
            where = f" of sheet {table.sheet!r}" if table.sheet else ""
            for reason, numbers in skipped.items():
                shown = ", ".join(map(str, numbers[:_MAX_LISTED]))
                if len(numbers) > _MAX_LISTED:
                    shown += " ..."
                notes.append(f"skipped {len(numbers)} row(s){where} where {reason} ([filter]): rows {shown}")
    return notes


def _is_item_column(header: str, columns: dict[str, str]) -> bool:
    canonical = canonical_of(header, columns)
    return canonical is not None and FIELDS[canonical].level == "item"


def _column_index(table: Table, column: str, columns: dict[str, str]) -> int | None:
    key = normalise_header(column)
    normalised = [normalise_header(h) for h in table.headers]
    if key in normalised:
        return normalised.index(key)
    canonical = key if key in FIELDS else None
    if canonical is None:
        return None
    for index, header in enumerate(normalised):
        if canonical_of(header, columns) == canonical:
            return index
    return None
