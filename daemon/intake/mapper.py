"""Rows -> draft v1 invoices: header mapping, grouping by ``reference_code``, defaults and value maps.

The mapper turns the text cells of one table (or of an ``invoices`` + ``items`` sheet pair) into
one draft payload per invoice, converting each cell with its column's kind and remembering where
every value came from, so that any later error (type, code table, cross-field rule) is reported at
the original row and header. Conversion is column-wise with per-column memo tables: repeated
values (tax rates, codes, customers) are parsed once, which is what keeps 100,000 lines fast.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from daemon.catalog import IDENTIFICATION_DOCUMENTS, NIT_DOCUMENT_ID, WITHHOLDING_CODES
from daemon.intake.fields import BUILTIN_DEFAULTS, FIELDS, REQUIRED, FieldSpec, Level, normalise_header
from daemon.intake.lookups import Lookups
from daemon.intake.parse import BadValue, TextParser, as_text
from daemon.intake.profile import MappingProfile
from daemon.intake.rows import ROW_PROBLEM, RowError, SourceRow, Table, input_error
from daemon.money import nit_check_digit, round2

__all__ = ["MISSING", "Draft", "Mapper", "merged_defaults"]

_CANONICAL_BY_NORM = {normalise_header(name): name for name in FIELDS}
_HEAD_LEVELS: frozenset[Level] = frozenset({"invoice", "customer"})
_PRIORITY = {"built-in": 0, "settings": 1, "profile": 2}
_MAX_WARNINGS = 50
_MEMO_MAX = 200_000
_HUNDRED = Decimal(100)
_BRANCH = re.compile(r"([0-9]{5,15})-([0-9]{3})", re.ASCII)
_CAUSES = {"payment_due_date": "payment_form"}
"""A conditionally required field -> the field whose value requires it (for error locations)."""
_SPACED_DV = re.compile(r"([0-9][0-9. ]*[0-9])\s+([0-9])", re.ASCII)


def _same_nit(first: str, other: str) -> bool | None:
    """Whether two spellings name the same NIT: None if not, else True when only ``other`` has the DV."""
    a, b = _nit_parts(first), _nit_parts(other)
    if a is None or b is None or a[0] != b[0] or (a[1] and b[1] and a[1] != b[1]):
        return None
    return bool(b[1]) and not a[1]


def _nit_parts(text: str) -> tuple[str, str] | None:
    """A NIT as written (``900.123.456-8``, ``900 123 456``, ``900123456 8``) -> (digits, DV or "").

    A lone digit after a space is the DV: NIT digit groups have three digits, so ``900123456 7``
    never means the ten-digit number 9001234567. None when the text is not a NIT's shape.
    """
    text = text.strip()
    m = _SPACED_DV.fullmatch(text) if "-" not in text else None
    number, _, dv = (m.group(1), "-", m.group(2)) if m else text.partition("-")
    number = number.replace(".", "").replace(" ", "").strip()
    dv = dv.strip()
    if not (number.isascii() and number.isdigit()) or (dv and not (dv.isdigit() and len(dv) == 1)):
        return None
    return number, dv


_ESCAPED = frozenset("=+-@")
"""After a leading apostrophe: how Odoo and spreadsheets keep such text from being a formula."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""A blank cell with no default: the key is left out of the draft."""


@dataclass(frozen=True, slots=True)
class _Bad:
    message: str


class _Memo(dict[str, Any]):
    """raw cell -> parsed value, computed on first sight; ``bad`` records that some cell failed."""

    __slots__ = ("bad", "fn")

    def __init__(self, fn: Callable[[str], Any]) -> None:
        super().__init__()
        self.fn = fn
        self.bad = False

    def __missing__(self, key: str) -> Any:
        value = self.fn(key)
        if type(value) is _Bad:
            self.bad = True
        if len(self) < _MEMO_MAX:
            self[key] = value
        return value


@dataclass(slots=True)
class _Column:
    canonical: str
    index: int
    memo: _Memo
    derived: bool = False
    """Fed by another column's several-column value map or [split] cell (see Mapper._expand)."""


@dataclass(slots=True)
class _Slot:
    """One payload key, fed by one or more canonical columns (an id and its code alias)."""

    key: str
    level: Level
    group: str | None
    names: tuple[str, ...]
    cols: list[_Column] = field(default_factory=list)
    default_name: str | None = None
    default_raw: Any = None
    default_source: str | None = None
    default_value: Any = MISSING

    @property
    def name(self) -> str:
        return self.names[0]


def _not_mapped(vmap: Mapping[str, Any] | None, name: str) -> str:
    """The hint that a value is neither in the column's value map nor readable as the column."""
    if not vmap:
        return ""
    return f', and it is not one of the {len(vmap)} value(s) of the profile\'s [values."{name}"] map'


def _picker(parts: _Memo, name: str, *, report: bool) -> Callable[[str], Any]:
    """One column's value out of a multi-target cell (see :meth:`Mapper._expand`)."""

    def pick(raw: str) -> Any:
        found = parts[raw]
        if type(found) is _Bad:
            return found if report else MISSING
        return found.get(name, MISSING)

    return pick


def merged_defaults(
    settings_defaults: Mapping[str, Any], profile: MappingProfile | None, warnings: list[str]
) -> dict[str, tuple[Any, str]]:
    """Built-in defaults, overridden by settings ``[defaults]``, overridden by the profile's.

    Returns canonical column -> (raw value, source label). Unknown settings keys become warnings.
    """
    out: dict[str, tuple[Any, str]] = {k: (v, "built-in") for k, v in BUILTIN_DEFAULTS.items()}
    for key, value in settings_defaults.items():
        if key not in FIELDS:
            warnings.append(f"settings [defaults] {key!r} is not a canonical column; ignored")
            continue
        out[key] = (value, "settings")
    if profile is not None:
        for key, value in profile.defaults.items():
            out[key] = (value, "profile")
    return out


