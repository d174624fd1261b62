"""JSON reader: native v1 invoices (object, list, JSON Lines) and flat canonical rows."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import InputError
from daemon.intake import Lookups, read_invoices
from daemon.intake.validate import IntakeResult
from daemon.settings import Settings
from tests.conftest import minimal_bill

NATIVE: dict[str, Any] = {
    **minimal_bill("J-1"),
    "payment_form": 1,  # numbers and strings where v1 has the other: read all the same
    "payment_method_code": 10,
}
NATIVE["customer"] = {**NATIVE["customer"], "identification_document_id": "3"}
NATIVE["items"] = [{**NATIVE["items"][0], "name": "Producto"}]


def native(ref: str = "J-1", **changes: Any) -> dict[str, Any]:
    """A valid native invoice with top-level changes."""
    doc = copy.deepcopy(NATIVE)
    doc["reference_code"] = ref
    doc.update(changes)
    return doc


def flat_row(ref: str, **changes: str) -> dict[str, str]:
    """A valid flat canonical row (a JSON Lines or list element) with some keys changed."""
    row = {
        "reference_code": ref,
        "customer.identification_document_id": "3",
        "customer.identification": "1399991",
        "customer.names": "Ana",
        "item.code_reference": "A",
        "item.name": "A",
        "item.quantity": "1",
        "item.price": "100",
        "item.tax_rate": "19",
    }
    row.update(changes)
    return row


def read(path: Path) -> IntakeResult:
    """read_invoices with default settings and the built-in lookups."""
    return read_invoices(path, settings=Settings(), lookups=Lookups.builtin())


def dump(path: Path, value: Any) -> Path:
    """Write a JSON value."""
    path.write_text(json.dumps(value, ensure_ascii=False))
    return path


class TestNative:
    def test_single_object_round_trips_with_normalised_types(self, tmp_path: Path) -> None:
        """A v1 object with loose types (payment_form 1, id "3") comes back as the v1 body Factus expects."""
        result = read(dump(tmp_path / "one.json", native()))
        assert result.errors == []
        payload = json.loads(result.invoices[0].payload_json())
        expected = json.loads(json.dumps(NATIVE))
        expected.update(
            {"payment_form": "1", "payment_method_code": "10", "document": "01", "operation_type": "10"}
        )
        expected["customer"]["identification_document_id"] = 3
        assert payload == expected
        assert result.invoices[0].rows == [1]

    def test_list_and_decimal_exactness(self, tmp_path: Path) -> None:
        """A list gives one invoice per object; fractional prices stay exact Decimals."""
        docs = [native("J-1"), native("J-2")]
        text = json.dumps(docs).replace('"price": 11900', '"price": 0.10', 1)
        path = tmp_path / "list.json"
        path.write_text(text)
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["J-1", "J-2"]
        assert result.invoices[0].payload["items"][0]["price"] == Decimal("0.10")

    def test_json_lines_rows_are_line_numbers(self, tmp_path: Path) -> None:
        """In JSON Lines an error's row is the line number; blank lines are skipped."""
        bad = native("J-2")
        bad["items"][0]["price"] = 1.555
        path = tmp_path / "x.jsonl"
        path.write_text(json.dumps(native()) + "\n\n" + json.dumps(bad) + "\n")
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["J-1"]
        err = result.errors[0]
        assert (err.row, err.column, err.value) == (3, "items[0].price", "1.555")

    def test_errors_name_json_paths(self, tmp_path: Path) -> None:
        """Errors in nested objects are located by their JSON path."""
        doc = native(payment_form="2")
        doc["customer"]["email"] = "no-at-sign"
        doc["items"].append(dict(doc["items"][0], quantity=0))
        got = {(e.column, e.message) for e in read(dump(tmp_path / "a.json", doc)).errors}
        assert ("customer.email", "customer.email is not a valid e-mail address") in got
        assert ("items[1].quantity", "item.quantity must be greater than 0") in got
        assert (
            "payment_due_date",
            "payment_due_date is required when payment_form is 2 (credit sale)",
        ) in got

    def test_unknown_and_v2_fields_are_errors(self, tmp_path: Path) -> None:
        """Fields that are not v1 (a v2 payment_details) are reported, not silently dropped."""
        doc = native(payment_details=[{"payment_form": "1"}])
        doc["items"][0]["taxes"] = [{"code": "01", "rate": "19.00"}]
        errors = read(dump(tmp_path / "v2.json", doc)).errors
        assert {(e.column, e.message) for e in errors} == {
            ("payment_details", "payment_details is not a field of a Factus v1 invoice"),
            ("items[0].taxes", "items[0].taxes is not a field of a Factus v1 item"),
        }
        assert {e.column: e.value for e in errors} == {
            "payment_details": '[{"payment_form": "1"}]',
            "items[0].taxes": '[{"code": "01", "rate": "19.00"}]',
        }

    def test_withholdings_establishment_and_allowances(self, tmp_path: Path) -> None:
        """Withholdings, establishment and allowance charges pass through validated."""
        doc = native(
            establishment={
                "name": "Sede",
                "address": "Calle 1",
                "phone_number": "0601",
                "email": "s@example.com",
                "municipality_id": 980,
            },
            allowance_charges=[
                {
                    "concept_type": "03",
                    "is_surcharge": True,
                    "reason": "Propina",
                    "base_amount": "11900.00",
                    "amount": "1190.00",
                }
            ],
        )
        doc["items"][0]["withholding_taxes"] = [{"code": "06", "withholding_tax_rate": 7.00}]
        result = read(dump(tmp_path / "rich.json", doc))
        assert result.errors == []
        payload = result.invoices[0].payload
        assert payload["items"][0]["withholding_taxes"] == [
            {"code": "06", "withholding_tax_rate": Decimal("7.00")}
        ]
        assert payload["establishment"]["phone_number"] == "0601"
        assert payload["allowance_charges"][0]["amount"] == "1190.00"

    def test_bad_withholding_code_and_duplicate_reference(self, tmp_path: Path) -> None:
        """An unknown withholding code and a reference used twice in the file are errors."""
        doc = native()
        doc["items"][0]["withholding_taxes"] = [{"code": "99", "withholding_tax_rate": 1}]
        errors = read(dump(tmp_path / "w.json", [native("D-1"), native("D-1"), doc])).errors
        messages = [(e.row, e.message) for e in errors]
        assert (2, "reference_code 'D-1' is already used by the invoice at row 1 of this file") in messages
        assert any(row == 3 and "'99' is not a withholding code" in m for row, m in messages)
        assert [e.value for e in errors if "withholding code" in e.message] == ["99"]

    def test_missing_items_and_customer(self, tmp_path: Path) -> None:
        """An object without items or customer is an error, not a crash."""
        doc = native()
        del doc["items"], doc["customer"]
        messages = {e.message for e in read(dump(tmp_path / "e.json", doc)).errors}
        assert {"customer is required", "items is required"} <= messages


