"""JSON reader: native Factus v1 invoices (one object or a list), flat canonical rows, or JSON Lines.

Numbers are parsed as ``Decimal`` (never float). A native invoice is flattened into canonical rows
(one per item) that share a group and carry their JSON paths as labels, so the one mapper and
validator handle every format and errors name ``items[1].price``. Flat rows (objects whose keys
are canonical columns or profile headers) become an ordinary table. Row numbers are the 1-based
position of the object in the list, or the line number in JSON Lines.
"""

from __future__ import annotations

import json as _json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.catalog import WITHHOLDING_CODES
from daemon.errors import InputError
from daemon.intake.fields import FIELDS
from daemon.intake.parse import BadValue, as_text
from daemon.intake.rows import ROW_PROBLEM, Limits, SourceRow, Table, input_error

__all__ = ["NATIVE_HEADERS", "JsonContent", "read_json"]

NATIVE_HEADERS: list[str] = list(FIELDS)
_INDEX = {name: i for i, name in enumerate(NATIVE_HEADERS)}
_EXTRAS = ("allowance_charges", "related_documents")
_INVOICE_OBJECTS = {"order_reference", "billing_period", "establishment"}
_NATIVE_MARKERS = {"items", "customer"}
_MAX_INT_DIGITS = 30  # longer integers become Decimal: as_text() refuses them as cells, no int() limit


class _Repeats(dict[str, Any]):
    """A JSON object that names a key more than once (``json`` would silently keep the last value)."""

    repeated: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    repeated: list[str] = []
    for key, _ in pairs:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    out = _Repeats(obj)
    out.repeated = tuple(repeated)
    return out


def _integer(text: str) -> int | Decimal:
    return int(text) if len(text) <= _MAX_INT_DIGITS else Decimal(text)


def _repeated_keys(value: Any) -> list[str]:
    """Every key named twice in one object of ``value`` (nested objects included)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Repeats):
            found.extend(item.repeated)
        children = item.values() if isinstance(item, dict) else item
        stack.extend(child for child in children if isinstance(child, dict | list))
    return found


_DECODER = _json.JSONDecoder(parse_float=Decimal, parse_int=_integer, object_pairs_hook=_object)
_WS = re.compile(r"[ \t\n\r]*")


@dataclass(slots=True)
class JsonContent:
    """What a JSON file held: native invoices and/or flat rows (either table may be None)."""

    native: Table | None = None
    extras: dict[int, dict[str, Any]] = field(default_factory=dict)
    flat: Table | None = None
    broken: list[tuple[int, str, str | None]] = field(default_factory=list)
    """Elements or lines that are not an object: (row, message, the reference_code they show)."""


def _depth_ok(value: Any, limit: int) -> bool:
    """True when the dict or list ``value`` (level 1) nests at most ``limit`` levels; a scalar is a level.

    Only containers are pushed, so a list of millions of scalars costs no extra memory.
    """
    if limit < 1:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth >= limit and item:
            return False
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return True


def _decode(path: Path, text: str, at: int, limits: Limits, depth: int = 0) -> tuple[Any, int]:
    """Decode the one JSON value starting at ``text[at]`` (``depth`` levels below the top)."""
    value, end = _DECODER.raw_decode(text, at)
    if not (
        _depth_ok(value, limits.max_json_depth - depth)
        if isinstance(value, dict | list)
        else depth < limits.max_json_depth
    ):
        raise input_error(path, f"nests deeper than {limits.max_json_depth} levels")
    return value, end


def _loads(path: Path, text: str, limits: Limits) -> Any:
    """Decode one JSON text (a JSON Lines line): exactly one value, surrounded by whitespace only."""
    try:
        start = _skip_ws(text, 0)
        value, end = _decode(path, text, start, limits)
        end = _skip_ws(text, end)
        if end != len(text):
            raise _json.JSONDecodeError("Extra data", text, end)
    except RecursionError:
        raise input_error(path, f"nests deeper than {limits.max_json_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and ints over the digit limit
        raise input_error(path, f"is not valid JSON: {exc}") from None
    return value


def _skip_ws(text: str, at: int) -> int:
    match = _WS.match(text, at)
    return match.end() if match else at


def _too_many(path: Path, limits: Limits, what: str = "objects") -> InputError:
    return input_error(path, f"has more than {limits.max_rows:,} {what}; split it into smaller files")


def _document(path: Path, text: str, limits: Limits) -> list[tuple[int, Any]] | None:
    """The objects of a JSON document (one object or a list), or None when it holds several values.

    A top-level list is decoded one element at a time, so a list of millions of items is refused
    after decoding at most ``limits.max_rows + 1`` of them, never materialised whole.
    """
    try:
        at = _skip_ws(text, 0)
        if text.startswith("[", at):
            objects: list[tuple[int, Any]] = []
            at = _skip_ws(text, at + 1)
            if text.startswith("]", at):
                at += 1
            else:
                while True:
                    value, at = _decode(path, text, at, limits, depth=1)
                    if len(objects) >= limits.max_rows:
                        raise _too_many(path, limits)
                    objects.append((len(objects) + 1, value))
                    at = _skip_ws(text, at)
                    if text.startswith(",", at):
                        at = _skip_ws(text, at + 1)
                    elif text.startswith("]", at):
                        at += 1
                        break
                    else:
                        raise _json.JSONDecodeError("Expecting ',' delimiter", text, at)
        else:
            top, at = _decode(path, text, at, limits)
            if not isinstance(top, dict):
                if _skip_ws(text, at) != len(text):
                    return None
                raise input_error(path, "must hold an invoice object, a list of objects, or JSON Lines")
            objects = [(1, top)]
    except RecursionError:
        raise input_error(path, f"nests deeper than {limits.max_json_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and ints over the digit limit
        raise input_error(path, f"is not valid JSON: {exc}") from None
    if _skip_ws(text, at) != len(text):
        return None  # several values one after another: read as JSON Lines
    return objects


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of every non-blank line of a JSON Lines text.

    Lines end at ``\\n`` only (a ``\\r`` before it is whitespace around the value), so a U+2028 or
    U+0085 inside a JSON string never splits a line.
    """
    at = 0
    number = 0
    size = len(text)
    while at < size:
        end = text.find("\n", at)
        if end < 0:
            end = size
        number += 1
        line = text[at:end]
        at = end + 1
        if line and not line.isspace():
            yield number, line


