"""Property-based tests (hypothesis) of the readers and the mapper, over CSV, XLSX and JSON.

Round trip: generated invoices written in any supported format and dialect come back as exactly the
same payload values. Robustness: any table of any cells, in any format, gives payloads or located
row errors, and nothing but :class:`~daemon.errors.InputError` ever escapes.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from openpyxl.utils.exceptions import IllegalCharacterError

from daemon.errors import InputError
from daemon.intake import IntakeResult, Lookups, RowError, dumps_payload, read_invoices
from daemon.settings import Settings

COLUMNS = (
    "reference_code",
    "customer.identification_document_id",
    "customer.identification",
    "customer.names",
    "customer.email",
    "item.code_reference",
    "item.name",
    "item.quantity",
    "item.price",
    "item.tax_rate",
)
_counter = itertools.count()
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZñÑáéíóúüÁÉÍÓÚ"
TEXT = LETTERS + "0123456789 .,;:'\"&()/-_#°"

PROPERTY = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def clean_text(alphabet: str, *, min_size: int = 1, max_size: int = 30) -> st.SearchStrategy[str]:
    """Text with no leading/trailing blanks and no doubled spaces (what a reader keeps verbatim)."""
    return (
        st.text(alphabet=alphabet, min_size=min_size, max_size=max_size)
        .map(lambda s: " ".join(s.split()))
        .filter(lambda s: len(s) >= min_size and not s.startswith(("-", "+", "'", '"')))
    )


item_strategy = st.fixed_dictionaries(
    {
        "item.code_reference": clean_text(LETTERS + "0123456789-_", max_size=12),
        "item.name": clean_text(TEXT, max_size=40),
        "item.quantity": st.integers(min_value=1, max_value=999).map(str),
        "item.price": st.integers(min_value=1, max_value=999_999_999).map(lambda c: str(Decimal(c) / 100)),
        "item.tax_rate": st.sampled_from(["0", "5", "19"]),
    }
)

invoice_strategy = st.tuples(
    st.fixed_dictionaries(
        {
            "reference_code": clean_text(LETTERS + "0123456789-_/.", max_size=20),
            "customer.identification_document_id": st.just("3"),
            "customer.identification": st.text(alphabet="0123456789", min_size=5, max_size=10),
            "customer.names": clean_text(LETTERS + " '.-", max_size=40),
            "customer.email": st.just("cliente@example.com"),
        }
    ),
    st.lists(item_strategy, min_size=1, max_size=3),
)


def invoices_strategy() -> st.SearchStrategy[list[tuple[dict[str, str], list[dict[str, str]]]]]:
    """One to four invoices with distinct reference codes."""
    return st.lists(invoice_strategy, min_size=1, max_size=4, unique_by=lambda inv: inv[0]["reference_code"])


def to_rows(invoices: list[tuple[dict[str, str], list[dict[str, str]]]]) -> list[dict[str, str]]:
    """One canonical row per item, the invoice head repeated on each."""
    return [{**head, **item} for head, items in invoices for item in items]


def write(path: Path, rows: list[dict[str, str]], fmt: str, dialect: tuple[str, str]) -> Path:
    """Write canonical rows as CSV (delimiter, encoding), XLSX or JSON."""
    if fmt == "csv":
        delimiter, encoding = dialect
        out = io.StringIO()
        writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows([[row[c] for c in COLUMNS] for row in rows])
        path.write_bytes(out.getvalue().encode(encoding))
    elif fmt == "xlsx":
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        ws.append(list(COLUMNS))
        for row in rows:
            ws.append([row[c] for c in COLUMNS])
        wb.save(path)
    else:
        path.write_text(json.dumps(rows, ensure_ascii=dialect[1] == "ascii"), encoding="utf-8")
    return path


def read(path: Path) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin())


def fresh(tmp_path: Path, suffix: str) -> Path:
    """A new file path per hypothesis example."""
    return tmp_path / f"gen-{next(_counter)}{suffix}"


formats = st.sampled_from(
    [
        ("csv", (",", "utf-8")),
        ("csv", (";", "utf-8-sig")),
        ("csv", ("\t", "utf-8")),
        ("csv", (",", "cp1252")),
        ("xlsx", ("", "")),
        ("json", ("", "utf-8")),
        ("json", ("", "ascii")),
    ]
)


@PROPERTY
@given(invoices=invoices_strategy(), fmt=formats)
def test_generated_invoices_round_trip_exactly(
    tmp_path: Path,
    invoices: list[tuple[dict[str, str], list[dict[str, str]]]],
    fmt: tuple[str, tuple[str, str]],
) -> None:
    """Invoices written as CSV (any delimiter, UTF-8/BOM/cp1252), XLSX or JSON come back with the same
    reference codes, identifications (leading zeros kept), names, items, quantities and exact prices."""
    kind, dialect = fmt
    suffix = {"csv": ".csv", "xlsx": ".xlsx", "json": ".json"}[kind]
    path = write(fresh(tmp_path, suffix), to_rows(invoices), kind, dialect)
    result = read(path)
    assert result.errors == [], [str(e) for e in result.errors]
    assert [p.reference_code for p in result.invoices] == [head["reference_code"] for head, _ in invoices]
    for planned, (head, items) in zip(result.invoices, invoices, strict=True):
        payload = planned.payload
        assert payload["reference_code"] == head["reference_code"]
        customer = payload["customer"]
        assert customer["identification"] == head["customer.identification"]
        assert customer["names"] == head["customer.names"]
        assert customer["identification_document_id"] == 3
        assert len(payload["items"]) == len(items)
        for got, want in zip(payload["items"], items, strict=True):
            assert got["code_reference"] == want["item.code_reference"]
            assert got["name"] == want["item.name"]
            assert got["quantity"] == int(want["item.quantity"])
            assert got["price"] == Decimal(want["item.price"])
            assert Decimal(got["tax_rate"]) == Decimal(want["item.tax_rate"])
        json.loads(dumps_payload(payload))  # always serialisable, exact decimals


def _check_result(path: Path, result: IntakeResult, headers: list[str]) -> None:
    for error in result.errors:
        assert isinstance(error, RowError)
        assert error.file == path.name and error.message, error
        assert error.row is None or error.row >= 1, error
    for planned in result.invoices:
        json.loads(dumps_payload(planned.payload))


cell = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(["", " ", "0", "-0", "1e400", "NaN", "=1+1", "3.0", "19%", "1.234,56", "00123"]),
)
header = st.one_of(st.sampled_from(COLUMNS), st.text(min_size=1, max_size=10))


@PROPERTY
@given(
    headers=st.lists(header, min_size=1, max_size=12),
    rows=st.lists(st.lists(cell, min_size=0, max_size=14), min_size=1, max_size=5),
    kind=st.sampled_from(["csv", "xlsx", "json"]),
)
def test_any_table_in_any_format_gives_payloads_or_located_errors(
    tmp_path: Path, headers: list[str], rows: list[list[str]], kind: str
) -> None:
    """Any header and any cells, ragged rows included, in CSV, XLSX or JSON: the result is payloads plus
    row errors naming the file, or an InputError naming the file; never another exception."""
    path = fresh(tmp_path, f".{kind}")
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows(rows)
        path.write_text(out.getvalue(), encoding="utf-8")
    elif kind == "xlsx":
        wb = Workbook()
        ws = wb.active
        assert ws is not None
        try:
            for line in [headers, *rows]:
                ws.append([c if not c.startswith("=") else "'" + c for c in line])
            wb.save(path)
        except IllegalCharacterError:  # control characters cannot be stored in a workbook at all
            return
    else:
        objects = [dict(zip(headers, row, strict=False)) for row in rows]
        path.write_text(json.dumps(objects), encoding="utf-8")
    try:
        result = read(path)
    except InputError as exc:
        assert str(exc).startswith(f"{path.name}: ") or path.name in str(exc), str(exc)
        return
    _check_result(path, result, headers)


json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["items", "customer", *COLUMNS, "x"]), children, max_size=5),
    ),
    max_leaves=25,
)


@PROPERTY
@given(document=json_value)
def test_any_json_document_gives_payloads_or_located_errors(tmp_path: Path, document: Any) -> None:
    """Any JSON value (nested invoices, wrong types, nulls, huge numbers) yields payloads and row errors,
    or an InputError naming the file."""
    path = fresh(tmp_path, ".json")
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        result = read(path)
    except InputError as exc:
        assert path.name in str(exc), str(exc)
        return
    _check_result(path, result, [])


@pytest.mark.parametrize("kind", ["csv", "xlsx", "json"])
def test_round_trip_keeps_leading_zeros_and_exact_cents(tmp_path: Path, kind: str) -> None:
    """The edge values hypothesis may not hit: identification 0000012345 and a price of 0.01."""
    invoices = [
        (
            {
                "reference_code": "EDGE-1",
                "customer.identification_document_id": "3",
                "customer.identification": "0000012345",
                "customer.names": "Ana",
                "customer.email": "cliente@example.com",
            },
            [
                {
                    "item.code_reference": "0007",
                    "item.name": "Uno",
                    "item.quantity": "1",
                    "item.price": "0.01",
                    "item.tax_rate": "0",
                }
            ],
        )
    ]
    dialect = {"csv": (",", "utf-8"), "xlsx": ("", ""), "json": ("", "utf-8")}[kind]
    result = read(write(tmp_path / f"edge.{kind}", to_rows(invoices), kind, dialect))
    assert result.errors == []
    (planned,) = result.invoices
    assert planned.payload["customer"]["identification"] == "0000012345"
    assert planned.payload["items"][0]["code_reference"] == "0007"
    assert planned.payload["items"][0]["price"] == Decimal("0.01")