class TestFlatRows:
    def test_list_of_canonical_rows(self, tmp_path: Path) -> None:
        """A list of flat objects with canonical keys is read like a CSV; numbers keep exact digits."""
        rows = [
            {
                "reference_code": "F-1",
                "customer.identification_document_id": 6,
                "customer.identification": "900123456",
                "customer.company": "Enigma",
                "item.code_reference": "A",
                "item.name": "Uno",
                "item.quantity": 2,
                "item.price": 1190.5,
                "item.tax_rate": "19.00",
            },
            {
                "reference_code": "F-1",
                "item.code_reference": "B",
                "item.name": "Dos",
                "item.quantity": 1,
                "item.price": 100,
                "item.tax_rate": 0,
            },
        ]
        result = read(dump(tmp_path / "flat.json", rows))
        assert result.errors == []
        [inv] = result.invoices
        assert inv.rows == [1, 2]
        assert [i["price"] for i in inv.payload["items"]] == [Decimal("1190.5"), Decimal("100")]


class TestBroken:
    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            ("", "is empty"),
            ("   \n", "is empty"),
            ("[]", "holds no invoice"),
            ("{not json", "is not valid JSON"),
            ("42", "must hold an invoice object"),
            ("[1, 2]", "row 1: expected a JSON object"),
            ("{broken\n{also broken\n", "line 1"),
            ("[" * 5000 + "]" * 5000, "nests deeper"),
        ],
    )
    def test_unreadable_json_is_one_input_error(self, tmp_path: Path, content: str, reason: str) -> None:
        """Any JSON that cannot be read raises InputError naming the file and the reason."""
        path = tmp_path / "bad.json"
        path.write_text(content)
        with pytest.raises(InputError, match=reason) as info:
            read(path)
        assert str(info.value).startswith("bad.json: ")

    def test_a_broken_element_or_line_blocks_only_itself(self, tmp_path: Path) -> None:
        """A list element that is not an object, or a JSON Lines line that is not JSON, is an error at
        its row; the other invoices of the file still go through."""
        result = read(dump(tmp_path / "list.json", [native("J-1"), "oops", None, native("J-3")]))
        assert [i.reference_code for i in result.invoices] == ["J-1", "J-3"]
        assert [(e.row, e.column) for e in result.errors] == [(2, None), (3, None)]
        assert "expected a JSON object" in result.errors[0].message
        lines = tmp_path / "lines.jsonl"
        lines.write_text(json.dumps(native("J-1")) + "\n{broken\n" + json.dumps(native("J-2")) + "\n")
        result = read(lines)
        assert [i.reference_code for i in result.invoices] == ["J-1", "J-2"]
        assert [(e.row, e.column) for e in result.errors] == [(2, None)]
        assert "is not valid JSON" in result.errors[0].message

    def test_a_broken_flat_row_holds_back_the_invoice_it_may_belong_to(self, tmp_path: Path) -> None:
        """Flat rows may spread one invoice over lines: a broken line naming F-1, or following F-2's
        rows, keeps that invoice from being issued without it; F-3 is unaffected."""

        rows = [json.dumps(flat_row(ref)) for ref in ("F-1", "F-2", "F-3")]
        path = tmp_path / "flat.jsonl"
        path.write_text("\n".join([*rows[:2], '{"reference_code": "F-1", oops', "{oops", rows[2]]))
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["F-3"]
        assert [(e.row, e.reference_code) for e in result.errors] == [(3, "F-1"), (4, "F-2")]
        assert "held back" in result.errors[0].message

    def test_huge_typed_numbers_are_cell_errors_never_expanded(self, tmp_path: Path) -> None:
        """1e999999999 (46 bytes) or a 5,000-digit integer is an error at its cell, never written
        out as a billion digits and never an interpreter message."""
        flat = flat_row("H-1", **{"item.price": "PLACEHOLDER"})
        path = tmp_path / "bomb.json"
        path.write_text(json.dumps([flat]).replace('"PLACEHOLDER"', "1e999999999"))
        errors = read(path).errors
        assert [(e.row, e.column) for e in errors if "magnitude" in e.message] == [(1, "item.price")]
        doc = json.dumps(native("H-2")).replace('"quantity": 1', '"quantity": ' + "9" * 5000)
        path.write_text(doc)
        errors = read(path).errors
        assert [e.column for e in errors] == ["items[0].quantity"]
        assert "magnitude" in errors[0].message and "set_int_max_str_digits" not in errors[0].message

    def test_a_key_named_twice_is_an_error_not_the_last_value(self, tmp_path: Path) -> None:
        """{"item.price": "4200", "item.price": "1"} would silently become 1.00: the row is refused."""
        path = tmp_path / "dup.json"
        good = json.dumps(native("D-2"))
        dup = json.dumps(native("D-1")).replace('"quantity": 1', '"quantity": 5, "quantity": 1')
        path.write_text(f"[{dup}, {good}]")
        result = read(path)
        assert [i.reference_code for i in result.invoices] == ["D-2"]
        assert [(e.row, e.message) for e in result.errors] == [
            (1, "names 'quantity' more than once: which value is meant is unclear")
        ]

    def test_invalid_utf8_is_refused(self, tmp_path: Path) -> None:
        """JSON must be UTF-8: other bytes are a clear error."""
        path = tmp_path / "latin.json"
        path.write_bytes('{"name": "Ñandú"}'.encode("cp1252"))
        with pytest.raises(InputError, match="is not UTF-8"):
            read(path)