_REFERENCE = re.compile(r'"reference_code"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _json_lines(path: Path, text: str, limits: Limits) -> list[tuple[int, Any]]:
    """The objects of a JSON Lines text; the lines are counted before any is decoded.

    A line that is not valid JSON becomes a :class:`_Broken` entry (reported at its line, the
    other lines still read), unless no line at all is JSON: then the file is not JSON Lines.
    """
    if text.count("\n") >= limits.max_rows:  # else there cannot be too many lines
        for count, _ in enumerate(_lines(text), start=1):
            if count > limits.max_rows:
                raise _too_many(path, limits, "objects (non-blank lines)")
    objects: list[tuple[int, Any]] = []
    first_error: str | None = None
    for number, line in _lines(text):
        try:
            objects.append((number, _loads(path, line, limits)))
        except InputError as exc:
            reason = f"line {number}: {str(exc).split(': ', 1)[-1]}"
            first_error = first_error or reason
            m = _REFERENCE.search(line)
            objects.append((number, _Broken(reason.split(": ", 1)[1], m.group(1) if m else None)))
    if first_error is not None and all(isinstance(obj, _Broken) for _, obj in objects):
        raise input_error(path, first_error)
    return objects


@dataclass(frozen=True, slots=True)
class _Broken:
    """A JSON Lines line that could not be decoded."""

    message: str
    reference_code: str | None


def read_json(path: Path, *, limits: Limits | None = None, decimal: str = ".") -> JsonContent:
    """Read a ``.json``/``.jsonl`` file into native-invoice rows and/or flat rows.

    At most ``limits.max_rows`` objects (list elements or JSON Lines lines) and rows (native
    invoice items count one row each) are read: a file with more is refused before it is
    materialised. ``decimal`` is the separator flat rows' JSON numbers are written with (the
    profile's: its parser reads every cell); native v1 invoices are always read canonically.

    Raises:
        InputError: empty, not UTF-8, not JSON, an unexpected top-level shape, or over a limit.
    """
    limits = limits or Limits()
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise input_error(path, f"is {size:,} bytes, over the limit of {limits.max_file_bytes:,} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise input_error(path, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise input_error(path, "is empty")
    if b"\x00" in data:
        raise input_error(path, "contains NUL bytes: this is binary data (or UTF-16), not JSON text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise input_error(
            path, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); JSON must be UTF-8"
        ) from None
    del data
    objects: list[tuple[int, Any]] | None = None
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        objects = _document(path, text, limits)
    if objects is None:
        objects = _json_lines(path, text, limits)
    del text
    if not objects:
        raise input_error(path, "holds no invoice (an empty list)")
    return _split(path, objects, limits, decimal)


def _split(path: Path, objects: list[tuple[int, Any]], limits: Limits, decimal: str) -> JsonContent:
    content = JsonContent()
    native_rows: list[SourceRow] = []
    flat_rows: list[tuple[int, dict[str, Any]]] = []
    count = 0
    for group, (number, obj) in enumerate(objects):
        if isinstance(obj, _Broken):
            content.broken.append((number, obj.message, obj.reference_code))
            continue
        if not isinstance(obj, dict):
            got = "null" if obj is None else type(obj).__name__
            content.broken.append((number, f"expected a JSON object (an invoice or a row), got {got}", None))
            continue
        repeated = _repeated_keys(obj)
        if repeated:
            names = ", ".join(repr(k) for k in dict.fromkeys(repeated))
            reference = obj.get("reference_code")
            content.broken.append(
                (
                    number,
                    f"names {names} more than once: which value is meant is unclear",
                    reference if isinstance(reference, str) else None,
                )
            )
            continue
        items = obj.get("items")
        count += len(items) if isinstance(items, list) and items else 1
        if count > limits.max_rows:
            raise _too_many(path, limits, "rows (invoice items count one row each)")
        if _is_native(obj):
            rows, extras = _flatten_native(obj, number, group)
            native_rows.extend(rows)
            if extras:
                content.extras[group] = extras
        else:
            flat_rows.append((number, obj))
    if not native_rows and not flat_rows:
        number, message, _ref = content.broken[0]
        raise input_error(path, f"row {number}: {message}")
    if native_rows:
        content.native = Table(file=path.name, headers=list(NATIVE_HEADERS), rows=native_rows)
    if flat_rows:
        content.flat = _flat_table(path, flat_rows, limits, decimal)
    return content


_TOP_LEVEL = {n for n, f in FIELDS.items() if f.level == "invoice" and "." not in n} | set(_EXTRAS)


def _is_native(obj: dict[str, Any]) -> bool:
    """A v1 invoice object (possibly incomplete), as opposed to a flat row of canonical columns."""
    if _NATIVE_MARKERS & obj.keys() or any(isinstance(v, dict | list) for v in obj.values()):
        return True
    return bool(obj) and all(key in _TOP_LEVEL for key in obj)


def _flat_table(path: Path, objects: list[tuple[int, dict[str, Any]]], limits: Limits, decimal: str) -> Table:
    headers: list[str] = []
    index: dict[str, int] = {}
    for _, obj in objects:
        for key in obj:
            if key not in index:
                index[key] = len(headers)
                headers.append(str(key))
    if len(headers) > limits.max_columns:
        raise input_error(
            path, f"has {len(headers):,} distinct keys, over the limit of {limits.max_columns:,} columns"
        )
    rows: list[SourceRow] = []
    width = len(headers)
    for number, obj in objects:
        values = [""] * width
        problems: dict[int, str] | None = None
        for key, value in obj.items():
            i = index[key]
            try:
                values[i] = as_text(value, decimal)
            except BadValue as exc:
                problems = problems or {}
                problems[i] = str(exc)
            if len(values[i]) > limits.max_cell_chars:
                raise input_error(
                    path, f"row {number} key {key!r} is longer than {limits.max_cell_chars:,} characters"
                )
        rows.append(SourceRow(number, values, problems))
    return Table(file=path.name, headers=headers, rows=rows)


class _Flat:
    """Accumulates one native object's cells with their JSON-path labels."""

    def __init__(self) -> None:
        self.values = [""] * len(NATIVE_HEADERS)
        self.labels: dict[int, str] = {}
        self.problems: dict[int, str] = {}
        self.values_of_problems: dict[int, str] = {}

    def put(self, canonical: str, value: Any, label: str) -> None:
        i = _INDEX[canonical]
        self.labels[i] = label
        try:
            self.values[i] = as_text(value)
        except BadValue as exc:
            self.problems[i] = f"{label} {exc}"

    def problem(self, label: str, message: str, value: Any = None) -> None:
        key = ROW_PROBLEM - sum(1 for k in self.problems if k < 0)
        self.problems[key] = f"{label} {message}"
        self.labels[key] = label
        if value is not None:
            self.values_of_problems[key] = _shown(value)

    def row(self, number: int, group: int) -> SourceRow:
        return SourceRow(
            number,
            list(self.values),
            dict(self.problems) or None,
            group,
            dict(self.labels),
            problem_values=dict(self.values_of_problems) or None,
        )


def _shown(value: Any) -> str:
    """A JSON value as an error shows it: scalars as text, objects and lists as (short) JSON."""
    try:
        return as_text(value)
    except BadValue:
        text = _json.dumps(value, ensure_ascii=False, default=str)
        return text if len(text) <= 200 else text[:199] + "…"


def _flatten_native(obj: dict[str, Any], number: int, group: int) -> tuple[list[SourceRow], dict[str, Any]]:
    head = _Flat()
    extras: dict[str, Any] = {}
    for key, value in obj.items():
        if key in ("customer", "items"):
            continue
        if key in _EXTRAS:
            extras[key] = value
        elif key in _INVOICE_OBJECTS:
            if value is None:
                continue
            if not isinstance(value, dict):
                head.problem(key, "must be an object", value)
                continue
            for sub, subvalue in value.items():
                name = f"{key}.{sub}"
                if name in FIELDS and FIELDS[name].level == "invoice":
                    head.put(name, subvalue, name)
                else:
                    head.problem(name, "is not a field of a Factus v1 invoice", subvalue)
        elif key in FIELDS and FIELDS[key].level == "invoice":
            head.put(key, value, key)
        else:
            head.problem(key, "is not a field of a Factus v1 invoice", value)
    customer = obj.get("customer")
    if isinstance(customer, dict):
        for key, value in customer.items():
            name = f"customer.{key}"
            if name in FIELDS:
                head.put(name, value, name)
            else:
                head.problem(name, "is not a field of a Factus v1 customer", value)
    elif customer is None:
        head.problem("customer", "is required")
    else:
        head.problem("customer", "must be an object", customer)
    items = obj.get("items")
    rows: list[SourceRow] = []
    if not isinstance(items, list) or not items:
        head.problem("items", "must be a non-empty list of items" if items is not None else "is required")
        return [head.row(number, group)], extras
    for i, item in enumerate(items):
        flat = _Flat()
        flat.values = list(head.values)
        flat.labels = dict(head.labels)
        flat.problems = dict(head.problems) if i == 0 else {}
        flat.values_of_problems = dict(head.values_of_problems) if i == 0 else {}
        prefix = f"items[{i}]"
        if not isinstance(item, dict):
            flat.problem(prefix, "must be an object", item)
            rows.append(flat.row(number, group))
            continue
        for key, value in item.items():
            label = f"{prefix}.{key}"
            if key == "withholding_taxes":
                _flatten_withholdings(flat, value, label)
            elif key == "mandate":
                if isinstance(value, dict):
                    for sub, subvalue in value.items():
                        name = f"item.mandate.{sub}"
                        if name in FIELDS:
                            flat.put(name, subvalue, f"{label}.{sub}")
                        else:
                            flat.problem(f"{label}.{sub}", "is not a field of a Factus v1 mandate", subvalue)
                elif value is not None:
                    flat.problem(label, "must be an object", value)
            elif f"item.{key}" in FIELDS and not key.startswith(("withholding.", "mandate.")):
                flat.put(f"item.{key}", value, label)
            else:
                flat.problem(label, "is not a field of a Factus v1 item", value)
        rows.append(flat.row(number, group))
    return rows, extras


def _flatten_withholdings(flat: _Flat, value: Any, label: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        flat.problem(label, "must be a list", value)
        return
    for j, tax in enumerate(value):
        where = f"{label}[{j}]"
        if not isinstance(tax, dict):
            flat.problem(where, "must be an object", tax)
            continue
        raw_code = tax.get("code", "")
        code = "" if isinstance(raw_code, bool) else str(raw_code).strip()
        if code.isdigit() and len(code) == 1:  # 6 or "6": the code 06
            code = code.zfill(2)
        if code not in WITHHOLDING_CODES:
            flat.problem(
                f"{where}.code",
                f"{code!r} is not a withholding code (allowed: {', '.join(sorted(WITHHOLDING_CODES))})",
                raw_code,
            )
            continue
        name = f"item.withholding.{code}"
        if flat.values[_INDEX[name]]:
            flat.problem(f"{where}.code", f"repeats withholding code {code}", raw_code)
            continue
        extra = set(tax) - {"code", "withholding_tax_rate", "rate"}
        if extra:
            flat.problem(where, f"has unknown key(s) {sorted(extra)}")
        rate = tax.get("withholding_tax_rate", tax.get("rate"))
        if rate is None or (isinstance(rate, str) and not rate.strip()):
            flat.problem(f"{where}.withholding_tax_rate", "is required (the withholding rate, e.g. 2.50)")
            continue
        flat.put(name, rate, f"{where}.withholding_tax_rate")