@dataclass(slots=True)
class Draft:
    """One invoice before model validation: its payload-shaped data and how to locate errors."""

    reference_code: str
    data: dict[str, Any]
    head_rows: list[int]
    item_rows: list[int]
    errors: list[RowError]
    errored: set[tuple[Any, ...]]
    mapper: Mapper

    @property
    def rows(self) -> list[int]:
        """Spreadsheet rows of the invoice lines, in order, each once (native JSON: the object's row)."""
        table = self.mapper.item_table
        return list(dict.fromkeys(table.rows[i].row for i in self.item_rows))

    def locate(self, loc: tuple[Any, ...]) -> tuple[int | None, str | None, str | None, str, str | None]:
        """Map a payload location to (row, column label, raw value, field name, sheet)."""
        return self.mapper.locate(self, loc)


class Mapper:
    """Maps one table (or an invoices + items pair) to drafts; see the module docstring.

    Args:
        file: the file name for messages.
        head_table: the table holding invoice and customer columns.
        item_table: the table holding item columns (the same object for a single table).
        profile: the mapping profile, or None for canonical headers.
        defaults: :func:`merged_defaults`.
        lookups: municipality and unit tables.
        native: the table comes from native v1 JSON (fixed canonical headers, rows carry group ids
            and per-cell labels; missing columns are not a file-level error).
        extras: native-only objects (``allowance_charges``, ``related_documents``) by group id.

    Raises:
        InputError: required columns are missing, two headers map to one column, or a withholding
            column names an unknown code.
    """

    def __init__(
        self,
        *,
        file: str,
        head_table: Table,
        item_table: Table,
        profile: MappingProfile | None,
        defaults: dict[str, tuple[Any, str]],
        lookups: Lookups,
        native: bool = False,
        extras: dict[int, dict[str, Any]] | None = None,
    ) -> None:
        self.file = file
        self.head_table = head_table
        self.item_table = item_table
        self.two_tables = head_table is not item_table
        self.profile = profile
        self.native = native
        self.extras = extras or {}
        self.warnings: list[str] = []
        self._held: dict[Any, list[RowError]] = {}
        self._used: dict[int, set[int]] = {}
        """Errors of rows without a reference code, held against the invoice just above them."""
        read = profile.read if profile else None
        self.parser = TextParser(  # native v1 JSON is canonical whatever the profile says
            decimal=read.decimal if read and not native else ".",
            thousands=read.thousands if read and not native else "",
            date_format=read.date_format if read and not native else None,
            lookups=lookups,
        )
        self.plain = TextParser(lookups=lookups)
        """Parses defaults and value-map targets, which are always written in canonical form."""
        self.defaults = defaults
        if self.two_tables:
            head_cols = self._resolve(head_table, _HEAD_LEVELS, extra={"reference_code"})
            item_cols = self._resolve(item_table, frozenset({"item"}), extra={"reference_code"})
        else:
            head_cols = item_cols = self._resolve(head_table, frozenset({"invoice", "customer", "item"}))
        if not native:
            self._check_required(head_cols, item_cols)
        self.ref_head = head_cols.get("reference_code")
        self.ref_item = item_cols.get("reference_code")
        self.head_slots: list[_Slot] = []
        self.item_slots: list[_Slot] = []
        self._slot_by_path: dict[tuple[str, ...], _Slot] = {}
        self._build_slots(head_cols, item_cols)

    # -- header resolution ------------------------------------------------------------------------

    def _resolve(
        self, table: Table, levels: frozenset[Level], extra: set[str] | None = None
    ) -> dict[str, int]:
        profile_cols = self.profile.columns if self.profile else {}
        found: dict[str, int] = {}
        where = f" in sheet {table.sheet!r}" if table.sheet else ""
        unknown: list[str] = []
        for idx, header in enumerate(table.headers):
            key = normalise_header(header)
            if not key:
                continue
            canonical = profile_cols.get(key) or _CANONICAL_BY_NORM.get(key)
            if canonical is None and key.startswith("item.withholding.") and key[17:].isdigit():
                canonical = _CANONICAL_BY_NORM.get(f"item.withholding.{key[17:].zfill(2)}")
            if canonical is None:
                if key.startswith("item.withholding."):
                    codes = ", ".join(sorted(WITHHOLDING_CODES))
                    raise input_error(
                        self.file, f"column {header!r}{where}: unknown withholding code (allowed: {codes})"
                    )
                unknown.append(header)
                continue
            spec = FIELDS[canonical]
            if spec.level not in levels and not (extra and canonical in extra):
                self._warn(f"column {header!r}{where} ({canonical}) does not belong in this sheet; ignored")
                continue
            if canonical in found:
                first = table.headers[found[canonical]]
                raise input_error(
                    self.file,
                    f"columns {first!r} and {header!r}{where} both map to {canonical}; keep only one",
                )
            found[canonical] = idx
        for header in unknown:
            self._warn(f"column {header!r}{where} is not mapped to any Factus field; ignored")
        return found

    def _check_required(self, head_cols: dict[str, int], item_cols: dict[str, int]) -> None:
        present = set(head_cols) | set(item_cols) | set(self.defaults)
        missing = [name for name, alts in REQUIRED.items() if not any(a in present for a in alts)]
        if self.two_tables and "reference_code" not in item_cols:
            missing.append(f"reference_code (in sheet {self.item_table.sheet!r})")
        if not missing:
            return
        expected = []
        reverse: dict[str, str] = {}
        if self.profile:
            for header, canonical in self.profile.columns.items():
                reverse.setdefault(canonical, header)
        for name in missing:
            base = name.split(" ")[0]
            expected.append(f"{name} (header {reverse[base]!r})" if base in reverse else name)
        found = [h for h in self.head_table.headers if h.strip()]
        if self.two_tables:
            found += [h for h in self.item_table.headers if h.strip()]
        shown = ", ".join(repr(h) for h in found[:40]) + (" ..." if len(found) > 40 else "")
        who = f"profile {self.profile.name!r}" if self.profile else "the canonical layout (no profile)"
        hint = ""
        if not self.native and (self.profile is None or self.profile.read.header_row is None):
            hint = (
                f" (read as the header: row {self.head_table.header_row}; if the header is further down,"
                " set [read] header_row in a profile)"
                if self.head_table.header_row
                else ""
            )
        raise input_error(
            self.file,
            f"missing required column(s) for {who}: {', '.join(expected)}; "
            f"found: {shown or 'no headers'}{hint}",
        )

    def _warn(self, message: str) -> None:
        if len(self.warnings) < _MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == _MAX_WARNINGS:
            self.warnings.append("... further warnings omitted")

    # -- slots ----------------------------------------------------------------------------------

    def _build_slots(self, head_cols: dict[str, int], item_cols: dict[str, int]) -> None:
        by_path: dict[tuple[str, ...], _Slot] = {}
        for spec in FIELDS.values():
            path = self._path_of(spec)
            slot = by_path.get(path)
            if slot is None:
                group = spec.group
                if spec.level == "item" and spec.name.startswith("item.withholding."):
                    group = "withholding"
                elif spec.level == "item" and spec.name.startswith("item.mandate."):
                    group = "mandate"
                slot = _Slot(key=path[-1], level=spec.level, group=group, names=(spec.name,))
                by_path[path] = slot
            else:
                slot.names = (*slot.names, spec.name)
            cols = item_cols if spec.level == "item" else head_cols
            if spec.name in cols:
                slot.cols.append(_Column(spec.name, cols[spec.name], _Memo(self._converter(spec))))
        self._expand(by_path, head_cols, item_cols)
        for path, slot in by_path.items():
            best: tuple[int, str] | None = None
            for name in slot.names:
                if name in self.defaults:
                    prio = _PRIORITY[self.defaults[name][1]]
                    if best is None or prio > best[0]:
                        best = (prio, name)
            if best is not None:
                slot.default_name = best[1]
                slot.default_raw, slot.default_source = self.defaults[best[1]]
                slot.default_value = self._convert_default(slot)
            if slot.name == "reference_code":
                continue
            self._slot_by_path[path] = slot
            (self.item_slots if slot.level == "item" else self.head_slots).append(slot)

    def _expand(
        self, by_path: dict[tuple[str, ...], _Slot], head_cols: dict[str, int], item_cols: dict[str, int]
    ) -> None:
        """Let one file column feed several slots: value maps with several targets, ``[split]`` cells.

        The source column's own slot reports its cell's errors; the other slots read the same cell
        through the same parse (memoised once per distinct cell) and stay silent on a bad one.
        """
        if self.profile is None:
            return
        for name in sorted(set(self.profile.split) | set(self.profile.values)):
            vmap = self.profile.values.get(name, {})
            targets = {t for v in vmap.values() if isinstance(v, dict) for t in v}
            if name not in self.profile.split and not targets:
                continue
            spec = FIELDS[name]
            cols = item_cols if spec.level == "item" else head_cols
            if name not in cols:
                continue
            index = cols[name]
            parts = _Memo(self._parts_converter(spec))
            own = by_path[self._path_of(spec)]
            for col in own.cols:
                if col.canonical == name:
                    col.memo = _Memo(_picker(parts, name, report=True))
            for target in sorted(targets - {name}):
                slot = by_path[self._path_of(FIELDS[target])]
                slot.cols.append(
                    _Column(target, index, _Memo(_picker(parts, target, report=False)), derived=True)
                )

    def _parts_converter(self, spec: FieldSpec) -> Callable[[str], Any]:
        """raw cell -> {canonical column: value} (or _Bad) for a multi-target or split column."""
        assert self.profile is not None
        vmap = self.profile.values.get(spec.name, {})
        separator = self.profile.split.get(spec.name)
        parse = self.parser.parse
        plain = self.plain.parse
        name = spec.name

        def convert(raw: str) -> Any:
            text = raw.strip()
            pieces = [p.strip() for p in text.split(separator)] if separator else [text]
            out: dict[str, Any] = {}
            try:
                for piece in pieces:
                    if not piece:
                        continue
                    hit = vmap.get(normalise_header(piece))
                    found = (
                        {k: plain(FIELDS[k].kind, as_text(v), k) for k, v in hit.items()}
                        if isinstance(hit, dict)
                        else {
                            name: plain(spec.kind, as_text(hit), name)
                            if hit is not None
                            else parse(spec.kind, piece, name)
                        }
                    )
                    for key, value in found.items():
                        if key in out and out[key] != value:
                            return _Bad(f"lists two values for {key} ({piece!r} and an earlier one)")
                        out[key] = value
            except BadValue as exc:
                message = f"{exc}{_not_mapped(vmap, name)}"
                return _Bad(f"{message} (in {piece!r})" if separator and len(pieces) > 1 else message)
            return out

        return convert

    @staticmethod
    def _path_of(spec: FieldSpec) -> tuple[str, ...]:
        if spec.level == "customer":
            return ("customer", spec.target)
        if spec.level == "item":
            if spec.name.startswith("item.withholding."):
                return ("items", "withholding_taxes", spec.name.rsplit(".", 1)[1])
            if spec.name.startswith("item.mandate."):
                return ("items", "mandate", spec.target)
            return ("items", spec.target)
        if spec.group:
            return (spec.group, spec.target)
        return (spec.target,)

    def _converter(self, spec: FieldSpec, *, plain: bool = False) -> Callable[[str], Any]:
        vmap = self.profile.values.get(spec.name) if self.profile and not plain else None
        parse = (self.plain if plain else self.parser).parse
        plain_parse = self.plain.parse
        kind = spec.kind
        name = spec.name

        def convert(raw: str) -> Any:
            text = raw.strip()
            if not text:
                return MISSING
            if text[0] == "'" and len(text) > 1 and text[1] in _ESCAPED:
                text = text[1:]  # a spreadsheet's formula escape ('+57 300..., '=SUM as text)
            try:
                if vmap:
                    hit = vmap.get(normalise_header(text))
                    if hit is not None:
                        return plain_parse(kind, as_text(hit), name)
                return parse(kind, text, name)
            except BadValue as exc:
                return _Bad(f"{exc}{_not_mapped(vmap, name)}")

        return convert

    def _convert_default(self, slot: _Slot) -> Any:
        assert slot.default_name is not None
        spec = FIELDS[slot.default_name]
        try:
            text = as_text(slot.default_raw)
        except BadValue as exc:
            return _Bad(str(exc))
        return self._converter(spec, plain=True)(text)

    # -- mapping --------------------------------------------------------------------------------

    def drafts(self) -> tuple[list[Draft], list[RowError]]:
        """Map every row; return the drafts (one per invoice) and the errors outside any invoice."""
        loose: list[RowError] = []
        head_rows = self.head_table.rows
        item_rows = self.item_table.rows
        head_groups = self._group(self.head_table, self.ref_head, loose)
        if self.two_tables:
            item_groups = self._group(self.item_table, self.ref_item, loose)
            for ref, idxs in item_groups.items():
                if ref not in head_groups:
                    for i in idxs:
                        loose.append(
                            self._error(
                                self.item_table,
                                item_rows[i],
                                self.ref_item,
                                f"reference_code {ref!r} has no row in sheet {self.head_table.sheet!r}",
                            )
                        )
        else:
            item_groups = head_groups
            if any(row.head_only for row in head_rows):  # a [filter] skipped these lines
                item_groups = {
                    ref: [i for i in idxs if not head_rows[i].head_only] for ref, idxs in head_groups.items()
                }
        # errors and already-reported payload locations, per group
        g_errors: dict[int, list[RowError]] = {}
        g_errored: dict[int, set[tuple[Any, ...]]] = {}
        row_errors: dict[int, list[RowError]] = {}
        item_errored: dict[int, set[str]] = {}
        items = self._items(row_errors, item_errored)
        groups = list(head_groups.items())
        heads = self._heads(groups, g_errors, g_errored)
        head_problems: dict[int, list[RowError]] = {}
        for i, row in enumerate(head_rows):
            if row.problems:
                head_problems[i] = self._problem_errors(self.head_table, row)
        if self.two_tables:
            for i, row in enumerate(item_rows):
                if row.problems:
                    row_errors.setdefault(i, []).extend(self._problem_errors(self.item_table, row))
        drafts: list[Draft] = []
        ref_index = self.ref_head if self.ref_head is not None else 0
        for g, (ref, hidx) in enumerate(groups):
            iidx = item_groups.get(ref, [])
            ref_text = ref if isinstance(ref, str) else head_rows[hidx[0]].values[ref_index].strip()
            data, customer = heads[g]
            errors = g_errors.get(g, [])
            errored = g_errored.get(g, set())
            self._derive_customer(customer, errors, errored, [head_rows[i] for i in hidx])
            data["reference_code"] = ref_text
            data["customer"] = customer
            data["items"] = [items[i] for i in iidx]
            if self.native and ref in self.extras:
                data.update(self.extras[ref])
            for i in hidx:
                errors.extend(head_problems.get(i, ()))
            errors.extend(self._held.get(ref, ()))
            for k, i in enumerate(iidx):
                errs = row_errors.get(i)
                if errs:
                    errors.extend(errs)
                for key in item_errored.get(i, ()):
                    errored.add(("items", k, key))
            if not iidx:
                errors.append(
                    self._error(
                        self.head_table,
                        head_rows[hidx[0]],
                        self.ref_head,
                        f"invoice {ref_text!r} has no lines in sheet {self.item_table.sheet!r}"
                        if self.two_tables
                        else f"invoice {ref_text!r} has no items",
                    )
                )
            drafts.append(Draft(ref_text, data, hidx, iidx, errors, errored, self))
        for (canonical, raw), fixed in self.parser.repaired.items():
            self._warn(f"{canonical}: {raw!r} looks like a number exported as a float; read as {fixed!r}")
        return drafts, loose

    def _group(self, table: Table, ref_idx: int | None, loose: list[RowError]) -> dict[Any, list[int]]:
        groups: dict[Any, list[int]] = {}
        rows = table.rows
        if self.native:
            for i, row in enumerate(rows):
                groups.setdefault(row.group, []).append(i)
            return groups
        assert ref_idx is not None
        mapped = [c.index for s in self.head_slots + self.item_slots for c in s.cols]
        fill_down = self.profile is not None and self.profile.read.fill_down
        last: str | None = None
        keys: dict[str, str | BadValue] = {}  # an invoice's rows repeat its reference: read it once
        for i, row in enumerate(rows):
            ref = row.values[ref_idx].strip()
            if ref:
                key = keys.get(ref)
                if key is None:
                    try:  # the invoice's identity: 1001.0 is 1001, 1.23457E+11 has lost its digits
                        key = keys[ref] = self.parser.ident(ref)
                    except BadValue as exc:
                        key = keys[ref] = exc
                if isinstance(key, BadValue):
                    loose.append(self._error(table, row, ref_idx, f"reference_code {key}"))
                    last = None
                    continue
                ref = key
                groups.setdefault(ref, []).append(i)
                last = ref
                continue
            values = row.values
            if not any(values[j].strip() for j in mapped):
                continue
            if fill_down and last is not None:
                groups[last].append(i)
                continue
            errors = self._problem_errors(table, row) if row.problems else []
            if ref_idx in (row.problems or {}):
                pass  # the reference cell's own problem (a merged cell) says why it is empty
            elif last is None:
                errors.insert(
                    0,
                    self._error(
                        table, row, ref_idx, "reference_code is empty: every row must name its invoice"
                    ),
                )
            else:
                errors.insert(
                    0,
                    self._error(
                        table,
                        row,
                        ref_idx,
                        f"reference_code is empty: this row follows invoice {last!r}, which is held back "
                        "so that it is not issued without a line; repeat the reference code on every row "
                        "(or set [read] fill_down = true in the profile)",
                    ),
                )
            if last is None:
                loose.extend(errors)
            else:  # a line of the invoice above, most likely: never issue that invoice without it
                self._held.setdefault(last, []).extend(errors)
        return groups

    def _column(
        self,
        cells: list[list[str]],
        slot: _Slot,
        on_bad: Callable[[int, _Column, _Bad], None],
        flagged: dict[int, Any] | None = None,
    ) -> list[Any] | None:
        """The slot's value for each record: its first non-blank column, MISSING when all are blank.

        ``flagged`` maps a record to the cells a reader flagged (Excel error, merge, formula): such a
        cell is not trusted, so it counts as bad (the reader's message is the one reported).
        """
        values: list[Any] | None = None
        first: _Column | None = None
        for col in slot.cols:
            memo = col.memo
            converted = list(map(memo.__getitem__, map(operator.itemgetter(col.index), cells)))
            if memo.bad:
                for i, v in enumerate(converted):
                    if type(v) is _Bad:
                        on_bad(i, col, v)
                        converted[i] = MISSING
            if flagged:
                for i, problems in flagged.items():
                    if col.index in problems:  # blank or not: the reader's message says why
                        on_bad(i, col, _Bad("flagged by the reader"))
                        converted[i] = MISSING
            if values is None:
                values, first = converted, col
                continue
            for i, (a, b) in enumerate(zip(values, converted, strict=True)):
                if a is not MISSING and b is not MISSING and a != b:
                    # two columns for one field (an alias beside the id, a value-mapped cell beside
                    # the field's own column) that disagree: neither is taken on trust
                    on_bad(
                        i,
                        col,
                        _Bad(
                            f"is {as_text(b)} by the value map of this cell, "
                            f"but {as_text(a)} in its own column"
                            if col.derived
                            else f"means {slot.key} {as_text(b)}, but {getattr(first, 'canonical', '')} "
                            f"in the same row means {as_text(a)}"
                        ),
                    )
            values = [b if a is MISSING else a for a, b in zip(values, converted, strict=True)]
        return values

    def _with_default(self, slot: _Slot, values: list[Any] | None, n: int) -> tuple[list[Any] | None, bool]:
        """Fill blanks with the slot's default; returns (values, some still MISSING)."""
        default = slot.default_value
        if type(default) is _Bad:
            default = MISSING
        if values is None:
            return ([default] * n if default is not MISSING else None), False
        if default is not MISSING:
            return [default if v is MISSING else v for v in values], False
        return values, any(v is MISSING for v in values)

    def _heads(
        self,
        groups: list[tuple[Any, list[int]]],
        g_errors: dict[int, list[RowError]],
        g_errored: dict[int, set[tuple[Any, ...]]],
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Invoice-level data and customer of every group (values from its rows, then defaults)."""
        table = self.head_table
        rows = table.rows
        n = len(groups)
        firsts = [rows[hidx[0]] for _, hidx in groups]
        cells = [r.values for r in firsts]
        flagged = {g: r.problems for g, r in enumerate(firsts) if r.problems}
        keyer = self._head_keyer()
        mixed: list[int] = []
        if keyer is not None:
            for g, (_, hidx) in enumerate(groups):
                if len(hidx) > 1:
                    key = keyer(rows[hidx[0]].values)
                    if any(keyer(rows[j].values) != key for j in hidx[1:]):
                        mixed.append(g)
        mixed_set = set(mixed)
        buckets: dict[str | None, list[tuple[str, list[Any], bool]]] = {}
        for slot in self.head_slots:
            loc = self._loc(slot)

            def on_bad(g: int, col: _Column, bad: _Bad, loc: tuple[Any, ...] = loc) -> None:
                if g in mixed_set:
                    return  # _agree reports it with the exact row
                row = firsts[g]
                if not (row.problems and col.index in row.problems):  # else the reader's says why
                    g_errors.setdefault(g, []).append(
                        self._error(
                            table, row, col.index, f"{col.canonical} {bad.message}", row.values[col.index]
                        )
                    )
                g_errored.setdefault(g, set()).add(loc)

            values = self._column(cells, slot, on_bad, flagged)
            for g in mixed:
                if values is None:
                    break
                errors = g_errors.setdefault(g, [])
                errored = g_errored.setdefault(g, set())
                values[g] = self._agree(slot, groups[g][1], str(groups[g][0]), errors, errored)
            if type(slot.default_value) is _Bad and (values is None or any(v is MISSING for v in values)):
                for g in range(n) if values is None else (g for g, v in enumerate(values) if v is MISSING):
                    g_errors.setdefault(g, []).append(
                        RowError(
                            self.file,
                            firsts[g].row,
                            None,
                            as_text(slot.default_raw),
                            f"default for {slot.default_name} ({slot.default_source} [defaults]) "
                            f"{slot.default_value.message}",
                            table.sheet,
                        )
                    )
                    g_errored.setdefault(g, set()).add(loc)
            values, missing = self._with_default(slot, values, n)
            if values is None:
                continue
            bucket = "customer" if slot.level == "customer" else slot.group
            buckets.setdefault(bucket, []).append((slot.key, values, missing))
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        dicts: dict[str | None, list[dict[str, Any]]] = {}
        for bucket, entries in buckets.items():
            keys = [k for k, _, _ in entries]
            made = [
                dict(zip(keys, tup, strict=True)) for tup in zip(*(v for _, v, _ in entries), strict=True)
            ]
            if any(m for _, _, m in entries):
                made = [{k: v for k, v in d.items() if v is not MISSING} for d in made]
            dicts[bucket] = made
        top = dicts.pop(None, None)
        customers = dicts.pop("customer", None)
        for g in range(n):
            data = dict(top[g]) if top is not None else {}
            for bucket, made in dicts.items():
                if made[g]:
                    data[str(bucket)] = made[g]
            out.append((data, dict(customers[g]) if customers is not None else {}))
        return out

    def _head_keyer(self) -> Callable[[list[str]], Any] | None:
        idx = sorted({c.index for s in self.head_slots for c in s.cols})
        if not idx:
            return None
        return operator.itemgetter(*idx)

    def _items(
        self, row_errors: dict[int, list[RowError]], item_errored: dict[int, set[str]]
    ) -> list[dict[str, Any]]:
        table = self.item_table
        rows = table.rows
        n = len(rows)
        cells = [r.values for r in rows]
        flagged = {i: r.problems for i, r in enumerate(rows) if r.problems}
        columns: dict[str, list[Any]] = {}
        with_missing: set[int] = set()
        extra_slots: list[tuple[_Slot, list[Any]]] = []
        for slot in self.item_slots:

            def on_bad(i: int, col: _Column, bad: _Bad, key: str = slot.key) -> None:
                row = rows[i]
                if not (row.problems and col.index in row.problems):  # else the reader's says why
                    row_errors.setdefault(i, []).append(
                        self._error(
                            table, row, col.index, f"{col.canonical} {bad.message}", row.values[col.index]
                        )
                    )
                item_errored.setdefault(i, set()).add(key)

            values = self._column(cells, slot, on_bad, flagged)
            if type(slot.default_value) is _Bad and (values is None or any(v is MISSING for v in values)):
                self._warn(
                    f"default for {slot.default_name} ({slot.default_source}) {slot.default_value.message}"
                )
            values, missing = self._with_default(slot, values, n)
            if values is None:
                continue
            if slot.group is not None:
                extra_slots.append((slot, values))
                continue
            if missing:
                blanks = [i for i, v in enumerate(values) if v is MISSING]
                if len(blanks) == n:
                    continue  # an entirely blank optional column adds nothing
                with_missing.update(blanks)
            columns[slot.key] = values
        keys = list(columns)
        if keys:
            items = [dict(zip(keys, tup, strict=True)) for tup in zip(*columns.values(), strict=True)]
        else:
            items = [{} for _ in range(n)]
        for i in with_missing:
            items[i] = {k: v for k, v in items[i].items() if v is not MISSING}
        for slot, values in extra_slots:
            for i, v in enumerate(values):
                if v is MISSING:
                    continue
                if slot.group == "withholding":
                    if v == 0:
                        continue
                    items[i].setdefault("withholding_taxes", []).append(
                        {"code": slot.key, "withholding_tax_rate": v}
                    )
                else:
                    items[i].setdefault("mandate", {})[slot.key] = v
        if any(slot.group == "mandate" for slot, _ in extra_slots):
            self._normalise_mandates(items, row_errors, item_errored)
        if with_missing:
            zero = Decimal(0)
            for i in with_missing:
                item = items[i]
                if "tax_rate" not in item and item.get("is_excluded") == 1:
                    item["tax_rate"] = zero
        if self.profile is not None and not self.profile.prices_include_tax:
            for item in items:
                price, rate = item.get("price"), item.get("tax_rate")
                if isinstance(price, Decimal) and isinstance(rate, Decimal) and item.get("is_excluded") != 1:
                    item["price"] = round2(price * (1 + rate / _HUNDRED))
        return items

    def _normalise_mandates(
        self,
        items: list[dict[str, Any]],
        row_errors: dict[int, list[RowError]],
        item_errored: dict[int, set[str]],
    ) -> None:
        """A mandate's NIT is sent without DV, like the customer's: ``900.123.456-8`` -> 900123456."""
        slot = self._slot_by_path.get(("items", "mandate", "identification"))
        col = slot.cols[0] if slot is not None and slot.cols else None
        for i, item in enumerate(items):
            mandate = item.get("mandate")
            if not mandate or mandate.get("identification_document_id") != NIT_DOCUMENT_ID:
                continue
            ident = mandate.get("identification")
            parts = _nit_parts(ident) if isinstance(ident, str) else None
            if parts is None:
                continue  # the validator reports what is not a NIT
            number, dv = parts
            mandate["identification"] = number
            try:
                expected = str(nit_check_digit(number)) if dv else dv
            except ValueError:
                continue  # too long for a NIT: the validator says so
            if dv != expected:
                table = self.item_table
                row = table.rows[i]
                message = (
                    f"item.mandate.identification carries DV {dv}, "
                    f"but the check digit of NIT {number} is {expected}"
                )
                row_errors.setdefault(i, []).append(
                    self._error(table, row, col.index if col else None, message, ident)
                )
                item_errored.setdefault(i, set()).add("mandate")

    def _agree(
        self, slot: _Slot, hidx: list[int], ref: str, errors: list[RowError], errored: set[tuple[Any, ...]]
    ) -> Any:
        """A header-level slot's value across an invoice's rows: blanks are fine, conflicts are errors."""
        rows = self.head_table.rows
        is_ident = slot.level == "customer" and slot.key == "identification"
        for col in slot.cols:
            chosen: tuple[Any, int, str] | None = None
            for i in hidx:
                raw = rows[i].values[col.index]
                text = raw.strip()
                if not text:
                    continue
                problems = rows[i].problems
                if problems and col.index in problems:
                    errored.add(self._loc(slot))  # the reader's message says why
                    continue
                value = col.memo[raw]
                if chosen is None:
                    if type(value) is _Bad:
                        errors.append(
                            self._error(
                                self.head_table, rows[i], col.index, f"{col.canonical} {value.message}", raw
                            )
                        )
                        errored.add(self._loc(slot))
                    chosen = (value, i, text)
                elif text != chosen[2] and value != chosen[0]:
                    if is_ident and (same := _same_nit(chosen[2], text)) is not None:
                        if same:  # 900123456 beside 900.123.456-8: keep the spelling with the DV
                            chosen = (value, i, text)
                        continue
                    errors.append(
                        self._error(
                            self.head_table,
                            rows[i],
                            col.index,
                            f"{col.canonical} differs from {chosen[2]!r} in row {rows[chosen[1]].row}: "
                            f"all rows of invoice {ref!r} must agree",
                            raw,
                        )
                    )
            if chosen is not None:
                return MISSING if type(chosen[0]) is _Bad else chosen[0]
        return MISSING

    def _derive_customer(
        self,
        customer: dict[str, Any],
        errors: list[RowError],
        errored: set[tuple[Any, ...]],
        rows: list[SourceRow],
    ) -> None:
        doc = customer.get("identification_document_id")
        if "legal_organization_id" not in customer:
            if doc in IDENTIFICATION_DOCUMENTS:
                customer["legal_organization_id"] = 1 if doc == NIT_DOCUMENT_ID else 2
            else:  # derived from a missing or wrong document type: that error is reported instead
                errored.add(("customer", "legal_organization_id"))
        ident = customer.get("identification")
        if not isinstance(ident, str) or "-" not in ident:
            pass
        elif (m := _BRANCH.fullmatch(ident.strip())) is not None:
            # Siigo Pyme: the number (often zero-padded to 13 digits), '-' and a 3-digit branch
            # (sucursal); a DV is one digit, so '-000' never is one, whatever the document type
            number = m.group(1).lstrip("0") or "0"
            self._warn(
                f"customer.identification: {ident!r} read as {number} "
                f"(the '-{m.group(2)}' is a Siigo branch code)"
            )
            customer["identification"] = ident = number
        if doc != NIT_DOCUMENT_ID or not isinstance(ident, str):
            return
        written = ident  # as the cell has it, for the error
        if (
            self.profile is not None
            and self.profile.nit_dv_in_last_digit
            and "-" not in ident
            and len(digits := ident.replace(".", "").replace(" ", "").strip()) >= 2
            and digits.isascii()
            and digits.isdigit()
        ):
            ident = f"{digits[:-1]}-{digits[-1]}"  # the profile says the DV is the last digit
        if "." not in ident and "-" not in ident and " " not in ident:
            return
        parts = _nit_parts(ident)
        if parts is None:
            return  # left as is: the validator reports it as not digits-only
        number, dv = parts
        customer["identification"] = number
        if not dv:
            return
        given = customer.get("dv")
        if given is None:
            customer["dv"] = dv
            try:
                expected = str(nit_check_digit(number))
            except ValueError:
                return  # too long for a NIT: the validator says so
            if dv == expected:
                return
            message = (
                f"customer.identification carries DV {dv}, but the check digit of NIT {number} is {expected}"
            )
        elif str(given) != dv:
            message = f"customer.identification carries DV {dv} but customer.dv is {given}"
        else:
            return
        slot = self._slot_by_path[("customer", "identification")]
        col = slot.cols[0] if slot.cols else None
        row = rows[0]
        if col is not None:  # the row that wrote this spelling (another row may hold it without DV)
            row = next((r for r in rows if r.values[col.index].strip() == written.strip()), row)
        errors.append(self._error(self.head_table, row, col.index if col else None, message, written))
        errored.add(("customer", "dv"))

    @staticmethod
    def _loc(slot: _Slot) -> tuple[Any, ...]:
        if slot.level == "customer":
            return ("customer", slot.key)
        if slot.group is not None:
            return (slot.group, slot.key)
        return (slot.key,)

    # -- errors ---------------------------------------------------------------------------------

    def label(self, table: Table, row: SourceRow, index: int | None) -> str | None:
        """The column as the user knows it: the header as written, or a JSON path for native JSON."""
        if index is None or index < 0:
            return None
        if row.labels and index in row.labels:
            return row.labels[index]
        return table.headers[index]

    def _error(
        self, table: Table, row: SourceRow, index: int | None, message: str, value: str | None = None
    ) -> RowError:
        if value is None and index is not None and 0 <= index < len(row.values):
            value = row.values[index]
        return RowError(self.file, row.row, self.label(table, row, index), value, message, table.sheet)

    def _problem_errors(self, table: Table, row: SourceRow) -> list[RowError]:
        assert row.problems
        out = []
        used = self._used_columns(table)
        for index, message in row.problems.items():
            if index > ROW_PROBLEM and index not in used:
                continue  # a column the profile does not read: its #REF! or merge harms nothing
            if index <= ROW_PROBLEM:
                label = row.labels.get(index) if row.labels else None
                value = row.problem_values.get(index) if row.problem_values else None
                out.append(RowError(self.file, row.row, label, value, message, table.sheet))
            else:
                out.append(self._error(table, row, index, message))
        return out

    def _used_columns(self, table: Table) -> set[int]:
        """Indices of ``table``'s columns that feed the payload (reference code included)."""
        used = self._used.get(id(table))
        if used is None:
            if not self.two_tables:
                slots, ref = self.head_slots + self.item_slots, self.ref_head
            elif table is self.item_table:
                slots, ref = self.item_slots, self.ref_item
            else:
                slots, ref = self.head_slots, self.ref_head
            used = {c.index for s in slots for c in s.cols}
            if ref is not None:
                used.add(ref)
            self._used[id(table)] = used
        return used

    def locate(
        self, draft: Draft, loc: tuple[Any, ...]
    ) -> tuple[int | None, str | None, str | None, str, str | None]:
        """Map a payload location of ``draft`` to (row, column label, raw value, field name, sheet)."""
        head = self.head_table
        if (
            loc
            and loc[0] == "items"
            and len(loc) >= 2
            and isinstance(loc[1], int)
            and loc[1] < len(draft.item_rows)
        ):
            table = self.item_table
            row = table.rows[draft.item_rows[loc[1]]]
            slot: _Slot | None = None
            if len(loc) >= 3:
                key = loc[2]
                if key == "withholding_taxes" and len(loc) >= 4 and isinstance(loc[3], int):
                    taxes = draft.data["items"][loc[1]].get("withholding_taxes") or []
                    code = (
                        taxes[loc[3]].get("code")
                        if loc[3] < len(taxes) and isinstance(taxes[loc[3]], dict)
                        else None
                    )
                    slot = self._slot_by_path.get(("items", "withholding_taxes", str(code)))
                elif key == "mandate" and len(loc) >= 4:
                    slot = self._slot_by_path.get(("items", "mandate", str(loc[3])))
                elif key == "mandate":  # the whole mandate is missing: point at its first column
                    slot = next(
                        (
                            s
                            for path, s in self._slot_by_path.items()
                            if path[:2] == ("items", "mandate") and s.cols
                        ),
                        None,
                    )
                else:
                    slot = self._slot_by_path.get(("items", str(key)))
            return self._locate_slot(table, [row], slot, loc)
        slot = None
        if loc:
            path = tuple(str(p) for p in loc[:2])
            slot = self._slot_by_path.get(path) or self._slot_by_path.get(path[:1])
            if loc[0] == "reference_code" and self.ref_head is not None:
                row = head.rows[draft.head_rows[0]]
                return (
                    row.row,
                    self.label(head, row, self.ref_head),
                    row.values[self.ref_head],
                    "reference_code",
                    head.sheet,
                )
        rows = [head.rows[i] for i in draft.head_rows]
        cause = _CAUSES.get(loc[0]) if loc and (slot is None or not slot.cols) else None
        if cause is not None and (cause_slot := self._slot_by_path.get((cause,))) is not None:
            # "payment_due_date is required when payment_form is 2" in a file without that column:
            # the cell that asks for it is the one to show
            number, label, raw, _name, sheet = self._locate_slot(head, rows, cause_slot, (cause,))
            if label is not None:
                return number, label, raw, str(loc[0]), sheet
        return self._locate_slot(head, rows, slot, loc)

    def _locate_slot(
        self, table: Table, rows: list[SourceRow], slot: _Slot | None, loc: tuple[Any, ...]
    ) -> tuple[int | None, str | None, str | None, str, str | None]:
        fallback_name = ".".join(str(p) for p in loc) if loc else "invoice"
        if slot is None:
            row = rows[0]
            label = _json_path(loc) if self.native and loc else None
            return row.row, label, None, fallback_name, table.sheet
        for row in rows:
            for col in slot.cols:
                raw = row.values[col.index]
                if raw.strip():
                    return row.row, self.label(table, row, col.index), raw, col.canonical, table.sheet
        row = rows[0]
        label = self.label(table, row, slot.cols[0].index) if slot.cols else None
        if slot.default_name is not None and slot.default_value is not MISSING:
            # every cell is blank (or there is no column): the value came from the default
            name = f"{slot.default_name} (default from {slot.default_source})"
            return row.row, label, as_text(slot.default_raw), name, table.sheet
        if slot.cols:
            col = slot.cols[0]
            return row.row, label, row.values[col.index], col.canonical, table.sheet
        label = _json_path(loc) if self.native and loc else None
        return row.row, label, None, slot.name, table.sheet


def _json_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
